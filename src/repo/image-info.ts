/**
 * The `image` field of an image snapshot (a block-level backup of a disk, a
 * partition or a raw image file). Plain JSON inside the snapshot object, like
 * the rest of the snapshot metadata; the block positions themselves live in
 * encrypted block-map blobs (`BlobType.ImageMap`):
 *
 *   image.maps[m]   → map blob: entries × 32-byte block ids, block m·mapBlocks + i
 *   block id        → data blob of `blockSize` bytes (the last block may be shorter)
 *   all-zero id     → a hole: the block reads as zeros, nothing is stored
 *
 * See docs/format.md, "Image snapshots".
 */
import { isIdHex } from '../core/ids.js';
import { asRecord } from './binary.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';

/** Version of the `image` field's layout. */
export const IMAGE_VERSION = 1;
/** Smallest and largest block size a reader accepts. */
export const MIN_IMAGE_BLOCK = 4096;
export const MAX_IMAGE_BLOCK = 64 * 1024 * 1024;
/** Largest number of blocks one map blob may cover. */
export const MAX_MAP_BLOCKS = 1 << 20;
/** Bytes per block-map entry. */
export const MAP_ENTRY_BYTES = 32;

/** Whether the block-map entry at `map[o…]` is all zero: a hole (nothing stored, reads as zeros). */
export function isHoleEntry(map: Buffer, o: number): boolean {
  // A loop, not a compare: an id's first byte is almost never zero, and a call into C++ per block costs more.
  for (let i = o; i < o + MAP_ENTRY_BYTES; i++) if (map[i] !== 0) return false;
  return true;
}

/** One partition of the source's partition table. */
export interface ImagePartition {
  /** Partition number as the OS names it (1-based: sda1 is 1). */
  readonly number: number;
  /** Byte offset of the partition in the image. */
  readonly start: number;
  /** Bytes. */
  readonly size: number;
  /** MBR: the type byte as `0x83`; GPT: the type GUID, lowercase. */
  readonly type: string;
  /** GPT partition name, if any. */
  readonly name?: string;
  /** GPT unique partition GUID, lowercase. */
  readonly uuid?: string;
  /** MBR active (boot) flag. */
  readonly bootable?: boolean;
}

/** How the image is laid out. */
export interface ImageLayout {
  /** `none`: no partition table (a bare file system, or unknown content). */
  readonly table: 'none' | 'mbr' | 'gpt';
  /** GPT disk GUID, or the MBR disk signature as 8 hex digits. */
  readonly diskId?: string;
  readonly partitions: readonly ImagePartition[];
}

/** A file system found in the image (bare, or inside a partition). */
export interface ImageFilesystem {
  /** Byte offset in the image. */
  readonly start: number;
  /** Bytes the file system claims to span (may exceed its partition if corrupt). */
  readonly size: number;
  /** `ext2`, `ext3`, `ext4`, `xfs`, `vfat`, … or `unknown`. */
  readonly type: string;
  /**
   * True when its allocation bitmaps were read and blocks it does not use
   * were skipped (they restore as zeros). False when it was copied whole.
   */
  readonly understood: boolean;
  /** Partition number it lives in; absent for a bare file system. */
  readonly partition?: number;
  /** Bytes the file system reports in use (when understood). */
  readonly usedBytes?: number;
  readonly label?: string;
  readonly uuid?: string;
  /** Why it was not understood, or what was odd about it. */
  readonly note?: string;
}

/** Block counts of one image backup. */
export interface ImageCounts {
  /** Blocks in the image: ceil(size / blockSize). */
  readonly blocks: number;
  /** Blocks skipped because no file system uses them (stored as holes). */
  readonly unused: number;
  /** Blocks read that were all zero (stored as holes). */
  readonly zero: number;
  /** Blocks whose fingerprint matched the parent's: not hashed with the key, not stored. */
  readonly unchanged: number;
  /** Blocks read whose content differs from the parent's (or that had no parent entry). */
  readonly changed: number;
  /** Blocks that were new to the repository (stored by this backup). */
  readonly stored: number;
  /** Bytes read from the source. */
  readonly bytesRead: number;
}

/** The `image` field of a snapshot. */
export interface ImageInfo {
  readonly version: number;
  /** The source as given (`/dev/sda`, `/srv/vm.img`, `-`). Informational. */
  readonly source: string;
  /** Bytes in the image. */
  readonly size: number;
  /** Bytes per block, a power of two in [4 KiB, 64 MiB]. */
  readonly blockSize: number;
  /** Blocks per map blob (the last map may cover fewer). */
  readonly mapBlocks: number;
  /** Map blob ids, in order: ceil(blocks / mapBlocks) of them. */
  readonly maps: readonly string[];
  /** True when every block was read (`--all-blocks`, or nothing was understood). */
  readonly allBlocks: boolean;
  /**
   * True when the source was mounted read-write while it was read
   * (`--allow-live`): the image is only crash-consistent.
   */
  readonly live?: boolean;
  /** What was read: absent for raw bytes (a device, a raw file, a stream, an NBD export); `qcow2`: the virtual disk of a qcow2 file. */
  readonly format?: 'qcow2';
  /**
   * qcow2: the persistent dirty bitmap added to the file before this
   * snapshot read it: it marks every cluster written since, so the next
   * backup, whose parent this is, reads only those.
   */
  readonly bitmap?: string;
  /** qcow2: the parent's bitmap whose dirty clusters this backup read; every other block is the parent's. */
  readonly readSince?: string;
  readonly layout: ImageLayout;
  readonly filesystems: readonly ImageFilesystem[];
  readonly counts: ImageCounts;
}

/** Number of blocks of an image. */
export function imageBlockCount(info: Pick<ImageInfo, 'size' | 'blockSize'>): number {
  return Math.ceil(info.size / info.blockSize);
}

const safeInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Validates the `image` field of a snapshot. Checks what a reader needs to
 * read blocks safely (sizes, counts, ids); the layout and file system lists
 * are informational and checked only for shape.
 */
export function decodeImageInfo(v: unknown, what: string): ImageInfo {
  const o = asRecord(v, what);
  const fail = (detail: string): never => {
    throw new CorruptObjectError(what, `image: ${detail}`);
  };
  const version = o['version'];
  if (version !== IMAGE_VERSION) {
    if (typeof version === 'number') throw new UnsupportedVersionError(`${what} (image)`, version, IMAGE_VERSION);
    fail('bad version');
  }
  const { size, blockSize, mapBlocks, maps, allBlocks, source } = o;
  if (typeof source !== 'string') fail('bad source');
  if (!safeInt(size)) fail('bad size');
  if (!safeInt(blockSize) || blockSize < MIN_IMAGE_BLOCK || blockSize > MAX_IMAGE_BLOCK || (blockSize & (blockSize - 1)) !== 0) fail('bad blockSize');
  if (!safeInt(mapBlocks) || mapBlocks < 1 || mapBlocks > MAX_MAP_BLOCKS) fail('bad mapBlocks');
  if (!Array.isArray(maps) || !maps.every(isIdHex)) fail('bad maps');
  const blocks = Math.ceil((size as number) / (blockSize as number));
  if ((maps as string[]).length !== Math.ceil(blocks / (mapBlocks as number))) fail(`${(maps as string[]).length} maps for ${blocks} blocks`);
  if (typeof allBlocks !== 'boolean') fail('bad allBlocks');
  if (o['format'] !== undefined && o['format'] !== 'qcow2') fail('bad format');
  for (const k of ['bitmap', 'readSince']) if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k].length === 0 || o[k].length > 1023)) fail(`bad ${k}`);
  const layout = asRecord(o['layout'], what);
  if (layout['table'] !== 'none' && layout['table'] !== 'mbr' && layout['table'] !== 'gpt') fail('bad layout table');
  if (!Array.isArray(layout['partitions'])) fail('bad partitions');
  for (const p of layout['partitions'] as unknown[]) {
    const r = asRecord(p, what);
    if (!safeInt(r['number']) || !safeInt(r['start']) || !safeInt(r['size']) || typeof r['type'] !== 'string') fail('bad partition');
  }
  if (!Array.isArray(o['filesystems'])) fail('bad filesystems');
  for (const f of o['filesystems'] as unknown[]) {
    const r = asRecord(f, what);
    if (!safeInt(r['start']) || !safeInt(r['size']) || typeof r['type'] !== 'string' || typeof r['understood'] !== 'boolean') fail('bad filesystem');
  }
  const counts = asRecord(o['counts'], what);
  for (const k of ['blocks', 'unused', 'zero', 'unchanged', 'changed', 'stored', 'bytesRead']) if (!safeInt(counts[k])) fail(`bad counts.${k}`);
  return o as unknown as ImageInfo;
}

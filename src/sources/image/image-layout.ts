/**
 * What is in an image and which of its blocks hold nothing: the partition
 * table, the file system at the start of each partition (or of the bare
 * image), and, for the file systems whose allocation we can read, the bytes
 * they do not use.
 *
 *   layout = readPartitionTable(src)
 *   regions = partitions (not the extended containers), or the whole image
 *   for each region: probe the file system type by its magic
 *     ext2/3/4 (bitmaps), FAT12/16/32 (the FAT) → free runs → add to a per-file-system tally
 *                of free bytes per image block; merged only if the whole
 *                file system parsed (a damaged one is read whole, with a warning)
 *   an image block is unused when all of its bytes are free
 *   pastEnd: the furthest end a partition or a file system claims, when it
 *     lies past the end of the image (a truncated image or a wrong table)
 */
import type { ImageFilesystem, ImageLayout, ImagePartition } from '../../repo/image-info.js';
import { FsCorruptError, FsTruncatedError, extFreeRuns, isExt, readExtInfo } from './ext-fs.js';
import { fatFreeRuns, isFat, readFatInfo } from './fat-fs.js';
import { readPartitionTable } from './partition-table.js';
import { SourceShrankError } from './image-input.js';
import { sliceSource, type RandomAccessSource } from './random-access.js';

export interface LayoutAnalysis {
  readonly layout: ImageLayout;
  readonly filesystems: ImageFilesystem[];
  readonly warnings: string[];
  /** Free bytes per image block; undefined when no file system was understood. */
  readonly freeBytes?: Uint32Array;
  /**
   * The furthest end (bytes) that a partition or a file system in the image
   * claims, and what claims it, when that lies past the end of the image:
   * the image is truncated, or its partition table is wrong.
   */
  readonly pastEnd?: { readonly end: number; readonly what: string };
}

export interface AnalyzeOptions {
  /** Bytes per image block. */
  readonly blockSize: number;
  /** Do not read allocation bitmaps: every block is used (`--all-blocks`). */
  readonly allBlocks?: boolean;
  /**
   * Only the first bytes of a stream are available: recognise file systems
   * but do not read their bitmaps.
   */
  readonly headOnly?: boolean;
}

const EXTENDED_TYPES = new Set(['0x05', '0x0f', '0x85']);

/** What the analysis needs of a file system whose allocation it can read. */
interface AllocationReader {
  info(src: RandomAccessSource): Promise<{ type: string; size: number; usedBytes: number; label: string; uuid: string; untrusted?: string }>;
  freeRuns(src: RandomAccessSource, emit: (offset: number, length: number) => void): Promise<unknown>;
}

const EXT: AllocationReader = { info: readExtInfo, freeRuns: extFreeRuns };
const FAT: AllocationReader = { info: readFatInfo, freeRuns: fatFreeRuns };

/** Recognises a file system (or other content) by its magic. */
export async function probeType(src: RandomAccessSource): Promise<string | undefined> {
  const head = async (off: number, n: number): Promise<Buffer | undefined> => (off + n <= src.size ? src.read(off, n) : undefined);
  try {
    if (await isExt(src)) return (await readExtInfo(src).catch(() => undefined))?.type ?? 'ext';
    const b0 = await head(0, 4096);
    if (!b0) return undefined;
    if (b0.subarray(0, 4).toString('latin1') === 'XFSB') return 'xfs';
    if (b0.subarray(0, 6).toString('latin1') === 'LUKS\xba\xbe') return 'crypto_LUKS';
    if (b0.subarray(3, 11).toString('latin1') === 'NTFS    ') return 'ntfs';
    if (b0.subarray(536, 544).toString('latin1') === 'LVM2 001') return 'LVM2_member';
    if (b0.subarray(4086, 4096).toString('latin1') === 'SWAPSPACE2' || b0.subarray(4086, 4096).toString('latin1') === 'SWAP-SPACE') return 'swap';
    if (await isFat(src)) return 'vfat';
    const btrfs = await head(0x10040, 8);
    if (btrfs?.toString('latin1') === '_BHRfS_M') return 'btrfs';
  } catch (e) {
    if (e instanceof SourceShrankError) throw e;
  }
  return undefined;
}

/** Adds a run of free bytes [start, start + length) to a per-block tally. */
function addFree(tally: Uint32Array, blockSize: number, start: number, length: number): void {
  let pos = start;
  const end = start + length;
  while (pos < end) {
    const b = Math.floor(pos / blockSize);
    const next = Math.min(end, (b + 1) * blockSize);
    if (b < tally.length) tally[b]! += next - pos;
    pos = next;
  }
}

/** Reads the layout and the allocation of the file systems in `src`. */
export async function analyzeImage(src: RandomAccessSource, opts: AnalyzeOptions): Promise<LayoutAnalysis> {
  const { layout, warnings } = await readPartitionTable(src);
  const filesystems: ImageFilesystem[] = [];
  let pastEnd: { end: number; what: string } | undefined;
  const claims = (end: number, what: string): void => {
    if (end > src.size && end > (pastEnd?.end ?? 0)) pastEnd = { end, what };
  };
  for (const p of layout.partitions) claims(p.start + p.size, `partition ${p.number}`);
  const blocks = Math.ceil(src.size / opts.blockSize);
  let freeBytes: Uint32Array | undefined;
  const understood: [number, number][] = [];
  const regions: { start: number; size: number; partition?: ImagePartition }[] = layout.table === 'none'
    ? [{ start: 0, size: src.size }]
    : layout.partitions.filter((p) => !(layout.table === 'mbr' && EXTENDED_TYPES.has(p.type)) && p.start < src.size)
      .map((p) => ({ start: p.start, size: Math.min(p.size, src.size - p.start), partition: p }));
  for (const r of regions) {
    const region = sliceSource(src, r.start, r.size);
    const type = await probeType(region);
    if (!type) continue;
    const where = r.partition ? `partition ${r.partition.number}` : 'the image';
    const base = { start: r.start, size: r.size, type, ...(r.partition ? { partition: r.partition.number } : {}) };
    const reader = type.startsWith('ext') ? EXT : type === 'vfat' ? FAT : undefined;
    if (!reader) {
      filesystems.push({ ...base, understood: false, note: 'allocation of this file system type is not read; all its blocks are kept' });
      continue;
    }
    let info;
    try {
      info = await reader.info(region);
    } catch (e) {
      if (!(e instanceof FsCorruptError)) throw e;
      if (e instanceof FsTruncatedError) claims(r.start + e.claimed, `the ${type} file system on ${where}`);
      warnings.push(`${type} file system on ${where}: ${e.message}; reading all its blocks`);
      filesystems.push({ ...base, understood: false, note: e.message });
      continue;
    }
    const described = { ...base, size: info.size, type: info.type, ...(info.usedBytes > 0 ? { usedBytes: info.usedBytes } : {}), ...(info.label ? { label: info.label } : {}), ...(info.uuid ? { uuid: info.uuid } : {}) };
    if (info.untrusted && !opts.allBlocks && !opts.headOnly) {
      warnings.push(`${info.type} file system on ${where}: ${info.untrusted}; reading all its blocks`);
      filesystems.push({ ...described, understood: false, note: info.untrusted });
      continue;
    }
    if (opts.allBlocks || opts.headOnly) {
      filesystems.push({ ...described, understood: false, note: opts.allBlocks ? '--all-blocks' : 'read from a stream: allocation bitmaps cannot be read ahead' });
      continue;
    }
    const overlaps = (a: number, b: number): boolean => r.start < b && a < r.start + info.size;
    if (understood.some(([a, b]) => overlaps(a, b)) || regions.some((o) => o !== r && overlaps(o.start, o.start + o.size))) {
      const why = 'it overlaps another file system (inconsistent partition table)';
      warnings.push(`${info.type} file system on ${where}: ${why}; reading all its blocks`);
      filesystems.push({ ...described, understood: false, note: why });
      continue;
    }
    const firstBlock = Math.floor(r.start / opts.blockSize);
    const tally = new Uint32Array(Math.min(blocks, Math.ceil((r.start + info.size) / opts.blockSize)) - firstBlock);
    let counted: unknown;
    try {
      counted = await reader.freeRuns(region, (offset, length) => addFree(tally, opts.blockSize, r.start - firstBlock * opts.blockSize + offset, length));
    } catch (e) {
      if (e instanceof SourceShrankError) throw e;
      const why = e instanceof FsCorruptError || e instanceof RangeError ? e.message : `cannot read its allocation: ${(e as Error).message}`;
      warnings.push(`${info.type} file system on ${where}: ${why}; reading all its blocks`);
      filesystems.push({ ...described, understood: false, note: why });
      continue;
    }
    understood.push([r.start, r.start + info.size]);
    freeBytes ??= new Uint32Array(blocks);
    for (let i = 0; i < tally.length; i++) freeBytes[firstBlock + i]! += tally[i]!;
    const used = (counted as { usedBytes?: unknown } | undefined)?.usedBytes;
    filesystems.push({ ...described, ...(typeof used === 'number' && used > 0 ? { usedBytes: used } : {}), understood: true });
  }
  return { layout, filesystems, warnings, ...(freeBytes ? { freeBytes } : {}), ...(pastEnd ? { pastEnd } : {}) };
}

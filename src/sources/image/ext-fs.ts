/**
 * ext2/ext3/ext4 allocation, read by hand: which blocks of the file system
 * are free, so an image backup can skip them (they restore as zeros).
 *
 *   superblock at byte 1024 (magic 0xEF53): block size, block count, groups,
 *     features (64-bit descriptors, flex_bg, meta_bg, bigalloc, checksums)
 *   group descriptors: per group the block bitmap, inode bitmap, inode table,
 *     flags; found after the superblock (or per meta group with meta_bg)
 *   per group: the block bitmap (1 = used; one bit per cluster with bigalloc),
 *     or, for a group flagged BLOCK_UNINIT (trusted only with group
 *     descriptor checksums), "free except its superblock copy and descriptors"
 *   then every group's bitmaps and inode table, and every superblock and
 *     descriptor copy, are forced to "used" whatever the bitmaps say
 *   emit the runs of free blocks
 *
 * Everything read is bounds-checked; anything implausible throws
 * `FsCorruptError`, and the caller then reads the whole file system. A file
 * system whose journal needs recovery (mounted, or not cleanly unmounted) is
 * not trusted: its on-disk bitmaps may miss allocations still in the journal.
 */
import type { ErrorCode } from '../../core/errors.js';
import type { RandomAccessSource } from './random-access.js';

/** A file system's metadata is damaged or not what this parser understands. */
export class FsCorruptError extends Error {
  readonly code: ErrorCode = 'FILESYSTEM_DAMAGED';
  constructor(detail: string) {
    super(detail);
    this.name = 'FsCorruptError';
  }
}

/** The file system claims more bytes than its image or partition holds: a truncated image, or a wrong partition table. */
export class FsTruncatedError extends FsCorruptError {
  constructor(detail: string, readonly claimed: number, readonly available: number) {
    super(detail);
    this.name = 'FsTruncatedError';
  }
}

export interface ExtInfo {
  readonly type: 'ext2' | 'ext3' | 'ext4';
  readonly blockSize: number;
  readonly blocksCount: number;
  /** Bytes the file system spans. */
  readonly size: number;
  readonly usedBytes: number;
  readonly label: string;
  readonly uuid: string;
  /**
   * Why the allocation bitmaps cannot be trusted (journal needs recovery,
   * unknown features, …); undefined when they can.
   */
  readonly untrusted?: string;
}

const EXT_MAGIC = 0xef53;
const SB_OFFSET = 1024;
const SB_SIZE = 1024;

// Feature bits (linux/fs/ext4/ext4.h).
const COMPAT_HAS_JOURNAL = 0x4;
const COMPAT_SPARSE_SUPER2 = 0x200;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_EXTENTS = 0x40;
/** filetype, recover, meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, dirdata, csum_seed, largedir, inline_data, encrypt, casefold. */
const INCOMPAT_KNOWN = 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
const RO_SPARSE_SUPER = 0x1;
const RO_HUGE_FILE = 0x8;
const RO_GDT_CSUM = 0x10;
const RO_DIR_NLINK = 0x20;
const RO_EXTRA_ISIZE = 0x40;
const RO_BIGALLOC = 0x200;
const RO_METADATA_CSUM = 0x400;
/** Everything but has_snapshot (0x80) and replica (0x800), whose blocks the bitmaps may not describe. */
const RO_KNOWN = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000;
const BG_BLOCK_UNINIT = 0x2;
const MAX_GROUPS = 1 << 24;

interface Super {
  readonly blockSize: number;
  readonly clusterRatio: number;
  readonly blocksCount: number;
  readonly firstDataBlock: number;
  readonly blocksPerGroup: number;
  readonly groups: number;
  readonly descSize: number;
  readonly descPerBlock: number;
  readonly gdtBlocks: number;
  readonly reservedGdt: number;
  readonly inodeTableBlocks: number;
  readonly metaBg: boolean;
  readonly firstMetaBg: number;
  readonly sparseSuper: boolean;
  readonly sparseSuper2: boolean;
  readonly backupBgs: readonly number[];
  readonly csum: boolean;
}

/** True when `src` holds an ext2/3/4 superblock (magic only). */
export async function isExt(src: RandomAccessSource): Promise<boolean> {
  if (src.size < SB_OFFSET + SB_SIZE) return false;
  const sb = await src.read(SB_OFFSET, SB_SIZE);
  return sb.readUInt16LE(0x38) === EXT_MAGIC;
}

function uuidString(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function parseSuper(sb: Buffer, srcSize: number): { info: ExtInfo; sup: Super } {
  if (sb.readUInt16LE(0x38) !== EXT_MAGIC) throw new FsCorruptError('no ext superblock (bad magic)');
  const fail = (d: string): never => {
    throw new FsCorruptError(`superblock: ${d}`);
  };
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const logBlock = sb.readUInt32LE(0x18);
  if (logBlock > 6) fail(`block size 2^${10 + logBlock}`);
  const blockSize = 1024 << logBlock;
  const bigalloc = (roCompat & RO_BIGALLOC) !== 0;
  const logCluster = sb.readUInt32LE(0x1c);
  if (bigalloc && (logCluster < logBlock || logCluster > 29)) fail(`cluster size 2^${10 + logCluster}`);
  const clusterRatio = bigalloc ? 1 << (logCluster - logBlock) : 1;
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = sb.readUInt32LE(0x4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const freeBlocks = sb.readUInt32LE(0xc) + (is64 ? sb.readUInt32LE(0x158) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const clustersPerGroup = sb.readUInt32LE(0x24);
  const inodesPerGroup = sb.readUInt32LE(0x28);
  const revLevel = sb.readUInt32LE(0x4c);
  const inodeSize = revLevel >= 1 ? sb.readUInt16LE(0x58) : 128;
  const size = blocksCount * blockSize;
  if (blocksCount === 0 || !Number.isSafeInteger(size)) fail(`block count ${blocksCount}`);
  if (size > srcSize) throw new FsTruncatedError(`superblock: the file system claims ${size} bytes, but only ${srcSize} are there (truncated image or wrong partition table)`, size, srcSize);
  if (firstDataBlock > 1 || (firstDataBlock === 1 && blockSize !== 1024) || firstDataBlock >= blocksCount) fail(`first data block ${firstDataBlock}`);
  const bitsPerGroup = bigalloc ? clustersPerGroup : blocksPerGroup;
  if (bitsPerGroup === 0 || bitsPerGroup > 8 * blockSize) fail(`${bitsPerGroup} blocks per group`);
  if (bigalloc && blocksPerGroup !== clustersPerGroup * clusterRatio) fail('blocks per group does not match clusters per group');
  if (inodesPerGroup === 0 || inodesPerGroup > 8 * blockSize) fail(`${inodesPerGroup} inodes per group`);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) fail(`inode size ${inodeSize}`);
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groups < 1 || groups > MAX_GROUPS) fail(`${groups} groups`);
  const descSize = is64 ? sb.readUInt16LE(0xfe) : 32;
  if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0 || (is64 && descSize < 64)) fail(`descriptor size ${descSize}`);
  const descPerBlock = blockSize / descSize;
  const metaBg = (incompat & INCOMPAT_META_BG) !== 0;
  const gdtBlocks = Math.ceil(groups / descPerBlock);
  const firstMetaBg = metaBg ? sb.readUInt32LE(0x104) : gdtBlocks;
  const reservedGdt = sb.readUInt16LE(0xce);
  if (reservedGdt > blocksPerGroup) fail(`${reservedGdt} reserved descriptor blocks`);
  const label = sb.subarray(0x78, 0x88).toString('utf8').replace(/\0.*$/s, '');
  const journal = (compat & COMPAT_HAS_JOURNAL) !== 0;
  const ext4 = (incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG)) !== 0
    || (roCompat & (RO_HUGE_FILE | RO_GDT_CSUM | RO_DIR_NLINK | RO_EXTRA_ISIZE | RO_METADATA_CSUM)) !== 0;
  const type = ext4 ? 'ext4' : journal ? 'ext3' : 'ext2';
  let untrusted: string | undefined;
  const state = sb.readUInt16LE(0x3a);
  if (incompat & INCOMPAT_RECOVER) untrusted = 'its journal needs recovery (mounted, or not cleanly unmounted), so its bitmaps may be stale';
  else if ((state & 1) === 0) untrusted = 'it is not marked clean (mounted, or not cleanly unmounted), so its bitmaps may be stale';
  else if (incompat & INCOMPAT_JOURNAL_DEV) untrusted = 'it is an external journal device';
  else if (incompat & ~INCOMPAT_KNOWN) untrusted = `unknown incompatible features 0x${(incompat & ~INCOMPAT_KNOWN).toString(16)}`;
  else if (roCompat & ~RO_KNOWN) untrusted = `unknown read-only features 0x${(roCompat & ~RO_KNOWN).toString(16)}`;
  const backupBgs = [sb.readUInt32LE(0x24c), sb.readUInt32LE(0x250)];
  return {
    info: {
      type,
      blockSize,
      blocksCount,
      size,
      usedBytes: Math.max(0, blocksCount - freeBlocks) * blockSize,
      label,
      uuid: uuidString(sb.subarray(0x68, 0x78)),
      ...(untrusted ? { untrusted } : {}),
    },
    sup: {
      blockSize,
      clusterRatio,
      blocksCount,
      firstDataBlock,
      blocksPerGroup,
      groups,
      descSize,
      descPerBlock,
      gdtBlocks,
      reservedGdt,
      inodeTableBlocks: Math.ceil((inodesPerGroup * inodeSize) / blockSize),
      metaBg,
      firstMetaBg,
      sparseSuper: (roCompat & RO_SPARSE_SUPER) !== 0,
      sparseSuper2: (compat & COMPAT_SPARSE_SUPER2) !== 0,
      backupBgs,
      csum: (roCompat & (RO_GDT_CSUM | RO_METADATA_CSUM)) !== 0,
    },
  };
}

/** Reads the superblock; throws `FsCorruptError` when it is implausible. */
export async function readExtInfo(src: RandomAccessSource): Promise<ExtInfo> {
  if (src.size < SB_OFFSET + SB_SIZE) throw new FsCorruptError('too small for an ext superblock');
  return parseSuper(await src.read(SB_OFFSET, SB_SIZE), src.size).info;
}

function isPowerOf(n: number, base: number): boolean {
  while (n > 1 && n % base === 0) n /= base;
  return n === 1;
}

/** Whether group g holds a superblock copy (ext2fs_bg_has_super). */
function hasSuper(s: Super, g: number): boolean {
  if (g === 0) return true;
  if (s.sparseSuper2) return g === s.backupBgs[0] || g === s.backupBgs[1];
  if (g <= 1 || !s.sparseSuper) return true;
  if (g % 2 === 0) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

const groupFirst = (s: Super, g: number): number => s.firstDataBlock + g * s.blocksPerGroup;

/** Blocks of group g taken by its superblock and descriptor copies (ext2fs_super_and_bgd_loc2). */
function superAndDescBlocks(s: Super, g: number): [number, number][] {
  const out: [number, number][] = [];
  const first = groupFirst(s, g);
  let n = 0;
  if (hasSuper(s, g)) {
    const oldDesc = s.metaBg ? s.firstMetaBg : s.gdtBlocks + s.reservedGdt;
    n = 1 + oldDesc;
  }
  if (n > 0) out.push([first, n]);
  if (s.metaBg) {
    const metaGroup = Math.floor(g / s.descPerBlock);
    const r = g % s.descPerBlock;
    if (metaGroup >= s.firstMetaBg && (r === 0 || r === 1 || r === s.descPerBlock - 1)) out.push([first + (hasSuper(s, g) ? 1 : 0), 1]);
  }
  return out;
}

/** Block number of descriptor block i (ext2fs_descriptor_block_loc2, primary copy). */
function descBlock(s: Super, i: number): number {
  if (!s.metaBg || i < s.firstMetaBg) return s.firstDataBlock + 1 + i;
  const g = s.descPerBlock * i;
  return groupFirst(s, g) + (hasSuper(s, g) ? 1 : 0);
}

interface Group {
  readonly blockBitmap: number;
  readonly inodeBitmap: number;
  readonly inodeTable: number;
  readonly flags: number;
}

async function readGroups(src: RandomAccessSource, s: Super): Promise<Group[]> {
  const groups: Group[] = [];
  const is64 = s.descSize >= 64;
  const blockOk = (b: number): boolean => b >= s.firstDataBlock && b < s.blocksCount;
  for (let i = 0; i < s.gdtBlocks; i++) {
    const blk = descBlock(s, i);
    if (!blockOk(blk)) throw new FsCorruptError(`group descriptor block ${i} at ${blk} is outside the file system`);
    const buf = await src.read(blk * s.blockSize, s.blockSize);
    for (let j = 0; j < s.descPerBlock && groups.length < s.groups; j++) {
      const o = j * s.descSize;
      const hi = (off: number): number => (is64 ? buf.readUInt32LE(o + off) * 2 ** 32 : 0);
      const g: Group = {
        blockBitmap: buf.readUInt32LE(o) + hi(0x20),
        inodeBitmap: buf.readUInt32LE(o + 4) + hi(0x24),
        inodeTable: buf.readUInt32LE(o + 8) + hi(0x28),
        flags: buf.readUInt16LE(o + 0x12),
      };
      const n = groups.length;
      if (!blockOk(g.blockBitmap)) throw new FsCorruptError(`group ${n}: block bitmap at ${g.blockBitmap} is outside the file system`);
      if (!blockOk(g.inodeBitmap)) throw new FsCorruptError(`group ${n}: inode bitmap at ${g.inodeBitmap} is outside the file system`);
      if (!blockOk(g.inodeTable) || g.inodeTable + s.inodeTableBlocks > s.blocksCount) throw new FsCorruptError(`group ${n}: inode table at ${g.inodeTable} is outside the file system`);
      groups.push(g);
    }
  }
  return groups;
}

/** Metadata extents [start, length] in blocks, sorted by start. */
function metadataExtents(s: Super, groups: readonly Group[]): Float64Array {
  const list: [number, number][] = [];
  for (let g = 0; g < groups.length; g++) {
    const d = groups[g]!;
    list.push([d.blockBitmap, 1], [d.inodeBitmap, 1], [d.inodeTable, s.inodeTableBlocks]);
    list.push(...superAndDescBlocks(s, g));
  }
  list.sort((a, b) => a[0] - b[0]);
  const out = new Float64Array(list.length * 2);
  list.forEach(([a, n], i) => {
    out[2 * i] = a;
    out[2 * i + 1] = n;
  });
  return out;
}

/** An index at or before the first extent that may overlap `block` (binary search over sorted starts). */
function firstOverlapping(ext: Float64Array, block: number): number {
  let lo = 0;
  let hi = ext.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ext[2 * mid]! < block) lo = mid + 1;
    else hi = mid;
  }
  // An extent starting before `block` may still reach into it (inode tables
  // are long); the few extents that start inside such a table come after it.
  // Starting early is harmless: the caller clamps each extent to the group.
  return Math.max(0, lo - 64);
}

/**
 * Emits the free runs of the file system as (byte offset, byte length),
 * relative to its start, in increasing order. Throws `FsCorruptError` when its
 * metadata is implausible; then nothing emitted may be used.
 */
export async function extFreeRuns(src: RandomAccessSource, emit: (offset: number, length: number) => void): Promise<ExtInfo> {
  const { info, sup: s } = parseSuper(await src.read(SB_OFFSET, SB_SIZE), src.size);
  if (info.untrusted) throw new FsCorruptError(info.untrusted);
  const groups = await readGroups(src, s);
  const meta = metadataExtents(s, groups);
  const bitsPerGroup = s.blocksPerGroup / s.clusterRatio;
  const bitmapBytes = Math.ceil(bitsPerGroup / 8);
  let runStart = -1;
  let runEnd = -1;
  const flushRun = (): void => {
    if (runStart >= 0) emit(runStart * s.blockSize, (runEnd - runStart) * s.blockSize);
    runStart = -1;
  };
  const free = (a: number, b: number): void => {
    if (runStart >= 0 && a === runEnd) runEnd = b;
    else {
      flushRun();
      runStart = a;
      runEnd = b;
    }
  };
  // Read bitmaps in batches of consecutive blocks (flex_bg packs them together).
  const bitmapCache = new Map<number, Buffer>();
  const bitmapOf = async (g: number): Promise<Buffer> => {
    const blk = groups[g]!.blockBitmap;
    const hit = bitmapCache.get(blk);
    if (hit) {
      bitmapCache.delete(blk);
      return hit;
    }
    let n = 1;
    while (g + n < groups.length && n < 256 && groups[g + n]!.blockBitmap === blk + n && !(s.csum && groups[g + n]!.flags & BG_BLOCK_UNINIT)) n++;
    const buf = await src.read(blk * s.blockSize, n * s.blockSize);
    for (let k = 1; k < n; k++) bitmapCache.set(blk + k, buf.subarray(k * s.blockSize, (k + 1) * s.blockSize));
    return buf.subarray(0, s.blockSize);
  };
  const used = new Uint8Array(bitmapBytes);
  for (let g = 0; g < groups.length; g++) {
    const first = groupFirst(s, g);
    const blocks = Math.min(s.blocksPerGroup, s.blocksCount - first);
    const bits = Math.ceil(blocks / s.clusterRatio);
    const uninit = s.csum && (groups[g]!.flags & BG_BLOCK_UNINIT) !== 0;
    if (uninit) used.fill(0);
    else used.set((await bitmapOf(g)).subarray(0, bitmapBytes));
    const markUsed = (a: number, n: number): void => {
      const from = Math.max(a, first);
      const to = Math.min(a + n, first + blocks);
      for (let b = from; b < to; b++) {
        const bit = Math.floor((b - first) / s.clusterRatio);
        used[bit >> 3]! |= 1 << (bit & 7);
      }
    };
    if (uninit) for (const [a, n] of superAndDescBlocks(s, g)) markUsed(a, n);
    for (let i = firstOverlapping(meta, first); i < meta.length / 2 && meta[2 * i]! < first + blocks; i++) markUsed(meta[2 * i]!, meta[2 * i + 1]!);
    for (let bit = 0; bit < bits; bit++) {
      const byte = used[bit >> 3]!;
      if ((bit & 7) === 0 && bit + 8 <= bits && (byte === 0xff || byte === 0)) {
        if (byte === 0) free(first + bit * s.clusterRatio, Math.min(first + (bit + 8) * s.clusterRatio, first + blocks));
        bit += 7;
        continue;
      }
      if (byte & (1 << (bit & 7))) continue;
      const a = first + bit * s.clusterRatio;
      free(a, Math.min(a + s.clusterRatio, first + blocks));
    }
  }
  flushRun();
  return info;
}

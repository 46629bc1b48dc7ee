/**
 * A read-only reader of ext2, ext3 and ext4 filesystems, written for
 * untrusted images: every number read from the image is checked before it
 * is used as an offset, a length or a count, and damage gives an
 * `ExtCorruptError` that names the structure, never a crash, a loop or an
 * unbounded allocation.
 *
 *   superblock (offset 1024) → block size, groups, features
 *   inode N → group (N-1) / inodes_per_group → group descriptor → inode table
 *   file blocks → extent tree (ext4) | direct + indirect blocks (ext2/3) | inline data
 *   directory → its blocks read linearly (an htree's index blocks read as
 *               empty entries, so hashed directories need no special case)
 *
 * An image of a mounted filesystem has its journal replayed in memory first
 * (jbd2.ts). Not done: encrypted files and directories (refused by name),
 * extended attributes.
 */
import type { ErrorCode } from '../../../core/errors.js';
import { CachedSource, OutOfBoundsError, checkRange, type ByteSource } from './byte-source.js';
import { JournalError, OverlaySource, replayJournal } from './jbd2.js';
import { extKind, type FsKind } from './fs-probe.js';

/** The filesystem is damaged (or not what it claims to be). */
export class ExtCorruptError extends Error {
  readonly code: ErrorCode = 'FILESYSTEM_DAMAGED';
  constructor(readonly what: string, reason: string) {
    super(`${what}: ${reason}`);
    this.name = 'ExtCorruptError';
  }
}

/** The filesystem (or one file in it) uses something this reader does not implement. */
export class ExtUnsupportedError extends Error {
  readonly code: ErrorCode = 'FILESYSTEM_FEATURE_UNSUPPORTED';
  constructor(message: string) {
    super(message);
    this.name = 'ExtUnsupportedError';
  }
}

export type ExtFileType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

/** The parts of an inode a listing or a restore needs. */
export interface ExtInode {
  readonly ino: number;
  readonly type: ExtFileType;
  /** Permission bits with setuid, setgid and sticky (i_mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Size in bytes (for a symlink: the target's length). */
  readonly size: number;
  readonly links: number;
  /** Nanoseconds since the epoch. */
  readonly atime: bigint;
  readonly mtime: bigint;
  readonly ctime: bigint;
  /** Device number in glibc's dev_t encoding, for device nodes. */
  readonly rdev?: bigint;
  /** i_flags. */
  readonly flags: number;
  /** The raw inode, for the reader's own use. */
  readonly raw: Buffer;
}

/** One directory entry. */
export interface ExtDirEntry {
  /** Name bytes, exactly as stored (may be anything but validated by the caller). */
  readonly name: Buffer;
  readonly ino: number;
}

/** A run of a file: data stored on disk, or a hole (reads as zeros). */
export interface ExtSegment {
  /** Byte offset in the file. */
  readonly offset: number;
  readonly length: number;
  /** True for a hole or an unwritten (preallocated) extent: reads as zeros, nothing to read. */
  readonly hole: boolean;
  /** Byte offset in the filesystem where the data is (absent for holes and inline data). */
  readonly physical?: number;
}

export interface ExtOpenOptions {
  /** Told about things a user should know (journal not replayed …). */
  readonly onWarning?: (message: string) => void;
  /** Label for messages ("/p1"). */
  readonly label?: string;
}

// Feature bits (ext4 disk layout documentation).
const INCOMPAT = {
  compression: 0x1, filetype: 0x2, recover: 0x4, journalDev: 0x8, metaBg: 0x10, extents: 0x40, bit64: 0x80, mmp: 0x100,
  flexBg: 0x200, eaInode: 0x400, dirData: 0x1000, csumSeed: 0x2000, largeDir: 0x4000, inlineData: 0x8000, encrypt: 0x10000, casefold: 0x20000,
} as const;
const INCOMPAT_NAMES: Record<number, string> = { 0x1: 'compression', 0x8: 'journal_dev', 0x1000: 'dirdata' };
const INCOMPAT_SUPPORTED = INCOMPAT.filetype | INCOMPAT.recover | INCOMPAT.metaBg | INCOMPAT.extents | INCOMPAT.bit64 | INCOMPAT.mmp
  | INCOMPAT.flexBg | INCOMPAT.eaInode | INCOMPAT.csumSeed | INCOMPAT.largeDir | INCOMPAT.inlineData | INCOMPAT.encrypt | INCOMPAT.casefold;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_HUGE_FILE = 0x8;
const COMPAT_SPARSE_SUPER2 = 0x200;
const COMPAT_HAS_JOURNAL = 0x4;

const FLAG_ENCRYPT = 0x800;
const FLAG_HUGE_FILE = 0x40000;
const FLAG_EXTENTS = 0x80000;
const FLAG_INLINE_DATA = 0x10000000;

const EXTENT_MAGIC = 0xf30a;
const MAX_EXTENT_DEPTH = 5;
const MAX_SYMLINK = 65536;
const ROOT_INO = 2;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

/** Reads a slice of `b` after checking it is inside. */
function slice(b: Buffer, offset: number, length: number, what: string): Buffer {
  if (offset < 0 || length < 0 || offset + length > b.length) throw new ExtCorruptError(what, `field at ${offset}+${length} is outside the ${b.length}-byte structure`);
  return b.subarray(offset, offset + length);
}

function nsTime(seconds: number, extra: number | undefined): bigint {
  let s = BigInt(seconds | 0); // i_*time is signed 32-bit
  let ns = 0n;
  if (extra !== undefined) {
    s += BigInt(extra & 3) << 32n;
    ns = BigInt(extra >>> 2);
    if (ns > 999_999_999n) ns = 0n;
  }
  return s * 1_000_000_000n + ns;
}

/** glibc makedev(). */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return (mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

function isPowerOf(n: number, base: number): boolean {
  if (n < 1) return false;
  while (n % base === 0) n /= base;
  return n === 1;
}

export class Ext4 {
  /** What the superblock says it is. */
  readonly kind: FsKind;
  readonly blockSize: number;
  readonly blocksCount: number;
  private readonly inodesCount: number;
  private readonly inodesPerGroup: number;
  private readonly blocksPerGroup: number;
  private readonly firstDataBlock: number;
  private readonly inodeSize: number;
  private readonly descSize: number;
  private readonly groupCount: number;
  private readonly incompat: number;
  private readonly roCompat: number;
  private readonly compat: number;
  private readonly firstMetaBg: number;
  private readonly backupBgs: readonly number[];
  private readonly label: string;
  /** Inode of the internal journal (0: none, or an external one). */
  private readonly journalIno: number;

  private constructor(private src: ByteSource, sb: Buffer, opts: ExtOpenOptions) {
    this.label = opts.label ?? 'ext filesystem';
    const what = `${this.label}: superblock`;
    if (sb.readUInt16LE(0x38) !== 0xef53) throw new ExtCorruptError(what, 'no ext2/3/4 magic number');
    this.kind = extKind(sb);
    this.compat = sb.readUInt32LE(0x5c);
    this.incompat = sb.readUInt32LE(0x60);
    this.roCompat = sb.readUInt32LE(0x64);
    if (this.incompat & INCOMPAT.journalDev) throw new ExtUnsupportedError(`${this.label} is an ext4 external journal, which holds no files`);
    const unknown = this.incompat & ~INCOMPAT_SUPPORTED;
    if (unknown) {
      const names = [...Array(32).keys()].map((i) => 1 << i).filter((bit) => unknown & bit).map((bit) => INCOMPAT_NAMES[bit] ?? `0x${bit.toString(16)}`);
      throw new ExtUnsupportedError(`${this.label}: filesystem not supported (ext4 with feature ${names.join(', ')})`);
    }
    const logBlock = sb.readUInt32LE(0x18);
    if (logBlock > 6) throw new ExtCorruptError(what, `block size 2^(10+${logBlock}) is impossible`);
    this.blockSize = 1024 << logBlock;
    const bit64 = (this.incompat & INCOMPAT.bit64) !== 0;
    const blocks = BigInt(sb.readUInt32LE(0x04)) | (bit64 ? BigInt(sb.readUInt32LE(0x150)) << 32n : 0n);
    if (blocks * BigInt(this.blockSize) > SAFE) throw new ExtUnsupportedError(`${this.label}: filesystem larger than 8 PiB`);
    this.blocksCount = Number(blocks);
    this.inodesCount = sb.readUInt32LE(0x00);
    this.firstDataBlock = sb.readUInt32LE(0x14);
    this.blocksPerGroup = sb.readUInt32LE(0x20);
    this.inodesPerGroup = sb.readUInt32LE(0x28);
    const rev = sb.readUInt32LE(0x4c);
    this.inodeSize = rev === 0 ? 128 : sb.readUInt16LE(0x58);
    this.descSize = bit64 ? sb.readUInt16LE(0xfe) : 32;
    this.firstMetaBg = sb.readUInt32LE(0x104);
    this.backupBgs = [sb.readUInt32LE(0x24c), sb.readUInt32LE(0x250)];
    if (this.blocksPerGroup === 0 || this.blocksPerGroup > 8 * this.blockSize) throw new ExtCorruptError(what, `bad blocks per group ${this.blocksPerGroup}`);
    if (this.inodesPerGroup === 0 || this.inodesPerGroup > 8 * this.blockSize) throw new ExtCorruptError(what, `bad inodes per group ${this.inodesPerGroup}`);
    if (this.inodeSize < 128 || this.inodeSize > this.blockSize || (this.inodeSize & (this.inodeSize - 1)) !== 0) throw new ExtCorruptError(what, `bad inode size ${this.inodeSize}`);
    if (this.descSize < 32 || this.descSize > 1024 || (this.descSize & (this.descSize - 1)) !== 0 || (bit64 && this.descSize < 64)) throw new ExtCorruptError(what, `bad group descriptor size ${this.descSize}`);
    if (this.firstDataBlock >= this.blocksCount) throw new ExtCorruptError(what, 'first data block beyond the end');
    this.groupCount = Math.ceil((this.blocksCount - this.firstDataBlock) / this.blocksPerGroup);
    if (this.inodesCount > this.groupCount * this.inodesPerGroup) throw new ExtCorruptError(what, `${this.inodesCount} inodes do not fit in ${this.groupCount} groups`);
    const fsBytes = this.blocksCount * this.blockSize;
    if (fsBytes > src.size) opts.onWarning?.(`${this.label}: the filesystem (${fsBytes} bytes) is larger than its partition or image (${src.size} bytes); files at the end cannot be read`);
    this.journalIno = this.compat & COMPAT_HAS_JOURNAL ? sb.readUInt32LE(0xe0) : 0;
  }

  /**
   * A filesystem that was mounted when the image was taken has committed
   * transactions in its journal: replay them in memory (nothing is written),
   * so files and directories read as the kernel would see them after mounting.
   */
  private async recover(onWarning?: (message: string) => void): Promise<void> {
    if (!(this.incompat & INCOMPAT.recover)) return;
    const asIs = 'it is read as it is on disk, so the most recent changes may be missing';
    if (this.journalIno === 0) {
      onWarning?.(`${this.label}: the journal needs recovery but is on an external device; ${asIs}`);
      return;
    }
    try {
      const journal = await this.inode(this.journalIno);
      const segments = await this.segments(journal);
      const bs = this.blockSize;
      const read = (n: number): Promise<Buffer> => {
        const off = n * bs;
        const seg = segments.find((x) => x.offset <= off && off + bs <= x.offset + x.length);
        if (!seg || seg.hole || seg.physical === undefined) throw new ExtCorruptError(`${this.label}: journal`, `block ${n} is not stored`);
        return this.src.read(seg.physical + (off - seg.offset), bs);
      };
      const { blocks, transactions } = await replayJournal(read, Math.floor(journal.size / bs), bs, this.blocksCount, (m) => onWarning?.(`${this.label}: ${m}`));
      if (blocks.size > 0) this.src = new CachedSource(new OverlaySource(this.src, bs, blocks));
      onWarning?.(`${this.label}: the filesystem was in use when the image was taken; replayed ${transactions} journal transaction(s) (${blocks.size} blocks) in memory`);
    } catch (e) {
      if (!(e instanceof ExtCorruptError || e instanceof JournalError || e instanceof OutOfBoundsError)) throw e;
      onWarning?.(`${this.label}: the journal needs recovery but cannot be replayed (${e.message}); ${asIs}`);
    }
  }

  /** Opens the filesystem on `src` (a partition or a whole image). */
  static async open(src: ByteSource, opts: ExtOpenOptions = {}): Promise<Ext4> {
    const cached = src instanceof CachedSource ? src : new CachedSource(src);
    checkRange(`${opts.label ?? 'ext filesystem'}: superblock`, 1024, 1024, cached.size);
    const fs = new Ext4(cached, await cached.read(1024, 1024), opts);
    await fs.recover(opts.onWarning);
    return fs;
  }

  /** The root directory's inode number. */
  get rootIno(): number {
    return ROOT_INO;
  }

  private async readBlocks(block: number, count: number, what: string): Promise<Buffer> {
    if (!Number.isSafeInteger(block) || block < 0 || count < 0 || block + count > this.blocksCount) {
      throw new ExtCorruptError(what, `block ${block} (+${count}) is outside the filesystem (${this.blocksCount} blocks)`);
    }
    return this.src.read(block * this.blockSize, count * this.blockSize);
  }

  private hasSuper(group: number): boolean {
    if (group === 0) return true;
    if (this.compat & COMPAT_SPARSE_SUPER2) return group === this.backupBgs[0] || group === this.backupBgs[1];
    if (group <= 1 || !(this.roCompat & RO_COMPAT_SPARSE_SUPER)) return true;
    if (!(group & 1)) return false;
    return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
  }

  /** Block holding group descriptor block number `i` (libext2fs ext2fs_descriptor_block_loc2). */
  private descriptorBlock(i: number): number {
    const groupZero = this.firstDataBlock;
    if (!(this.incompat & INCOMPAT.metaBg) || i < this.firstMetaBg) return groupZero + 1 + i;
    const perBlock = this.blockSize / this.descSize;
    const bg = perBlock * i;
    const adjust = this.blockSize === 1024 && this.firstDataBlock === 0 && bg === 0 ? 1 : 0;
    return this.firstDataBlock + bg * this.blocksPerGroup + (this.hasSuper(bg) ? 1 : 0) + adjust;
  }

  /** The inode table's first block of a group. */
  private async inodeTable(group: number): Promise<number> {
    const perBlock = this.blockSize / this.descSize;
    const block = this.descriptorBlock(Math.floor(group / perBlock));
    const what = `${this.label}: group descriptor ${group}`;
    const b = await this.readBlocks(block, 1, what);
    const d = slice(b, (group % perBlock) * this.descSize, this.descSize, what);
    const table = d.readUInt32LE(0x08) + (this.descSize >= 64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0);
    const tableBlocks = Math.ceil((this.inodesPerGroup * this.inodeSize) / this.blockSize);
    if (table === 0 || table + tableBlocks > this.blocksCount) throw new ExtCorruptError(what, `inode table at block ${table} is outside the filesystem`);
    return table;
  }

  /** Reads and decodes inode `ino`. */
  async inode(ino: number): Promise<ExtInode> {
    const what = `${this.label}: inode ${ino}`;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.inodesCount) throw new ExtCorruptError(what, `inode number out of range (1–${this.inodesCount})`);
    const group = Math.floor((ino - 1) / this.inodesPerGroup);
    const index = (ino - 1) % this.inodesPerGroup;
    const table = await this.inodeTable(group);
    const raw = await this.src.read(table * this.blockSize + index * this.inodeSize, this.inodeSize);
    return this.decodeInode(ino, raw, what);
  }

  private decodeInode(ino: number, raw: Buffer, what: string): ExtInode {
    const iMode = raw.readUInt16LE(0x00);
    const fmt = iMode & 0xf000;
    const type: ExtFileType | undefined = ({ 0x8000: 'file', 0x4000: 'dir', 0xa000: 'symlink', 0x1000: 'fifo', 0x2000: 'chardev', 0x6000: 'blockdev', 0xc000: 'socket' } as Record<number, ExtFileType>)[fmt];
    if (!type) throw new ExtCorruptError(what, `unknown file type 0o${fmt.toString(8)} (a free or damaged inode)`);
    const extra = raw.length > 128 ? raw.readUInt16LE(0x80) : 0;
    const extraOk = extra >= 4 && 128 + extra <= raw.length;
    const extraField = (off: number): number | undefined => (extraOk && off + 4 <= 128 + extra ? raw.readUInt32LE(off) : undefined);
    const sizeHigh = type === 'dir' && !(this.incompat & INCOMPAT.largeDir) ? 0 : raw.readUInt32LE(0x6c);
    const size = raw.readUInt32LE(0x04) + sizeHigh * 2 ** 32;
    if (!Number.isSafeInteger(size)) throw new ExtCorruptError(what, 'size out of range');
    const flags = raw.readUInt32LE(0x20);
    let rdev: bigint | undefined;
    if (type === 'chardev' || type === 'blockdev') {
      const old = raw.readUInt32LE(0x28);
      const neu = raw.readUInt32LE(0x2c);
      rdev = old !== 0 ? makedev((old >> 8) & 0xff, old & 0xff) : makedev((neu & 0xfff00) >> 8, (neu & 0xff) | ((neu >> 12) & 0xfff00));
    }
    return {
      ino, type, mode: iMode & 0o7777,
      uid: (raw.readUInt16LE(0x02) | (raw.readUInt16LE(0x78) << 16)) >>> 0,
      gid: (raw.readUInt16LE(0x18) | (raw.readUInt16LE(0x7a) << 16)) >>> 0,
      size, links: raw.readUInt16LE(0x1a),
      atime: nsTime(raw.readInt32LE(0x08), extraField(0x8c)),
      ctime: nsTime(raw.readInt32LE(0x0c), extraField(0x84)),
      mtime: nsTime(raw.readInt32LE(0x10), extraField(0x88)),
      ...(rdev === undefined ? {} : { rdev }),
      flags, raw,
    };
  }

  // ---- file contents ----

  /**
   * The runs of a file up to its size, in order: data (with where it is) and
   * holes. Unwritten (preallocated) extents are holes: they read as zeros.
   */
  async segments(inode: ExtInode): Promise<ExtSegment[]> {
    const what = `${this.label}: inode ${inode.ino}`;
    if (inode.flags & FLAG_ENCRYPT) throw new ExtUnsupportedError(`${what}: encrypted files cannot be read`);
    if (inode.flags & FLAG_INLINE_DATA) return inode.size === 0 ? [] : [{ offset: 0, length: inode.size, hole: false }]; // in the inode
    const runs = inode.flags & FLAG_EXTENTS ? await this.extentRuns(inode, what) : await this.indirectRuns(inode, what);
    const out: ExtSegment[] = [];
    let pos = 0;
    const bs = this.blockSize;
    for (const r of runs) {
      const start = r.logical * bs;
      if (start >= inode.size) break;
      if (start < pos) throw new ExtCorruptError(what, `extents overlap at block ${r.logical}`);
      if (start > pos) out.push({ offset: pos, length: start - pos, hole: true });
      const length = Math.min(r.count * bs, inode.size - start);
      out.push(r.physical === undefined ? { offset: start, length, hole: true } : { offset: start, length, hole: false, physical: r.physical * bs });
      pos = start + length;
    }
    if (pos < inode.size) out.push({ offset: pos, length: inode.size - pos, hole: true });
    // Merge neighbouring holes (unwritten extents next to holes).
    const merged: ExtSegment[] = [];
    for (const s of out) {
      const last = merged[merged.length - 1];
      if (last && last.hole && s.hole) merged[merged.length - 1] = { offset: last.offset, length: last.length + s.length, hole: true };
      else merged.push(s);
    }
    return merged;
  }

  /** Reads `length` bytes at `offset` of a file whose segments are known. */
  async read(inode: ExtInode, segments: readonly ExtSegment[], offset: number, length: number): Promise<Buffer> {
    const what = `${this.label}: inode ${inode.ino}`;
    if (offset < 0 || length < 0 || offset + length > inode.size) throw new ExtCorruptError(what, `read of ${length} bytes at ${offset} is beyond the file's ${inode.size} bytes`);
    if (inode.flags & FLAG_INLINE_DATA) return (await this.inlineData(inode, what)).subarray(offset, offset + length);
    const end = offset + length;
    // Binary search for the first segment that ends after `offset`.
    let lo = 0;
    let hi = segments.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const s = segments[mid]!;
      if (s.offset + s.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    // One stored run covers the whole range: hand the source's buffer over as it is.
    const first = segments[lo];
    if (first && !first.hole && first.physical !== undefined && first.offset <= offset && first.offset + first.length >= end) {
      return this.src.read(first.physical + (offset - first.offset), length);
    }
    const out = Buffer.alloc(length);
    for (let i = lo; i < segments.length; i++) {
      const s = segments[i]!;
      if (s.offset >= end) break;
      if (s.hole || s.physical === undefined) continue;
      const from = Math.max(s.offset, offset);
      const to = Math.min(s.offset + s.length, end);
      const data = await this.src.read(s.physical + (from - s.offset), to - from);
      data.copy(out, from - offset);
    }
    return out;
  }

  private async extentRuns(inode: ExtInode, what: string): Promise<{ logical: number; count: number; physical?: number }[]> {
    const runs: { logical: number; count: number; physical?: number }[] = [];
    const walk = async (node: Buffer, expectDepth: number | undefined, nodeWhat: string): Promise<void> => {
      if (node.length < 12 || node.readUInt16LE(0) !== EXTENT_MAGIC) throw new ExtCorruptError(nodeWhat, 'bad extent header');
      const entries = node.readUInt16LE(2);
      const max = node.readUInt16LE(4);
      const depth = node.readUInt16LE(6);
      if (entries > max || 12 + max * 12 > node.length) throw new ExtCorruptError(nodeWhat, `extent node claims ${entries}/${max} entries`);
      if (depth > MAX_EXTENT_DEPTH || (expectDepth !== undefined && depth !== expectDepth)) throw new ExtCorruptError(nodeWhat, `bad extent tree depth ${depth}`);
      for (let i = 0; i < entries; i++) {
        const e = 12 + i * 12;
        const logical = node.readUInt32LE(e);
        if (depth === 0) {
          let len = node.readUInt16LE(e + 4);
          const unwritten = len > 32768;
          if (unwritten) len -= 32768;
          const physical = node.readUInt16LE(e + 6) * 2 ** 32 + node.readUInt32LE(e + 8);
          if (len === 0) continue;
          if (physical + len > this.blocksCount) throw new ExtCorruptError(nodeWhat, `extent at block ${physical} (+${len}) is outside the filesystem`);
          runs.push(unwritten ? { logical, count: len } : { logical, count: len, physical });
        } else {
          const child = node.readUInt32LE(e + 4) + node.readUInt16LE(e + 8) * 2 ** 32;
          const childWhat = `${what}: extent block ${child}`;
          await walk(await this.readBlocks(child, 1, childWhat), depth - 1, childWhat);
        }
      }
    };
    await walk(slice(inode.raw, 0x28, 60, what), undefined, `${what}: extent root`);
    runs.sort((a, b) => a.logical - b.logical);
    for (let i = 1; i < runs.length; i++) {
      if (runs[i - 1]!.logical + runs[i - 1]!.count > runs[i]!.logical) throw new ExtCorruptError(what, `extents overlap at block ${runs[i]!.logical}`);
    }
    return runs;
  }

  private async indirectRuns(inode: ExtInode, what: string): Promise<{ logical: number; count: number; physical?: number }[]> {
    const bs = this.blockSize;
    const perBlock = bs / 4;
    const needed = Math.ceil(inode.size / bs);
    const runs: { logical: number; count: number; physical: number }[] = [];
    const add = (logical: number, physical: number): void => {
      if (physical === 0) return;
      if (physical >= this.blocksCount) throw new ExtCorruptError(what, `block ${physical} is outside the filesystem`);
      const last = runs[runs.length - 1];
      if (last && last.logical + last.count === logical && last.physical + last.count === physical) last.count++;
      else runs.push({ logical, count: 1, physical });
    };
    const iBlock = slice(inode.raw, 0x28, 60, what);
    for (let i = 0; i < 12 && i < needed; i++) add(i, iBlock.readUInt32LE(i * 4));
    // level 1 = single indirect: each pointer covers perBlock^(level-1) blocks.
    const walk = async (block: number, level: number, first: number): Promise<void> => {
      if (block === 0 || first >= needed) return;
      const b = await this.readBlocks(block, 1, `${what}: indirect block ${block}`);
      const span = perBlock ** (level - 1);
      for (let i = 0; i < perBlock; i++) {
        const logical = first + i * span;
        if (logical >= needed) break;
        const p = b.readUInt32LE(i * 4);
        if (level === 1) add(logical, p);
        else await walk(p, level - 1, logical);
      }
    };
    await walk(iBlock.readUInt32LE(48), 1, 12);
    await walk(iBlock.readUInt32LE(52), 2, 12 + perBlock);
    await walk(iBlock.readUInt32LE(56), 3, 12 + perBlock + perBlock * perBlock);
    return runs;
  }

  /** Content of an inline-data inode: i_block, then the "system.data" extended attribute. */
  private async inlineData(inode: ExtInode, what: string): Promise<Buffer> {
    const head = slice(inode.raw, 0x28, 60, what);
    const rest = this.inlineXattr(inode, what);
    const all = Buffer.concat([head, rest]);
    if (inode.size > all.length) throw new ExtCorruptError(what, `inline data holds ${all.length} bytes, the file has ${inode.size}`);
    return Promise.resolve(all.subarray(0, inode.size));
  }

  /** The value of the in-inode "system.data" attribute (empty if there is none). */
  private inlineXattr(inode: ExtInode, what: string): Buffer {
    const raw = inode.raw;
    if (raw.length <= 128) return Buffer.alloc(0);
    const start = 128 + raw.readUInt16LE(0x80);
    if (start + 4 > raw.length || raw.readUInt32LE(start) !== 0xea020000) return Buffer.alloc(0);
    const base = start + 4;
    let e = base;
    while (e + 16 <= raw.length && raw.readUInt32LE(e) !== 0) {
      const nameLen = raw[e]!;
      const index = raw[e + 1]!;
      const valueOffs = raw.readUInt16LE(e + 2);
      const valueInum = raw.readUInt32LE(e + 4);
      const valueSize = raw.readUInt32LE(e + 8);
      const name = slice(raw, e + 16, nameLen, `${what}: extended attribute`).toString('latin1');
      if (index === 7 && name === 'data') {
        if (valueInum !== 0) throw new ExtUnsupportedError(`${what}: inline data stored in an EA inode is not supported`);
        return slice(raw, base + valueOffs, valueSize, `${what}: inline data attribute`);
      }
      e += (16 + nameLen + 3) & ~3;
    }
    return Buffer.alloc(0);
  }

  // ---- directories and symlinks ----

  /** The entries of a directory, in on-disk order, without its own "." and ".." entries. */
  async readDir(inode: ExtInode, onWarning?: (message: string) => void): Promise<ExtDirEntry[]> {
    const what = `${this.label}: directory inode ${inode.ino}`;
    if (inode.type !== 'dir') throw new ExtCorruptError(what, 'not a directory');
    if (inode.flags & FLAG_ENCRYPT) throw new ExtUnsupportedError(`${what}: encrypted directories cannot be read`);
    const out: ExtDirEntry[] = [];
    if (inode.flags & FLAG_INLINE_DATA) {
      // i_block: the parent's inode number (4 bytes), then entries; the attribute holds more entries.
      const head = slice(inode.raw, 0x28, 60, what);
      this.parseDirBlock(head.subarray(4), `${what} (inline)`, out, onWarning);
      const rest = this.inlineXattr(inode, what);
      if (rest.length > 0) this.parseDirBlock(rest, `${what} (inline attribute)`, out, onWarning);
      return out;
    }
    const segments = await this.segments(inode);
    const bs = this.blockSize;
    for (const s of segments) {
      if (s.hole || s.physical === undefined) continue;
      // Directory sizes are whole blocks; a partial tail is ignored.
      for (let off = 0; off + bs <= s.length; off += bs) {
        const block = await this.src.read(s.physical + off, bs);
        this.parseDirBlock(block, `${what}, block ${(s.offset + off) / bs}`, out, onWarning, s.offset + off === 0);
      }
    }
    return out;
  }

  private parseDirBlock(b: Buffer, what: string, out: ExtDirEntry[], onWarning?: (message: string) => void, skipDots = false): void {
    const fileType = (this.incompat & INCOMPAT.filetype) !== 0;
    let pos = 0;
    let index = 0;
    while (pos + 8 <= b.length) {
      const ino = b.readUInt32LE(pos);
      let recLen = b.readUInt16LE(pos + 4);
      if (this.blockSize >= 65536) recLen = recLen === 65535 || recLen === 0 ? this.blockSize : (recLen & 65532) | ((recLen & 3) << 16);
      const nameLen = fileType ? b[pos + 6]! : b.readUInt16LE(pos + 6);
      if (recLen < 8 || recLen % 4 !== 0 || pos + recLen > b.length || 8 + nameLen > recLen) {
        onWarning?.(`${what}: damaged entry at byte ${pos}; the rest of the block is skipped`);
        return;
      }
      if (ino !== 0 && nameLen > 0) {
        const name = Buffer.from(b.subarray(pos + 8, pos + 8 + nameLen));
        // "." and ".." are the first two entries of a directory's first block; anywhere
        // else they are passed on, for the walker to refuse and report.
        const expected = skipDots && ((index === 0 && name.equals(DOT)) || (index === 1 && name.equals(DOTDOT)));
        if (!expected) out.push({ name, ino });
      }
      index++;
      pos += recLen;
    }
  }

  /** The target of a symlink, as bytes. */
  async readLink(inode: ExtInode): Promise<Buffer> {
    const what = `${this.label}: symlink inode ${inode.ino}`;
    if (inode.type !== 'symlink') throw new ExtCorruptError(what, 'not a symlink');
    if (inode.flags & FLAG_ENCRYPT) throw new ExtUnsupportedError(`${what}: encrypted symlinks cannot be read`);
    if (inode.size > MAX_SYMLINK) throw new ExtCorruptError(what, `target of ${inode.size} bytes is too long`);
    if (inode.flags & FLAG_INLINE_DATA) return this.inlineData(inode, what);
    if (this.isFastSymlink(inode)) return Buffer.from(slice(inode.raw, 0x28, inode.size, what));
    return this.read(inode, await this.segments(inode), 0, inode.size);
  }

  /** The kernel's rule (ext4_inode_is_fast_symlink): the target is in i_block when no block is allocated for it. */
  private isFastSymlink(inode: ExtInode): boolean {
    const raw = inode.raw;
    let blocks = raw.readUInt32LE(0x1c) + raw.readUInt16LE(0x74) * 2 ** 32;
    if (this.roCompat & RO_COMPAT_HUGE_FILE && inode.flags & FLAG_HUGE_FILE) blocks *= this.blockSize / 512;
    const acl = raw.readUInt32LE(0x68) + raw.readUInt16LE(0x76) * 2 ** 32;
    const eaBlocks = acl !== 0 ? this.blockSize / 512 : 0;
    return blocks - eaBlocks === 0 && inode.size < 60;
  }
}

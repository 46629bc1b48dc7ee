/**
 * The file-tree source: what the archiver needs from a live file system,
 * with paths as raw bytes (Linux file names need not be UTF-8).
 *
 * The walk's metadata calls are synchronous: on a local file system a call
 * answered from the inode cache takes a few microseconds, less than a round
 * trip through libuv's thread pool. `listDirStats` reads a whole folder
 * (names and lstat of each) in one native call, so that a worker thread can
 * do it ahead of the walk and hand it over packed in transferable arrays.
 */
import { constants, lstatSync, promises as fsp, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { endianness } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import type { NodeType } from '../repo/tree.js';
import { native } from './native.js';
import type { PosixPath } from './posix.js';

/** The metadata of one directory entry, as lstat(2) reports it. */
export interface EntryStat {
  readonly type: NodeType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: bigint;
  readonly ctime: bigint;
  readonly inode: bigint;
  readonly device: bigint;
  readonly rdev: bigint;
  readonly links: number;
}

/** The node type of an st_mode. */
function typeOf(mode: number): NodeType {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFREG: return 'file';
    case constants.S_IFDIR: return 'dir';
    case constants.S_IFLNK: return 'symlink';
    case constants.S_IFIFO: return 'fifo';
    case constants.S_IFCHR: return 'chardev';
    case constants.S_IFBLK: return 'blockdev';
    default: return 'socket';
  }
}

/** Converts a bigint stat to an `EntryStat`. */
export function toEntryStat(st: BigIntStats): EntryStat {
  return {
    type: typeOf(Number(st.mode)),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    mtime: st.mtimeNs,
    ctime: st.ctimeNs,
    inode: st.ino,
    device: st.dev,
    rdev: st.rdev,
    links: Number(st.nlink),
  };
}

/** lstat(2) of a path. */
export function statEntrySync(path: PosixPath): EntryStat {
  return toEntryStat(lstatSync(path, { bigint: true }));
}

/** stat(2) of a path: symlinks are followed (for the folders above a backed-up path). */
export function statFollowSync(path: PosixPath): EntryStat {
  return toEntryStat(statSync(path, { bigint: true }));
}

/** Names in a directory, as bytes, sorted bytewise. */
export function listDirSync(path: PosixPath): Buffer[] {
  return readdirSync(path, { encoding: 'buffer' }).sort(Buffer.compare);
}

/** Why a file, an entry or a whole folder could not be read (`code`: the errno name, as in ENOENT). */
export interface ReadError {
  readonly code?: string;
  readonly message: string;
}

/** The `ReadError` of a caught error. */
export function errorOf(e: unknown): ReadError {
  const code = (e as NodeJS.ErrnoException).code;
  return code ? { code, message: (e as Error).message } : { message: String((e as Error).message ?? e) };
}

/**
 * A folder read by `listDirStats`: its names sorted bytewise and the lstat
 * of each, in arrays a worker thread can transfer without a copy.
 */
export interface DirListing {
  /** The names, back to back. */
  readonly names: Uint8Array;
  /** The end of each name in `names`. */
  readonly ends: Uint32Array;
  /** Per entry, in order: mode, uid, gid, size, mtime (ns), ctime (ns), inode, device, rdev, links; zeros where lstat failed. */
  readonly fields: BigInt64Array;
  /** Entries whose lstat failed, by index. */
  readonly failed: Map<number, ReadError>;
}

/** One entry of a `DirListing`: its stat, or why lstat failed. */
export type ListedEntry = { readonly name: Buffer; readonly st: EntryStat; readonly error?: undefined } | { readonly name: Buffer; readonly st?: undefined; readonly error: ReadError };

const STAT_FIELDS = 10;

/** Node's code and description of each errno (keyed by its negative, as libuv's codes are). */
const SYSTEM_ERRORS = getSystemErrorMap();

/** The `ReadError` of a failed system call, worded as Node words it (`ENOENT: no such file or directory, lstat '/a/b'`). */
function systemError(errno: number, syscall: string, path: Buffer): ReadError {
  const known = SYSTEM_ERRORS.get(-errno);
  if (!known) return { message: `unknown system error ${errno}, ${syscall} '${path.toString()}'` };
  const [code, description] = known;
  return { code, message: `${code}: ${description}, ${syscall} '${path.toString()}'` };
}

/**
 * Lists a folder and lstat(2)s each entry, in one call to the native addon
 * (native/walk.cc): no JavaScript object per entry. A folder that cannot be
 * listed gives `{ error }` (as Node's readdir: a symlink to a folder is
 * followed); an entry that cannot be stat'ed is in `failed`. The arrays are
 * buffers of their own, never views of a shared pool, so that they can be
 * transferred.
 */
export function listDirStats(dir: Buffer): DirListing | { error: ReadError } {
  const listed = native.listDirStats(dir);
  if (typeof listed === 'number') return { error: systemError(listed, 'scandir', dir) };
  const [names, ends, fields, failures] = listed;
  const listing = { names: new Uint8Array(names), ends: new Uint32Array(ends), fields: new BigInt64Array(fields), failed: new Map<number, ReadError>() };
  if (failures) {
    const all = Buffer.from(names);
    for (let k = 0; k < failures.length; k += 2) {
      const i = failures[k]!;
      listing.failed.set(i, systemError(failures[k + 1]!, 'lstat', childPath(dir, all.subarray(i === 0 ? 0 : listing.ends[i - 1], listing.ends[i]))));
    }
  }
  return listing;
}

/** Where the low 32 bits of an int64 field are, in 32-bit words (the fields are in the host's byte order). */
const LOW = endianness() === 'LE' ? 0 : 1;

/**
 * A folder's entries as the walk reads them: straight from a `DirListing`'s
 * arrays, one field at a time, so that an entry the walk finds unchanged
 * costs no object of its own (no name buffer, no `EntryStat`).
 */
export class FolderEntries {
  readonly length: number;
  private readonly all: Buffer;
  private readonly fields: BigInt64Array;
  private readonly unsigned: BigUint64Array;
  private readonly words: Uint32Array;

  constructor(private readonly listing: DirListing) {
    const { names, ends, fields } = listing;
    this.length = ends.length;
    this.all = Buffer.from(names.buffer, names.byteOffset, names.byteLength);
    this.fields = fields;
    this.unsigned = new BigUint64Array(fields.buffer, fields.byteOffset, fields.length);
    this.words = new Uint32Array(fields.buffer, fields.byteOffset, fields.length * 2);
  }

  private start(i: number): number {
    return i === 0 ? 0 : this.listing.ends[i - 1]!;
  }

  /** Entry i's name: a view into the listing. */
  name(i: number): Buffer {
    return this.all.subarray(this.start(i), this.listing.ends[i]);
  }

  /** Entry i's name as a latin1 string (one character per byte): a key for maps of names. */
  key(i: number): string {
    return this.all.toString('latin1', this.start(i), this.listing.ends[i]);
  }

  /** Why entry i could not be lstat'ed, or undefined. */
  failure(i: number): ReadError | undefined {
    return this.listing.failed.size === 0 ? undefined : this.listing.failed.get(i);
  }

  /** The low 32 bits of entry i's field k. */
  private word(i: number, k: number): number {
    return this.words[(i * STAT_FIELDS + k) * 2 + LOW]!;
  }

  /** Entry i's type (a failed lstat's zeros read as a socket: ask `failure` first). */
  type(i: number): NodeType {
    return typeOf(this.word(i, 0));
  }

  /** Entry i's permission bits, owner, group, size and link count, as `EntryStat` has them. */
  mode(i: number): number {
    return this.word(i, 0) & 0o7777;
  }

  uid(i: number): number {
    return this.word(i, 1);
  }

  gid(i: number): number {
    return this.word(i, 2);
  }

  size(i: number): number {
    return this.word(i, 3) + this.words[(i * STAT_FIELDS + 3) * 2 + 1 - LOW]! * 2 ** 32;
  }

  links(i: number): number {
    return this.word(i, 9);
  }

  mtime(i: number): bigint {
    return this.fields[i * STAT_FIELDS + 4]!;
  }

  ctime(i: number): bigint {
    return this.fields[i * STAT_FIELDS + 5]!;
  }

  inode(i: number): bigint {
    return this.unsigned[i * STAT_FIELDS + 6]!;
  }

  device(i: number): bigint {
    return this.unsigned[i * STAT_FIELDS + 7]!;
  }

  /** Entry i's lstat, or undefined when it failed (`failure` says why). */
  stat(i: number): EntryStat | undefined {
    if (this.failure(i)) return undefined;
    const o = i * STAT_FIELDS;
    return {
      type: this.type(i), mode: this.mode(i), uid: this.uid(i), gid: this.gid(i), size: this.size(i),
      mtime: this.mtime(i), ctime: this.ctime(i), inode: this.inode(i), device: this.device(i), rdev: this.unsigned[o + 8]!, links: this.links(i),
    };
  }

  /** Entry i as one object. */
  entry(i: number): ListedEntry {
    const error = this.failure(i);
    return error ? { name: this.name(i), error } : { name: this.name(i), st: this.stat(i)! };
  }
}

/** A folder's entries, in order, each as one object; names are views into the listing. */
export function listedEntries(entries: FolderEntries): ListedEntry[] {
  return Array.from({ length: entries.length }, (_, i) => entries.entry(i));
}

/**
 * A `DirListing` of names lstat'ed one by one, each through its own path
 * (`paths[i]`): a folder whose entries' paths are too long for the native
 * listing, reached through the path shortener.
 */
export function listingOf(names: readonly Buffer[], paths: readonly PosixPath[]): DirListing {
  const all = Buffer.concat(names);
  const ends = new Uint32Array(names.length);
  const fields = new BigInt64Array(names.length * STAT_FIELDS);
  const failed = new Map<number, ReadError>();
  let end = 0;
  for (let i = 0; i < names.length; i++) {
    ends[i] = end += names[i]!.length;
    let st: BigIntStats;
    try {
      st = lstatSync(paths[i]!, { bigint: true });
    } catch (e) {
      failed.set(i, errorOf(e));
      continue;
    }
    fields.set([st.mode, st.uid, st.gid, st.size, st.mtimeNs, st.ctimeNs, st.ino, st.dev, st.rdev, st.nlink].map((v) => BigInt.asIntN(64, v)), i * STAT_FIELDS);
  }
  return { names: new Uint8Array(all.buffer, all.byteOffset, all.length), ends, fields, failed };
}

const SLASH = Buffer.from('/');

/** The path of `name` in the folder `dir`. */
export function childPath(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 1 && dir[0] === 0x2f ? Buffer.concat([SLASH, name]) : Buffer.concat([dir, SLASH, name]);
}

/** Target of a symlink, as bytes. */
export function readLinkSync(path: PosixPath): Buffer {
  return readlinkSync(path, { encoding: 'buffer' });
}

const READ_SIZE = 1 << 20;

/**
 * Opens a file for reading without updating its atime where the kernel
 * allows (O_NOATIME needs ownership or CAP_FOWNER).
 */
export async function openForRead(path: PosixPath): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(path, constants.O_RDONLY | constants.O_NOATIME | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    return fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  }
}

/** Reads an open file front to back in 1 MiB buffers the consumer may keep. */
export async function* readAll(fh: fsp.FileHandle): AsyncGenerator<Buffer> {
  for (;;) {
    const buf = Buffer.allocUnsafe(READ_SIZE);
    const { bytesRead } = await fh.read(buf, 0, READ_SIZE, null);
    if (bytesRead === 0) return;
    yield buf.subarray(0, bytesRead);
  }
}

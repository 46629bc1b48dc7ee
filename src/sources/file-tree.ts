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

/**
 * The folders of a listing (entries lstat found to be directories), read
 * from its arrays without making a `ListedEntry` of every entry: what the
 * scan worker needs to walk on. `name(i)` is any entry's name, a view into
 * `listing.names`.
 */
export function listedFolders(listing: DirListing): { readonly folders: { readonly name: Buffer; readonly device: bigint }[]; name(i: number): Buffer } {
  const all = Buffer.from(listing.names.buffer, listing.names.byteOffset, listing.names.byteLength);
  const { ends, fields } = listing;
  const name = (i: number): Buffer => all.subarray(i === 0 ? 0 : ends[i - 1], ends[i]);
  const folders: { name: Buffer; device: bigint }[] = [];
  for (let i = 0; i < ends.length; i++) {
    // A failed lstat left zeros: no type, so never a folder.
    const o = i * STAT_FIELDS;
    if ((Number(fields[o]) & constants.S_IFMT) === constants.S_IFDIR) folders.push({ name: name(i), device: BigInt.asUintN(64, fields[o + 7]!) });
  }
  return { folders, name };
}

/** The entries of a listing, in order; names are views into `listing.names`. */
export function listedEntries(listing: DirListing): ListedEntry[] {
  const all = Buffer.from(listing.names.buffer, listing.names.byteOffset, listing.names.byteLength);
  const f = listing.fields;
  const out: ListedEntry[] = [];
  let start = 0;
  for (let i = 0; i < listing.ends.length; i++) {
    const name = all.subarray(start, listing.ends[i]);
    start = listing.ends[i]!;
    const error = listing.failed.get(i);
    if (error) {
      out.push({ name, error });
      continue;
    }
    const o = i * STAT_FIELDS;
    const mode = Number(f[o]);
    out.push({
      name,
      st: {
        type: typeOf(mode),
        mode: mode & 0o7777,
        uid: Number(f[o + 1]),
        gid: Number(f[o + 2]),
        size: Number(f[o + 3]),
        mtime: f[o + 4]!,
        ctime: f[o + 5]!,
        inode: BigInt.asUintN(64, f[o + 6]!),
        device: BigInt.asUintN(64, f[o + 7]!),
        rdev: BigInt.asUintN(64, f[o + 8]!),
        links: Number(f[o + 9]),
      },
    });
  }
  return out;
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

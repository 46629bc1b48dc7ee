/**
 * The file-tree source: what the archiver needs from a live file system,
 * with paths as raw bytes (Linux file names need not be UTF-8).
 *
 * The walk's metadata calls are synchronous: on a local file system a call
 * answered from the inode cache takes about a microsecond, far less than a
 * round trip through libuv's thread pool.
 */
import { constants, lstatSync, promises as fsp, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import type { NodeType } from '../repo/tree.js';
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

function typeOf(st: BigIntStats): NodeType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return 'socket';
}

/** Converts a bigint stat to an `EntryStat`. */
export function toEntryStat(st: BigIntStats): EntryStat {
  return {
    type: typeOf(st),
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

/**
 * Counts files and bytes below `paths` (lstat only), for a progress ETA.
 * Fills `totals` as it goes and sets `done` at the end; errors are ignored
 * (the archiver reports them).
 */
export async function scanTotals(paths: readonly string[], skip: (path: string) => boolean, totals: { files: number; bytes: number; done: boolean }, signal?: AbortSignal): Promise<void> {
  const visit = async (path: Buffer): Promise<void> => {
    if (signal?.aborted || skip(path.toString())) return;
    let st;
    try {
      st = await fsp.lstat(path);
    } catch {
      return;
    }
    if (st.isFile()) {
      totals.files++;
      totals.bytes += st.size;
    } else if (st.isDirectory()) {
      let names: Buffer[];
      try {
        names = await fsp.readdir(path, { encoding: 'buffer' });
      } catch {
        return;
      }
      for (const n of names) await visit(Buffer.concat([path, Buffer.from('/'), n]));
    }
  };
  for (const p of paths) await visit(Buffer.from(p));
  totals.done = true;
}

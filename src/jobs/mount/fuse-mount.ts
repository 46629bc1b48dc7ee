/**
 * Serves a `SnapshotFs` as a read-only FUSE file system through the npm
 * `fuse-native` binding (libfuse 2 from the system: Debian's `libfuse2` and
 * `fuse`). The binding is loaded only here, when a mount is asked for, so
 * that no other command needs libfuse.
 *
 * The kernel mount is read-only (`ro`), checks permissions itself
 * (`default_permissions`), may cache pages and attributes (a snapshot never
 * changes), and is removed by libfuse's helper when this process dies, even
 * by SIGKILL (`auto_unmount`). A mount removed from outside (`fusermount -u`)
 * is noticed by looking at /proc/self/mountinfo once a second: `gone`
 * resolves.
 *
 * See docs/decisions.md, "FUSE mount", for what was tried and measured.
 */
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { access, readFile, readdir, realpath, stat } from 'node:fs/promises';
import type { RandomAccessSource } from '../../sources/image/random-access.js';
import { FsError, type FsAttr, type FsErrorCode, type SnapshotFs } from './snapshot-fs.js';
import type { ErrorCode } from '../../core/errors.js';

/** FUSE cannot be used here: no /dev/fuse, no libfuse, no fusermount, or the binding does not load. */
export class FuseUnavailableError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'FUSE_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'FuseUnavailableError';
  }
}

/** The mount point is missing, not a folder, not empty, or already a mount. */
export class MountPointError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BAD_MOUNT_POINT';
  constructor(message: string) {
    super(message);
    this.name = 'MountPointError';
  }
}

// ---- the part of fuse-native used here (it ships no types) ----

/** A stat as fuse-native takes it: times in ms, unsigned. */
interface FuseStat {
  mode: number; uid: number; gid: number; size: number; nlink: number; rdev: number; blocks: number; blksize: number;
  atime: number; mtime: number; ctime: number;
}
/** Callbacks take 0 or a negative errno first; `read`'s takes the byte count or a negative errno. */
interface FuseOps {
  getattr(path: string, cb: (err: number, stat?: FuseStat) => void): void;
  readdir(path: string, cb: (err: number, names?: string[]) => void): void;
  readlink(path: string, cb: (err: number, target?: string) => void): void;
  open(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (result: number) => void): void;
  release(path: string, fd: number, cb: (err: number) => void): void;
  /** A value whose size the kernel asked for with a buffer of 0 bytes gets only its length back; fuse-native copies it. */
  getxattr(path: string, name: string, position: number, cb: (err: number, value?: Buffer) => void): void;
  listxattr(path: string, cb: (err: number, names?: string[]) => void): void;
}
interface FuseOptions {
  force: boolean; mkdir: boolean; autoUnmount: boolean; defaultPermissions: boolean; kernelCache: boolean;
  fsname: string; timeout: number; entryTimeout: number; attrTimeout: number;
}
interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}
type FuseClass = new (mountpoint: string, ops: FuseOps, opts: FuseOptions) => FuseInstance;

const ERRNO: Record<FsErrorCode | 'EROFS' | 'EBADF', number> = { ENOENT: -2, EIO: -5, EBADF: -9, ENOTDIR: -20, EISDIR: -21, EINVAL: -22, EROFS: -30, ENODATA: -61 };

const S_IFMT: Record<FsAttr['type'], number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, fifo: 0o010000, chardev: 0o020000, blockdev: 0o060000, socket: 0o140000,
};

/** Loads the binding, or says what is missing. */
function loadFuse(): FuseClass {
  try {
    return createRequire(import.meta.url)('fuse-native') as FuseClass;
  } catch (e) {
    throw new FuseUnavailableError(`the FUSE binding does not load (${(e as Error).message.split('\n')[0]}); install libfuse 2 (Debian: apt-get install fuse libfuse2)`);
  }
}

/** True when `fusermount` runs: libfuse's helper that `auto_unmount` and unmounting need. */
function hasFusermount(): Promise<boolean> {
  return new Promise((resolve) => execFile('fusermount', ['-V'], (err) => resolve(!err)));
}

/** Mount points in /proc/self/mountinfo (field 5, with its octal escapes undone). */
async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return new Set(text.split('\n').filter((l) => l !== '').map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))));
}

/** Checks that FUSE can be used and that `mountpoint` is an empty folder that is not a mount; returns its real path. */
async function prepare(mountpoint: string): Promise<string> {
  if (!(await access('/dev/fuse').then(() => true, () => false))) throw new FuseUnavailableError('/dev/fuse is missing: this system (or container) offers no FUSE');
  if (!(await hasFusermount())) throw new FuseUnavailableError('fusermount is not installed (Debian: apt-get install fuse)');
  const st = await stat(mountpoint).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOTCONN') throw new MountPointError(`mount point ${mountpoint}: the file system mounted there has died; run "fusermount -u ${mountpoint}" first`);
    throw new MountPointError(`mount point ${mountpoint}: ${e.code === 'ENOENT' ? 'does not exist' : e.message}`);
  });
  if (!st.isDirectory()) throw new MountPointError(`mount point ${mountpoint} is not a folder`);
  const real = await realpath(mountpoint);
  if ((await mountPoints()).has(real)) throw new MountPointError(`mount point ${mountpoint} is already a mount point`);
  if ((await readdir(real)).length > 0) throw new MountPointError(`mount point ${mountpoint} is not empty`);
  return real;
}

export interface FuseMountOptions {
  /** Told about files that cannot be read (once per path). */
  readonly onWarning?: (message: string) => void;
}

/** A mounted file tree. */
export interface MountedFs {
  /** The real path it is mounted at. */
  readonly mountpoint: string;
  /** Resolves when the file system was unmounted from outside (`fusermount -u`, `umount`). */
  readonly gone: Promise<void>;
  /** Unmounts (lazily: files still open stay readable until closed); idempotent. */
  unmount(): Promise<void>;
}

/** How often the mount table is looked at for an unmount from outside. */
const WATCH_MS = 1000;

/**
 * Mounts `fs` read-only at `mountpoint`. Throws `FuseUnavailableError` when
 * FUSE cannot be used here and `MountPointError` for an unfit mount point.
 */
export async function mountFuse(fs: SnapshotFs, mountpoint: string, opts: FuseMountOptions = {}): Promise<MountedFs> {
  const real = await prepare(mountpoint);
  const Fuse = loadFuse();
  const warned = new Set<string>();
  const warnOnce = (path: string, message: string): void => {
    if (warned.has(path)) return;
    warned.add(path);
    opts.onWarning?.(message);
  };
  const errno = (e: unknown): number => (e instanceof FsError ? ERRNO[e.code] : ERRNO.EIO);
  const open = new Map<number, RandomAccessSource>();
  let nextFd = 1;

  const ops: FuseOps = {
    getattr(path, cb) {
      fs.getattr(path).then((a) => cb(0, {
        mode: S_IFMT[a.type] | a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, rdev: a.rdev,
        blocks: Math.ceil(a.size / 512), blksize: 4096, atime: a.mtimeMs, mtime: a.mtimeMs, ctime: a.mtimeMs,
      }), (e: unknown) => cb(errno(e)));
    },
    readdir(path, cb) {
      fs.readdir(path).then((names) => cb(0, names), (e: unknown) => cb(errno(e)));
    },
    readlink(path, cb) {
      fs.readlink(path).then((t) => cb(0, t), (e: unknown) => cb(errno(e)));
    },
    open(path, flags, cb) {
      // O_ACCMODE: the kernel refuses writes to a read-only mount already; this is for an open that slips through.
      if ((flags & 3) !== 0) return cb(ERRNO.EROFS);
      fs.open(path).then((src) => {
        const fd = nextFd++;
        open.set(fd, src);
        cb(0, fd);
      }, (e: unknown) => cb(errno(e)));
    },
    read(path, fd, buf, len, pos, cb) {
      const src = open.get(fd);
      if (!src) return cb(ERRNO.EBADF);
      const n = Math.max(0, Math.min(len, src.size - pos));
      if (n === 0) return cb(0);
      src.read(pos, n).then((data) => cb(data.copy(buf, 0, 0, n)), (e: unknown) => {
        warnOnce(path, `${path}: read failed: ${(e as Error).message}`);
        cb(ERRNO.EIO);
      });
    },
    release(_path, fd, cb) {
      open.delete(fd);
      cb(0);
    },
    getxattr(path, name, _position, cb) {
      fs.getxattr(path, name).then((value) => cb(0, value), (e: unknown) => cb(errno(e)));
    },
    listxattr(path, cb) {
      fs.listxattr(path).then((names) => cb(0, names), (e: unknown) => cb(errno(e)));
    },
  };

  const fuse = new Fuse(real, ops, {
    force: false,
    mkdir: false,
    autoUnmount: true,
    defaultPermissions: true,
    kernelCache: true,
    // fuse-native has no option for `ro`; it passes fsname into libfuse's option string unescaped, where a comma starts the next option.
    fsname: 'holdfast,ro',
    // A read of a big chunk from remote storage may take a while; fuse-native answers ETIMEDOUT after this.
    timeout: 120_000,
    entryTimeout: 60,
    attrTimeout: 60,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(new FuseUnavailableError(`mounting at ${real} failed: ${err.message}`)) : resolve())));

  let unmounted: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<void>((resolve) => {
    timer = setInterval(() => {
      mountPoints().then((m) => {
        if (m.has(real)) return;
        clearInterval(timer);
        resolve();
      }, () => undefined);
    }, WATCH_MS);
    timer.unref();
  });
  return {
    mountpoint: real,
    gone,
    unmount(): Promise<void> {
      clearInterval(timer);
      unmounted ??= new Promise<void>((resolve, reject) => fuse.unmount((err) => {
        // Unmounted from outside already: nothing is left to do.
        if (!err) return resolve();
        mountPoints().then((m) => (m.has(real) ? reject(err) : resolve()), reject);
      }));
      return unmounted;
    },
  };
}

/**
 * A restore's target folder, and the paths below it reached without ever
 * following a symbolic link.
 *
 * A restore often runs as root into a folder its owner's users can write
 * into (a home, a web root). Whoever can write there can swap a folder the
 * restore is filling for a symlink while it runs; a restore that named its
 * files by full paths would then write, chmod and chown through the link,
 * anywhere on the machine. So nothing below the target is named by a full
 * path: the target is opened once, and every path below it is resolved from
 * that descriptor by native/beneath.cc (openat2 with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), which refuses a symlink anywhere on the way (ELOOP).
 *
 * Node's own calls take paths, not a folder's descriptor and a name, so
 * `at` hands them a name for the node through its parent folder's
 * descriptor, /proc/self/fd/N/NAME: the folder is the one resolved beneath
 * the target, and only NAME is looked up by the call. That is safe for the
 * calls that do not follow a final symlink (lstat, mkdir, symlink, link,
 * unlink, lchown, lutimes, the l*xattr family, open with O_NOFOLLOW,
 * `chmodNoFollow`), and only for them.
 */
import { closeSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { native } from './native.js';
import { O_PATH } from './posix.js';

const SLASH = 0x2f;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export class Beneath {
  private constructor(
    /** The target folder's descriptor (O_PATH), open until `close`. */
    readonly fd: number,
  ) {}

  /**
   * Opens the folder `dir`, made (with its parents) when it is missing. A
   * symlink in `dir` itself is followed: the operator named it.
   */
  static open(dir: string): Beneath {
    if (!existsSync('/proc/self/fd')) throw new Error('restoring needs /proc mounted (paths below the target are reached through /proc/self/fd)');
    mkdirSync(dir, { recursive: true });
    return new Beneath(openSync(dir, O_PATH | constants.O_DIRECTORY));
  }

  /**
   * The descriptor of `path` below the folder (a snapshot path: leading
   * slashes ignored), opened with `flags` (and `mode` when creating). A
   * symlink on the way or at its end fails with ELOOP, never followed.
   */
  open(path: Buffer, flags: number, mode = 0o600): number {
    return native.openBeneath(this.fd, path, flags, mode);
  }

  /**
   * Runs `fn` with a name for `path` through its parent folder, opened as
   * `open` opens a path; the name is good while `fn` runs, and only for
   * calls that do not follow a final symlink (see above).
   */
  at<T>(path: Buffer, fn: (name: Buffer) => T): T {
    const slash = path.lastIndexOf(SLASH);
    const base = path.subarray(slash + 1);
    // The walk refuses such names; a name that is none would reach the parent itself or above it.
    if (base.length === 0 || base.equals(DOT) || base.equals(DOTDOT)) throw new Error(`not a file name: ${JSON.stringify(path.toString())}`);
    const parent = slash <= 0 ? this.fd : this.open(path.subarray(0, slash), O_PATH | constants.O_DIRECTORY);
    try {
      return fn(Buffer.concat([Buffer.from(`/proc/self/fd/${parent}/`), base]));
    } finally {
      if (parent !== this.fd) closeSync(parent);
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

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
import { chmodSync, closeSync, constants, existsSync, fchmodSync, fchownSync, fstatSync, futimesSync, lstatSync, lutimesSync, mkdirSync, openSync, unlinkSync, utimesSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { native } from './native.js';
import { O_PATH, timespec, utimesSeconds } from './posix.js';

const SLASH = 0x2f;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export class Beneath {
  /** The owner a node this process creates below the folder gets (`ownerOfCreated`), once known. */
  private createdOwner: number | undefined;

  private constructor(
    /** The target folder's descriptor (O_PATH), open until `close`. */
    readonly fd: number,
  ) {}

  /**
   * Opens the folder `dir`, made (with its parents) when it is missing. A
   * symlink in `dir` itself is followed (the operator named it), unless
   * `noSymlinks`: then `dir` is resolved from / as the paths below it are,
   * a symlink anywhere on its way refused (ELOOP), and the folders made on
   * the way are made in the folders so reached (an agent's restore, whose
   * target a server names and others may race).
   */
  static open(dir: string, opts: { noSymlinks?: boolean } = {}): Beneath {
    if (!existsSync('/proc/self/fd')) throw new Error('restoring needs /proc mounted (paths below the target are reached through /proc/self/fd)');
    if (opts.noSymlinks !== true) {
      mkdirSync(dir, { recursive: true });
      return new Beneath(openSync(dir, O_PATH | constants.O_DIRECTORY));
    }
    if (!isAbsolute(dir)) throw new Error(`the target must be an absolute path: ${dir}`);
    const fs = new Beneath(openSync('/', O_PATH | constants.O_DIRECTORY));
    try {
      const names = dir.split('/').filter((n) => n !== '' && n !== '.');
      let at = '';
      for (const name of names) {
        at = `${at}/${name}`;
        const path = Buffer.from(at);
        try {
          closeSync(fs.open(path, O_PATH | constants.O_DIRECTORY));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          fs.at(path, (p) => mkdirSync(p, 0o700));
        }
      }
      return new Beneath(fs.open(Buffer.from(at), O_PATH | constants.O_DIRECTORY));
    } finally {
      fs.close();
    }
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

  /**
   * Makes the folder `path` with `mode` (less the umask), or merges into the
   * one there: anything else there is an error, never followed. Returns
   * whether it made it, and the inode of the folder there now, opened as a
   * folder (a file or symlink put there meanwhile is refused). A folder put
   * in place of the one it made, between the making and the opening, is
   * refused by its owner: a racer without root cannot make one that is
   * owned as ours are. One merged into gets `mode`: an earlier restore may
   * have left it unwritable for us.
   */
  makeFolder(path: Buffer, mode: number): { made: boolean; ino: number } {
    const made = native.makeFolderBeneath(this.fd, path, mode);
    if (made !== -1) {
      const [ino, owner] = made;
      if (owner !== this.ownerOfCreated()) throw new Error('refused: not the folder this restore made (something was put in its place)');
      return { made: true, ino };
    }
    if (!this.at(path, (p) => lstatSync(p).isDirectory())) throw new Error('a non-directory is in the way');
    const dir = OpenNode.open(this, path, { type: 'dir' });
    try {
      dir.chmod(mode);
      return { made: false, ino: Number(fstatSync(dir.fd).ino) };
    } finally {
      dir.close();
    }
  }

  /**
   * Runs `look` on a probe file made in the folder itself (O_EXCL, with
   * `mode`), given its descriptor and a name for path calls, then removes
   * it: what creating a node there gives. The probe's owner is recorded for
   * `makeFolder`.
   */
  probe<T>(mode: number, look: (fd: number, name: Buffer) => T): T {
    const name = Buffer.from(`.holdfast-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
    const fd = this.open(name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      this.createdOwner = fstatSync(fd).uid;
      return this.at(name, (p) => look(fd, p));
    } finally {
      closeSync(fd);
      try {
        this.at(name, (p) => unlinkSync(p));
      } catch {
        // Moved away meanwhile: someone else's now; what it showed stands.
      }
    }
  }

  /**
   * The owner of what this process creates below the folder: its effective
   * user, unless the file system says otherwise (a FAT file system's mount
   * option, NFS's root squash), which a probe file shows (`probe`; no racer
   * can change it: it is made O_EXCL and looked at through its own
   * descriptor). The process's where no file can be made.
   */
  private ownerOfCreated(): number {
    if (this.createdOwner === undefined) {
      try {
        this.probe(0o600, () => undefined);
      } catch {
        this.createdOwner ??= process.geteuid?.() ?? 0;
      }
    }
    return this.createdOwner!;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** What a restored node is, as the restore made it: its type, and for a device its number. */
export interface NodeKind {
  readonly type: 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';
  readonly rdev?: bigint;
}

/**
 * A node below the target, open so that its metadata is changed on it and
 * on nothing else: what is found at its name must be what the restore made
 * there (its type; the inode the restore recorded when it made it, else
 * for a regular file one name, so never a hard link to a file elsewhere; a
 * device of the same number), or `open` throws. A folder, file or FIFO
 * is opened for reading (non-blocking) and changed through its descriptor;
 * a device or symlink (or one we may not read) is opened O_PATH: its owner
 * through fchownat and its times through utimensat on the descriptor, a
 * device's mode through the descriptor's own /proc name (that very inode).
 * Only a symlink's or a device's extended attributes are set by name after
 * the check: no call takes an O_PATH descriptor for them.
 */
export class OpenNode {
  private constructor(
    readonly fd: number,
    /** Opened O_PATH: no reads, no fchmod. */
    private readonly pathOnly: boolean,
    private readonly kind: NodeKind,
  ) {}

  /** Opens `path` below `root` as `kind`; `ino`: the inode the restore recorded when it made it. */
  static open(root: Beneath, path: Buffer, kind: NodeKind, ino?: number): OpenNode {
    let fd: number;
    let pathOnly = false;
    switch (kind.type) {
      case 'dir':
      case 'file':
      case 'fifo': {
        const flags = kind.type === 'dir' ? constants.O_DIRECTORY : constants.O_NONBLOCK;
        try {
          fd = root.open(path, constants.O_RDONLY | flags);
        } catch (e) {
          // One we may not read (not root): changed through its /proc name, as a device is.
          if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
          fd = root.open(path, O_PATH | (kind.type === 'dir' ? constants.O_DIRECTORY : 0));
          pathOnly = true;
        }
        break;
      }
      case 'symlink':
        // O_PATH | O_NOFOLLOW opens the symlink itself; its parent is reached safely.
        fd = root.at(path, (p) => openSync(p, O_PATH | constants.O_NOFOLLOW));
        pathOnly = true;
        break;
      default:
        fd = root.open(path, O_PATH);
        pathOnly = true;
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      const ours = kind.type === 'dir' ? st.isDirectory()
        : kind.type === 'file' ? st.isFile() && (ino !== undefined || st.nlink === 1n)
          : kind.type === 'symlink' ? st.isSymbolicLink()
            : kind.type === 'fifo' ? st.isFIFO()
              : (kind.type === 'chardev' ? st.isCharacterDevice() : st.isBlockDevice()) && st.rdev === (kind.rdev ?? 0n);
      if (!ours || (ino !== undefined && Number(st.ino) !== ino)) {
        throw new Error(`refused: not the ${kind.type === 'dir' ? 'folder' : kind.type} this restore made or kept there (something was put in its place)`);
      }
      return new OpenNode(fd, pathOnly, kind);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Owner, then (`xattrs`, given the descriptor or a name) extended attributes, mode (none for a symlink) and times (`mtime`, ns: both times), in that order. */
  finish(root: Beneath, path: Buffer, m: { uid?: number; gid?: number; mode?: number; xattrs?: (target: number | Buffer) => void; mtime: bigint }): void {
    if (m.uid !== undefined && m.gid !== undefined) {
      if (this.pathOnly) native.fchownPath(this.fd, m.uid, m.gid);
      else fchownSync(this.fd, m.uid, m.gid);
    }
    if (m.xattrs) {
      if (!this.pathOnly) m.xattrs(this.fd);
      else root.at(path, (p) => m.xattrs!(p));
    }
    if (m.mode !== undefined && this.kind.type !== 'symlink') this.chmod(m.mode);
    const t = utimesSeconds(m.mtime);
    if (!this.pathOnly) {
      futimesSync(this.fd, t, t);
      return;
    }
    try {
      native.utimesPath(this.fd, ...timespec(m.mtime));
    } catch (e) {
      // Linux before utimensat took AT_EMPTY_PATH: by name (a symlink) or through the /proc name.
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      if (this.kind.type === 'symlink') root.at(path, (p) => lutimesSync(p, t, t));
      else utimesSync(this.proc(), t, t);
    }
  }

  /** Sets its mode (not a symlink's: Linux gives them none). */
  chmod(mode: number): void {
    if (this.pathOnly) chmodSync(this.proc(), mode);
    else fchmodSync(this.fd, mode);
  }

  /** The descriptor's own /proc name: calls that follow it reach that very inode. */
  private proc(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  /** Its mtime now, in nanoseconds. */
  mtimeNs(): bigint {
    return fstatSync(this.fd, { bigint: true }).mtimeNs;
  }

  close(): void {
    closeSync(this.fd);
  }
}

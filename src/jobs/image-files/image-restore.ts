/**
 * Restores files out of a disk image below a target folder, at TARGET + their
 * path in the image tree (`/p1/etc/passwd` → `TARGET/p1/etc/passwd`), with
 * the same rules as the snapshot restorer (src/jobs/restore/restorer.ts):
 *
 *   walk the image (unsafe names and directory loops refused by the walker)
 *     dir      mkdir (an existing non-directory in the way is an error, never followed)
 *     file     hard link to an inode restored earlier, or
 *              create (O_EXCL) → write each stored run at its offset → ftruncate
 *              (holes in the image file stay holes; only stored runs are read)
 *     other    symlink, mkfifo, mknod (as root)
 *     then     owner (as root), mode, mtime
 *   after a folder's children: its owner, mode and mtime
 *
 * Only the blocks of the files restored are read from the image, so from the
 * repository only the chunks that hold them are fetched. As there, nothing
 * below the target is named by a full path (`Beneath`): a symlink put on
 * the way while the restore runs is refused, never followed.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, futimesSync, linkSync, readSync, symlinkSync, writeSync } from 'node:fs';
import { FilesystemNotSupportedError, type ImageNode, type ImageVolume } from '../../sources/image/fs/image-volume.js';
import { floorMicros, makeDevice, makeFifo, utimesSeconds } from '../../sources/posix.js';
import { Beneath, OpenNode } from '../../sources/beneath.js';
import type { RestoreOptions, RestoreProgress, RestoreResult } from '../restore/restorer.js';
import { prepareExisting } from '../restore/overwrite.js';
import { filePieces } from './image-file-reader.js';
import { walkImage, type ImageWalkEntry } from './image-walk.js';
import { included, normalizeInclude } from '../restore/includes.js';

const ZEROS = Buffer.alloc(1 << 20);

function hashZeros(h: Hash, n: number): Hash {
  for (let left = n; left > 0; left -= ZEROS.length) h.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
  return h;
}

export class ImageRestorer {
  private readonly progress: RestoreProgress = { files: 0, dirs: 0, bytes: 0, filesSkipped: 0, bytesSkipped: 0, totalFiles: 0, totalBytes: 0, errors: 0, walked: false, current: '' };
  private readonly failed: { path: string; error: string }[] = [];
  private readonly verifyFailed: { path: string; error: string }[] = [];
  private verified = 0;
  /** Where each hard-linked inode was restored first. */
  private readonly inodes = new Map<string, Buffer>();
  private readonly includes: string[];
  /** The target, open while the restore runs. */
  private root!: Beneath;
  /** The inode of each folder this restore made or merged into, until it is finished (by path, latin1): its metadata is set on it only. */
  private readonly made = new Map<string, number>();

  constructor(private readonly volume: ImageVolume, private readonly target: string, private readonly opts: RestoreOptions = {}) {
    this.includes = (opts.includes ?? []).map(normalizeInclude);
    if (this.includes.some((i) => i.split('/').includes('..'))) throw new Error('an --include path must not contain ".."');
  }

  private fail(path: string, error: string): void {
    this.listFailed({ path, error });
    this.opts.onWarning?.(path, `not restored: ${error}`);
  }

  private listFailed(f: { path: string; error: string }): void {
    this.failed.push(f);
    this.progress.errors++;
  }

  async run(): Promise<RestoreResult> {
    this.root = Beneath.open(this.target, { noSymlinks: this.opts.targetNoSymlinks === true });
    const root = await this.volume.root();
    const skipped: string[] = [];
    const below = (path: Buffer): boolean => skipped.some((s) => path.toString('latin1').startsWith(`${s}/`));
    const matchedIncludes = new Set<string>();
    try {
      for await (const entry of walkImage(this.volume, root, Buffer.from('/'), {
        onUnsafe: (path, reason) => {
          this.listFailed({ path, error: `refused: ${reason}` });
          this.opts.onWarning?.(path, `refused to restore: ${reason}`);
        },
        onError: (path, err) => {
          // A partition without files we can read (swap, xfs, a BIOS boot
          // partition) fails the restore only when it was asked for by name;
          // an image whose only filesystem cannot be read always does.
          const named = path === '/' || this.includes.some((i) => i === path || i.startsWith(`${path}/`));
          if (err instanceof FilesystemNotSupportedError && !named) this.opts.onWarning?.(path, `not restored: ${err.message}`);
          else this.fail(path, err.message);
        },
        filter: (path) => included(this.includes, path.toString()) && !this.opts.excludes?.matches(path) && !below(path),
        onDirDone: (e) => {
          if (!skipped.includes(e.path.toString('latin1'))) this.finishNode(e);
        },
      })) {
        this.opts.signal?.throwIfAborted();
        const p = entry.path.toString();
        for (const i of this.includes) if (p === i || p.startsWith(`${i}/`)) matchedIncludes.add(i);
        try {
          await this.restoreNode(entry);
        } catch (e) {
          this.fail(p, (e as Error).message);
          if (entry.node.type === 'dir') skipped.push(entry.path.toString('latin1'));
        }
      }
    } finally {
      this.root.close();
    }
    this.progress.walked = true;
    for (const i of this.includes) {
      if (i !== '/' && !matchedIncludes.has(i) && !this.failed.some((f) => f.path === i || i.startsWith(`${f.path}/`))) this.fail(i, 'not in the snapshot');
    }
    return { progress: this.progress, failed: this.failed, verified: this.verified, verifyFailed: this.verifyFailed };
  }

  private async restoreNode({ path, node }: ImageWalkEntry): Promise<void> {
    this.progress.current = path.toString();
    if (node.type !== 'socket') {
      const existing = this.root.at(path, (p) => prepareExisting(p, node, this.opts.overwrite ?? 'always'));
      if (existing !== 'create') {
        if (node.type === 'file') {
          this.progress.totalFiles++;
          this.progress.totalBytes += node.size;
          this.progress.filesSkipped++;
          this.progress.bytesSkipped += node.size;
        }
        if (existing === 'keep') this.finishNode({ path, node, depth: 0 });
        return;
      }
    }
    switch (node.type) {
      case 'dir': {
        // Writable by us while its content is restored; finished after its children only if it is still this folder.
        this.made.set(path.toString('latin1'), this.root.makeFolder(path, (node.mode & 0o777) | 0o700).ino);
        this.progress.dirs++;
        return; // metadata after the children (onDirDone)
      }
      case 'file':
        await this.restoreFile(path, node);
        this.opts.onProgress?.(this.progress);
        return;
      case 'symlink':
        this.root.at(path, (p) => symlinkSync(node.target!, p));
        break;
      case 'fifo':
        this.root.at(path, (p) => makeFifo(p, node.mode));
        break;
      case 'chardev':
      case 'blockdev':
        if (this.opts.privileged !== true) throw new Error('device nodes can only be restored as root');
        this.root.at(path, (p) => makeDevice(p, node.type === 'chardev' ? 'char' : 'block', node.rdev ?? 0n, node.mode));
        break;
      case 'socket':
        return; // sockets are not restorable
    }
    this.finishNode({ path, node, depth: 0 });
    this.opts.onProgress?.(this.progress);
  }

  /**
   * Restores a file, or links it to the name of it restored before. Its
   * owner, mode and times are set on the descriptor that created it, and
   * it is read back through it: never through its name, which a racer may
   * have swapped meanwhile (for a file of theirs, given the same inode
   * number). A later name is only linked: the inode has its metadata.
   */
  private async restoreFile(path: Buffer, node: ImageNode): Promise<void> {
    const key = `${node.volume}:${node.ino}`;
    this.progress.totalFiles++;
    this.progress.totalBytes += node.size;
    if (node.links > 1) {
      const first = this.inodes.get(key);
      if (first) {
        this.root.at(first, (from) => this.root.at(path, (p) => linkSync(from, p)));
        this.progress.files++;
        this.progress.bytes += node.size;
        return;
      }
    }
    const hash = createHash('sha256');
    // Whatever was there is gone (prepareExisting): something there now was put there meanwhile, and is not written through.
    const fd = this.root.open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      let pos = 0;
      let written = 0;
      for await (const { offset, data } of filePieces(this.volume, node)) {
        this.opts.signal?.throwIfAborted();
        if (this.opts.verify) hashZeros(hash, offset - pos).update(data);
        for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off, offset + off);
        pos = offset + data.length;
        written += data.length;
        this.progress.bytes += data.length;
      }
      if (this.opts.verify) hashZeros(hash, node.size - pos);
      ftruncateSync(fd, node.size);
      this.progress.bytes += node.size - written; // its holes
      this.progress.files++;
      if (node.links > 1) this.inodes.set(key, path);
      if (this.opts.verify) {
        this.verified++;
        if (!verifyFile(fd, node.size, hash.digest())) this.verifyFailure(path, 'restored bytes differ from the image');
      }
      this.finishFile(path, node, fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Owner, mode and times of a file this restore created, on its descriptor (a failure is a warning, as for any node). */
  private finishFile(path: Buffer, node: ImageNode, fd: number): void {
    try {
      if (this.opts.privileged === true) fchownSync(fd, node.uid, node.gid);
      fchmodSync(fd, node.mode);
      const mtime = utimesSeconds(node.mtime);
      futimesSync(fd, mtime, mtime);
      if (this.opts.verify) {
        const got = fstatSync(fd, { bigint: true }).mtimeNs;
        if (got !== floorMicros(node.mtime)) this.verifyFailure(path, `restored mtime ${got} ns differs from the image's ${floorMicros(node.mtime)} ns`);
      }
    } catch (e) {
      this.opts.onWarning?.(path.toString(), `cannot restore metadata: ${(e as Error).message}`);
    }
  }

  /**
   * Owner, mode and times, in the order that keeps setuid bits, on the node
   * found there only if it is what the restore made or kept (`OpenNode`).
   */
  private finishNode({ path, node }: ImageWalkEntry): void {
    const key = path.toString('latin1');
    const made = this.made.get(key);
    this.made.delete(key);
    try {
      const n = OpenNode.open(this.root, path, node, made);
      try {
        n.finish(this.root, path, { ...(this.opts.privileged === true ? { uid: node.uid, gid: node.gid } : {}), mode: node.mode, mtime: node.mtime });
        if (this.opts.verify) {
          const got = n.mtimeNs();
          if (got !== floorMicros(node.mtime)) this.verifyFailure(path, `restored mtime ${got} ns differs from the image's ${floorMicros(node.mtime)} ns`);
        }
      } finally {
        n.close();
      }
    } catch (e) {
      this.opts.onWarning?.(path.toString(), `cannot restore metadata: ${(e as Error).message}`);
    }
  }

  private verifyFailure(path: Buffer, error: string): void {
    this.verifyFailed.push({ path: path.toString(), error });
    this.opts.onWarning?.(path.toString(), `verification failed: ${error}`);
  }
}

/** Reads a restored file back through its descriptor and compares its SHA-256 with that of the bytes read from the image. */
function verifyFile(fd: number, size: number, want: Buffer): boolean {
  if (fstatSync(fd).size !== size) return false;
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  for (let pos = 0; pos < size;) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
    if (n === 0) return false;
    h.update(buf.subarray(0, n));
    pos += n;
  }
  return h.digest().equals(want);
}

/**
 * The restorer puts a snapshot's files back below a target folder, at
 * TARGET + their absolute path in the snapshot (restic's layout).
 *
 *   walk the tree (unsafe names refused by the walker)
 *     dir      mkdir (an existing symlink in the way is an error, never followed)
 *     file     hard link to an inode restored earlier, or
 *              create (O_NOFOLLOW) → write each blob at its offset, skip holes
 *              → ftruncate to the size (holes stay holes)
 *     other    symlink, mkfifo, mknod
 *     then     owner (as root), mode, mtime
 *   after a folder's children: its owner, mode and mtime (so children don't bump it)
 *
 * A file that fails (e.g. the disk is full) is reported and the restore goes
 * on; the result lists every path that was not restored.
 */
import { constants, promises as fsp } from 'node:fs';
import { BlobType } from '../../repo/pack.js';
import type { Repository } from '../../repo/repository.js';
import type { TreeNode } from '../../repo/tree.js';
import { PathShortener, makeDevice, makeFifo, type PosixPath } from '../../sources/posix.js';
import { walkTree, type WalkEntry } from '../tree-walk.js';

export interface RestoreOptions {
  /** Snapshot paths to restore (with everything below them); all when empty. */
  readonly includes?: readonly string[];
  /** Re-read every restored file and check it against the snapshot. */
  readonly verify?: boolean;
  readonly onWarning?: (path: string, message: string) => void;
  readonly onProgress?: (p: RestoreProgress) => void;
  readonly signal?: AbortSignal;
}

export interface RestoreProgress {
  files: number;
  dirs: number;
  bytes: number;
  current: string;
}

export interface RestoreResult {
  readonly progress: RestoreProgress;
  /** Paths (in the snapshot) that were not restored, with the reason. */
  readonly failed: { path: string; error: string }[];
  /** Files whose restored bytes did not match, when verifying. */
  readonly verifyFailed: string[];
}

const isRoot = process.getuid?.() === 0;

function included(includes: readonly string[], path: string): boolean {
  if (includes.length === 0) return true;
  return includes.some((inc) => path === inc || path.startsWith(inc === '/' ? '/' : `${inc}/`) || inc.startsWith(`${path}/`));
}

function normalizeInclude(p: string): string {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  return `/${parts.join('/')}`;
}

export class Restorer {
  private readonly progress: RestoreProgress = { files: 0, dirs: 0, bytes: 0, current: '' };
  private readonly failed: { path: string; error: string }[] = [];
  private readonly verifyFailed: string[] = [];
  private readonly inodes = new Map<string, { path: PosixPath; content: string }>();
  private readonly includes: string[];
  /** Paths longer than PATH_MAX are reached through /proc/self/fd anchors. */
  private readonly long = new PathShortener();

  constructor(private readonly repo: Repository, private readonly target: string, private readonly opts: RestoreOptions = {}) {
    this.includes = (opts.includes ?? []).map(normalizeInclude);
  }

  /** Where a snapshot path goes, in a form short enough for system calls. */
  private dest(path: Buffer): Promise<PosixPath> {
    return this.long.short(Buffer.concat([Buffer.from(this.target.replace(/\/+$/, '')), path]));
  }

  private fail(path: Buffer, e: unknown): void {
    const error = (e as Error).message ?? String(e);
    this.failed.push({ path: path.toString(), error });
    this.opts.onWarning?.(path.toString(), `not restored: ${error}`);
  }

  async run(tree: string): Promise<RestoreResult> {
    await fsp.mkdir(this.target, { recursive: true });
    const skipped = new Set<string>();
    const walker = walkTree(this.repo, tree, {
      onUnsafe: (path, reason) => {
        this.failed.push({ path, error: `refused: ${reason}` });
        this.opts.onWarning?.(path, `refused to restore: ${reason}`);
      },
      filter: (path, node) => included(this.includes, path.toString()) && !skippedBelow(skipped, path, node),
      onDirDone: async (entry) => {
        if (!skipped.has(entry.path.toString('latin1'))) await this.finishNode(entry);
      },
    });
    try {
      for await (const entry of walker) {
        this.opts.signal?.throwIfAborted();
        try {
          await this.restoreNode(entry);
        } catch (e) {
          this.fail(entry.path, e);
          if (entry.node.type === 'dir') skipped.add(entry.path.toString('latin1'));
        }
      }
    } finally {
      await this.long.close();
    }
    return { progress: this.progress, failed: this.failed, verifyFailed: this.verifyFailed };
  }

  private async restoreNode({ path, node }: WalkEntry): Promise<void> {
    const dest = await this.dest(path);
    this.progress.current = path.toString();
    switch (node.type) {
      case 'dir':
        try {
          await fsp.mkdir(dest);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          const st = await fsp.lstat(dest);
          if (!st.isDirectory()) throw new Error('a non-directory is in the way', { cause: e });
        }
        this.progress.dirs++;
        return; // metadata after the children (onDirDone)
      case 'file':
        await this.restoreFile(path, dest, node);
        break;
      case 'symlink':
        await fsp.symlink(node.target!, dest);
        break;
      case 'fifo':
        await makeFifo(dest, node.mode);
        break;
      case 'chardev':
      case 'blockdev':
        if (!isRoot) throw new Error('device nodes can only be restored as root');
        await makeDevice(dest, node.type === 'chardev' ? 'char' : 'block', node.rdev ?? 0n, node.mode);
        break;
      case 'socket':
        return; // sockets are not restorable; nothing was stored but the name
    }
    await this.finishNode({ path, node, depth: 0 });
    this.opts.onProgress?.(this.progress);
  }

  private async restoreFile(path: Buffer, dest: PosixPath, node: TreeNode): Promise<void> {
    const key = `${node.device}:${node.inode}`;
    const content = JSON.stringify(node.content ?? []);
    if (node.links > 1) {
      const first = this.inodes.get(key);
      // A hard link is only recreated when the content recorded under this name
      // is the same (the file may have changed between reading its names).
      if (first && first.content === content) {
        await fsp.link(first.path, dest);
        return;
      }
    }
    const fh = await fsp.open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      let pos = 0;
      for (const c of node.content ?? []) {
        if (typeof c === 'number') {
          pos += c;
          continue;
        }
        const data = await this.repo.loadBlob(BlobType.Data, c);
        await writeSparse(fh, data, pos);
        pos += data.length;
        this.progress.bytes += data.length;
      }
      if (pos !== node.size) throw new Error(`content adds up to ${pos} bytes, the file had ${node.size}`);
      await fh.truncate(pos);
    } finally {
      await fh.close();
    }
    this.progress.files++;
    if (node.links > 1 && !this.inodes.has(key)) this.inodes.set(key, { path: dest, content });
    if (this.opts.verify && !(await this.verifyFile(dest, node))) {
      this.verifyFailed.push(path.toString());
      this.opts.onWarning?.(path.toString(), 'verification failed: restored bytes differ from the snapshot');
    }
  }

  /** Reads a restored file back and checks every chunk's keyed id. */
  private async verifyFile(dest: PosixPath, node: TreeNode): Promise<boolean> {
    const fh = await fsp.open(dest, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let pos = 0;
      for (const c of node.content ?? []) {
        const len = typeof c === 'number' ? c : this.repo.index.lookup(c)?.rawLength ?? -1;
        if (len < 0) return false;
        const buf = Buffer.alloc(len);
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        if (bytesRead !== len) return false;
        if (typeof c === 'number' ? buf.some((b) => b !== 0) : this.repo.blobId(buf) !== c) return false;
        pos += len;
      }
      return (await fh.stat()).size === pos;
    } finally {
      await fh.close();
    }
  }

  /** Owner, mode and times, in the order that keeps setuid bits. */
  private async finishNode({ path, node }: WalkEntry): Promise<void> {
    const dest = await this.dest(path);
    try {
      if (isRoot) await fsp.lchown(dest, node.uid, node.gid);
      if (node.type !== 'symlink') await fsp.chmod(dest, node.mode);
      const mtime = utimesSeconds(node.mtime);
      await fsp.lutimes(dest, mtime, mtime);
    } catch (e) {
      this.opts.onWarning?.(path.toString(), `cannot restore metadata: ${(e as Error).message}`);
    }
  }
}

function skippedBelow(skipped: Set<string>, path: Buffer, _node: TreeNode): boolean {
  if (skipped.size === 0) return false;
  for (let i = path.lastIndexOf(0x2f); i > 0; i = path.lastIndexOf(0x2f, i - 1)) {
    if (skipped.has(path.subarray(0, i).toString('latin1'))) return true;
  }
  return false;
}

/**
 * Seconds for utimes(2) through Node, which passes a double and truncates to
 * the microsecond: aim at the middle of the microsecond so the truncation
 * lands on the stored value. Times before 1970 cannot be set through Node.
 */
function utimesSeconds(ns: bigint): number {
  const t = ns < 0n ? 0n : ns;
  return Number(t / 1_000_000_000n) + (Number((t % 1_000_000_000n) / 1000n) + 0.5) / 1e6;
}

const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/**
 * Writes `data` at `pos`, skipping file-system blocks that would be all
 * zeros, so zero runs inside stored chunks come back as holes too (the file
 * is fresh, so a skipped block reads as zeros).
 */
async function writeSparse(fh: fsp.FileHandle, data: Buffer, pos: number): Promise<void> {
  let start = -1;
  const flush = async (end: number): Promise<void> => {
    for (let off = start; off < end;) {
      const { bytesWritten } = await fh.write(data, off, end - off, pos + off);
      off += bytesWritten;
    }
    start = -1;
  };
  // Blocks aligned to the file's offsets, not the chunk's.
  let off = 0;
  while (off < data.length) {
    const next = Math.min(data.length, off + BLOCK - ((pos + off) % BLOCK));
    const zero = next - off === BLOCK && data.subarray(off, next).equals(ZERO_BLOCK);
    if (zero && start >= 0) await flush(off);
    else if (!zero && start < 0) start = off;
    off = next;
  }
  if (start >= 0) await flush(data.length);
}

/**
 * The restorer puts a snapshot's files back below a target folder, at
 * TARGET + their absolute path in the snapshot (restic's layout).
 *
 *   1. walk the tree (unsafe names refused by the walker), on the main thread:
 *        dir       mkdir (an existing non-folder in the way is an error, never followed)
 *        symlink, fifo, device: create now, with owner, mode and mtime
 *        file      empty: create now; one blob: the worker that opens the blob
 *                  creates, writes, finishes and closes it; several blobs or
 *                  holes: create it now, workers write the pieces, finish it
 *                  here once all pieces are in; a later hard link to the same
 *                  inode (and content): linked at the end
 *      and plan: pack segment → needed blobs → the files (and offsets) each goes to
 *   2. read each needed range of each pack segment once, several at a time;
 *      a worker opens the blobs and writes them (zero blocks stay holes).
 *      This overlaps the walk: backups write packs in walk order, so once the
 *      walk has moved on to blobs of several later segments, a segment is
 *      handed to a worker (a blob of it needed again later costs a second read).
 *   3. hard links, then folders' owner, extended attributes, mode and mtime, deepest first
 *   4. with --verify: workers read every file back and check its chunk ids
 *
 * A file that fails (a damaged pack, a full disk) is removed, reported, and the
 * restore goes on; the result lists every path that was not restored.
 *
 * Nothing below the target is named by a full path: every path is resolved
 * from the target's descriptor without following a symlink (`Beneath`), so
 * a folder swapped for a symlink while the restore runs is refused, never
 * written, chmodded or chowned through.
 */
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, futimesSync, symlinkSync, linkSync, unlinkSync } from 'node:fs';
import { NotFoundError, ShortReadError } from '../../storage/backend.js';
import { BlobNotFoundError, CorruptObjectError } from '../../repo/errors.js';
import type { Repository } from '../../repo/repository.js';
import type { BlobLocation } from '../../repo/index-file.js';
import { entryBlob, type BlobSlice, type ContentEntry, type TreeNode } from '../../repo/tree.js';
import { chmodNoFollow, floorMicros, makeDevice, makeFifo, timespec, utimesSeconds } from '../../sources/posix.js';
import { Beneath, OpenNode } from '../../sources/beneath.js';
import { hasXattrsBeyondLabel, writeXattrs, xattrDifference, type RefusedXattr } from '../../sources/xattrs.js';
import { PathBuffer, walkTree } from '../tree-walk.js';
import { prepareExisting, type Overwrite } from './overwrite.js';
import type { Excludes } from '../backup/excludes.js';
import { PoolSession, type JobPoolOptions } from '../pool/worker-pool.js';
import { rebuildError, wireError } from '../pool/wire-error.js';
import { errorCode, type ErrorCode } from '../../core/errors.js';
import { abortable } from '../../core/abortable.js';
import { io } from '../../repo/objects.js';
import { WRITE_FIELDS, WRITE_FLAGS } from '../../sources/native.js';
import type { Task, UnpackBlob, UnpackResult, VerifyJob, VerifyResult } from '../pool/protocol.js';
import { included, normalizeInclude } from './includes.js';

export interface RestoreOptions extends JobPoolOptions {
  /** Snapshot paths to restore (with everything below them); all when empty. */
  readonly includes?: readonly string[];
  /** Paths left out (and, for a folder, everything below it): the backup's patterns (--exclude, --iexclude). */
  readonly excludes?: Excludes;
  /**
   * Restores only the nodes this accepts (a folder refused: nothing below
   * it), besides `includes` and `excludes`: a set of paths as bytes, which
   * `includes` (strings, compared one by one) cannot be for a sample of
   * thousands of files with names that need not be UTF-8 (verify-restore).
   */
  readonly select?: (path: Buffer) => boolean;
  /** Re-read every restored file and check it against the snapshot. */
  readonly verify?: boolean;
  /** What to do with files already in the target (default `always`: replace them). */
  readonly overwrite?: Overwrite;
  readonly onWarning?: (path: string, message: string) => void;
  readonly onProgress?: (p: RestoreProgress) => void;
  /** Called for each file, folder and link once it is restored with its metadata (`-v`). */
  readonly onRestored?: (path: string) => void;
  /** Called for each node already in the target and left there (`--overwrite if-changed` or `never`; `-v -v`). */
  readonly onUnchanged?: (path: string) => void;
  readonly signal?: AbortSignal;
  /**
   * The target and the folders on its way are reached without following a
   * symlink, as everything below it always is (an agent's restore: the
   * server names the target, and others may write into its parents).
   * Default false: a symlink in the target's path is followed.
   */
  readonly targetNoSymlinks?: boolean;
  /**
   * The process may chown and mknod (it runs as root): owners are restored
   * and device nodes made. Default false: files belong to the process and a
   * device node is refused (the CLI passes whether it runs as root).
   */
  readonly privileged?: boolean;
}

/**
 * Bytes count every name of a hard-linked file, as a backup's `totalBytes`
 * does: a snapshot restored whole has the totals its summary gives.
 */
export interface RestoreProgress {
  /** Regular files restored (hard links included), and bytes of their content (holes included). */
  files: number;
  dirs: number;
  bytes: number;
  /** Regular files already in the target and left as they are (`--overwrite`), and their bytes. */
  filesSkipped: number;
  bytesSkipped: number;
  /** Regular files and bytes the walk has found so far, restored or skipped; all of them once `walked`. */
  totalFiles: number;
  totalBytes: number;
  /** Paths not restored so far. */
  errors: number;
  walked: boolean;
  current: string;
}

/** A path not restored. */
export interface FailedPath {
  readonly path: string;
  readonly error: string;
  readonly code?: ErrorCode;
}

export interface RestoreResult {
  readonly progress: RestoreProgress;
  /**
   * Paths (in the snapshot) that were not restored, with the reason and, when
   * the engine raised it, its error's code (src/core/errors.ts; the same
   * whether a worker thread or this one met it): the first MAX_FAILED_LISTED of them.
   */
  readonly failed: FailedPath[];
  /** Regular files read back and checked against the snapshot, when verifying (`verifyFailed` lists those that did not match). */
  readonly verified: number;
  /** Paths whose restored bytes or mtime did not match, when verifying, with what differs. */
  readonly verifyFailed: { path: string; error: string }[];
}

/**
 * Paths not restored that are kept to be listed; the rest are only counted
 * (and reported to onWarning). A planted listing can hold millions of
 * refused names, each reached from many folders.
 */
export const MAX_FAILED_LISTED = 1000;
/**
 * The unit of unpacking: the blobs of one pack that start in the same
 * SEGMENT bytes. A whole pack (16 MiB) would keep the workers idle until
 * the walk had planned several packs, a quarter of a kernel tree.
 */
const SEGMENT = 4 << 20;
/**
 * Segments read and being unpacked at once, per worker; from a repository
 * that is not a local folder, at least as many as the backend serves well at
 * once (`connections`: 8 for a server or S3), so that a read's round trip is
 * not a worker's wait (docs/decisions.md, "Restores through the server").
 */
const SEGMENTS_PER_WORKER = 2;
/**
 * Files written in pieces held open at once: past it, the walk waits for
 * the planned pieces to be written (a folder of many small files with
 * attributes to set would otherwise hold a descriptor per file).
 */
const MAX_OPEN_FILES = 512;
/** Segments the walk may have moved past before the oldest one is unpacked. */
const SEGMENT_LOOKAHEAD = 3;
/** How often the walk reports progress. */
const PROGRESS_INTERVAL_MS = 100;
/** Files per verify task. */
const VERIFY_BATCH = 256;

/** A file being restored in pieces. */
interface OpenFile {
  /** The snapshot path, which is also where it goes below the target. */
  readonly path: Buffer;
  readonly node: TreeNode;
  /**
   * The file the restore created there, held open until it is finished: the
   * workers write its pieces into this descriptor, never into what its name
   * leads to by then (a name can be swapped, and an inode number comes back
   * at once for a file the racer makes).
   */
  readonly fd: number;
  /** Pieces not written yet. */
  remaining: number;
  /** Bytes of its holes (counted as restored once the file is finished). */
  holes: number;
  failed: boolean;
}

/** Where a blob goes: a piece of a file written in pieces, or a file it makes whole. */
interface Target {
  /** The snapshot path, which is also where it goes below the target. */
  readonly path: Buffer;
  /** Where in the file. */
  readonly offset: number;
  /** Only this part of the blob's plaintext; all of it when absent. */
  readonly slice?: { readonly offset: number; readonly length: number };
  /** The multi-piece file it belongs to... */
  readonly file?: OpenFile;
  /** ...or the file it makes whole, with its `WRITE_FLAGS` (created, finished and closed by the worker). */
  readonly whole?: { readonly node: TreeNode; readonly flags: number };
}

/** A blob needed by the restore and where it goes. */
interface PlannedBlob {
  readonly loc: BlobLocation;
  readonly targets: Target[];
}

export class Restorer {
  private readonly progress: RestoreProgress = { files: 0, dirs: 0, bytes: 0, filesSkipped: 0, bytesSkipped: 0, totalFiles: 0, totalBytes: 0, errors: 0, walked: false, current: '' };
  private readonly failed: FailedPath[] = [];
  private verified = 0;
  /** The first error that ends the restore, raised by work running alongside the walk. */
  private fatal: { error: unknown } | undefined;
  private readonly failedPaths = new Set<string>();
  private readonly verifyFailed: { path: string; error: string }[] = [];
  private readonly inodes = new Map<string, { path: Buffer; content: string }>();
  private readonly links: { path: Buffer; from: Buffer; size: number }[] = [];
  /** Folders made or merged into, in walk order; their owner, mode and mtime are set at the end. */
  private readonly dirs: PendingDir[] = [];
  /** By depth, the index in `dirs` of the folder of that depth now being walked (0: the target). */
  private readonly dirAt: number[] = [-1];
  /** What creating a file or folder gives; undefined once a folder on the way was already there. */
  private creation: Creation | undefined;
  /** Pack segments still being planned, in the order the walk first needed them. */
  private readonly plan = new Map<string, { pack: string; blobs: Map<string, PlannedBlob> }>();
  private readonly running = new Set<Promise<void>>();
  private pool!: PoolSession<Task>;
  /** Files to read back; `skipped`: left as it was (`--overwrite never`), so not restored by this run. */
  private readonly toVerify: { path: Buffer; node: TreeNode; skipped?: boolean }[] = [];
  private readonly includes: string[];
  /** The target, open while the restore runs. */
  private root!: Beneath;
  /** When the walk last reported progress (ms). */
  private reported = 0;
  /** By depth, whether the folder of that depth now being walked was made by this restore (0: the target, never). */
  private readonly fresh: boolean[] = [false];
  /** Files written in pieces that are not finished yet: each holds its descriptor. */
  private readonly open = new Set<OpenFile>();
  /** `RestoreOptions.privileged`. */
  private readonly privileged: boolean;

  constructor(private readonly repo: Repository, private readonly target: string, private readonly opts: RestoreOptions = {}) {
    this.privileged = opts.privileged === true;
    this.includes = (opts.includes ?? []).map(normalizeInclude);
  }

  private fail(path: Buffer, e: unknown): void {
    const key = path.toString('latin1');
    if (this.failedPaths.has(key)) return;
    this.failedPaths.add(key);
    const error = (e as Error).message ?? String(e);
    const code = errorCode(e);
    this.listFailed({ path: path.toString(), error, ...(code ? { code } : {}) });
    this.opts.onWarning?.(path.toString(), `not restored: ${error}`);
  }

  private listFailed(f: FailedPath): void {
    if (++this.progress.errors <= MAX_FAILED_LISTED) this.failed.push(f);
  }

  async run(tree: string): Promise<RestoreResult> {
    this.root = Beneath.open(this.target, { noSymlinks: this.opts.targetNoSymlinks === true });
    this.creation = probeCreation(this.root);
    const pool = PoolSession.blobs(this.repo, this.opts);
    this.pool = pool;
    try {
      await this.walk(tree);
      this.progress.walked = true;
      // Blobs whose copy was bad are planned again from another copy while the last segments unpack.
      do {
        await this.unpackReady(0);
        await this.until(Promise.all(this.running));
        this.throwIfStopped();
      } while (this.plan.size > 0);
      this.finishLinks();
      await this.finishDirs();
      if (this.opts.verify) await this.verifyAll(pool);
    } finally {
      // After an interruption or a fatal error, work still in a worker is dropped with it.
      await pool.close();
      // After an interruption: the files still being written are left as they are.
      for (const f of this.open) closeSync(f.fd);
      this.root.close();
    }
    return { progress: this.progress, failed: this.failed, verified: this.verified, verifyFailed: this.verifyFailed };
  }

  // ---- 1. walk and plan ----

  private async walk(tree: string): Promise<void> {
    const skipped = new Set<string>();
    const walker = walkTree(this.repo, tree, {
      onUnsafe: (path, reason) => {
        this.listFailed({ path, error: `refused: ${reason}` });
        this.opts.onWarning?.(path, `refused to restore: ${reason}`);
      },
      filter: (path) => included(this.includes, path.toString()) && !this.opts.excludes?.matches(path)
        && (this.opts.select?.(path) ?? true) && !skippedBelow(skipped, path),
      // A folder whose listing is lost is restored empty and reported; the rest goes on.
      onTreeError: (entry, e) => {
        if (!(e instanceof CorruptObjectError || e instanceof BlobNotFoundError)) throw e;
        this.fail(entry.path, new Error(`its listing cannot be read (${e.message}); restored empty`));
      },
      ...io(this.opts),
    });
    for await (const { path, node, depth } of walker) {
      this.throwIfStopped();
      // A path as a string per node is garbage of the size of the path: a few a second are shown.
      const now = Date.now();
      if (now - this.reported >= PROGRESS_INTERVAL_MS) {
        this.reported = now;
        this.progress.current = path.toString();
        this.opts.onProgress?.(this.progress);
      }
      await this.unpackReady(SEGMENT_LOOKAHEAD);
      if (this.open.size >= MAX_OPEN_FILES) await this.drainOpenFiles();
      try {
        // In a folder this restore made, nothing can be in the way: no lstat per file.
        if (!this.fresh[depth - 1] && node.type !== 'socket') {
          const existing = this.root.at(path, (p) => prepareExisting(p, node, this.opts.overwrite ?? 'always'));
          if (existing !== 'create') {
            this.leave(path, node, existing);
            continue;
          }
        }
        if (node.type === 'fifo' || node.type === 'chardev' || node.type === 'blockdev') {
          this.root.at(path, (p) => special(p, node, this.privileged));
          this.finishNode(path, node);
        } else {
          if (node.type === 'file') await this.repo.settleLengths(node.content ?? [], io(this.opts));
          this.createNode(path, node, depth);
        }
      } catch (e) {
        this.fail(path, e);
        if (node.type === 'dir') skipped.add(path.toString('latin1'));
      }
    }
  }

  /** A node already in the target that stays: `keep` sets its owner, mode and mtime, `skip` leaves it alone. */
  private leave(path: Buffer, node: TreeNode, how: 'keep' | 'skip'): void {
    if (node.type === 'file') {
      this.progress.totalFiles++;
      this.progress.totalBytes += node.size;
      this.progress.filesSkipped++;
      this.progress.bytesSkipped += node.size;
      if (this.opts.verify) this.toVerify.push({ path, node, ...(how === 'skip' ? { skipped: true } : {}) });
      // Later names of the same inode are linked to this one.
      if (node.links > 1 && !this.inodes.has(inodeKey(node))) this.inodes.set(inodeKey(node), { path, content: contentKey(node) });
    }
    if (how === 'keep') this.finishNode(path, node, undefined, true);
    else this.opts.onUnchanged?.(path.toString());
  }

  private createNode(path: Buffer, node: TreeNode, depth: number): void {
    switch (node.type) {
      case 'dir': {
        // Writable by us while its content is restored; private if it is meant to be.
        const mode = (node.mode & 0o777) | 0o700;
        let settled: Settled | undefined;
        // Its inode is kept: it is finished at the end only if it is still that folder.
        const { made, ino } = this.root.makeFolder(path, mode);
        this.fresh[depth] = made;
        if (made && this.creation) settled = settledBy(this.creation, mode, node);
        // Its group, setgid bit or default ACL may differ from the target's: no more shortcuts.
        if (!made) this.creation = undefined;
        this.progress.dirs++;
        this.dirAt[depth] = this.dirs.length;
        this.dirs.push({ parent: this.dirAt[depth - 1]!, node, ino, ...(settled ? { settled } : {}) });
        // Marked by "repair snapshots --mark-damaged": its listing was lost, so it is restored empty and reported.
        if (node.damaged) this.fail(path, new Error('its listing was lost in the repository (marked damaged by "repair snapshots"); restored empty'));
        return;
      }
      case 'file':
        // Never restore part of a file as if it were whole (the lost blobs were removed from its content).
        if (node.damaged) throw new Error('its content was lost in the repository (marked damaged by "repair snapshots"); not restored');
        this.planFile(path, node);
        return;
      case 'symlink':
        this.root.at(path, (p) => symlinkSync(node.target!, p));
        break;
      case 'socket':
        return; // sockets are not restorable; nothing was stored but the name
    }
    this.finishNode(path, node);
  }

  private planFile(path: Buffer, node: TreeNode): void {
    const content = node.content ?? [];
    // A size the content does not add up to would restore as a sparse giant or a file cut short.
    const holds = this.contentLength(content);
    if (holds !== undefined && holds !== node.size) throw new Error(`damaged in the repository: the file declares ${node.size} bytes but its content holds ${holds}`);
    this.progress.totalFiles++;
    this.progress.totalBytes += node.size;
    if (node.links > 1) {
      const key = inodeKey(node);
      const first = this.inodes.get(key);
      // A hard link is only recreated when the content recorded under this name
      // is the same (the file may have changed between reading its names).
      if (first && first.content === contentKey(node)) {
        this.links.push({ path, from: first.path, size: node.size });
        // Read back under this name too: a verify counts the files a restore counts.
        if (this.opts.verify) this.toVerify.push({ path, node });
        return;
      }
      if (!first) this.inodes.set(key, { path, content: contentKey(node) });
    }
    if (this.opts.verify) this.toVerify.push({ path, node });
    const only = content[0];
    // A file with attributes to set is finished here, on the descriptor of the file the restore created.
    if (content.length === 1 && only !== undefined && typeof only !== 'number' && !this.hasXattrsToSet(node)) {
      const settled = this.creation && settledBy(this.creation, node.mode, node);
      const flags = WRITE_FLAGS.whole | (this.privileged ? WRITE_FLAGS.chown : 0) | (settled?.owner ? WRITE_FLAGS.ownedOnCreate : 0) | (settled?.mode ? WRITE_FLAGS.createMode : 0);
      this.need(entryBlob(only)!, { path, offset: 0, whole: { node, flags }, ...sliceOf(only) });
      return;
    }
    // Empty, holes, several blobs or attributes: create it now. Whatever was there is gone (prepareExisting, or a
    // folder this restore made): something there now was put there meanwhile, and is not written through.
    const file: OpenFile = { path, node, fd: this.root.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600), remaining: 0, holes: 0, failed: false };
    this.open.add(file);
    let pos = 0;
    for (const c of content) {
      if (typeof c === 'number') {
        file.holes += c;
        pos += c;
      } else if (typeof c === 'string') {
        if (this.need(c, { path, offset: pos, file })) file.remaining++;
        pos += this.repo.readCopy(c)?.rawLength ?? 0;
      } else {
        if (this.need(c.blob, { path, offset: pos, file, ...sliceOf(c) })) file.remaining++;
        pos += c.length;
      }
    }
    if (file.remaining === 0) this.finishFile(file);
  }

  /** The bytes a content list adds up to; undefined when one of its blobs is not in the index (reported when planned). */
  private contentLength(content: readonly ContentEntry[]): number | undefined {
    let n = 0;
    for (const c of content) {
      if (typeof c === 'number') n += c;
      else if (typeof c !== 'string') n += c.length;
      else {
        const loc = this.repo.readCopy(c);
        if (!loc) return undefined;
        n += loc.rawLength;
      }
    }
    return n;
  }

  /** Plans writing blob `id` to `target`; false (and the file reported) when the blob is not in the index. */
  private need(id: string, target: Target): boolean {
    const copy = this.repo.readCopy(id);
    if (!copy) {
      if (target.file) target.file.failed = true;
      this.fail(target.path, new Error(`blob ${id} is not in the repository index`));
      return false;
    }
    this.planCopy(copy, [target]);
    return true;
  }

  /** Adds targets of a blob to the segment of the copy `copy` that will be read. */
  private planCopy(loc: BlobLocation, targets: readonly Target[]): void {
    const key = `${loc.pack}/${Math.floor(loc.offset / SEGMENT)}`;
    let segment = this.plan.get(key);
    if (!segment) this.plan.set(key, (segment = { pack: loc.pack, blobs: new Map() }));
    const blobs = segment.blobs;
    let planned = blobs.get(loc.id);
    if (!planned) blobs.set(loc.id, (planned = { loc, targets: [] }));
    planned.targets.push(...targets);
  }

  // ---- 2. unpack ----

  /** Hands every planned segment to the workers and waits until fewer than MAX_OPEN_FILES files are open. */
  private async drainOpenFiles(): Promise<void> {
    await this.unpackReady(0);
    while (this.open.size >= MAX_OPEN_FILES && this.running.size > 0) await this.until(Promise.race(this.running));
    this.throwIfStopped();
  }

  /** How many segments may be read and unpacked at once (SEGMENTS_PER_WORKER). */
  private get segmentsAtOnce(): number {
    const { connections, localPath } = this.repo.backend.capabilities;
    return Math.max(this.pool.size * SEGMENTS_PER_WORKER, localPath === undefined ? connections : 0);
  }

  /** Hands the oldest planned segments to the workers while more than `keep` are planned. */
  private async unpackReady(keep: number): Promise<void> {
    while (this.plan.size > keep) {
      this.throwIfStopped();
      while (this.running.size >= this.segmentsAtOnce) await this.until(Promise.race(this.running));
      const [key, { pack, blobs }] = this.plan.entries().next().value!;
      this.plan.delete(key);
      this.track(this.unpackPack(this.pool, pack, blobs));
    }
  }

  /**
   * Runs `work` alongside the walk. It never rejects: its error is kept and
   * ends the restore at the next check, so that nothing is left unhandled
   * when the restore stops while work is in flight.
   */
  private track(work: Promise<void>): void {
    const p: Promise<void> = work.catch((error: unknown) => {
      this.fatal ??= { error };
    }).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Throws the abort reason once interrupted, or the error of work that failed. */
  private throwIfStopped(): void {
    this.opts.signal?.throwIfAborted();
    if (this.fatal) throw this.fatal.error;
  }

  /** Waits for `p`, but no longer than until the restore is interrupted (work in a stuck read is abandoned). */
  private until<T>(p: Promise<T>): Promise<T> {
    return abortable(p, this.opts.signal);
  }

  private async unpackPack(pool: PoolSession<Task>, pack: string, blobs: Map<string, PlannedBlob>): Promise<void> {
    const list = [...blobs.values()].sort((a, b) => a.loc.offset - b.loc.offset);
    const start = list[0]!.loc.offset;
    const end = Math.max(...list.map((b) => b.loc.offset + b.loc.length));
    let result: UnpackResult;
    try {
      const data = await this.loadRange(pack, start, end - start);
      this.opts.signal?.throwIfAborted();
      const task: UnpackBlob[] = list.map((b) => ({
        id: b.loc.id, type: b.loc.type, flags: b.loc.flags, rawLength: b.loc.rawLength,
        offset: b.loc.offset - start, length: b.loc.length, targets: b.targets.length,
      }));
      const { paths, pathStarts, fields } = flatTargets(list);
      result = await pool.run<UnpackResult>({ kind: 'unpack', dir: this.root.fd, pack, data, blobs: task, paths, pathStarts, fields },
        [data.buffer as ArrayBuffer, paths.buffer, pathStarts.buffer, fields.buffer]);
    } catch (e) {
      if (!(e instanceof CorruptObjectError)) throw e;
      const error = wireError(e);
      result = { bytes: 0, failed: [], bad: list.map((_, index) => ({ index, error })) };
    }
    this.progress.bytes += result.bytes;
    const failedTarget = new Map(result.failed.map((f) => [f.target, f.message]));
    // A bad copy: its targets wait for another copy, or fail with it when there is none.
    const lost = new Map<PlannedBlob, Error>();
    for (const { index, error } of result.bad) {
      const b = list[index]!;
      const next = this.repo.copyFailed(b.loc, error.message);
      if (next) this.planCopy(next, b.targets);
      else lost.set(b, rebuildError(error)); // the worker's error as the main thread would have thrown it (its code)
    }
    const retried = new Set(result.bad.map(({ index }) => list[index]!));
    let at = 0;
    for (const b of list) {
      const first = at;
      at += b.targets.length;
      if (retried.has(b) && !lost.has(b)) continue;
      b.targets.forEach((t, i) => {
        const failedWrite = failedTarget.get(first + i);
        const error = lost.get(b) ?? (failedWrite === undefined ? undefined : new Error(failedWrite));
        if (error !== undefined) {
          if (t.file) t.file.failed = true;
          this.fail(t.path, error);
          this.removeQuietly(t.path);
        } else if (t.whole) {
          // The worker made the file whole: content, owner, mode, times (it has no attributes to set).
          this.progress.files++;
          this.opts.onRestored?.(t.path.toString());
        }
        if (t.file && --t.file.remaining === 0) this.finishFile(t.file);
      });
    }
    this.opts.onProgress?.(this.progress);
  }

  /** One read of a pack range, as a transferable buffer; storage errors name the pack. */
  private async loadRange(pack: string, offset: number, length: number): Promise<Buffer> {
    try {
      const b = await this.repo.backend.load({ type: 'data', name: pack }, { offset, length, signal: this.opts.signal });
      if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
      const copy = Buffer.allocUnsafeSlow(b.length);
      b.copy(copy);
      return copy;
    } catch (e) {
      if (e instanceof NotFoundError) throw new CorruptObjectError(`pack ${pack}`, 'missing');
      if (e instanceof ShortReadError) throw new CorruptObjectError(`pack ${pack}`, 'truncated');
      throw e;
    }
  }

  /** Sets size and metadata of a file written in pieces, once all are in. */
  private finishFile(f: OpenFile): void {
    this.open.delete(f);
    if (f.failed) {
      closeSync(f.fd);
      this.removeQuietly(f.path);
      return;
    }
    try {
      const fd = f.fd;
      try {
        ftruncateSync(fd, f.node.size);
        if (this.privileged) fchownSync(fd, f.node.uid, f.node.gid);
        this.restoreXattrs(f.path, fd, f.node);
        fchmodSync(fd, f.node.mode);
        const t = utimesSeconds(f.node.mtime);
        futimesSync(fd, t, t);
      } finally {
        closeSync(fd);
      }
      this.progress.files++;
      this.progress.bytes += f.holes;
      this.opts.onRestored?.(f.path.toString());
    } catch (e) {
      this.fail(f.path, e);
      this.removeQuietly(f.path);
    }
  }

  /** Removes what the restore made at `path` for a file that failed. */
  private removeQuietly(path: Buffer): void {
    try {
      this.root.at(path, (p) => unlinkSync(p));
    } catch {
      // already gone, never created, or its folder is no longer reachable
    }
  }

  // ---- 3. links and folders ----

  private finishLinks(): void {
    for (const l of this.links) {
      try {
        this.root.at(l.from, (from) => this.root.at(l.path, (p) => linkSync(from, p)));
        this.progress.files++;
        this.progress.bytes += l.size;
        this.opts.onRestored?.(l.path.toString());
      } catch (e) {
        this.fail(l.path, e);
      }
    }
  }

  /**
   * Owner, mode and mtime of every folder, each once everything below it is
   * restored (post-order), its path rebuilt in one buffer as the folders are
   * gone through in walk order.
   */
  private async finishDirs(): Promise<void> {
    const paths = new PathBuffer(Buffer.from('/'));
    /** The folders on the current path: index in `dirs`, length of its path. */
    const open: { index: number; len: number }[] = [];
    const finishLast = async (): Promise<void> => {
      const { index, len } = open.pop()!;
      const d = this.dirs[index]!;
      this.finishNode(paths.copy(len), d.node, d.settled, false, d.ino);
    };
    for (let i = 0; i < this.dirs.length; i++) {
      const d = this.dirs[i]!;
      while (open.length > 0 && open[open.length - 1]!.index !== d.parent) await finishLast();
      open.push({ index: i, len: paths.child(open.length > 0 ? open[open.length - 1]!.len : 1, d.node.name) });
    }
    while (open.length > 0) await finishLast();
  }

  /**
   * Owner, extended attributes, mode and times, in the order that keeps
   * setuid bits and file capabilities (a chown clears both), on the node
   * found there only if it is what the restore made or kept (`OpenNode`;
   * `ino`: the folder's inode when it made it); `settled`: what creating
   * it already set; `kept`: the node was there already, and is reported as
   * unchanged, not restored.
   */
  private finishNode(path: Buffer, node: TreeNode, settled?: Settled, kept = false, ino?: number): void {
    try {
      const n = OpenNode.open(this.root, path, node, ino);
      try {
        let refused: readonly Buffer[] | undefined;
        let xattrTarget: number | Buffer | undefined;
        n.finish(this.root, path, {
          ...(this.privileged && !settled?.owner ? { uid: node.uid, gid: node.gid } : {}),
          xattrs: (target) => {
            xattrTarget = target;
            refused = this.restoreXattrs(path, target, node, kept);
          },
          ...(settled?.mode ? {} : { mode: node.mode }),
          mtime: node.mtime,
        });
        if (this.opts.verify) {
          const mtime = n.mtimeNs();
          if (mtime !== floorMicros(node.mtime)) this.verifyFailure(path, `restored mtime ${mtime} ns differs from the snapshot's ${floorMicros(node.mtime)} ns`);
          // What the target refused was warned of already; anything else must be there as the snapshot has it.
          const differs = refused === undefined || xattrTarget === undefined ? undefined : xattrDifference(xattrTarget, node.xattrs, refused);
          if (differs !== undefined) this.verifyFailure(path, differs);
        }
      } finally {
        n.close();
      }
      (kept ? this.opts.onUnchanged : this.opts.onRestored)?.(path.toString());
    } catch (e) {
      this.opts.onWarning?.(path.toString(), `cannot restore metadata: ${(e as Error).message}`);
    }
  }

  /**
   * Gives `dest` exactly the node's extended attributes (after any chown,
   * which clears a file capability; setting them changes no time). Those
   * it may already have are removed when it was there before (`kept`, or a
   * folder merged into: the creation probe is then gone) or when creating
   * gives attributes (an inherited ACL). An attribute the target refuses (a
   * file system without them, trusted.* or a capability without root,
   * user.* on a symlink) is a warning naming it; the rest is restored.
   * Never throws: what fails is a warning, as for the other metadata.
   * `dest` is the node's descriptor, or a name from `Beneath.at` (a symlink,
   * a device). Returns the names the target refused, or undefined when the
   * attributes could not be listed.
   */
  private restoreXattrs(path: Buffer, dest: number | Buffer, node: TreeNode, kept = false): readonly Buffer[] | undefined {
    // A symlink's are never cleared: they can only be set by name (a racer may swap the name), and none is inherited.
    const clear = node.type !== 'symlink' && (kept || !this.createsBare());
    if (!node.xattrs && !clear) return [];
    let refused: RefusedXattr[];
    try {
      refused = writeXattrs(dest, node.xattrs, clear);
      // user.* needs write permission, which a read-only file of ours denies us (root needs none): lent for the time.
      if (refused.some((r) => r.code === 'EACCES') && node.type !== 'symlink') {
        const chmod = (mode: number): void => (typeof dest === 'number' ? fchmodSync(dest, mode) : chmodNoFollow(dest, mode));
        chmod(node.mode | 0o200);
        try {
          refused = writeXattrs(dest, node.xattrs, clear);
        } finally {
          chmod(node.mode);
        }
      }
    } catch (e) {
      this.opts.onWarning?.(path.toString(), `cannot restore extended attributes: ${(e as Error).message}`);
      return undefined;
    }
    if (refused.length > 0) {
      this.opts.onWarning?.(path.toString(), `extended attributes not restored: ${refused.map((r) => `${r.name.toString()} (${r.code})`).join(', ')}`);
    }
    return refused.map((r) => r.name);
  }

  /** Whether creating a node gives it no extended attributes (beyond an SELinux label): none to clear then. */
  private createsBare(): boolean {
    return this.creation !== undefined && !this.creation.xattrs;
  }

  /** Whether a node the restore created has extended attributes to set or to clear. */
  private hasXattrsToSet(node: TreeNode): boolean {
    return node.xattrs !== undefined || !this.createsBare();
  }

  private verifyFailure(path: Buffer, error: string): void {
    this.verifyFailed.push({ path: path.toString(), error });
    this.opts.onWarning?.(path.toString(), `verification failed: ${error}`);
  }

  // ---- 4. verify ----

  private async verifyAll(pool: PoolSession<Task>): Promise<void> {
    const files = this.toVerify.filter((f) => !this.failedPaths.has(f.path.toString('latin1')));
    this.verified = files.length;
    for (let i = 0; i < files.length; i += VERIFY_BATCH) {
      const batch = files.slice(i, i + VERIFY_BATCH);
      const jobs: VerifyJob[] = batch.map((f) => {
        const content = f.node.content ?? [];
        const lengths = content.map((c) => (typeof c === 'number' ? c : typeof c === 'string' ? this.repo.readCopy(c)?.rawLength ?? -1 : c.length));
        return { path: f.path, size: f.node.size, content, lengths, mtime: floorMicros(f.node.mtime), ...(f.node.fingerprint ? { fingerprint: f.node.fingerprint } : {}) };
      });
      await this.until(pool.whenBelow(pool.size * 2));
      this.throwIfStopped();
      this.track(pool.run<VerifyResult>({ kind: 'verify', dir: this.root.fd, files: jobs }).then((r) => {
        for (const { index, reason } of r.bad) {
          const f = batch[index]!;
          this.verifyFailure(f.path, f.skipped ? `left as it was (--overwrite never); ${reason.replace(/^restored /, 'its ')}` : reason);
        }
      }));
    }
    await this.until(Promise.all(this.running));
    this.throwIfStopped();
  }
}

/**
 * What creating a file or folder in the target gives, measured once with a
 * probe file created with mode 0777: the permission bits a requested mode
 * keeps (the umask's, or a default ACL's), and the owner. Folders created
 * below the target keep the same (they inherit a default ACL and the group).
 */
interface Creation {
  readonly keeps: number;
  readonly uid: number;
  readonly gid: number;
  /** Creating gives attributes beyond an SELinux label (an ACL inherited from a default ACL). */
  readonly xattrs: boolean;
}

/**
 * A folder whose owner, mode and mtime are set at the end: its parent's
 * index in `dirs` (-1: the target) instead of its path, which made memory
 * quadratic in the depth of a tree (16.6 GB for 100,000 levels).
 */
interface PendingDir {
  readonly parent: number;
  readonly node: TreeNode;
  /** The inode of the folder the restore made or merged into: it is finished only if still that one. */
  readonly ino: number;
  readonly settled?: Settled;
}

/** Whether creating a file or folder already gave it its mode and its owner. */
interface Settled {
  readonly mode: boolean;
  readonly owner: boolean;
}

/** What creating `node` with permission bits `mode` settles, where creating gives `c`. */
function settledBy(c: Creation, mode: number, node: TreeNode): Settled {
  return { mode: (mode & c.keeps) === node.mode, owner: c.uid === node.uid && c.gid === node.gid };
}

/** Undefined when the probe cannot be made, or the target is setgid (new folders would inherit the bit). */
function probeCreation(root: Beneath): Creation | undefined {
  if ((fstatSync(root.fd).mode & 0o2000) !== 0) return undefined; // S_ISGID
  try {
    // Made in the target's folder as opened, whatever its path leads to by now.
    return root.probe(0o777, (fd, name) => {
      const st = fstatSync(fd);
      return { keeps: st.mode & 0o777, uid: st.uid, gid: st.gid, xattrs: hasXattrsBeyondLabel(name) };
    });
  } catch {
    return undefined;
  }
}

/** What identifies the inode of a hard-linked file. */
function inodeKey(node: TreeNode): string {
  return `${node.device}:${node.inode}`;
}

/** What a file's content is known by: names read in different batches hold other slices of the same bytes, the fingerprint tells. */
function contentKey(node: TreeNode): string {
  return node.fingerprint !== undefined ? `${node.size}:${node.fingerprint}` : JSON.stringify(node.content ?? []);
}

/**
 * A segment's targets as the worker hands them to native/restore.cc's
 * writeFiles (`UnpackTask`): the paths back to back, where each starts,
 * and WRITE_FIELDS numbers each, in the blobs' order.
 */
function flatTargets(list: readonly PlannedBlob[]): { paths: Uint8Array<ArrayBuffer>; pathStarts: Uint32Array<ArrayBuffer>; fields: Float64Array<ArrayBuffer> } {
  let count = 0;
  let bytes = 0;
  for (const b of list) {
    count += b.targets.length;
    for (const t of b.targets) bytes += t.path.length;
  }
  const paths = new Uint8Array(bytes);
  const pathStarts = new Uint32Array(count + 1);
  const fields = new Float64Array(count * WRITE_FIELDS);
  let i = 0;
  for (const b of list) {
    for (const t of b.targets) {
      paths.set(t.path, pathStarts[i]!);
      pathStarts[i + 1] = pathStarts[i]! + t.path.length;
      const f = i++ * WRITE_FIELDS;
      fields[f] = t.slice?.offset ?? 0;
      fields[f + 1] = t.slice?.length ?? b.loc.rawLength;
      fields[f + 2] = t.offset;
      if (t.file) fields[f + 10] = t.file.fd;
      if (!t.whole) continue;
      const { node, flags } = t.whole;
      const [seconds, nanoseconds] = timespec(node.mtime);
      fields[f + 3] = flags;
      fields[f + 4] = node.size;
      fields[f + 5] = node.mode;
      fields[f + 6] = node.uid;
      fields[f + 7] = node.gid;
      fields[f + 8] = seconds;
      fields[f + 9] = nanoseconds;
    }
  }
  return { paths, pathStarts, fields };
}

/** The `slice` field of an unpack target for a content entry. */
function sliceOf(c: string | BlobSlice): { slice?: { offset: number; length: number } } {
  return typeof c === 'string' ? {} : { slice: { offset: c.offset, length: c.length } };
}

/** Restores a FIFO or device node at `dest`, a name from `Beneath.at`. */
function special(dest: Buffer, node: TreeNode, privileged: boolean): void {
  if (node.type === 'fifo') return makeFifo(dest, node.mode);
  if (!privileged) throw new Error('device nodes can only be restored as root');
  return makeDevice(dest, node.type === 'chardev' ? 'char' : 'block', node.rdev ?? 0n, node.mode);
}

function skippedBelow(skipped: Set<string>, path: Buffer): boolean {
  if (skipped.size === 0) return false;
  for (let i = path.lastIndexOf(0x2f); i > 0; i = path.lastIndexOf(0x2f, i - 1)) {
    if (skipped.has(path.subarray(0, i).toString('latin1'))) return true;
  }
  return false;
}

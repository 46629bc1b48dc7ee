/**
 * The archiver turns file trees into a snapshot.
 *
 *   scan worker: lists each folder and lstats its entries ahead of the walk
 *   (dir-scanner.ts; folders whose entries' paths are too long for system
 *   calls are listed here, synchronously, through the path shortener)
 *   main thread: walk depth-first in name order (the order of the walk is
 *   the order of the trees)
 *     folders above a given path: stat (symlinks followed) → nodes, so that
 *               restore puts everything back at its absolute path
 *     file      unchanged against the parent snapshot (same inode, device,
 *               size, mtime, ctime; every blob still indexed)? reuse its content
 *               (not with `force`: every file is read, and one whose content
 *               comes out as the parent's counts as unchanged)
 *     small     queue in a batch; a batch (ended at an anchor, see BatchRules)
 *               goes to a worker, which reads its files and stores them as
 *               one blob, each file a slice of it (docs/format.md §5); a
 *               file whose fingerprint equals the parent's keeps its content
 *     mid-size  a worker reads it whole, chunks and seals it
 *     large     read and chunked here, beside the walk; each chunk sealed by
 *               a worker
 *     hard link a second name of a file read in this backup shares its content
 *     folder    recurse; its tree blob is sealed once all children are done
 *   workers return sealed blobs → the backup's writer, addPrepared (dedup, packs,
 *   uploads), in the order handed out. Back-pressure: the walk waits while
 *   the pool holds enough work (megabytes in flight: a task's input until a
 *   worker answers, then its sealed output until stored).
 *   At the end: flush packs and index, write the snapshot with every blob id.
 *
 * Each scheduled entry yields a `Pending`: its node at once when no work is
 * left (an unchanged file, a symlink), else a `done` promise that resolves to
 * it (undefined when it is skipped): a folder's tree is written when its
 * children's promises resolve, so the walk never waits for work.
 *
 * A file that cannot be read, or changes or vanishes while being read, is a
 * warning: the backup completes and the snapshot is marked incomplete.
 */
import { sep } from 'node:path';
import { chunkStream, type ChunkerParams } from '../../core/chunker.js';
import { BlobType } from '../../repo/pack.js';
import { contentBlobs, entryBlob, pushEntry, sameXattrs, type ContentEntry, type TreeNode, type Xattr } from '../../repo/tree.js';
import type { Repository } from '../../repo/repository.js';
import type { RepositoryWriter } from '../../repo/repository-writer.js';
import type { CompressionMode } from '../../core/compress.js';
import type { Snapshot, SnapshotSummary } from '../../repo/snapshot.js';
import { IdNames, PathShortener, type PosixPath } from '../../sources/posix.js';
import { XattrReader } from '../../sources/xattrs.js';
import { FolderEntries, childPath, errorOf, listDirSync, listingOf, openForRead, readAll, readLinkSync, statEntrySync, statFollowSync, type EntryStat, type ReadError } from '../../sources/file-tree.js';
import { Gate, PoolSession, transferable, type JobPoolOptions } from '../pool/worker-pool.js';
import type { ChunkFileResult, FileJob, FileResult, FilesResult, SealResult, Task, WireBlob, XattrsRead } from '../pool/protocol.js';
import { DirScanner, InlineLister, SCAN_PATH_LIMIT, type FolderLister } from './dir-scanner.js';
import { ExcludeRules } from './excludes.js';
import { snapshotHeader, type SnapshotOrigin } from '../snapshot-origin.js';
import { io } from '../../repo/objects.js';
import type { NodesByName, TreeCache, TreeCacheStats } from './tree-cache.js';
import type { PathView } from '../../sources/fs-snapshots/fs-snapshots.js';
import { SNAPSHOT_PREFIX } from '../../sources/fs-snapshots/tools.js';

export interface BackupOptions extends SnapshotOrigin, JobPoolOptions {
  readonly paths: readonly string[];
  /** What is left out: patterns, sizes, tagged folders. */
  readonly excludes?: ExcludeRules;
  /** Do not cross into other file systems below each path. */
  readonly oneFileSystem?: boolean;
  /** Compression of the blobs this backup stores; default the repository's. */
  readonly compression?: CompressionMode;
  readonly onWarning?: (path: string, message: string) => void;
  readonly onProgress?: (p: BackupProgress) => void;
  /** Called as each file is done: stored because it is new or modified, or found unchanged (`-v`). */
  readonly onFile?: (path: string, action: 'new' | 'modified' | 'unchanged') => void;
  readonly signal?: AbortSignal;
  /** Write nothing before it resolves (`WriterOptions.ready`: a backup session started `early`). */
  readonly ready?: Promise<void>;
  /**
   * Read every file, trusting no metadata of the parent snapshot (`backup
   * --force`); the parent still decides what is new, changed or unchanged,
   * by content, and is recorded as the snapshot's parent.
   */
  readonly force?: boolean;
  /**
   * Read, chunk and seal everything but write no snapshot (`backup
   * --dry-run`; the repository is opened on a `DryRunBackend`, which drops
   * the packs and index, so the snapshot's blobs are nowhere to be found).
   */
  readonly dryRun?: boolean;
  /**
   * The trees of the last backup, kept in memory by a long-running process
   * (the agent): parent trees found there are not loaded, and this backup's
   * trees replace them once its snapshot is written.
   */
  readonly trees?: TreeCache;
  /**
   * What lists this backup's folders, given by a long-running process (the
   * agent: its folder-scan worker kept between backups, `DirScanner.forBackup`),
   * whatever the tree's size; the backup closes it at its end. Without it, a
   * backup of a large tree starts a worker of its own, and a small one lists
   * its folders on the main thread.
   */
  readonly lister?: FolderLister;
  /**
   * Point-in-time views of some of `paths` (`withFsSnapshots`): what is
   * below such a path is read from its view, and recorded under the path
   * and with the original's device number, as if read in place.
   */
  readonly views?: readonly PathView[];
}

/**
 * Running totals of what is done, reported as files complete and as the
 * chunks of large files and streams are stored: a file counts once its
 * content is in the repository (or found unchanged), not when it is queued.
 */
export interface BackupProgress {
  /** Files done. */
  files: number;
  /** Folders whose tree is done. */
  dirs: number;
  /** Bytes of file content done (read and stored, or found unchanged). */
  bytes: number;
  errors: number;
  /** The path reported last. */
  readonly current: string;
}

/** Progress whose `current` path becomes text only when read (the archiver reports every file): `path`, or `name` in the folder `path`. */
class RunningTotals implements BackupProgress {
  files = 0;
  dirs = 0;
  bytes = 0;
  errors = 0;
  path: Buffer = Buffer.alloc(0);
  name: Buffer | undefined;
  get current(): string {
    return (this.name === undefined ? this.path : childPath(this.path, this.name)).toString();
  }
}

export interface BackupResult {
  /** Undefined in a dry run: no snapshot was written. */
  readonly id: string | undefined;
  readonly snapshot: Snapshot;
  /** How the backup used `BackupOptions.trees`, when it was given one. */
  readonly trees?: TreeCacheStats;
}

/** One stream of `Archiver.runStreams`: a file of the snapshot. */
export interface StreamFile {
  /** The file's name: one path component (no "/", not "." or ".."). */
  readonly name: string;
  /** Starts the stream; called once, when the streams before it have ended. */
  open(): AsyncIterable<Uint8Array>;
}

/** A scheduled entry: its `node` now, or `done`, which resolves to it; undefined when it is skipped. */
type Pending = { readonly node: TreeNode | undefined; readonly done?: undefined } | { readonly done: Promise<TreeNode | undefined> };

/** The node of a scheduled entry, or the promise of it. */
const nodeOf = (p: Pending): TreeNode | undefined | Promise<TreeNode | undefined> => (p.done === undefined ? p.node : p.done);

/**
 * Small files (up to half the chunker's maximum chunk) are stored in batches;
 * a batch becomes one blob, a chunk whose edges are file edges, sized by the
 * chunker's own parameters. It ends after an anchor: a file whose name hashes
 * below a threshold proportional to its size (one anchor per
 * `avgSize - minSize` bytes of files, on average), once the batch holds
 * `minSize` bytes. Anchors do not depend on where the batch began, so the
 * same files in the same order make the same batches (and the same blobs) in
 * another tree or another backup, from the first anchor on. A file that
 * would take a batch past `maxSize` bytes, or BATCH_FILES files, starts a
 * new one. Larger files are chunked one by one (FastCDC).
 */
interface BatchRules {
  readonly smallFile: number;
  readonly min: number;
  readonly anchorBytes: number;
  readonly max: number;
}

const BATCH_FILES = 8192;
/** Files up to this size (and over a batch's) are read whole and chunked by a worker; larger ones are streamed here. */
const MID_FILE = 32 << 20;
/** Gate units (a megabyte each, rounded up) that `bytes` of memory hold. */
const megabytes = (bytes: number): number => Math.ceil(bytes / (1 << 20));
/** Gate units for a task's input: at least one, so that every task counts. */
const units = (bytes: number): number => Math.max(1, megabytes(bytes));

function batchRules(p: ChunkerParams): BatchRules {
  return { smallFile: Math.floor(p.maxSize / 2), min: p.minSize, anchorBytes: p.avgSize - p.minSize, max: p.maxSize };
}
/** Paths longer than this go through PathShortener. */
const LONG_PATH = 4000;
const SLASH = Buffer.from('/');
/** How the snapshots of other backups running beside this one begin (src/sources/fs-snapshots/tools.ts). */
const OWN_SNAPSHOT = `.${SNAPSHOT_PREFIX}`;
const DOT = Buffer.from('/.');
/** The entries of a folder the walk does not enter (on another file system). */
const NO_ENTRIES = new FolderEntries(listingOf([], []));


const settled = (node: TreeNode | undefined): Pending => ({ node });

const EMPTY: NodesByName = new Map();

/** A folder's nodes by name, as the walk looks them up. */
function byName(nodes: readonly TreeNode[]): Map<string, TreeNode> {
  const m = new Map<string, TreeNode>();
  for (const n of nodes) m.set(n.name.toString('latin1'), n);
  return m;
}

/** The selection of one folder: `true` means everything below it. */
type Selection = Map<string, Selection | true>;

/** Builds the tree of path components the user asked for. */
function selectionOf(paths: readonly string[]): Selection {
  const root: Selection = new Map();
  for (const p of paths) {
    const parts = p.split(sep).filter((x) => x !== '');
    let cur = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const existing = cur.get(part);
      if (existing === true) break;
      if (i === parts.length - 1) {
        cur.set(part, true);
        break;
      }
      const next = existing ?? new Map<string, Selection | true>();
      cur.set(part, next);
      cur = next;
    }
  }
  return root;
}

/** Bytes that crossed from a worker (a Uint8Array there) as a Buffer, without a copy. */
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

const wireToPrepared = (b: WireBlob) => ({
  type: b.type, id: b.id, flags: b.flags, rawLength: b.rawLength,
  sealed: asBuffer(b.sealed),
});

/** The parent snapshot's extended attributes of an entry, kept because its node says nothing changed (`Archiver.keptXattrs`). */
interface KeptXattrs {
  readonly xattrs: readonly Xattr[] | undefined;
}

interface Batch {
  jobs: FileJob[];
  bytes: number;
  /** Completes each file with the worker's result. */
  finish: ((r: FileResult) => void)[];
}

/**
 * Whether a file ends a batch: FNV-1a of its name with a final mix, below
 * size / anchorBytes of the 32-bit range. No secret: it only decides where
 * batches end.
 */
function isAnchor(name: Buffer, size: number, anchorBytes: number): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) < (size / anchorBytes) * 2 ** 32;
}

/** A backup whose parent held at most this many files and folders lists its folders on the main thread (InlineLister). */
export const INLINE_LISTING_ENTRIES = 10_000;

export class Archiver {
  private readonly names = new IdNames();
  private readonly xattrReader = new XattrReader();
  private readonly blobs = new Set<string>();
  private readonly progress = new RunningTotals();
  private filesNew = 0;
  private filesChanged = 0;
  private filesUnchanged = 0;
  private otherNodes = 0;
  /** Folders below the root the parent did not have, whose tree differs from the parent's, whose tree is the parent's. */
  private dirsNew = 0;
  private dirsChanged = 0;
  private dirsUnchanged = 0;
  private bytesRead = 0;
  private readonly rootDevices = new Set<bigint>();
  /** Paths longer than PATH_MAX are reached through /proc/self/fd anchors. */
  private readonly long = new PathShortener();
  private pool!: PoolSession<Task>;
  /** Lists the walk's folders (file backups only): ahead of it in a worker, or on this thread for a small tree. */
  private scanner!: FolderLister;
  /** Work handed to the pool whose results are not yet in the repository. */
  private gate!: Gate;
  private batch: Batch = { jobs: [], bytes: 0, finish: [] };
  /** Files with several names read in this backup, by device and inode. */
  private readonly linked = new Map<string, { st: EntryStat; pending: Pending }>();
  /** Settles once the last large file queued has been read (`oneLargeAtATime`). */
  private large: Promise<unknown> = Promise.resolve();
  /** Settles once the last result handed to the pool has been stored (`inWalkOrder`). */
  private stored: Promise<void> = Promise.resolve();
  private fatal: unknown;

  private readonly rules: BatchRules;
  /** This backup's write session: its statistics are the snapshot's. */
  private readonly writer: RepositoryWriter;

  /** `opts.views` as bytes, and their devices: the view's number maps to the original's. */
  private readonly views: readonly { path: Buffer; view: Buffer }[];
  private readonly viewDevices: ReadonlyMap<bigint, bigint> | undefined;

  constructor(private readonly repo: Repository, private readonly opts: BackupOptions) {
    this.rules = batchRules(repo.config.chunker);
    this.views = (opts.views ?? []).map((v) => ({ path: Buffer.from(v.path), view: Buffer.from(v.view) }));
    this.viewDevices = opts.views?.length ? new Map(opts.views.map((v) => [v.device.view, v.device.original])) : undefined;
    this.writer = repo.newWriter({ ...(opts.compression ? { compression: opts.compression } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.ready ? { ready: opts.ready } : {}) });
  }

  private warn(path: Buffer | string, message: string): void {
    // An interrupted backup ends; it never turns into an incomplete snapshot.
    this.opts.signal?.throwIfAborted();
    this.progress.errors++;
    this.opts.onWarning?.(path.toString(), message);
  }

  /** Warns that a file could not be read (a vanished one says so); it is left out. */
  private cannotRead(path: Buffer, error: ReadError): undefined {
    this.warn(path, error.code === 'ENOENT' ? 'vanished before it could be read' : `cannot read: ${error.message}`);
    return undefined;
  }

  private report(path: Buffer, name?: Buffer): void {
    this.progress.path = path;
    this.progress.name = name;
    this.opts.onProgress?.(this.progress);
  }

  /** A path fit for system calls: in its view, if it has one. */
  private sys(path: Buffer): PosixPath | Promise<PosixPath> {
    const p = this.views.length === 0 ? path : this.inView(path);
    return p.length < LONG_PATH ? p : this.long.short(p);
  }

  /** Where `path` is read: in the view of the selected path it is at or below, else in place. */
  private inView(path: Buffer): Buffer {
    for (const v of this.views) {
      const n = v.path.length;
      if (path.length < n || path.compare(v.path, 0, n, 0, n) !== 0) continue;
      if (path.length === n) return v.view;
      if (path[n] === 0x2f) return Buffer.concat([v.view, path.subarray(n)]);
    }
    return path;
  }

  /**
   * A folder in a view on another device than the view's: a btrfs subvolume
   * below the snapshot's, which the snapshot shows as an empty folder. It is
   * left out: with a warning, unless it is another backup's snapshot or
   * other file systems are not crossed (`oneFileSystem`).
   */
  private notInView(path: Buffer, name: Buffer): Pending {
    if (this.opts.oneFileSystem !== true && !name.toString('latin1').startsWith(OWN_SNAPSHOT)) {
      this.warn(path, 'a subvolume below the file-system snapshot\'s, which that snapshot does not hold: left out (back it up as a path of its own)');
    }
    return settled(undefined);
  }

  /** The device number recorded for one read: the original's for a view's. */
  private device(dev: bigint): bigint {
    return this.viewDevices?.get(dev) ?? dev;
  }

  /** Keeps a rejection from going unhandled before the promise is awaited; the error is kept for the end. */
  private track(done: Promise<TreeNode | undefined>): Pending {
    done.catch((e: unknown) => {
      this.fatal ??= e;
    });
    return { done };
  }

  private async withPool<T>(f: () => Promise<T>): Promise<T> {
    this.pool = PoolSession.blobs(this.repo, this.opts, this.writer.compression);
    this.gate = new Gate(this.pool.size * 16);
    try {
      return await f();
    } finally {
      await this.pool.close();
      await this.long.close();
    }
  }

  /** Runs the backup and writes the snapshot; the tree cache, if any, then holds this snapshot's trees. */
  async run(): Promise<BackupResult> {
    const trees = this.opts.trees;
    try {
      const r = await this.runFiles();
      if (!trees) return r;
      return { ...r, trees: r.id === undefined ? trees.discard() : trees.commit() };
    } catch (e) {
      trees?.discard();
      throw e;
    }
  }

  private async runFiles(): Promise<BackupResult> {
    const start = new Date();
    const parent = this.opts.parent ?? undefined;
    const root = await this.withPool(async () => {
      // A small tree, by its parent's count, is listed here: the scan worker costs more to start than it saves.
      const entries = parent ? parent.snapshot.summary.filesNew + parent.snapshot.summary.filesChanged + parent.snapshot.summary.filesUnchanged + parent.snapshot.summary.dirs : Infinity;
      this.scanner = this.opts.lister ?? (entries <= INLINE_LISTING_ENTRIES ? new InlineLister() : new DirScanner(this.opts.excludes?.options));
      try {
        const pending = await this.scheduleSelection(SLASH, selectionOf(this.opts.paths), parent?.snapshot.tree);
        await this.sendBatch();
        const node = await nodeOf(pending);
        if (this.fatal) throw this.fatal;
        return node!;
      } finally {
        await this.scanner.close();
      }
    });
    this.opts.signal?.throwIfAborted();
    await this.writer.flush();
    return this.writeSnapshot(root.subtree!, start, parent?.id, [...this.opts.paths].sort());
  }

  /**
   * Backs up streams as files of one folder, `/FOLDER.../NAME` (at the root
   * when `folder` is empty: `--stdin` is the file /NAME), read one after the
   * other: each is opened when the one before it has ended. A stream that
   * fails fails the backup, and no snapshot is written. The snapshot's path
   * is the folder, or the file when there is one at the root.
   */
  async runStreams(folder: readonly string[], files: readonly StreamFile[]): Promise<BackupResult> {
    const start = new Date();
    const now = BigInt(Date.now()) * 1_000_000n;
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const tree = await this.withPool(async () => {
      const nodes: TreeNode[] = [];
      for (const f of files) {
        // Streams are the backup's only content: a stream that fails fails it, with the stream's own error.
        const { content, size } = await this.streamContent(f.open()).catch((e: unknown) => {
          throw e instanceof SourceError ? e.original : e;
        });
        this.progress.files++;
        this.bytesRead += size;
        this.filesNew++;
        nodes.push({
          name: Buffer.from(f.name), type: 'file', mode: 0o600, uid, gid,
          mtime: now, ctime: now, inode: 0n, device: 0n, links: 1, size, content,
        });
      }
      let id = await this.saveTree(nodes);
      for (const name of [...folder].reverse()) {
        this.progress.dirs++;
        this.dirsNew++;
        id = await this.saveTree([{
          name: Buffer.from(name), type: 'dir', mode: 0o700, uid, gid,
          mtime: now, ctime: now, inode: 0n, device: 0n, links: 1, size: 0, subtree: id,
        }]);
      }
      return id;
    });
    await this.writer.flush();
    return this.writeSnapshot(tree, start, undefined, folder.length > 0 ? [`/${folder.join('/')}`] : files.map((f) => `/${f.name}`));
  }

  private async writeSnapshot(tree: string, start: Date, parent: string | undefined, paths: string[]): Promise<BackupResult> {
    const stats = this.writer.stats;
    const summary: SnapshotSummary = {
      filesNew: this.filesNew,
      filesChanged: this.filesChanged,
      filesUnchanged: this.filesUnchanged,
      dirs: this.progress.dirs,
      dirsNew: this.dirsNew,
      dirsChanged: this.dirsChanged,
      dirsUnchanged: this.dirsUnchanged,
      otherNodes: this.otherNodes,
      errors: this.progress.errors,
      totalBytes: this.progress.bytes,
      bytesRead: this.bytesRead,
      blobsAdded: stats.blobsAdded,
      dataBlobs: stats.dataBlobs,
      treeBlobs: stats.treeBlobs,
      dataAdded: stats.dataAdded,
      dataAddedStored: stats.dataAddedStored,
      start: start.toISOString(),
      end: new Date().toISOString(),
    };
    const snapshot: Snapshot = {
      ...snapshotHeader(this.opts, start, parent, paths),
      tree,
      ...(this.progress.errors > 0 ? { incomplete: true } : {}),
      summary,
      blobs: [...this.blobs],
    };
    // Ctrl-C during the last uploads ends the backup without a snapshot, as it does earlier.
    this.opts.signal?.throwIfAborted();
    return { id: this.opts.dryRun ? undefined : await this.writer.saveSnapshot(snapshot), snapshot };
  }

  private async saveTree(nodes: TreeNode[]): Promise<string> {
    const id = await this.writer.saveTree(nodes);
    this.blobs.add(id);
    return id;
  }

  /**
   * A folder's tree blob, once all its children are done. When every child
   * equals its node in the parent snapshot (`prev.nodes`, the listing of
   * `prevSubtree`; `prev.of[i]`, the node of child i's name), the parent's
   * tree is reused as it is (no encoding, no id computation). `prevSubtree`
   * is the folder's tree in the parent snapshot, if it had one: it tells a
   * new folder from a changed or unchanged one. `xattrs` were read when the
   * folder was scheduled, while its path was fit for system calls.
   */
  private folder(name: Buffer, st: EntryStat, xattrs: readonly Xattr[] | undefined, children: Pending[], path: Buffer, prevSubtree: string | undefined, prev?: { nodes: NodesByName; of: (TreeNode | undefined)[] }): Pending {
    return this.track((async () => {
      const nodes: TreeNode[] = [];
      let same = prev !== undefined;
      for (let i = 0; i < children.length; i++) {
        const c = children[i]!;
        const n = c.done === undefined ? c.node : await c.done;
        if (!n) continue;
        nodes.push(n);
        // sameNode compares the names too.
        if (same) same = sameNode(n, prev!.of[i]);
      }
      // The root stands for the restore's target, which a restore does not count either.
      const counted = path.length > 1;
      if (counted) this.progress.dirs++;
      this.report(path);
      const reused = same && prevSubtree !== undefined && prev!.nodes.size === nodes.length && this.writer.hasBlob(prevSubtree);
      const subtree = reused ? prevSubtree : await this.saveTree(nodes);
      this.blobs.add(subtree);
      this.opts.trees?.record(subtree, reused ? prev!.nodes : byName(nodes));
      if (counted) {
        if (prevSubtree === undefined) this.dirsNew++;
        else if (subtree === prevSubtree) this.dirsUnchanged++;
        else this.dirsChanged++;
      }
      return this.node(name, st, { subtree }, xattrs);
    })());
  }

  /**
   * The parent snapshot's tree `subtree` by name: from the tree cache, or
   * loaded. Undefined when there is none or it cannot be read (then every
   * file is read again, and the tree is never reused).
   */
  private async parentNodes(subtree: string | undefined): Promise<NodesByName | undefined> {
    if (!subtree) return undefined;
    const cached = this.opts.trees?.get(subtree);
    if (cached) return cached;
    try {
      return byName(await this.repo.loadTree(subtree, io(this.opts)));
    } catch (e) {
      this.opts.onWarning?.('(parent snapshot)', `cannot read parent tree ${subtree}, reading files again: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** A folder above or at a selected path: only the selected names are kept. */
  private async scheduleSelection(path: Buffer, sel: Selection, parentSubtree: string | undefined): Promise<Pending> {
    // Folders above a selected path are traversed, so a symlink among them is
    // recorded as the folder it leads to.
    let st: EntryStat;
    try {
      st = statFollowSync(await this.sys(path));
    } catch (e) {
      throw new SourceError(e);
    }
    // "/." resolves a symlink among them too, as the stat did.
    const xattrs = this.xattrsOf(path, await this.sys(Buffer.concat([path, DOT])), st, undefined);
    const parents = await this.parentNodes(parentSubtree) ?? EMPTY;
    const children: Pending[] = [];
    for (const [name, child] of sel) {
      const nameBuf = Buffer.from(name);
      const below = childPath(path, nameBuf);
      const prev = parents.get(nameBuf.toString('latin1'));
      if (child === true) {
        children.push(await this.scheduleEntry(below, nameBuf, prev, true));
      } else {
        try {
          children.push(await this.scheduleSelection(below, child, prev?.type === 'dir' ? prev.subtree : undefined));
        } catch (e) {
          if (!(e instanceof SourceError)) throw e;
          this.warn(below, e.message);
        }
      }
    }
    return this.folder(nameOf(path), st, xattrs, children, path, parentSubtree);
  }

  /**
   * The parent snapshot's extended attributes of an entry whose node says
   * nothing changed (setting or removing one changes the ctime); undefined
   * when they must be read (always with `force`).
   */
  private keptXattrs(st: EntryStat, prev: TreeNode | undefined): KeptXattrs | undefined {
    if (this.opts.force !== true && prev !== undefined && prev.type === st.type && prev.ctime === st.ctime && prev.inode === st.inode && prev.device === this.device(st.device)) return { xattrs: prev.xattrs };
    return undefined;
  }

  /**
   * An entry's extended attributes: `kept`'s, else read here by path. One
   * that cannot be read is a warning: the entry is kept without them.
   */
  private xattrsOf(path: Buffer, sys: PosixPath, st: EntryStat, kept: KeptXattrs | undefined): readonly Xattr[] | undefined {
    if (kept) return kept.xattrs;
    try {
      return this.xattrReader.read(sys, st.device);
    } catch (e) {
      this.warn(path, `cannot read extended attributes: ${(e as Error).message}`);
      return undefined;
    }
  }

  /**
   * A file's extended attributes when a worker read it: the parent's when
   * they were kept, else what the worker read through its descriptor (a
   * warning when it could not).
   */
  private readByWorker(path: Buffer, kept: KeptXattrs | undefined, r: XattrsRead): readonly Xattr[] | undefined {
    if (kept) return kept.xattrs;
    if (r.xattrError) {
      this.warn(path, `cannot read extended attributes: ${r.xattrError.message}`);
      return undefined;
    }
    return r.xattrs?.map((x) => ({ name: asBuffer(x.name), value: asBuffer(x.value) }));
  }

  /** A node from a stat, its extended attributes and the fields of its type (one object per entry: this runs for every file). */
  private node(name: Buffer, st: EntryStat, extra: Partial<TreeNode>, xattrs: readonly Xattr[] | undefined): TreeNode {
    const n: { -readonly [K in keyof TreeNode]: TreeNode[K] } = {
      name, type: st.type, mode: st.mode, uid: st.uid, gid: st.gid,
      mtime: st.mtime, ctime: st.ctime, inode: st.inode, device: this.device(st.device), links: st.links,
      size: st.type === 'file' ? st.size : 0,
    };
    const user = this.names.user(st.uid);
    const group = this.names.group(st.gid);
    if (user !== undefined) n.user = user;
    if (group !== undefined) n.group = group;
    if (xattrs !== undefined) n.xattrs = xattrs;
    return Object.assign(n, extra);
  }

  /** Schedules one entry below a selected path. */
  private async scheduleEntry(path: Buffer, name: Buffer, prev: TreeNode | undefined, isRoot: boolean): Promise<Pending> {
    this.opts.signal?.throwIfAborted();
    if (this.fatal) throw this.fatal;
    if (this.opts.excludes?.excludesPath(path)) return settled(undefined);
    const sys = await this.sys(path);
    let st: EntryStat;
    try {
      st = statEntrySync(sys);
    } catch (e) {
      return this.cannotStat(path, errorOf(e));
    }
    if (this.opts.excludes?.excludesSize(st.type, st.size)) return settled(undefined);
    if (isRoot) this.rootDevices.add(st.device);
    return this.scheduleStatted(path, sys, name, st, prev);
  }

  /** Warns that an entry could not be stat'ed; it is left out. */
  private cannotStat(path: Buffer, e: ReadError): Pending {
    this.warn(path, e.code === 'ENOENT' ? 'vanished before it could be read' : e.message);
    return settled(undefined);
  }

  private scheduleStatted(path: Buffer, sys: PosixPath, name: Buffer, st: EntryStat, prev: TreeNode | undefined): Promise<Pending> | Pending {
    if (st.type === 'dir' && this.viewDevices !== undefined && !this.viewDevices.has(st.device) && this.inView(path) !== path) return this.notInView(path, name);
    // A file's attributes are read with it, by the worker that reads it (scheduleFile).
    if (st.type === 'file') return this.scheduleFile(path, sys, name, st, prev);
    const xattrs = this.xattrsOf(path, sys, st, this.keptXattrs(st, prev));
    switch (st.type) {
      case 'dir':
        return this.scheduleDir(path, sys, name, st, xattrs, prev);
      case 'symlink':
        try {
          const target = readLinkSync(sys);
          this.otherNodes++;
          return settled(this.node(name, st, { target }, xattrs));
        } catch (e) {
          this.warn(path, (e as Error).message);
          return settled(undefined);
        }
      case 'chardev':
      case 'blockdev':
        this.otherNodes++;
        return settled(this.node(name, st, { rdev: st.rdev }, xattrs));
      default:
        this.otherNodes++;
        return settled(this.node(name, st, {}, xattrs));
    }
  }

  /** Whether the walk lists a folder's entries (with --one-file-system, not those of another file system). */
  private entered(st: EntryStat): boolean {
    return this.opts.oneFileSystem !== true || this.rootDevices.has(st.device);
  }

  /**
   * A folder's entries with their stats, and where each is reached for
   * system calls (`sysOf`, given the entry's path). The scan worker lists a
   * folder whose entries all have short paths; longer ones are read here,
   * each entry reached through the path shortener.
   */
  private async listDir(path: Buffer, sys: PosixPath): Promise<{ entries: FolderEntries; sysOf: (i: number, p: Buffer) => PosixPath } | { error: ReadError }> {
    // The folder in its view, or `path` itself; a long one was turned into a /proc/self/fd path (`sys`), which stays here.
    const dir = this.views.length === 0 ? path : this.inView(path);
    if (dir.length < SCAN_PATH_LIMIT) {
      const listed = await this.scanner.list(dir, this.opts.oneFileSystem === true ? this.rootDevices : undefined);
      if ('error' in listed) return listed;
      return { entries: listed, sysOf: dir === path ? (_, p) => p : (i) => childPath(dir, listed.name(i)) };
    }
    let names: Buffer[];
    try {
      names = listDirSync(sys);
    } catch (e) {
      return { error: errorOf(e) };
    }
    const syses: PosixPath[] = [];
    for (const name of names) syses.push(await this.sys(childPath(path, name)));
    return { entries: new FolderEntries(listingOf(names, syses)), sysOf: (i) => syses[i]! };
  }

  /**
   * A folder's entries, scheduled in name order. An unchanged file whose
   * node would be its parent's node as it is (`sameFile`, most of an
   * incremental) takes that node, without a path, a node or a promise of its
   * own.
   */
  private async scheduleDir(path: Buffer, sys: PosixPath, name: Buffer, st: EntryStat, xattrs: readonly Xattr[] | undefined, prev: TreeNode | undefined): Promise<Pending> {
    let listed: { entries: FolderEntries; sysOf: (i: number, p: Buffer) => PosixPath } = { entries: NO_ENTRIES, sysOf: (_, p) => p };
    if (this.entered(st)) {
      const l = await this.listDir(path, sys);
      if ('error' in l) {
        this.warn(path, l.error.message);
        return settled(undefined);
      }
      listed = l;
    }
    const { entries, sysOf } = listed;
    const rules = this.opts.excludes;
    const kept = rules?.keptIn(sys, entries.length, (i) => entries.name(i));
    const byPath = rules !== undefined && !rules.paths.empty;
    const prevSubtree = prev?.type === 'dir' ? prev.subtree : undefined;
    const parents = await this.parentNodes(prevSubtree);
    const children: Pending[] = [];
    const of: (TreeNode | undefined)[] = [];
    let unchanged = 0;
    for (let i = 0; i < entries.length; i++) {
      const error = entries.failure(i);
      if (rules && ((kept !== undefined && !kept(entries.name(i))) || (error === undefined && rules.excludesSize(entries.type(i), entries.size(i))))) continue;
      let p = byPath ? childPath(path, entries.name(i)) : undefined;
      if (p !== undefined && rules!.excludesPath(p)) continue;
      this.opts.signal?.throwIfAborted();
      if (this.fatal) throw this.fatal;
      const was = parents?.get(entries.key(i));
      of.push(was);
      if (error === undefined && was !== undefined && this.sameFile(entries, i, was)) {
        this.countUnchanged(was);
        unchanged++;
        this.opts.onFile?.(childPath(path, entries.name(i)).toString(), 'unchanged');
        children.push(settled(was));
        continue;
      }
      const entryName = entries.name(i);
      p ??= childPath(path, entryName);
      if (error) {
        children.push(this.cannotStat(p, error));
        continue;
      }
      const scheduled = this.scheduleStatted(p, sysOf(i, p), entryName, entries.stat(i)!, was);
      children.push(scheduled instanceof Promise ? await scheduled : scheduled);
    }
    if (unchanged > 0) this.report(path);
    return this.folder(name, st, xattrs, children, path, prevSubtree, parents === undefined ? undefined : { nodes: parents, of });
  }

  /** Counts an unchanged file as done, its content as the snapshot's. */
  private countUnchanged(prev: TreeNode & { content: ContentEntry[] }): void {
    this.filesUnchanged++;
    this.progress.files++;
    this.progress.bytes += prev.size;
    for (const c of prev.content) this.addEntry(c);
  }

  /**
   * Whether entry i of a folder is a file whose node would be its parent's
   * node as it is: unchanged (as `unchanged` says), with the same mode, owner
   * and link count, and so, the ctime being the same, the same extended
   * attributes. Read from the listing's arrays, without an `EntryStat`: this
   * runs for most entries of an incremental.
   */
  private sameFile(e: FolderEntries, i: number, prev: TreeNode): prev is TreeNode & { content: ContentEntry[] } {
    return prev.type === 'file' && e.type(i) === 'file' && prev.size === e.size(i) && prev.mtime === e.mtime(i) && prev.ctime === e.ctime(i)
      && prev.inode === e.inode(i) && prev.device === this.device(e.device(i))
      && prev.mode === e.mode(i) && prev.uid === e.uid(i) && prev.gid === e.gid(i) && prev.links === e.links(i)
      && prev.user === this.names.user(prev.uid) && prev.group === this.names.group(prev.gid) && this.contentKept(prev);
  }

  /** Whether `st` is the file `prev` recorded: the same inode, device, size, mtime and ctime, its content kept (`contentKept`). */
  private unchanged(st: EntryStat, prev: TreeNode | undefined): prev is TreeNode & { content: ContentEntry[] } {
    return prev !== undefined && prev.type === 'file' && prev.inode === st.inode && prev.device === this.device(st.device) && prev.size === st.size
      && prev.mtime === st.mtime && prev.ctime === st.ctime && this.contentKept(prev);
  }

  /** Whether a parent's file node's content is taken as it is: not with `force`, not damaged, every blob of it stored. */
  private contentKept(prev: TreeNode): prev is TreeNode & { content: ContentEntry[] } {
    return this.opts.force !== true && prev.content !== undefined && !prev.damaged && this.allStored(prev.content);
  }

  private allStored(content: readonly ContentEntry[]): boolean {
    for (const c of content) if (!this.hasEntry(c)) return false;
    return true;
  }

  private async scheduleFile(path: Buffer, sys: PosixPath, name: Buffer, st: EntryStat, prev: TreeNode | undefined): Promise<Pending> {
    const kept = this.keptXattrs(st, prev);
    if (this.unchanged(st, prev)) {
      const xattrs = this.xattrsOf(path, sys, st, kept);
      this.countUnchanged(prev);
      this.report(path);
      this.opts.onFile?.(path.toString(), 'unchanged');
      return settled(this.node(name, st, { content: prev.content, ...(prev.fingerprint ? { fingerprint: prev.fingerprint } : {}) }, xattrs));
    }
    const wasFile = prev?.type === 'file';
    // Another name of a file read in this backup: its content, not a second copy of its bytes.
    const linkKey = st.links > 1 ? `${st.device}:${st.inode}` : undefined;
    const first = linkKey === undefined ? undefined : this.linked.get(linkKey);
    if (first && first.st.size === st.size && first.st.mtime === st.mtime && first.st.ctime === st.ctime) {
      return this.track(this.sameContentAs(first.pending, path, name, st, this.xattrsOf(path, sys, st, kept), wasFile));
    }
    const pending = await this.readFile(path, sys, name, st, kept, prev);
    if (linkKey !== undefined) this.linked.set(linkKey, { st, pending });
    return pending;
  }

  /** A hard link to a file read earlier in this backup gets that file's content. */
  private async sameContentAs(first: Pending, path: Buffer, name: Buffer, st: EntryStat, xattrs: readonly Xattr[] | undefined, wasFile: boolean): Promise<TreeNode | undefined> {
    const n = await nodeOf(first);
    if (n?.content === undefined) {
      this.warn(path, 'not read: another name of this file could not be read');
      return undefined;
    }
    if (wasFile) this.filesChanged++;
    else this.filesNew++;
    this.progress.files++;
    this.progress.bytes += n.size;
    this.report(path);
    this.opts.onFile?.(path.toString(), wasFile ? 'modified' : 'new');
    return this.node(name, st, n.fingerprint === undefined ? { content: n.content, size: n.size } : { content: n.content, size: n.size, fingerprint: n.fingerprint }, xattrs);
  }

  /**
   * Reads a new or changed file: in a batch, whole in a worker, or streamed
   * here by size; its extended attributes are `kept`'s, or read by the
   * worker that reads it (by path here for a streamed one).
   */
  private async readFile(path: Buffer, sys: PosixPath, name: Buffer, st: EntryStat, kept: KeptXattrs | undefined, prev: TreeNode | undefined): Promise<Pending> {
    const wasFile = prev?.type === 'file';
    // `streamed`: a large file, whose bytes were counted chunk by chunk.
    const complete = (xattrs: readonly Xattr[] | undefined, content: readonly ContentEntry[], size: number, changed: boolean, fingerprint?: string, streamed = false): TreeNode => {
      if (changed) this.warn(path, 'changed while it was being read; the stored copy may be inconsistent');
      // Only a forced backup reads a file whose content may come out as the parent's.
      const same = wasFile && this.opts.force === true && prev.content !== undefined && sameContent(content, prev.content);
      if (same) this.filesUnchanged++;
      else if (wasFile) this.filesChanged++;
      else this.filesNew++;
      this.bytesRead += size;
      this.progress.files++;
      if (!streamed) this.progress.bytes += size;
      this.report(path);
      this.opts.onFile?.(path.toString(), same ? 'unchanged' : wasFile ? 'modified' : 'new');
      return this.node(name, st, fingerprint === undefined ? { content, size } : { content, size, fingerprint }, xattrs);
    };
    const readXattrs = kept ? {} : { xattrs: true as const };
    if (st.size > this.rules.smallFile && st.size <= MID_FILE) {
      const known = wasFile ? contentBlobs(prev.content ?? []).filter((id) => this.writer.hasBlob(id)) : [];
      const n = units(st.size);
      await this.gate.acquire(n);
      return this.track(this.midFile(path, sys, st, readXattrs, n, known, (r, ...rest) => complete(this.readByWorker(path, kept, r), ...rest)));
    }
    // Large files are read here, one at a time, while the walk goes on (the pool's gate bounds both).
    if (st.size > MID_FILE) {
      const xattrs = this.xattrsOf(path, sys, st, kept);
      return this.track(this.oneLargeAtATime(() => this.largeFile(path, sys, st, (...rest) => complete(xattrs, ...rest))));
    }
    // A parent whose content is all still here may be reused when the bytes match its fingerprint.
    const reusable = wasFile && prev.fingerprint !== undefined && !prev.damaged && prev.content !== undefined && this.allStored(prev.content) ? prev : undefined;
    return this.enqueue(name, {
      path: typeof sys === 'string' ? Buffer.from(sys) : sys, size: st.size, mtime: st.mtime, ctime: st.ctime,
      ...(reusable ? { fingerprint: reusable.fingerprint } : {}), ...readXattrs,
    }, (r) => {
      if (r.error) return this.cannotRead(path, r.error);
      const content = r.content ?? reusable!.content!;
      for (const c of content) this.addEntry(c);
      return complete(this.readByWorker(path, kept, r), content, r.size!, r.changed === true, r.fingerprint);
    });
  }

  private hasEntry(c: ContentEntry): boolean {
    const id = entryBlob(c);
    // Small files share their batch's blob: one it has counted already needs no lookup in the index.
    return id === undefined || this.blobs.has(id) || this.writer.hasBlob(id);
  }

  private addEntry(c: ContentEntry): void {
    const id = entryBlob(c);
    if (id !== undefined) this.blobs.add(id);
  }

  /**
   * Adds a small file to the batch, sending a full batch (which waits while
   * the pool holds enough work: the walk's back-pressure). The returned
   * entry's node arrives once a worker has done the file.
   */
  private async enqueue(name: Buffer, job: FileJob, finish: (r: FileResult) => TreeNode | undefined): Promise<Pending> {
    let resolve!: (n: TreeNode | undefined) => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<TreeNode | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    if (this.batch.bytes + job.size > this.rules.max || this.batch.jobs.length >= BATCH_FILES) await this.sendBatch();
    this.batch.jobs.push(job);
    this.batch.bytes += job.size;
    this.batch.finish.push((r) => {
      try {
        resolve(finish(r));
      } catch (e) {
        reject(e);
      }
    });
    const pending = this.track(done);
    if (this.batch.bytes >= this.rules.min && isAnchor(name, job.size, this.rules.anchorBytes)) await this.sendBatch();
    return pending;
  }

  /** Sends the current batch to a worker, waiting while the pool is full. */
  private async sendBatch(): Promise<void> {
    const b = this.batch;
    if (b.jobs.length === 0) return;
    this.batch = { jobs: [], bytes: 0, finish: [] };
    const n = units(b.bytes);
    await this.gate.acquire(n);
    const results = this.pool.run<FilesResult>({ kind: 'files', files: b.jobs });
    void this.inWalkOrder(results, n, (r) => r.blobs, async (r) => {
      for (const blob of r.blobs) await this.writer.addPrepared(wireToPrepared(blob));
      r.files.forEach((f, i) => b.finish[i]!(f));
    }).catch((e: unknown) => {
      this.fatal ??= e;
      for (const f of b.finish) f({ error: { message: (e as Error).message } });
    });
  }

  /**
   * Stores a worker's result once every result handed out before it has been
   * stored: packs then hold blobs in walk order (a restore reads them in
   * that order), whichever worker finishes first. The caller acquired `n`
   * gate units for the task's input; when the worker answers, they are
   * exchanged for the units of the sealed bytes it returned, held until
   * stored. So a big file that keeps one worker busy does not leave the gate
   * full of finished results queued behind it, and the other worker idle.
   */
  private inWalkOrder<T, U>(result: Promise<T>, n: number, blobsOf: (r: T) => readonly WireBlob[], store: (r: T) => Promise<U>): Promise<U> {
    let held = n;
    const before = this.stored;
    const done = result.then(async (r) => {
      const keep = Math.min(n, megabytes(blobsOf(r).reduce((sum, b) => sum + b.sealed.byteLength, 0)));
      this.gate.release(held - keep);
      held = keep;
      await before;
      return store(r);
    }).finally(() => this.gate.release(held));
    this.stored = done.then(() => undefined, () => undefined);
    return done;
  }

  /** Has a worker read and chunk a mid-size file (the caller acquired its `n` gate units), and its extended attributes with `readXattrs`; resolves to its node. */
  private midFile(path: Buffer, sys: PosixPath, st: EntryStat, readXattrs: { xattrs?: true }, n: number, known: string[], complete: (r: XattrsRead, c: ContentEntry[], size: number, changed: boolean) => TreeNode): Promise<TreeNode | undefined> {
    const result = this.pool.run<ChunkFileResult>({
      kind: 'file',
      file: { path: typeof sys === 'string' ? Buffer.from(sys) : sys, size: st.size, mtime: st.mtime, ctime: st.ctime, ...readXattrs },
      ...(known.length ? { known } : {}),
    });
    return this.inWalkOrder(result, n, (r) => r.blobs ?? [], async (r) => {
      if (r.error) return this.cannotRead(path, r.error);
      for (const b of r.blobs!) await this.writer.addPrepared(wireToPrepared(b));
      for (const c of r.content!) this.addEntry(c);
      return complete(r, r.content!, r.size!, r.changed === true);
    });
  }

  /**
   * Runs `read` once the large files queued before it are done: one large
   * file is read at a time, beside the walk, so the workers keep getting
   * batches of small files while its chunks are cut here.
   */
  private oneLargeAtATime<T>(read: () => Promise<T>): Promise<T> {
    const run = this.large.then(read);
    this.large = run.catch(() => undefined);
    return run;
  }

  /** A file too big for one piece: read and chunk here, seal in the workers. */
  private async largeFile(path: Buffer, sys: PosixPath, st: EntryStat, complete: (c: ContentEntry[], size: number, changed: boolean, fingerprint: undefined, streamed: true) => TreeNode): Promise<TreeNode | undefined> {
    let fh;
    try {
      fh = await openForRead(sys);
    } catch (e) {
      return this.cannotRead(path, e as NodeJS.ErrnoException);
    }
    try {
      this.progress.path = path;
      this.progress.name = undefined;
      const { content, size } = await this.streamContent(readAll(fh));
      const after = await fh.stat({ bigint: true });
      const changed = size !== st.size || after.mtimeNs !== st.mtime || after.ctimeNs !== st.ctime || Number(after.size) !== size;
      return complete(content, size, changed, undefined, true);
    } catch (e) {
      if (!(e instanceof SourceError)) throw e;
      this.warn(path, `cannot read: ${e.message}`);
      return undefined;
    } finally {
      await fh.close();
    }
  }

  /** Chunks a stream here and seals each chunk in a worker; all-zero chunks become holes. Each chunk counts as progress once stored. */
  private async streamContent(source: AsyncIterable<Uint8Array>): Promise<{ content: ContentEntry[]; size: number }> {
    const parts: Promise<ContentEntry>[] = [];
    let size = 0;
    for await (const chunk of chunkStream(sourceErrors(source), this.repo.chunker())) {
      this.opts.signal?.throwIfAborted();
      if (this.fatal) throw this.fatal;
      size += chunk.length;
      const n = units(chunk.length);
      await this.gate.acquire(n);
      const data = transferable(chunk);
      const length = chunk.length;
      const sealed = this.pool.run<SealResult>({ kind: 'seal', type: BlobType.Data, data }, [data.buffer as ArrayBuffer]);
      const part = this.inWalkOrder(sealed, n, (r) => (r.blob ? [r.blob] : []), async (r): Promise<ContentEntry> => {
        if (r.blob) {
          await this.writer.addPrepared(wireToPrepared(r.blob));
          this.blobs.add(r.blob.id);
        }
        this.progress.bytes += length;
        this.opts.onProgress?.(this.progress);
        return r.blob ? r.blob.id : r.rawLength;
      });
      part.catch(() => undefined);
      parts.push(part);
    }
    const content: ContentEntry[] = [];
    for (const p of parts) pushEntry(content, await p);
    return { content, size };
  }
}

/** True when two nodes would encode alike (the parent's tree can be reused). */
function sameNode(a: TreeNode, b: TreeNode | undefined): boolean {
  if (a === b) return true;
  if (!b) return false;
  if (a.type !== b.type || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.user !== b.user || a.group !== b.group
    || a.mtime !== b.mtime || a.ctime !== b.ctime || a.inode !== b.inode || a.device !== b.device || a.links !== b.links
    || a.size !== b.size || a.subtree !== b.subtree || a.rdev !== b.rdev || a.fingerprint !== b.fingerprint || a.damaged !== b.damaged
    || !a.name.equals(b.name)) return false;
  if ((a.target === undefined) !== (b.target === undefined) || (a.target && !a.target.equals(b.target!))) return false;
  if (!sameXattrs(a.xattrs, b.xattrs)) return false;
  const ca = a.content;
  const cb = b.content;
  if (ca === cb) return true;
  if (!ca || !cb || ca.length !== cb.length) return false;
  for (let i = 0; i < ca.length; i++) if (!sameEntry(ca[i]!, cb[i]!)) return false;
  return true;
}

function sameEntry(a: ContentEntry, b: ContentEntry): boolean {
  if (a === b) return true;
  return typeof a === 'object' && typeof b === 'object' && a.blob === b.blob && a.offset === b.offset && a.length === b.length;
}

/** An error reading the source (a warning), as opposed to one writing the repository (fatal). */
class SourceError extends Error {
  /** What the source threw (a stream's producer that failed keeps its code, an abort its reason). */
  readonly original: unknown;
  constructor(original: unknown) {
    super((original as Error).message);
    this.name = 'SourceError';
    this.original = original;
  }
}

/** Marks errors thrown by the source as `SourceError`. */
async function* sourceErrors(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await it.next();
      } catch (e) {
        ended = true;
        throw new SourceError(e);
      }
      if (r.done) {
        ended = true;
        return;
      }
      yield r.value;
    }
  } finally {
    // A consumer that stops early (an error, a cancelled job) ends the source too: left suspended, a producer
    // command (commandOutput) would block for ever writing into a pipe nobody reads, and keep its process alive.
    if (!ended) await it.return?.();
  }
}

function nameOf(path: Buffer): Buffer {
  const i = path.lastIndexOf(0x2f);
  const name = path.subarray(i + 1);
  return name.length === 0 ? Buffer.from('/') : name;
}

/** True when two content lists name the same blobs, slices and holes in the same order. */
function sameContent(a: readonly ContentEntry[], b: readonly ContentEntry[]): boolean {
  return a.length === b.length && a.every((x, i) => {
    const y = b[i]!;
    if (typeof x !== 'object' || typeof y !== 'object') return x === y;
    return x.blob === y.blob && x.offset === y.offset && x.length === y.length;
  });
}

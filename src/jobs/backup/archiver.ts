/**
 * The archiver turns file trees into a snapshot.
 *
 *   for each path given: lstat the folders above it (they become nodes of the
 *   snapshot's tree so that restore can put everything back at its absolute
 *   path), then walk it depth-first:
 *     file      unchanged against the parent snapshot (same inode, device,
 *               size, mtime, ctime, and every blob still indexed)? reuse its
 *               content list; else read → chunk → all-zero chunk? hole : saveBlob
 *     directory recurse with the matching node of the parent tree; encode the
 *               sorted nodes as a tree blob (identical trees deduplicate)
 *     other     record metadata (symlink target, device number)
 *   flush packs and index, then write the snapshot with every blob id referenced.
 *
 * A file that cannot be read, or changes or vanishes while being read, is a
 * warning: the backup completes and the snapshot is marked incomplete.
 */
import { sep } from 'node:path';
import { hostname as osHostname, userInfo } from 'node:os';
import { chunkStream } from '../../core/chunker.js';
import { BlobType } from '../../repo/pack.js';
import { encodeTree, type ContentEntry, type TreeNode } from '../../repo/tree.js';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot, SnapshotSummary } from '../../repo/snapshot.js';
import { IdNames, PathShortener } from '../../sources/posix.js';
import { listDir, openForRead, readAll, readLink, statEntry, statFollow, type EntryStat } from '../../sources/file-tree.js';
import { Excludes } from './excludes.js';

export interface BackupOptions {
  readonly paths: readonly string[];
  readonly excludes?: Excludes;
  /** Skip the contents of folders holding a valid CACHEDIR.TAG. */
  readonly excludeCaches?: boolean;
  /** Do not cross into other file systems below each path. */
  readonly oneFileSystem?: boolean;
  readonly tags?: readonly string[];
  readonly hostname?: string;
  readonly time?: Date;
  /** Parent snapshot for change detection; found automatically when undefined. */
  readonly parent?: { id: string; snapshot: Snapshot } | null;
  readonly onWarning?: (path: string, message: string) => void;
  readonly onProgress?: (p: BackupProgress) => void;
  readonly signal?: AbortSignal;
}

/** Running totals, reported after each file. */
export interface BackupProgress {
  files: number;
  dirs: number;
  bytes: number;
  errors: number;
  current: string;
}

export interface BackupResult {
  readonly id: string;
  readonly snapshot: Snapshot;
}

const ZEROS = Buffer.alloc(8 << 20);
const CACHEDIR_SIGNATURE = 'Signature: 8a477f597d28d172789f06886806bc55';

function isZero(b: Buffer): boolean {
  for (let o = 0; o < b.length; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - o);
    if (!b.subarray(o, o + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}

const SLASH = Buffer.from('/');
const join = (dir: Buffer, name: Buffer): Buffer => (dir.length === 1 && dir[0] === 0x2f ? Buffer.concat([SLASH, name]) : Buffer.concat([dir, SLASH, name]));

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
      const last = i === parts.length - 1;
      const existing = cur.get(part);
      if (existing === true) break;
      if (last) {
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

/** Snapshot of a stdin stream or command output: a single file at /NAME. */
export interface StreamBackup {
  readonly name: string;
}

export class Archiver {
  private readonly names = new IdNames();
  private readonly blobs = new Set<string>();
  private readonly progress: BackupProgress = { files: 0, dirs: 0, bytes: 0, errors: 0, current: '' };
  private filesNew = 0;
  private filesChanged = 0;
  private filesUnchanged = 0;
  private otherNodes = 0;
  private bytesRead = 0;
  private rootDevices = new Set<bigint>();
  /** Paths longer than PATH_MAX are reached through /proc/self/fd anchors. */
  private readonly long = new PathShortener();

  constructor(private readonly repo: Repository, private readonly opts: BackupOptions) {}

  private warn(path: Buffer | string, message: string): void {
    this.progress.errors++;
    this.opts.onWarning?.(path.toString(), message);
  }

  private report(path: Buffer): void {
    this.progress.current = path.toString();
    this.opts.onProgress?.(this.progress);
  }

  /** Runs the backup and writes the snapshot. */
  async run(): Promise<BackupResult> {
    const start = new Date();
    const parent = this.opts.parent;
    const parentTree = parent ? parent.snapshot.tree : undefined;
    let rootNode: TreeNode;
    try {
      rootNode = await this.saveSelection(SLASH, selectionOf(this.opts.paths), parentTree);
    } finally {
      await this.long.close();
    }
    await this.repo.flush();
    return this.writeSnapshot(rootNode.subtree!, start, parent?.id, [...this.opts.paths].sort());
  }

  /** Backs up one stream as the single file /NAME. */
  async runStream(name: string, source: AsyncIterable<Uint8Array>): Promise<BackupResult> {
    const start = new Date();
    const now = BigInt(Date.now()) * 1_000_000n;
    const { content, size } = await this.saveContent(source);
    this.progress.files++;
    this.filesNew++;
    const file: TreeNode = {
      name: Buffer.from(name), type: 'file', mode: 0o600, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0,
      mtime: now, ctime: now, inode: 0n, device: 0n, links: 1, size, content,
    };
    const tree = await this.saveTree([file]);
    await this.repo.flush();
    return this.writeSnapshot(tree, start, undefined, [`/${name}`]);
  }

  private async writeSnapshot(tree: string, start: Date, parent: string | undefined, paths: string[]): Promise<BackupResult> {
    const stats = this.repo.stats;
    const summary: SnapshotSummary = {
      filesNew: this.filesNew,
      filesChanged: this.filesChanged,
      filesUnchanged: this.filesUnchanged,
      dirs: this.progress.dirs,
      otherNodes: this.otherNodes,
      errors: this.progress.errors,
      totalBytes: this.progress.bytes,
      bytesRead: this.bytesRead,
      blobsAdded: stats.blobsAdded,
      dataAdded: stats.dataAdded,
      dataAddedStored: stats.dataAddedStored,
      start: start.toISOString(),
      end: new Date().toISOString(),
    };
    let username = 'unknown';
    try {
      username = userInfo().username;
    } catch {
      // no passwd entry for this uid
    }
    const snapshot: Snapshot = {
      time: (this.opts.time ?? start).toISOString(),
      hostname: this.opts.hostname ?? osHostname(),
      username,
      paths,
      tags: [...(this.opts.tags ?? [])],
      ...(parent ? { parent } : {}),
      tree,
      ...(this.progress.errors > 0 ? { incomplete: true } : {}),
      summary,
      blobs: [...this.blobs],
    };
    const id = await this.repo.saveSnapshot(snapshot);
    return { id, snapshot };
  }

  private async saveTree(nodes: TreeNode[]): Promise<string> {
    const { id } = await this.repo.saveBlob(BlobType.Tree, encodeTree(nodes));
    this.blobs.add(id);
    return id;
  }

  private async parentNodes(subtree: string | undefined): Promise<Map<string, TreeNode>> {
    const m = new Map<string, TreeNode>();
    if (!subtree) return m;
    try {
      for (const n of await this.repo.loadTree(subtree)) m.set(n.name.toString('latin1'), n);
    } catch (e) {
      this.opts.onWarning?.('(parent snapshot)', `cannot read parent tree ${subtree}, reading files again: ${(e as Error).message}`);
    }
    return m;
  }

  /** A folder above or at a selected path: only the selected names are kept. */
  private async saveSelection(path: Buffer, sel: Selection, parentSubtree: string | undefined): Promise<TreeNode> {
    // Folders above a selected path are traversed, so a symlink among them is
    // recorded as the folder it leads to.
    const st = await statFollow(await this.long.short(path));
    const parents = await this.parentNodes(parentSubtree);
    const nodes: TreeNode[] = [];
    for (const [name, child] of sel) {
      const nameBuf = Buffer.from(name);
      const childPath = join(path, nameBuf);
      const prev = parents.get(nameBuf.toString('latin1'));
      if (child === true) {
        const node = await this.saveEntry(childPath, nameBuf, prev, true);
        if (node) nodes.push(node);
      } else {
        try {
          nodes.push(await this.saveSelection(childPath, child, prev?.type === 'dir' ? prev.subtree : undefined));
        } catch (e) {
          this.warn(childPath, (e as Error).message);
        }
      }
    }
    this.progress.dirs++;
    return this.node(nameOf(path), st, { subtree: await this.saveTree(nodes) });
  }

  private node(name: Buffer, st: EntryStat, extra: Partial<TreeNode>): TreeNode {
    const user = this.names.user(st.uid);
    const group = this.names.group(st.gid);
    return {
      name, type: st.type, mode: st.mode, uid: st.uid, gid: st.gid,
      ...(user === undefined ? {} : { user }),
      ...(group === undefined ? {} : { group }),
      mtime: st.mtime, ctime: st.ctime, inode: st.inode, device: st.device, links: st.links,
      size: st.type === 'file' ? st.size : 0,
      ...extra,
    };
  }

  /** One entry below a selected path; `undefined` when excluded or unreadable. */
  private async saveEntry(path: Buffer, name: Buffer, prev: TreeNode | undefined, isRoot: boolean): Promise<TreeNode | undefined> {
    this.opts.signal?.throwIfAborted();
    if (this.opts.excludes?.matches(path.toString())) return undefined;
    let st: EntryStat;
    try {
      st = await statEntry(await this.long.short(path));
    } catch (e) {
      this.warn(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'vanished before it could be read' : (e as Error).message);
      return undefined;
    }
    if (isRoot) this.rootDevices.add(st.device);
    switch (st.type) {
      case 'file':
        return this.saveFile(path, name, st, prev);
      case 'dir':
        return this.saveDir(path, name, st, prev);
      case 'symlink':
        try {
          const target = await readLink(await this.long.short(path));
          this.otherNodes++;
          return this.node(name, st, { target });
        } catch (e) {
          this.warn(path, (e as Error).message);
          return undefined;
        }
      case 'chardev':
      case 'blockdev':
        this.otherNodes++;
        return this.node(name, st, { rdev: st.rdev });
      default:
        this.otherNodes++;
        return this.node(name, st, {});
    }
  }

  private async saveDir(path: Buffer, name: Buffer, st: EntryStat, prev: TreeNode | undefined): Promise<TreeNode | undefined> {
    let names: Buffer[] = [];
    const crossing = this.opts.oneFileSystem === true && !this.rootDevices.has(st.device);
    if (!crossing) {
      try {
        names = await listDir(await this.long.short(path));
      } catch (e) {
        this.warn(path, (e as Error).message);
        return undefined;
      }
    }
    if (this.opts.excludeCaches && (await isCacheDir(path, names))) names = names.filter((n) => n.toString() === 'CACHEDIR.TAG');
    const parents = await this.parentNodes(prev?.type === 'dir' ? prev.subtree : undefined);
    const nodes: TreeNode[] = [];
    for (const child of names) {
      const node = await this.saveEntry(join(path, child), child, parents.get(child.toString('latin1')), false);
      if (node) nodes.push(node);
    }
    this.progress.dirs++;
    this.report(path);
    return this.node(name, st, { subtree: await this.saveTree(nodes) });
  }

  private unchanged(st: EntryStat, prev: TreeNode | undefined): prev is TreeNode & { content: ContentEntry[] } {
    return prev !== undefined && prev.type === 'file' && prev.content !== undefined
      && prev.inode === st.inode && prev.device === st.device && prev.size === st.size
      && prev.mtime === st.mtime && prev.ctime === st.ctime
      && prev.content.every((c) => typeof c === 'number' || this.repo.hasBlob(c));
  }

  private async saveFile(path: Buffer, name: Buffer, st: EntryStat, prev: TreeNode | undefined): Promise<TreeNode | undefined> {
    this.progress.files++;
    this.progress.bytes += st.size;
    if (this.unchanged(st, prev)) {
      this.filesUnchanged++;
      for (const c of prev.content) if (typeof c === 'string') this.blobs.add(c);
      this.report(path);
      return this.node(name, st, { content: prev.content });
    }
    let fh;
    try {
      fh = await openForRead(await this.long.short(path));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      this.warn(path, code === 'ENOENT' ? 'vanished before it could be read' : `cannot read: ${(e as Error).message}`);
      return undefined;
    }
    try {
      const { content, size } = await this.saveContent(readAll(fh));
      const after = await fh.stat({ bigint: true });
      if (size !== st.size || after.mtimeNs !== st.mtime || after.ctimeNs !== st.ctime || Number(after.size) !== size) {
        this.warn(path, 'changed while it was being read; the stored copy may be inconsistent');
      }
      if (prev?.type === 'file') this.filesChanged++;
      else this.filesNew++;
      this.report(path);
      return this.node(name, { ...st, size }, { content });
    } catch (e) {
      this.warn(path, `cannot read: ${(e as Error).message}`);
      return undefined;
    } finally {
      await fh.close();
    }
  }

  /** Chunks a byte stream into blobs; all-zero chunks become holes. */
  private async saveContent(source: AsyncIterable<Uint8Array>): Promise<{ content: ContentEntry[]; size: number }> {
    const content: ContentEntry[] = [];
    let size = 0;
    for await (const chunk of chunkStream(source, this.repo.chunker())) {
      this.opts.signal?.throwIfAborted();
      size += chunk.length;
      this.bytesRead += chunk.length;
      if (isZero(chunk)) {
        const last = content[content.length - 1];
        if (typeof last === 'number') content[content.length - 1] = last + chunk.length;
        else content.push(chunk.length);
        continue;
      }
      const { id } = await this.repo.saveBlob(BlobType.Data, chunk);
      this.blobs.add(id);
      content.push(id);
    }
    return { content, size };
  }
}

function nameOf(path: Buffer): Buffer {
  const i = path.lastIndexOf(0x2f);
  const name = path.subarray(i + 1);
  return name.length === 0 ? Buffer.from('/') : name;
}

async function isCacheDir(path: Buffer, names: Buffer[]): Promise<boolean> {
  if (!names.some((n) => n.toString() === 'CACHEDIR.TAG')) return false;
  try {
    const fh = await openForRead(join(path, Buffer.from('CACHEDIR.TAG')));
    try {
      const buf = Buffer.alloc(CACHEDIR_SIGNATURE.length);
      await fh.read(buf, 0, buf.length, 0);
      return buf.toString('latin1') === CACHEDIR_SIGNATURE;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

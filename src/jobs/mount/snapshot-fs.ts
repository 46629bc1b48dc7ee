/**
 * The snapshots of a repository as a read-only file tree, laid out like
 * restic's `mount`, for a FUSE front end (`fuse-mount.ts`) to serve:
 *
 *   /snapshots/<time>/…           every snapshot by its time (UTC, ISO 8601;
 *   /snapshots/latest -> <time>   "-1", "-2" … after a time that repeats)
 *   /ids/<id>/…                   by short id (the full id where two share one)
 *   /hosts/<host>/<time>/…, /hosts/<host>/latest
 *   /tags/<tag>/<time>/…, /tags/<tag>/latest
 *
 * Below a snapshot's folder is its tree, as `restore` would write it: names,
 * types, modes, owners, sizes, mtimes (to the millisecond), symlink
 * targets and extended attributes. An image snapshot's folder holds one file, `image.raw`, the disk
 * or partition it saved. Everything is loaded when first asked for: a path
 * is resolved one tree at a time (recent trees kept), a file is read by
 * ranges (`FileContentReader`, the image reader). Names that a restore would
 * refuse (`unsafeName`) or that are not valid UTF-8, and symlinks whose
 * target is not (fuse-native passes names and targets as strings), are not
 * shown, and are reported when their folder is loaded. Extended attributes
 * whose name is not valid UTF-8 are left out of a listing, silently.
 */
import { isUtf8 } from 'node:buffer';
import type { Snapshot } from '../../repo/snapshot.js';
import type { TreeNode, NodeType } from '../../repo/tree.js';
import { unsafeName, type TreeLoader } from '../tree-walk.js';
import { openImageSnapshot, type ImageSnapshotReader, type RandomAccessSource } from '../image/image-reader.js';
import { FileContentReader, type ContentLoader } from './file-content-reader.js';

/** What the file tree needs of a repository (`Repository` has it). */
export type SnapshotFsRepository = TreeLoader & ContentLoader;

/** Why a path cannot be served; the front end maps each to its errno. */
export type FsErrorCode = 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'EINVAL' | 'EIO' | 'ENODATA';

/** A path that does not exist, is of the wrong kind, or cannot be read. */
export class FsError extends Error {
  constructor(readonly code: FsErrorCode, message: string) {
    super(message);
    this.name = 'FsError';
  }
}

/** What `stat` shows for a path. */
export interface FsAttr {
  readonly type: NodeType;
  /** Permission bits including setuid/setgid/sticky (0..0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Milliseconds since the epoch. */
  readonly mtimeMs: number;
  readonly nlink: number;
  readonly rdev: number;
}

/** Name of the one file in an image snapshot's folder. */
export const IMAGE_FILE = 'image.raw';

export interface SnapshotFsOptions {
  /** Owner of the folders that are not in a snapshot (the top level, hosts, tags). */
  readonly owner?: { readonly uid: number; readonly gid: number };
  /** Told about names not shown and files that cannot be read. */
  readonly onWarning?: (message: string) => void;
}

/** A folder of the top levels, a `latest` link, or a snapshot's folder. */
type Virtual =
  | { readonly kind: 'folder'; readonly entries: Map<string, Virtual>; mtimeMs: number }
  | { readonly kind: 'link'; readonly target: string; readonly mtimeMs: number }
  | { readonly kind: 'snapshot'; readonly id: string; readonly snapshot: Snapshot; readonly mtimeMs: number };

type Folder = Extract<Virtual, { kind: 'folder' }>;

/** What a path names: a virtual entry, a node of a snapshot's tree, or an image snapshot's file. */
type Resolved =
  | { readonly kind: 'virtual'; readonly v: Virtual }
  | { readonly kind: 'node'; readonly node: TreeNode }
  | { readonly kind: 'image'; readonly id: string; readonly snapshot: Snapshot };

/** Decoded trees kept: the folders a reader is in, and their parents. */
const KEEP_TREES = 256;
/** Image snapshot readers kept, so that opening `image.raw` again finds its blocks cached. */
const KEEP_IMAGES = 4;

/** `2026-12-05T18:16:27Z`: seconds are what restic shows, and a colon is fine in a name. */
function timeName(s: Snapshot): string {
  return new Date(Date.parse(s.time)).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const folder = (): Folder => ({ kind: 'folder', entries: new Map(), mtimeMs: 0 });

/** Adds a snapshot's folder under its time name (made unique) and points `latest` at the newest. */
function addByTime(dir: Folder, snap: Virtual & { kind: 'snapshot' }): void {
  const base = timeName(snap.snapshot);
  let name = base;
  for (let n = 1; dir.entries.has(name); n++) name = `${base}-${n}`;
  dir.entries.set(name, snap);
  // Snapshots come oldest first: the last one added is the newest.
  dir.entries.set('latest', { kind: 'link', target: name, mtimeMs: snap.mtimeMs });
  dir.mtimeMs = Math.max(dir.mtimeMs, snap.mtimeMs);
}

/** The top levels for a list of snapshots, oldest first. */
function buildTop(snapshots: readonly { id: string; snapshot: Snapshot }[]): Folder {
  const top = folder();
  const bySnapshots = folder();
  const ids = folder();
  const hosts = folder();
  const tags = folder();
  const shortCount = new Map<string, number>();
  for (const { id } of snapshots) shortCount.set(id.slice(0, 8), (shortCount.get(id.slice(0, 8)) ?? 0) + 1);
  for (const { id, snapshot } of snapshots) {
    const snap = { kind: 'snapshot', id, snapshot, mtimeMs: Math.max(0, Date.parse(snapshot.time)) } as const;
    addByTime(bySnapshots, snap);
    ids.entries.set(shortCount.get(id.slice(0, 8)) === 1 ? id.slice(0, 8) : id, snap);
    ids.mtimeMs = Math.max(ids.mtimeMs, snap.mtimeMs);
    const group = (parent: Folder, name: string): void => {
      // A host or tag that could not be a file name is left out of that folder (the snapshot is still under snapshots/ and ids/).
      if (unsafeName(Buffer.from(name)) !== undefined) return;
      const f = (parent.entries.get(name) as Folder | undefined) ?? folder();
      parent.entries.set(name, f);
      addByTime(f, snap);
      parent.mtimeMs = Math.max(parent.mtimeMs, snap.mtimeMs);
    };
    group(hosts, snapshot.hostname);
    for (const t of new Set(snapshot.tags)) group(tags, t);
  }
  for (const [name, f] of [['hosts', hosts], ['ids', ids], ['snapshots', bySnapshots], ['tags', tags]] as const) {
    top.entries.set(name, f);
    top.mtimeMs = Math.max(top.mtimeMs, f.mtimeMs);
  }
  return top;
}

/** The snapshots of a repository as a read-only file tree. */
export class SnapshotFs {
  private readonly top: Virtual;
  private readonly trees = new Map<string, Promise<Map<string, TreeNode>>>();
  private readonly images = new Map<string, ImageSnapshotReader>();
  private readonly owner: { readonly uid: number; readonly gid: number };
  private readonly warn: (message: string) => void;

  /** `snapshots` oldest first, as `Repository.listSnapshots` gives them. */
  constructor(private readonly repo: SnapshotFsRepository, snapshots: readonly { id: string; snapshot: Snapshot }[], opts: SnapshotFsOptions = {}) {
    this.top = buildTop(snapshots);
    this.owner = opts.owner ?? { uid: 0, gid: 0 };
    this.warn = opts.onWarning ?? (() => undefined);
  }

  /** What `stat` shows for `path` ("/", "/snapshots/latest", …). */
  async getattr(path: string): Promise<FsAttr> {
    const r = await this.resolve(path);
    if (r.kind === 'image') {
      return { type: 'file', mode: 0o444, ...this.owner, size: r.snapshot.image!.size, mtimeMs: Math.max(0, Date.parse(r.snapshot.time)), nlink: 1, rdev: 0 };
    }
    if (r.kind === 'virtual') {
      const v = r.v;
      if (v.kind === 'link') return { type: 'symlink', mode: 0o777, ...this.owner, size: Buffer.byteLength(v.target), mtimeMs: v.mtimeMs, nlink: 1, rdev: 0 };
      return { type: 'dir', mode: 0o555, ...this.owner, size: 0, mtimeMs: v.mtimeMs, nlink: 2, rdev: 0 };
    }
    const n = r.node;
    return {
      type: n.type,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      size: n.type === 'symlink' ? (n.target?.length ?? 0) : n.type === 'file' ? n.size : 0,
      // FUSE (fuse-native) carries whole milliseconds, unsigned: a time before 1970 shows as 1970-01-01.
      mtimeMs: Math.max(0, Number(n.mtime / 1_000_000n)),
      nlink: n.type === 'dir' ? 2 : Math.max(1, n.links),
      rdev: Number(n.rdev ?? 0n),
    };
  }

  /** The names in the folder at `path`. */
  async readdir(path: string): Promise<string[]> {
    const r = await this.resolve(path);
    if (r.kind === 'virtual' && r.v.kind === 'folder') return [...r.v.entries.keys()];
    if (r.kind === 'virtual' && r.v.kind === 'snapshot') {
      return r.v.snapshot.image ? [IMAGE_FILE] : [...(await this.children(r.v.snapshot.tree, path)).keys()];
    }
    if (r.kind === 'node' && r.node.type === 'dir') return r.node.subtree ? [...(await this.children(r.node.subtree, path)).keys()] : [];
    throw new FsError('ENOTDIR', `${path} is not a folder`);
  }

  /** The target of the symlink at `path`. */
  async readlink(path: string): Promise<string> {
    const r = await this.resolve(path);
    if (r.kind === 'virtual' && r.v.kind === 'link') return r.v.target;
    if (r.kind === 'node' && r.node.type === 'symlink') return (r.node.target ?? Buffer.alloc(0)).toString();
    throw new FsError('EINVAL', `${path} is not a symlink`);
  }

  /** The names of the extended attributes of `path` (UTF-8 ones: fuse-native passes names as strings); none outside a snapshot's tree. */
  async listxattr(path: string): Promise<string[]> {
    const r = await this.resolve(path);
    if (r.kind !== 'node') return [];
    return (r.node.xattrs ?? []).filter((x) => isUtf8(x.name)).map((x) => x.name.toString());
  }

  /** The value of the extended attribute `name` of `path`; ENODATA when it has none of that name. */
  async getxattr(path: string, name: string): Promise<Buffer> {
    const r = await this.resolve(path);
    const want = Buffer.from(name);
    const x = r.kind === 'node' ? r.node.xattrs?.find((a) => a.name.equals(want)) : undefined;
    if (!x) throw new FsError('ENODATA', `${path} has no extended attribute ${name}`);
    return x.value;
  }

  /** The bytes of the regular file at `path`. */
  async open(path: string): Promise<RandomAccessSource> {
    const r = await this.resolve(path);
    if (r.kind === 'image') {
      const reader = this.images.get(r.id) ?? openImageSnapshot(this.repo, r.snapshot, { what: `snapshot ${r.id.slice(0, 8)}` });
      this.images.delete(r.id);
      this.images.set(r.id, reader);
      // Each reader keeps its own cache of blocks; files still open keep theirs.
      while (this.images.size > KEEP_IMAGES) this.images.delete(this.images.keys().next().value!);
      return reader;
    }
    if (r.kind === 'node' && r.node.type === 'file') {
      try {
        return await FileContentReader.open(this.repo, r.node, path);
      } catch (e) {
        this.warn(`${path}: cannot be read: ${(e as Error).message}`);
        throw new FsError('EIO', `${path}: ${(e as Error).message}`);
      }
    }
    throw new FsError(r.kind === 'node' && r.node.type !== 'dir' ? 'EINVAL' : 'EISDIR', `${path} is not a regular file`);
  }

  private async resolve(path: string): Promise<Resolved> {
    const parts = path.split('/').filter((p) => p !== '');
    let v: Virtual = this.top;
    let i = 0;
    for (; i < parts.length && v.kind === 'folder'; i++) {
      const next = v.entries.get(parts[i]!);
      if (!next) throw new FsError('ENOENT', `${path}: no such file or folder`);
      v = next;
    }
    if (i === parts.length) return { kind: 'virtual', v };
    if (v.kind !== 'snapshot') throw new FsError('ENOTDIR', `${path}: not a folder`);
    if (v.snapshot.image) {
      if (i === parts.length - 1 && parts[i] === IMAGE_FILE) return { kind: 'image', id: v.id, snapshot: v.snapshot };
      throw new FsError('ENOENT', `${path}: no such file or folder`);
    }
    let tree: string | undefined = v.snapshot.tree;
    let node: TreeNode | undefined;
    let at = `/${parts.slice(0, i).join('/')}`;
    for (; i < parts.length; i++) {
      if (tree === undefined) throw new FsError(node?.type === 'dir' ? 'ENOENT' : 'ENOTDIR', `${path}: not a folder`);
      node = (await this.children(tree, at)).get(parts[i]!);
      if (!node) throw new FsError('ENOENT', `${path}: no such file or folder`);
      at = `${at}/${parts[i]!}`;
      tree = node.type === 'dir' ? node.subtree : undefined;
    }
    return { kind: 'node', node: node! };
  }

  /** A folder's nodes by name, without the names that are not shown (reported when the tree is first loaded). */
  private children(tree: string, at: string): Promise<Map<string, TreeNode>> {
    let p = this.trees.get(tree);
    if (p) this.trees.delete(tree);
    else {
      p = this.repo.loadTree(tree).then((nodes) => {
        const m = new Map<string, TreeNode>();
        // Duplicate and unsorted names never get here: the tree decoder refuses the whole listing.
        for (const n of nodes) {
          const why = unsafeName(n.name)
            ?? (isUtf8(n.name) ? undefined : 'name is not valid UTF-8')
            ?? (n.type === 'symlink' && n.target && !isUtf8(n.target) ? 'symlink target is not valid UTF-8' : undefined);
          if (why) this.warn(`${at}/${n.name.toString()}: not shown (${why})`);
          else m.set(n.name.toString(), n);
        }
        return m;
      }, (e: unknown) => {
        this.trees.delete(tree);
        this.warn(`${at}: cannot be listed: ${(e as Error).message}`);
        throw new FsError('EIO', `${at}: ${(e as Error).message}`);
      });
    }
    this.trees.set(tree, p);
    while (this.trees.size > KEEP_TREES) this.trees.delete(this.trees.keys().next().value!);
    return p;
  }
}

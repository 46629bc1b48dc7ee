/**
 * Walks a snapshot's tree depth-first, yielding every node with its absolute
 * path in the snapshot. Names that could escape a restore target (empty,
 * ".", "..", containing "/" or NUL) are never yielded: they are reported to
 * `onUnsafe` instead, whatever a snapshot contains. Duplicate and unsorted
 * names never get here: the tree decoder refuses such a tree as damaged.
 */
import type { TreeNode } from '../repo/tree.js';
import type { OperationOptions } from '../storage/backend.js';
import { io } from '../repo/objects.js';

/** What the walker needs from a repository. */
/** What a walk reads trees through (a `Repository`). */
export interface TreeLoader {
  /** Loads and decodes one tree; `opts.signal` ends the read with its reason. */
  loadTree(id: string, opts?: OperationOptions): Promise<TreeNode[]>;
}

export interface WalkEntry {
  /** Absolute path inside the snapshot, as bytes ("/home/a"). */
  readonly path: Buffer;
  readonly node: TreeNode;
  /** Depth below the root: 1 for top-level entries. */
  readonly depth: number;
}

export interface WalkOptions {
  /** Called for names that are refused. */
  readonly onUnsafe?: (path: string, reason: string) => void;
  /** Return false to skip a node (and, for a directory, everything below it). */
  readonly filter?: (path: Buffer, node: TreeNode) => boolean;
  /** Called after a directory's children were all yielded. */
  readonly onDirDone?: (entry: WalkEntry) => Promise<void> | void;
  /**
   * Called when a directory's listing cannot be loaded; the walk goes on as
   * if it were empty (throw from it to end the walk). Without it, the error
   * ends the walk.
   */
  readonly onTreeError?: (entry: WalkEntry, error: unknown) => void;
  /** Passed to every tree read: an abort ends the walk with its reason. */
  readonly signal?: AbortSignal;
}

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

/** Returns why a name is unsafe to create, or undefined. */
export function unsafeName(name: Buffer): string | undefined {
  if (name.length === 0) return 'empty name';
  if (name.length > 255) return 'name longer than 255 bytes';
  if (name.includes(0x2f)) return 'name contains "/"';
  if (name.includes(0)) return 'name contains a NUL byte';
  if (name.equals(DOT) || name.equals(DOTDOT)) return `name is "${name.toString()}"`;
  return undefined;
}

const SLASH = Buffer.from('/');

/** Joins a snapshot path and a name. */
export function childPath(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 1 ? Buffer.concat([SLASH, name]) : Buffer.concat([dir, SLASH, name]);
}

/**
 * A folder being walked: its nodes, the next one, and where its path ends in
 * the walk's path buffer. Frames hold no path of their own: a chain of
 * folders n deep would otherwise hold n paths of up to n names each
 * (quadratic in the depth; 100,000 folders deep ran out of memory).
 */
interface Frame {
  readonly nodes: TreeNode[];
  next: number;
  /** Length of this folder's path in the path buffer. */
  readonly dirLen: number;
  readonly depth: number;
  /** The node that named this folder (none for the root). */
  readonly node?: TreeNode;
}

/**
 * The path of the folder being walked, one buffer for the whole walk: a
 * frame's path is always a prefix of the path of the frame above it, so
 * writing a name past the top frame's end never clobbers a frame below.
 */
export class PathBuffer {
  private buf: Buffer;

  constructor(dir: Buffer) {
    this.buf = Buffer.allocUnsafe(Math.max(4096, dir.length * 2));
    dir.copy(this.buf);
  }

  /** Writes `name` as the child of the folder whose path is the first `dirLen` bytes; returns the child's length. */
  child(dirLen: number, name: Buffer): number {
    const sep = dirLen === 1 ? 0 : 1; // below the root "/" no second slash, as childPath
    const len = dirLen + sep + name.length;
    if (len > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(len, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, dirLen);
      this.buf = grown;
    }
    if (sep) this.buf[dirLen] = 0x2f;
    name.copy(this.buf, dirLen + sep);
    return len;
  }

  /** A copy of the first `len` bytes (callers may keep it). */
  copy(len: number): Buffer {
    return Buffer.from(this.buf.subarray(0, len));
  }
}

/**
 * `dir` is the path the root tree's nodes are below. One generator with a
 * stack of folders, not one per folder: a nested `yield*` passes every entry
 * through each level above it. Memory is linear in the depth (the stack's
 * folder listings), however long the paths grow.
 */
export async function* walkTree(repo: TreeLoader, root: string, opts: WalkOptions = {}, dir: Buffer = SLASH): AsyncGenerator<WalkEntry> {
  const paths = new PathBuffer(dir);
  const stack: Frame[] = [{ nodes: await repo.loadTree(root, io(opts)), next: 0, dirLen: dir.length, depth: 1 }];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.next === f.nodes.length) {
      stack.pop();
      if (f.node && opts.onDirDone) await opts.onDirDone({ path: paths.copy(f.dirLen), node: f.node, depth: f.depth - 1 });
      continue;
    }
    const node = f.nodes[f.next++]!;
    const len = paths.child(f.dirLen, node.name);
    const path = paths.copy(len);
    const bad = unsafeName(node.name);
    if (bad) {
      opts.onUnsafe?.(path.toString(), bad);
      continue;
    }
    if (opts.filter && !opts.filter(path, node)) continue;
    const entry = { path, node, depth: f.depth };
    yield entry;
    if (node.type === 'dir' && node.subtree) stack.push({ nodes: await listing(repo, node.subtree, entry, opts), next: 0, dirLen: len, depth: f.depth + 1, node });
  }
}

/** A directory's listing, or none when it cannot be loaded and `onTreeError` takes the error. */
async function listing(repo: TreeLoader, id: string, entry: WalkEntry, opts: WalkOptions): Promise<TreeNode[]> {
  try {
    return await repo.loadTree(id, io(opts));
  } catch (e) {
    if (!opts.onTreeError || opts.signal?.aborted) throw e;
    opts.onTreeError(entry, e);
    return [];
  }
}

/** Finds the node at an absolute snapshot path ("/" gives undefined: the root has no node). */
export async function findNode(repo: TreeLoader, root: string, path: string): Promise<TreeNode | undefined> {
  const parts = path.split('/').filter((p) => p !== '');
  let tree = root;
  let node: TreeNode | undefined;
  for (const part of parts) {
    const want = Buffer.from(part);
    node = (await repo.loadTree(tree)).find((n) => n.name.equals(want));
    if (!node) throw new Error(`path ${path} is not in the snapshot`);
    if (node.type === 'dir' && node.subtree) tree = node.subtree;
    else if (part !== parts[parts.length - 1]) throw new Error(`path ${path} is not in the snapshot`);
  }
  return node;
}

/**
 * Walks a snapshot's tree depth-first, yielding every node with its absolute
 * path in the snapshot. Names that could escape a restore target (empty,
 * ".", "..", containing "/" or NUL) and duplicate names are never yielded:
 * they are reported to `onUnsafe` instead, whatever a snapshot contains.
 */
import type { TreeNode } from '../repo/tree.js';

/** What the walker needs from a repository. */
export interface TreeLoader {
  loadTree(id: string): Promise<TreeNode[]>;
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

/** A folder being walked: its nodes, the next one, and the entry that named it. */
interface Frame {
  readonly nodes: TreeNode[];
  next: number;
  prev?: Buffer;
  readonly dir: Buffer;
  readonly depth: number;
  readonly entry?: WalkEntry;
}

/**
 * `dir` is the path the root tree's nodes are below. One generator with a
 * stack of folders, not one per folder: a nested `yield*` passes every entry
 * through each level above it.
 */
export async function* walkTree(repo: TreeLoader, root: string, opts: WalkOptions = {}, dir: Buffer = SLASH): AsyncGenerator<WalkEntry> {
  const stack: Frame[] = [{ nodes: await repo.loadTree(root), next: 0, dir, depth: 1 }];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.next === f.nodes.length) {
      stack.pop();
      if (f.entry) await opts.onDirDone?.(f.entry);
      continue;
    }
    const node = f.nodes[f.next++]!;
    const path = childPath(f.dir, node.name);
    const bad = unsafeName(node.name) ?? (f.prev && Buffer.compare(f.prev, node.name) >= 0 ? 'duplicate or unsorted name' : undefined);
    f.prev = node.name;
    if (bad) {
      opts.onUnsafe?.(path.toString(), bad);
      continue;
    }
    if (opts.filter && !opts.filter(path, node)) continue;
    const entry = { path, node, depth: f.depth };
    yield entry;
    if (node.type === 'dir' && node.subtree) stack.push({ nodes: await listing(repo, node.subtree, entry, opts), next: 0, dir: path, depth: f.depth + 1, entry });
  }
}

/** A directory's listing, or none when it cannot be loaded and `onTreeError` takes the error. */
async function listing(repo: TreeLoader, id: string, entry: WalkEntry, opts: WalkOptions): Promise<TreeNode[]> {
  try {
    return await repo.loadTree(id);
  } catch (e) {
    if (!opts.onTreeError) throw e;
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

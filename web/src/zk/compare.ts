/**
 * What changed in a folder between two snapshots: entries added, removed
 * and changed in it and below. Trees are content-addressed, so a folder
 * whose subtree id is the same on both sides is the same folder to its
 * last byte and is skipped unread; only the folders that differ are
 * listed, which keeps a comparison of two large snapshots to the few trees
 * a backup rewrote.
 *
 *   compare(before, after)
 *     same id → nothing
 *     both listings merged by name (as stored: trees are sorted by name bytes)
 *       only after  → added (a folder once, not its entries)
 *       only before → removed (likewise)
 *       both folders, subtree ids differ → compare(subtrees)
 *       otherwise → changed when type, content, size, link target or mode differ
 *
 * A file's content is its list of content ids (§6.1): a file touched but not
 * rewritten is not changed. It reads trees through `TreeLister`, which the
 * opened safe (ZkSafe) is, whatever source its objects come from.
 */
import { compareBytes, equalBytes } from './bytes.js';
import type { ContentEntry, TreeNode } from './format.js';

/** The reading of trees a comparison needs (ZkSafe.list). */
export interface TreeLister {
  /** The entries of tree `id` a reader may show; `where` names the folder in warnings. */
  list(id: string, where: string): Promise<{ entries: TreeNode[] }>;
}

/** One difference, with its path below the compared folder. */
export interface Change {
  readonly kind: 'added' | 'removed' | 'changed';
  /** The path's components below the compared folder, as text. */
  readonly path: readonly string[];
  /** The entry as it is now (as it was, for a removed one). */
  readonly node: TreeNode;
}

/**
 * The changes from tree `before` to tree `after` (undefined: a folder that
 * is not there, so everything is added or removed), depth first in name
 * order; yielded as found, so a caller shows them as they come.
 */
export async function* compareTrees(trees: TreeLister, before: string | undefined, after: string | undefined, where = '/', prefix: readonly string[] = []): AsyncGenerator<Change> {
  if (before === after) return;
  const [old, now] = await Promise.all([listOf(trees, before, where), listOf(trees, after, where)]);
  let i = 0;
  let j = 0;
  while (i < old.length || j < now.length) {
    const a = old[i];
    const b = now[j];
    const order = a === undefined ? 1 : b === undefined ? -1 : compareBytes(a.nameBytes, b.nameBytes);
    if (order < 0) {
      yield { kind: 'removed', path: [...prefix, a!.name], node: a! };
      i++;
    } else if (order > 0) {
      yield { kind: 'added', path: [...prefix, b!.name], node: b! };
      j++;
    } else {
      const path = [...prefix, b!.name];
      if (a!.type === 'dir' && b!.type === 'dir' && !a!.damaged && !b!.damaged) {
        yield* compareTrees(trees, a!.subtree, b!.subtree, `${where}${b!.name}/`, path);
      } else if (nodeChanged(a!, b!)) {
        yield { kind: 'changed', path, node: b! };
      }
      i++;
      j++;
    }
  }
}

async function listOf(trees: TreeLister, id: string | undefined, where: string): Promise<TreeNode[]> {
  if (id === undefined) return [];
  // ZkSafe.list keeps the tree's order, which §6.5 makes strictly increasing by name bytes; sorted again so a lister that does not still merges right.
  return [...(await trees.list(id, where)).entries].sort((x, y) => compareBytes(x.nameBytes, y.nameBytes));
}

/** Whether an entry on both sides differs in what it holds (times and owners aside). */
export function nodeChanged(a: TreeNode, b: TreeNode): boolean {
  if (a.type !== b.type || a.size !== b.size || a.mode !== b.mode || a.damaged !== b.damaged) return true;
  if ((a.target === undefined) !== (b.target === undefined) || (a.target && b.target && !equalBytes(a.target, b.target))) return true;
  return !sameContent(a.content ?? [], b.content ?? []);
}

function sameContent(a: readonly ContentEntry[], b: readonly ContentEntry[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, k) => {
    const y = b[k]!;
    if (x.kind !== y.kind) return false;
    if (x.kind === 'hole') return x.length === (y as typeof x).length;
    if (x.kind === 'blob') return x.id === (y as typeof x).id;
    const s = y as typeof x;
    return x.id === s.id && x.offset === s.offset && x.length === s.length;
  });
}

/** The snapshot a snapshot is compared with: the newest older one of the same host and paths, else the newest older one. */
export function previousSnapshot<S extends { readonly id: string; readonly time: string; readonly hostname: string; readonly paths: readonly string[] }>(all: readonly S[], current: S): S | undefined {
  const older = all.filter((s) => s.id !== current.id && (s.time < current.time || (s.time === current.time && s.id < current.id)))
    .sort((x, y) => y.time.localeCompare(x.time) || y.id.localeCompare(x.id));
  const samePaths = (s: S): boolean => s.hostname === current.hostname && s.paths.length === current.paths.length && s.paths.every((p, k) => p === current.paths[k]);
  return older.find(samePaths) ?? older[0];
}

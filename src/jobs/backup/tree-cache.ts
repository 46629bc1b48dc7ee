/**
 * The decoded trees of the last backup, kept in memory by a long-running
 * process (the agent) so that its next backup, whose parent that backup is,
 * loads, decrypts and decodes no parent tree. On the Linux tree that is
 * 5,100 tree blobs, about a third of the main thread's work in an
 * incremental (docs/decisions.md, "The agent's incremental").
 *
 * Trees are kept by id, and an id names its content (a keyed hash of the
 * tree's bytes), so a tree found here is the tree the repository holds
 * under that id, whatever snapshot is the parent: a backup whose parent is
 * not the last one misses and loads its trees as a fresh process does. The
 * archiver still checks that the repository holds a tree before it reuses
 * it (a prune may have removed it), as it does for a loaded one.
 *
 *   backup    get(id) for each parent folder → the held trees (a miss: load)
 *             record(id, nodes) for each folder of the new snapshot
 *   its end   commit(): the recorded trees replace the held ones
 *             (a backup that fails or writes no snapshot: discard())
 *
 * Memory is bounded by a count of nodes (`maxNodes`): past it, the rest of
 * a backup's trees are not kept, and the next backup loads them.
 */
import type { TreeNode } from '../../repo/tree.js';

/** A folder's nodes by name (the name's bytes as latin1), as the archiver looks them up. */
export type NodesByName = ReadonlyMap<string, TreeNode>;

/**
 * Nodes kept by default. A node held costs about 1 KB (its object, four
 * BigInts, its content ids as hex, the map entry, its share of the tree's
 * bytes): the Linux tree's 83,000 nodes added 85 MB to the agent's RSS.
 */
export const TREE_CACHE_NODES = 200_000;

/** How one backup used the cache. */
export interface TreeCacheStats {
  /** Parent trees found in memory. */
  readonly hits: number;
  /** Parent trees that had to be loaded. */
  readonly misses: number;
}

export class TreeCache {
  private held = new Map<string, NodesByName>();
  private next = new Map<string, NodesByName>();
  private nextNodes = 0;
  private hits = 0;
  private misses = 0;

  /** `maxNodes`: how many nodes the trees kept between backups may hold in all. */
  constructor(private readonly maxNodes = TREE_CACHE_NODES) {}

  /** The tree `id` of the last backup, or undefined (counted as a miss: the caller loads it). */
  get(id: string): NodesByName | undefined {
    const t = this.held.get(id);
    if (t) this.hits++;
    else this.misses++;
    return t;
  }

  /** Keeps tree `id` of the backup running now, while the bound allows. */
  record(id: string, nodes: NodesByName): void {
    if (this.next.has(id) || this.nextNodes + nodes.size > this.maxNodes) return;
    this.next.set(id, nodes);
    this.nextNodes += nodes.size;
  }

  /** The backup running now wrote its snapshot: its trees are the ones kept for the next. Returns how it used the cache. */
  commit(): TreeCacheStats {
    this.held = this.next;
    return this.reset();
  }

  /** The backup running now failed or wrote no snapshot: the trees held stay those of the last snapshot. */
  discard(): TreeCacheStats {
    return this.reset();
  }

  /** Drops the trees held (they may be those of a snapshot found damaged): the next backup loads its parent's. */
  clear(): void {
    this.held = new Map();
  }

  /** Trees held for the next backup. */
  get size(): number {
    return this.held.size;
  }

  private reset(): TreeCacheStats {
    const stats = { hits: this.hits, misses: this.misses };
    this.next = new Map();
    this.nextNodes = 0;
    this.hits = 0;
    this.misses = 0;
    return stats;
  }
}

/**
 * Which files of a snapshot `verify-restore` restores: a random sample that
 * a seed repeats, chosen in one walk of the snapshot's tree without keeping
 * every path.
 *
 *   each regular file and symlink gets a key in [0, 1): SHA-256(seed NUL path)
 *   taken: every node whose key is below the share
 *     (or, when that takes fewer than `minFiles`, the `minFiles` smallest keys)
 *   plus the largest regular file and the newest node (by mtime), always
 *
 * A key depends only on the seed and the path, so the same seed takes the
 * same files of the same snapshot, and mostly the same files of the next
 * snapshot of the same folders. docs/decisions.md, "Proving restores".
 */
import { createHash } from 'node:crypto';
import type { TreeNode } from '../../repo/tree.js';
import { BlobNotFoundError, CorruptObjectError } from '../../repo/errors.js';
import { walkTree, type TreeLoader, type WalkEntry } from '../tree-walk.js';

export interface SampleOptions {
  /** The share of the files to take, in (0, 1]. */
  readonly share: number;
  /** At least this many files (all of them when the snapshot has fewer). */
  readonly minFiles: number;
  /** Decides the sample: the same seed takes the same files. */
  readonly seed: string;
  readonly signal?: AbortSignal;
  /**
   * A folder whose listing is damaged or lost (the root's too): nothing
   * below it can be sampled, or restored. Without it, the error ends the walk.
   */
  readonly onLostListing?: (path: string, error: CorruptObjectError | BlobNotFoundError) => void;
  /** A folder marked damaged by `repair snapshots --mark-damaged`: its listing was lost, and it holds nothing now. */
  readonly onMarkedDamaged?: (path: string) => void;
}

/** A node of the sample. */
export interface SampledNode {
  /** Absolute path in the snapshot. */
  readonly path: Buffer;
  readonly node: TreeNode;
}

export interface Sample {
  /** The sampled nodes, in walk order. */
  readonly nodes: SampledNode[];
  /** Regular files and symlinks in the snapshot: what was sampled from. */
  readonly candidates: number;
  /** The largest regular file and the newest node (by mtime), both in `nodes`. */
  readonly largest?: SampledNode;
  readonly newest?: SampledNode;
}

interface Keyed {
  readonly entry: SampledNode;
  readonly key: number;
  /** Position in the walk, to hand the sample back in walk order. */
  readonly order: number;
}

/** The `limit` entries with the smallest keys seen so far (a max-heap on the key). */
class SmallestKeys {
  readonly heap: Keyed[] = [];
  constructor(private readonly limit: number) {}

  offer(k: Keyed): void {
    const h = this.heap;
    if (h.length < this.limit) {
      h.push(k);
      for (let i = h.length - 1; i > 0;) {
        const up = (i - 1) >> 1;
        if (h[up]!.key >= h[i]!.key) break;
        [h[up], h[i]] = [h[i]!, h[up]!];
        i = up;
      }
    } else if (this.limit > 0 && k.key < h[0]!.key) {
      h[0] = k;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let big = i;
        if (l < h.length && h[l]!.key > h[big]!.key) big = l;
        if (r < h.length && h[r]!.key > h[big]!.key) big = r;
        if (big === i) break;
        [h[big], h[i]] = [h[i]!, h[big]!];
        i = big;
      }
    }
  }
}

/** The key of a path under a seed: the first 48 bits of SHA-256(seed NUL path), as a fraction. */
export function sampleKey(seed: string, path: Buffer): number {
  return createHash('sha256').update(seed).update('\0').update(path).digest().readUIntBE(0, 6) / 2 ** 48;
}

const sampled = (type: TreeNode['type']): boolean => type === 'file' || type === 'symlink';

/** Walks the snapshot tree `tree` and chooses its sample. */
export async function chooseSample(repo: TreeLoader, tree: string, opts: SampleOptions): Promise<Sample> {
  if (!(opts.share > 0 && opts.share <= 1)) throw new RangeError(`share must be within (0, 1], got ${opts.share}`);
  const taken: Keyed[] = [];
  const smallest = new SmallestKeys(opts.minFiles);
  let largest: Keyed | undefined;
  let newest: Keyed | undefined;
  let order = 0;
  const lost = (path: string, e: unknown): void => {
    if (!opts.onLostListing || !(e instanceof CorruptObjectError || e instanceof BlobNotFoundError)) throw e;
    opts.onLostListing(path, e);
  };
  // The root's listing first: the walk would throw its damage, where a folder's is reported.
  try {
    await repo.loadTree(tree, opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    lost('/', e);
    return { nodes: [], candidates: 0 };
  }
  const walker = walkTree(repo, tree, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    onTreeError: (entry: WalkEntry, e: unknown) => lost(entry.path.toString(), e),
  });
  for await (const { path, node } of walker) {
    // A folder whose listing `repair snapshots --mark-damaged` found lost: known loss, whatever the sample.
    if (node.type === 'dir' && node.damaged) opts.onMarkedDamaged?.(path.toString());
    if (!sampled(node.type)) continue;
    const k: Keyed = { entry: { path, node }, key: sampleKey(opts.seed, path), order: order++ };
    if (k.key < opts.share) taken.push(k);
    smallest.offer(k);
    if (node.type === 'file' && (!largest || node.size > largest.entry.node.size)) largest = k;
    if (!newest || node.mtime > newest.entry.node.mtime) newest = k;
  }
  // Every key below the share is taken: when that is at least minFiles, the minFiles smallest are among them.
  const chosen = new Map<number, Keyed>((taken.length >= opts.minFiles ? taken : smallest.heap).map((k) => [k.order, k]));
  for (const k of [largest, newest]) if (k) chosen.set(k.order, k);
  return {
    nodes: [...chosen.values()].sort((a, b) => a.order - b.order).map((k) => k.entry), candidates: order,
    ...(largest ? { largest: largest.entry } : {}), ...(newest ? { newest: newest.entry } : {}),
  };
}

/**
 * The forget job: decide which snapshots a retention policy removes, group by
 * group, and remove their snapshot objects. Only snapshot objects go; the
 * data they referenced stays until prune collects what nothing references.
 *
 *   snapshots = store.listSnapshots(), narrowed by `filter` (one that cannot
 *               be read, or fails its MAC, is skipped: in no group)
 *   for each group (group-by host, paths, tags):
 *     decisions = applyPolicy(group, policy, now)      pure, see retention.ts
 *   unless dry run: remove every snapshot a decision removes
 *
 * Needs no key: snapshots are plain (docs/format.md §4.5).
 */
import { applyPolicy, isEmptyPolicy, type RetentionDecision, type RetentionPolicy } from './retention.js';
import { groupSnapshots, type GroupBy, type GroupKey } from './group-by.js';
import type { Snapshot } from '../../repo/snapshot.js';
import type { SnapshotEntry, SnapshotList } from '../../repo/store.js';

/** A snapshot with its id. */
export type ForgetItem = SnapshotEntry;

/** What forget needs from a repository (a `Store`, or a keyed `Repository`'s listing with a store's removal). */
export interface ForgetStore {
  /**
   * Every snapshot a policy may count, oldest first; one that cannot be read
   * (or, with the key, fails its MAC) is in `damaged` instead, with why.
   */
  listSnapshots(): Promise<SnapshotList>;
  /** Removes an object (here a snapshot); false when it was gone already. */
  remove(type: 'snapshot', name: string): Promise<boolean>;
}

export interface ForgetGroupPlan {
  readonly key: GroupKey;
  /** Newest first. */
  readonly decisions: readonly RetentionDecision<ForgetItem>[];
}

export interface ForgetPlan {
  readonly groups: readonly ForgetGroupPlan[];
  /** Ids to remove, across all groups. */
  readonly remove: readonly string[];
}

/** Plans forget by policy: pure, nothing is removed. */
export function planForget(list: readonly ForgetItem[], policy: RetentionPolicy, groupBy: GroupBy, now: Date): ForgetPlan {
  const groups = groupSnapshots(list, groupBy).map((g) => ({ key: g.key, decisions: applyPolicy(g.items, policy, now) }));
  const remove = groups.flatMap((g) => g.decisions.filter((d) => !d.keep).map((d) => d.item.id));
  return { groups, remove };
}

export interface ForgetOptions {
  readonly policy: RetentionPolicy;
  readonly groupBy: GroupBy;
  /** Only snapshots this accepts are considered (the --host/--path/--tag filter). */
  readonly filter?: (s: Snapshot) => boolean;
  readonly dryRun?: boolean;
  /** "Now", for the within-rules; default the current time. */
  readonly now?: Date;
}

export interface ForgetResult extends ForgetPlan {
  /** Ids actually removed (empty on a dry run). */
  readonly removed: readonly string[];
  /**
   * Snapshots left out of the policy, with why: neither kept nor removed nor
   * counted (only `forget ID` removes them; docs/format.md §16).
   */
  readonly skipped: readonly { readonly id: string; readonly error: Error }[];
}

/** Plans by policy and, unless `dryRun`, removes. An empty policy removes nothing. */
export async function forgetByPolicy(store: ForgetStore, opts: ForgetOptions): Promise<ForgetResult> {
  if (isEmptyPolicy(opts.policy)) return { groups: [], remove: [], removed: [], skipped: [] };
  const { ok: all, damaged } = await store.listSnapshots();
  const skipped = [...damaged].map(([id, error]) => ({ id, error }));
  const list = opts.filter ? all.filter((s) => opts.filter!(s.snapshot)) : all;
  const plan = planForget(list, opts.policy, opts.groupBy, opts.now ?? new Date());
  const removed: string[] = [];
  if (!opts.dryRun) for (const id of plan.remove) if (await store.remove('snapshot', id)) removed.push(id);
  return { ...plan, removed, skipped };
}

/**
 * `holdfast forget`: removes snapshots by a retention policy (restic's
 * options and semantics, see src/jobs/forget/retention.ts), or the snapshots
 * named on the command line. Needs no password: snapshots are plain. When a
 * password is given, a policy counts only the snapshots whose MAC verifies:
 * one changed or planted in storage is neither kept nor removed, and cannot
 * push real ones out (docs/format.md §16). One that cannot be read at all
 * (junk any client can store) is left out the same way, password or not,
 * and goes only when named by id.
 */
import type { Command } from 'commander';
import { localTime } from '../core/local-time.js';
import { describePolicy, parseDuration, UNLIMITED, type Duration, type RetentionPolicy } from '../jobs/forget/retention.js';
import { describeGroup, parseGroupBy, type GroupBy } from '../jobs/forget/group-by.js';
import { forgetByPolicy, type ForgetGroupPlan, type ForgetItem, type ForgetStore } from '../jobs/forget/forget.js';
import { acquireLock } from '../repo/lock.js';
import { collect, globals, lockedByMe, openKeyless, openRepo, plural, refuseIfAppendOnly, say, warn, type GlobalOptions } from './context.js';
import { passwordGiven } from './maintenance.js';
import { ExitError, EXIT } from './exit-codes.js';
import { matchesFilter, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { parseGrace, runPrune } from './cmd-prune.js';
import { DEFAULT_GRACE_MS, formatDurationMs } from '../repo/deletion-marker.js';

interface ForgetFlags extends SnapshotFilter {
  keepLast?: number;
  keepMinutely?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: Duration;
  keepWithinHourly?: Duration;
  keepWithinDaily?: Duration;
  keepWithinWeekly?: Duration;
  keepWithinMonthly?: Duration;
  keepWithinYearly?: Duration;
  keepTag?: string[];
  groupBy: string;
  dryRun?: boolean;
  prune?: boolean;
  grace?: string;
}

/** A --keep-* count: a non-negative integer, or `unlimited` (also -1). */
export function parseCount(v: string): number {
  if (v === 'unlimited' || v === '-1') return UNLIMITED;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new ExitError(`bad count "${v}": use a number, or "unlimited"`, EXIT.usage);
  return Number(v);
}

/** A --keep-within* duration: restic's `1y5m7d2h`; no negative parts. */
export function parseWithin(v: string): Duration {
  let d: Duration;
  try {
    d = parseDuration(v);
  } catch (e) {
    throw new ExitError((e as Error).message, EXIT.usage);
  }
  if (d.years < 0 || d.months < 0 || d.days < 0 || d.hours < 0) throw new ExitError(`bad duration "${v}": negative values are not allowed`, EXIT.usage);
  return d;
}

/** Splits a --keep-tag value into its tags (restic: comma-separated, spaces trimmed). */
export const tagList = (v: string): string[] => v.split(',').map((t) => t.trim());

function policyOf(f: ForgetFlags): RetentionPolicy {
  const p: Record<string, unknown> = {
    last: f.keepLast, minutely: f.keepMinutely, hourly: f.keepHourly, daily: f.keepDaily, weekly: f.keepWeekly,
    monthly: f.keepMonthly, yearly: f.keepYearly,
    within: f.keepWithin, withinHourly: f.keepWithinHourly, withinDaily: f.keepWithinDaily, withinWeekly: f.keepWithinWeekly,
    withinMonthly: f.keepWithinMonthly, withinYearly: f.keepWithinYearly,
    tags: f.keepTag?.map(tagList),
  };
  for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
  return p as RetentionPolicy;
}

export function register(program: Command): void {
  const cmd = program
    .command('forget')
    .description('remove snapshots by a retention policy (or by id); needs no password, but with one only authentic snapshots count. Data stays until "holdfast prune"')
    .argument('[snapshot-id...]', 'remove these snapshots (unique id prefixes) instead of applying a policy')
    .option('-l, --keep-last <n>', 'keep the newest n snapshots ("unlimited" for all)', parseCount)
    .option('--keep-minutely <n>', 'keep the newest snapshot of each of the newest n minutes', parseCount)
    .option('-H, --keep-hourly <n>', 'keep the newest snapshot of each of the newest n hours', parseCount)
    .option('-d, --keep-daily <n>', 'keep the newest snapshot of each of the newest n days', parseCount)
    .option('-w, --keep-weekly <n>', 'keep the newest snapshot of each of the newest n ISO weeks', parseCount)
    .option('-m, --keep-monthly <n>', 'keep the newest snapshot of each of the newest n months', parseCount)
    .option('-y, --keep-yearly <n>', 'keep the newest snapshot of each of the newest n years', parseCount)
    .option('--keep-within <duration>', 'keep every snapshot newer than duration (e.g. 1y5m7d2h; m = months) before the newest', parseWithin)
    .option('--keep-within-hourly <duration>', 'keep hourly snapshots within duration of the newest', parseWithin)
    .option('--keep-within-daily <duration>', 'keep daily snapshots within duration of the newest', parseWithin)
    .option('--keep-within-weekly <duration>', 'keep weekly snapshots within duration of the newest', parseWithin)
    .option('--keep-within-monthly <duration>', 'keep monthly snapshots within duration of the newest', parseWithin)
    .option('--keep-within-yearly <duration>', 'keep yearly snapshots within duration of the newest', parseWithin)
    .option('--keep-tag <tag[,tag]>', 'keep snapshots that have all these tags (repeatable)', collect)
    .option('-g, --group-by <group>', 'apply the policy per group of host, paths and/or tags ("" for one group)', 'host,paths')
    .option('-n, --dry-run', 'only show what would be removed, and why')
    .option('--prune', 'collect the data no snapshot references any more, afterwards')
    .option('--grace <duration>', `with --prune: prune's grace period (default ${formatDurationMs(DEFAULT_GRACE_MS)})`);
  withFilterOptions(cmd).action(async (ids: string[], f: ForgetFlags, c: Command) => {
    const g = globals(c);
    let groupBy: GroupBy;
    try {
      groupBy = parseGroupBy(f.groupBy);
    } catch (e) {
      throw new ExitError((e as Error).message, EXIT.usage);
    }
    if (f.grace !== undefined) {
      if (!f.prune) throw new ExitError('--grace is for the prune of --prune: give --prune too', EXIT.usage);
      parseGrace(f.grace); // before anything is forgotten
    }
    const policy = policyOf(f);
    const repo = await openKeyless(g);
    if (!f.dryRun) refuseIfAppendOnly(repo.backend, 'forget');

    if (ids.length > 0) {
      if (Object.keys(policy).length > 0) throw new ExitError('give either snapshot ids or a --keep-* policy, not both', EXIT.usage);
      await forgetIds(repo, g, ids, f);
      return;
    }
    if (Object.keys(policy).length === 0) {
      if (g.json) process.stdout.write('[]\n');
      else say(g, 'no policy was given (--keep-*): no snapshot is removed');
      return;
    }
    if (!g.json) say(g, `applying policy: ${describePolicy(policy)}`);
    const lock = f.dryRun ? undefined : await acquireLock(repo.backend, { ...lockedByMe(), exclusive: false, operation: 'forget' });
    let result;
    try {
      result = await forgetByPolicy(await policyStore(g, repo), { policy, groupBy, filter: (s) => matchesFilter(s, f), dryRun: f.dryRun === true });
    } finally {
      await lock?.release();
    }
    for (const { id, error } of result.skipped) {
      warn(`${error.message}; left out of the policy: neither kept nor removed (look at it with "holdfast check"; "holdfast forget ${id}" removes it)`);
    }
    if (g.json) process.stdout.write(`${JSON.stringify(result.groups.map(groupJson))}\n`);
    else {
      for (const grp of result.groups) printGroup(g, grp);
      const n = result.remove.length;
      say(g, f.dryRun
        ? `would remove ${plural(n, 'snapshot')} (dry run: nothing was removed)`
        : `removed ${plural(result.removed.length, 'snapshot')}`);
    }
    await afterForget(g, f, result.remove.length);
  });
}

/**
 * The snapshots a policy is applied to: with a password, only those whose
 * MAC verifies; without one, all that can be read, as their plain times
 * say. The others are skipped (named in a warning and left alone).
 */
async function policyStore(g: GlobalOptions, repo: Awaited<ReturnType<typeof openKeyless>>): Promise<ForgetStore> {
  if (!passwordGiven(g)) return repo;
  const keyed = await openRepo(g, { index: false });
  return {
    listSnapshots: () => keyed.listSnapshots(),
    remove: (type, id) => repo.remove(type, id),
  };
}

/**
 * Removes the snapshots named by id prefix. A snapshot that cannot be read
 * can be named too: a policy never removes it, so this is how it goes.
 */
async function forgetIds(repo: Awaited<ReturnType<typeof openKeyless>>, g: GlobalOptions, prefixes: string[], f: ForgetFlags): Promise<void> {
  const { ok: all, damaged: unreadable } = await repo.listSnapshots();
  const ids = [...all.map((s) => s.id), ...unreadable.keys()];
  const chosen = new Set<string>();
  for (const p of prefixes) {
    if (!/^[0-9a-f]{1,64}$/.test(p)) throw new ExitError(`"${p}" is not a snapshot id`, EXIT.usage);
    const found = ids.filter((id) => id.startsWith(p));
    if (found.length !== 1) throw new ExitError(found.length === 0 ? `no snapshot with id ${p}` : `snapshot id prefix ${p} is ambiguous (${found.length} snapshots)`, EXIT.failed);
    chosen.add(found[0]!);
  }
  const lock = f.dryRun ? undefined : await acquireLock(repo.backend, { ...lockedByMe(), exclusive: false, operation: 'forget' });
  try {
    if (!f.dryRun) for (const id of chosen) await repo.remove('snapshot', id);
  } finally {
    await lock?.release();
  }
  const decisions = all.filter((s) => chosen.has(s.id)).map((item) => ({ item, keep: false, reasons: ['named on the command line'], counters: {} }));
  const named = [...chosen].filter((id) => unreadable.has(id));
  if (g.json) {
    const grp = groupJson({ key: { hostname: null, paths: null, tags: null }, decisions });
    // restic's shape has no place for a snapshot that cannot be read: its id and why, in the same lists.
    for (const id of named) {
      const why = unreadable.get(id)!.message;
      (grp.remove as unknown[]).push({ id, short_id: id.slice(0, 8), unreadable: why });
      (grp.decisions as unknown[]).push({ id, short_id: id.slice(0, 8), action: 'remove', reasons: ['named on the command line'], unreadable: why });
    }
    process.stdout.write(`${JSON.stringify([grp])}\n`);
  } else {
    for (const d of decisions) say(g, `${f.dryRun ? 'would remove' : 'removed'} snapshot ${d.item.id.slice(0, 8)}`);
    for (const id of named) say(g, `${f.dryRun ? 'would remove' : 'removed'} snapshot ${id.slice(0, 8)} (it cannot be read: ${unreadable.get(id)!.message})`);
  }
  await afterForget(g, f, chosen.size);
}

/** With --prune, collects right after (a dry run reports what that prune would do). */
async function afterForget(g: GlobalOptions, f: ForgetFlags, removedCount: number): Promise<void> {
  if (f.prune && removedCount > 0) await runPrune(g, { dryRun: f.dryRun === true, ...(f.grace === undefined ? {} : { grace: f.grace }) });
}

function printGroup(g: GlobalOptions, grp: ForgetGroupPlan): void {
  const kept = grp.decisions.filter((d) => d.keep).length;
  say(g, '');
  say(g, `snapshots of ${describeGroup(grp.key)}: keep ${kept}, remove ${grp.decisions.length - kept}`);
  say(g, `${'ID'.padEnd(10)}${'Time'.padEnd(21)}${'Host'.padEnd(16)}${'Tags'.padEnd(16)}${'Action'.padEnd(8)}Reasons`);
  for (const d of grp.decisions) {
    const s = d.item.snapshot;
    say(g, `${d.item.id.slice(0, 8).padEnd(10)}${localTime(Date.parse(s.time)).padEnd(21)}${s.hostname.padEnd(16)}${s.tags.join(',').padEnd(16)}${(d.keep ? 'keep' : 'remove').padEnd(8)}${d.reasons.join('; ')}`);
  }
}

function snapshotJson({ id, snapshot: s }: ForgetItem): Record<string, unknown> {
  return { id, short_id: id.slice(0, 8), time: s.time, hostname: s.hostname, username: s.username, paths: s.paths, tags: s.tags, ...(s.parent ? { parent: s.parent } : {}), tree: s.tree };
}

/** restic's JSON shape for a group (host, paths, tags, keep, remove, reasons), plus every decision with its reasons. */
function groupJson(grp: ForgetGroupPlan): Record<string, unknown> {
  return {
    host: grp.key.hostname,
    paths: grp.key.paths,
    tags: grp.key.tags,
    keep: grp.decisions.filter((d) => d.keep).map((d) => snapshotJson(d.item)),
    remove: grp.decisions.filter((d) => !d.keep).map((d) => snapshotJson(d.item)),
    reasons: grp.decisions.filter((d) => d.keep).map((d) => ({ snapshot: snapshotJson(d.item), matches: d.reasons, counters: d.counters })),
    decisions: grp.decisions.map((d) => ({ id: d.item.id, short_id: d.item.id.slice(0, 8), time: d.item.snapshot.time, hostname: d.item.snapshot.hostname, action: d.keep ? 'keep' : 'remove', reasons: d.reasons })),
  };
}

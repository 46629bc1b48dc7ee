/**
 * Retention and pruning of a disk safe, on the server, keyless (issue 16:
 * agents can only add; the server, which owns the storage, removes). Both
 * work on the safe's plain objects (docs/format.md §11) with the engine's
 * jobs, as `holdfast forget` and `holdfast prune` do without a password,
 * and take the repository's locks as the server process, so a backup
 * through the server at the same time is safe (§15.5).
 *
 *   forget   answers at once: per group, per snapshot, keep or remove and
 *            why (a dry run removes nothing: the retention preview); the
 *            scheduler's retention runs the same forget as a server job
 *            (`forgetWork`, kind `forget`: every `retention.every`)
 *   prune    a server job (server-jobs.ts), run by whichever server node
 *            claims it: the caller follows it at GET /api/v1/jobs/ID; its
 *            result is what `prune --json` prints
 *
 * Who may: provider admins and operators, the safe's customer admins and
 * tokens with `manage`; another customer's safe is NotFound.
 */
import { randomUUID } from 'node:crypto';
import type { ForgetResultBody, ForgetSafeRequest, JobBody, PruneSafeRequest } from '../../api/v1.js';
import { snakeKeys } from '../../core/snake-keys.js';
import { forgetByPolicy, type ForgetItem } from '../../jobs/forget/forget.js';
import { DEFAULT_GROUP_BY, type GroupBy } from '../../jobs/forget/group-by.js';
import { describePolicy, isEmptyPolicy, parseDuration, UNLIMITED, type Duration, type RetentionPolicy } from '../../jobs/forget/retention.js';
import { Pruner } from '../../jobs/prune/pruner.js';
import { holdMaintenanceLock, OperationRunningError } from '../../jobs/sessions/maintenance-lock.js';
import { DEFAULT_GRACE_MS, formatDurationMs } from '../../repo/deletion-marker.js';
import { NotARepositoryError } from '../../repo/errors.js';
import { LockedError } from '../../repo/lock.js';
import { Store } from '../../repo/store.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import { vouchedSnapshots } from './census.js';
import type { ServiceContext } from './context.js';
import { BadRequest, Conflict, NotFound } from './errors.js';
import { withSafeNames } from './jobs.js';
import { removeLocksOfExpiredTokens } from './lock-owners.js';
import { requireManage, sees, type Principal } from './principal.js';
import { heldByRestoreTests } from './restore-tests.js';
import { workingBackendOf } from './safe-storage.js';
import type { ServerWorkOf } from './server-jobs.js';

/** The safe `id` if the caller sees it (NotFound otherwise) and may change it (Forbidden otherwise). */
export async function manageableSafe(ctx: ServiceContext, p: Principal, id: string): Promise<DiskSafe> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound('disk safe', id);
  requireManage(p);
  return s;
}

/** The safe's repository, keyless, as its storage owner (an append-only safe's config binds its clients, not the server). */
export async function openSafe(ctx: ServiceContext, safe: DiskSafe): Promise<Store> {
  // An expired token's locks hold nothing: they go before the server judges the others.
  await removeLocksOfExpiredTokens(ctx, safe.id);
  try {
    return await Store.open(workingBackendOf(ctx.safeStorage, safe), { storageOwner: true });
  } catch (e) {
    if (e instanceof NotARepositoryError) throw new Conflict(`disk safe ${safe.name} holds no repository yet: its agent initialises it (holdfast agent enroll, or holdfast init with a backup token)`);
    throw e;
  }
}

/** A lock that cannot be taken now, as the API says it. */
export function lockConflict(e: unknown): unknown {
  return e instanceof LockedError || e instanceof OperationRunningError ? new Conflict(e.message) : e;
}

const count = (v: number | 'unlimited' | undefined): number | undefined => (v === 'unlimited' ? UNLIMITED : v);

function within(field: string, v: string | undefined): Duration | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v);
  } catch (e) {
    throw new BadRequest(`${field}: ${(e as Error).message}`);
  }
}

/** The request's policy, as the CLI's --keep-* flags make it; BadRequest when it has no rule or a duration does not parse. */
export function retentionPolicyOf(req: Omit<ForgetSafeRequest, 'dry_run'>): RetentionPolicy {
  const p: Record<string, unknown> = {
    last: count(req.keep_last), minutely: count(req.keep_minutely), hourly: count(req.keep_hourly), daily: count(req.keep_daily),
    weekly: count(req.keep_weekly), monthly: count(req.keep_monthly), yearly: count(req.keep_yearly),
    within: within('keep_within', req.keep_within), withinHourly: within('keep_within_hourly', req.keep_within_hourly),
    withinDaily: within('keep_within_daily', req.keep_within_daily), withinWeekly: within('keep_within_weekly', req.keep_within_weekly),
    withinMonthly: within('keep_within_monthly', req.keep_within_monthly), withinYearly: within('keep_within_yearly', req.keep_within_yearly),
    tags: req.keep_tags,
  };
  for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
  const policy = p as RetentionPolicy;
  // The CLI removes nothing without a rule; a request without one is a mistake worth saying.
  if (isEmptyPolicy(policy)) throw new BadRequest('no retention rule was given (keep_last, keep_daily, keep_within, keep_tags, …): nothing would be kept, so nothing is done');
  return policy;
}

function groupByOf(req: Omit<ForgetSafeRequest, 'dry_run'>): GroupBy {
  if (req.group_by === undefined) return DEFAULT_GROUP_BY;
  return { host: req.group_by.includes('host'), paths: req.group_by.includes('paths'), tags: req.group_by.includes('tags') };
}

function decision(item: ForgetItem, keep: boolean, reasons: readonly string[]): ForgetResultBody['groups'][number]['decisions'][number] {
  const s = item.snapshot;
  return { id: item.id, short_id: item.id.slice(0, 8), time: s.time, hostname: s.hostname, paths: [...s.paths], tags: [...s.tags], action: keep ? 'keep' : 'remove', reasons: [...reasons] };
}

/**
 * Applies a retention policy to disk safe `safeId` for the caller (see the
 * module comment): forgetInSafe, audited unless a dry run.
 */
export async function forgetSafe(ctx: ServiceContext, p: Principal, safeId: string, req: ForgetSafeRequest): Promise<ForgetResultBody> {
  const safe = await manageableSafe(ctx, p, safeId);
  const result = await forgetInSafe(ctx, safe, req);
  if (!result.dry_run) await audit(ctx, p, 'safe.forget', safe.id, safe.customer_id);
  return result;
}

/**
 * Applies `req`'s retention rules to `safe`, for whoever checked the
 * caller's rights (the API) or the scheduler (forgetWork): unless a dry
 * run, under a shared lock, removing the snapshots it decides to remove.
 * Calendar buckets are in the server's time zone. Conflict when the lock
 * cannot be taken (a prune holds it alone).
 */
export async function forgetInSafe(ctx: ServiceContext, safe: DiskSafe, req: ForgetSafeRequest, signal?: AbortSignal): Promise<ForgetResultBody> {
  const policy = retentionPolicyOf(req);
  const store = await openSafe(ctx, safe);
  const dryRun = req.dry_run === true;
  // Only what the key holder's census vouched for counts (census.ts): a snapshot planted without the key never displaces a genuine one.
  // A snapshot a restore test is queued or running on is counted, but not removed until the test ends (restore-tests.ts).
  const tests = heldByRestoreTests(ctx, safe, await vouchedSnapshots(ctx, safe, store));
  const held = dryRun ? undefined : await holdMaintenanceLock(store.backend, { identity: ctx.identity, operation: 'forget', ...(signal ? { signal } : {}) }).catch((e: unknown) => {
    throw lockConflict(e);
  });
  let result;
  try {
    result = await forgetByPolicy(tests.store, { policy, groupBy: groupByOf(req), dryRun, now: ctx.now() });
  } finally {
    await held?.release();
  }
  // What the policy would remove of a held snapshot is not done: it leaves its group for `skipped`, with why.
  const underTest = tests.held;
  const spared = result.groups.flatMap((g) => g.decisions.filter((d) => !d.keep && underTest.has(d.item.id)).map((d) => d.item.id));
  return {
    dry_run: dryRun,
    policy: describePolicy(policy),
    groups: result.groups.map((g) => {
      const decisions = g.decisions.filter((d) => d.keep || !underTest.has(d.item.id));
      const kept = decisions.filter((d) => d.keep).length;
      return {
        host: g.key.hostname, paths: g.key.paths === null ? null : [...g.key.paths], tags: g.key.tags === null ? null : [...g.key.tags],
        keep: kept, remove: decisions.length - kept,
        decisions: decisions.map((d) => decision(d.item, d.keep, d.reasons)),
      };
    }),
    removed: [...result.removed],
    skipped: [...result.skipped.map(({ id, error }) => ({ id, error: error.message })), ...spared.map((id) => ({ id, error: underTest.get(id)! }))],
  };
}

/**
 * The work of a scheduled retention job (kind `forget`, server-jobs.ts; its
 * spec: the policy's retention rules when the scheduler made it), on
 * whichever node claims it: forgetInSafe, as the API's forget, and its
 * result what it kept and removed (counts, the removed snapshots' ids).
 * Safe to run again after a kill part-way: a second run finds the
 * snapshots already removed gone and decides again.
 */
export const forgetWork: ServerWorkOf = (ctx, job) => async (log, signal) => {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirst();
  if (!safe || safe.deleting_at !== null) throw new Error('its disk safe was deleted');
  const r = await forgetInSafe(ctx, safe, { ...JSON.parse(job.spec) as ForgetSafeRequest, dry_run: false }, signal);
  const kept = r.groups.reduce((n, g) => n + g.keep, 0);
  await log.log(`retention of ${safe.name} (${r.policy}): kept ${kept} snapshot(s), removed ${r.removed.length}${r.skipped.length > 0 ? `, left out ${r.skipped.length} that cannot be read` : ''}`);
  return { policy: r.policy, kept, removed_count: r.removed.length, removed: r.removed, skipped: r.skipped };
};

/**
 * Queues a prune of disk safe `safeId` as a server job and answers with the
 * job (queued; a server node takes it within moments: server-jobs.ts).
 * Refused (409) while a prune of the safe is queued or runs; a grace period
 * below the server's minimum is a bad request.
 */
export async function pruneSafe(ctx: ServiceContext, p: Principal, safeId: string, req: PruneSafeRequest): Promise<JobBody> {
  const safe = await manageableSafe(ctx, p, safeId);
  const graceMs = req.grace_seconds === undefined ? Math.max(DEFAULT_GRACE_MS, ctx.minGraceMs) : req.grace_seconds * 1000;
  if (graceMs < ctx.minGraceMs) {
    throw new BadRequest(`grace_seconds ${req.grace_seconds}: shorter than the minimum of ${formatDurationMs(ctx.minGraceMs)}, which backups running alongside rely on (docs/format.md §15.5)`);
  }
  // A safe with no repository yet is refused now, not by a job that fails later.
  await openSafe(ctx, safe);
  const other = await ctx.db.selectFrom('jobs').select(['id', 'state']).where('safe_id', '=', safe.id).where('kind', '=', 'prune').where('state', 'in', ['queued', 'running']).executeTakeFirst();
  if (other) throw new Conflict(`a prune of disk safe ${safe.name} is ${other.state} already: job ${other.id}`);
  const row = await ctx.serverJobs.enqueue(ctx, {
    id: randomUUID(), customer_id: safe.customer_id, machine_id: safe.machine_id, safe_id: safe.id, runner: 'server', runner_node: null, kind: 'prune', spec: JSON.stringify(req),
    state: 'queued', created_by: p.actor, created_at: ctx.now().toISOString(), started_at: null, last_report_at: null, finished_at: null, result: null, error: null,
    expires_at: null, cancelled_by: null, lease_until: null, slot_at: null, timeout_seconds: null,
  });
  await audit(ctx, p, 'safe.prune', safe.id, safe.customer_id);
  return (await withSafeNames(ctx, [row]))[0]!;
}

/**
 * The work of a prune job (server-jobs.ts), on whichever node claims it:
 * safe to run again after a kill part-way, as `holdfast prune` is (a
 * killed prune's marks stay and its sweep goes on; docs/format.md §15).
 */
export const pruneWork: ServerWorkOf = (ctx, job) => async (log, signal) => {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirst();
  if (!safe || safe.deleting_at !== null) throw new Error('its disk safe was deleted');
  const req = JSON.parse(job.spec) as PruneSafeRequest;
  const graceMs = req.grace_seconds === undefined ? Math.max(DEFAULT_GRACE_MS, ctx.minGraceMs) : req.grace_seconds * 1000;
  const dryRun = req.dry_run === true;
  const store = await openSafe(ctx, safe);
  const stop = new AbortController();
  signal.addEventListener('abort', () => stop.abort(signal.reason), { once: true });
  const held = await holdMaintenanceLock(store.backend, { identity: ctx.identity, operation: 'prune', alone: true, stop, signal });
  try {
    await log.log(`${dryRun ? 'dry run: ' : ''}prune of ${safe.name} with a grace period of ${formatDurationMs(graceMs)}`);
    const report = await new Pruner(store, {
      dryRun,
      maxUnused: (req.max_unused ?? 50) / 100,
      graceMs,
      minGraceMs: ctx.minGraceMs,
      now: () => ctx.now().getTime(),
      otherLocks: () => held.otherLocks(),
      beforeDelete: () => held.lock.refresh(),
      onWarning: (m) => void log.log(m).catch(() => undefined),
      signal: held.signal,
    }).run();
    const { sweep, mark } = report;
    await log.log(`${dryRun ? 'would delete' : 'deleted'} ${sweep.packsDeleted} packs (${sweep.bytesFreed} bytes) marked at least ${formatDurationMs(graceMs)} ago; `
      + `${dryRun ? 'would mark' : 'marked'} ${mark.unusedPacks} unused and ${mark.repackedPacks} mostly unused packs (${mark.bytesToFree} bytes to free)`);
    return snakeKeys({ ...report, graceSeconds: graceMs / 1000 }) as Record<string, unknown>;
  } catch (e) {
    throw held.signal.aborted ? held.signal.reason : e;
  } finally {
    await held.release();
  }
};

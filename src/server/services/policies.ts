/**
 * Policies: what the server does on schedule (backups, retention, prune,
 * verification, restore tests) and the quotas, attached to a customer, a
 * machine or a disk safe, one policy each. A disk safe's effective policy
 * takes each setting from the most specific policy that has it:
 *
 *   safe's policy ─▶ its machine's policy ─▶ its customer's policy
 *
 * setting by setting (a machine's policy that only says `schedule` keeps
 * the customer's retention), and each setting whole (a machine's
 * `retention` replaces the customer's rules, not some of them: a mix of
 * two sets of keep rules is one nobody wrote; docs/decisions.md).
 *
 * Who may: the customer's people and tokens read them (`read`) and change
 * them (`manage`), provider roles any customer's; only provider roles set
 * `quota`. Another customer's policy is NotFound.
 */
import { randomUUID } from 'node:crypto';
import type { CreatePolicyRequest, EffectivePolicyBody, PolicyBody, PolicySettings, ReplacePolicyRequest, RetentionPreviewRequest } from '../../api/v1-policies.js';
import type { ForgetResultBody } from '../../api/v1.js';
import { POLICY_SETTING_NAMES } from '../../api/v1-policies.js';
import { parseDuration } from '../../repo/deletion-marker.js';
import type { DiskSafe, Policy } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { checkQuotas } from './disk-safes.js';
import { BadRequest, Conflict, NotFound } from './errors.js';
import { findMachine, requireCustomer } from './machines.js';
import { isProvider, requireManage, requireProvider, requireRead, sees, type Principal } from './principal.js';
import { forgetSafe, retentionPolicyOf } from './retention.js';
import { isCron, MAX_INTERVAL, nextRunAfter, parseSchedule, parseWindow, ScheduleError, splayFor, type Timing } from './schedule.js';

/** The time zone of a policy that names none. */
export const DEFAULT_TIME_ZONE = 'UTC';
/** How often retention runs when its policy does not say. */
export const DEFAULT_RETENTION_EVERY = '1d';
/** How long a scheduled job may run when its policy does not say (`timeout`). */
export const DEFAULT_TIMEOUT = '24h';

/** A safe's (or machine's) settings as its policies resolve them. */
export interface EffectivePolicy {
  readonly customerId: string;
  readonly machineId: string | null;
  /** The disk safe they apply to; null for a machine without one. */
  readonly safeId: string | null;
  readonly settings: PolicySettings;
  /** Which policy (its id) each setting comes from. */
  readonly from: Partial<Record<keyof PolicySettings, string>>;
  /** When backups run for it; null without a `schedule`. */
  readonly timing: Timing | null;
  /** The backup interval in seconds (stale alerts: 3× it); null without a schedule. */
  readonly intervalSeconds: number | null;
}

/** The policies of one customer, as resolve() takes them. */
export interface PolicyChain {
  readonly customer?: Policy;
  readonly machine?: Policy;
  readonly safe?: Policy;
}

const settingsOf = (p: Policy): PolicySettings => JSON.parse(p.settings) as PolicySettings;

/** Milliseconds of a duration setting (checked when the policy was saved). */
export const durationMs = (d: string): number => parseDuration(d);

/**
 * The effective policy of the chain (most specific first, setting by
 * setting) for `safeId` of `machineId` of `customerId`, at `now`. Pure:
 * the scheduler resolves every safe with it from policies it read at once.
 */
export function resolve(chain: PolicyChain, target: { customerId: string; machineId: string | null; safeId: string | null }, now: number): EffectivePolicy {
  const settings: Record<string, unknown> = {};
  const from: Partial<Record<keyof PolicySettings, string>> = {};
  for (const p of [chain.safe, chain.machine, chain.customer]) {
    if (!p) continue;
    const s = settingsOf(p) as Record<string, unknown>;
    for (const name of POLICY_SETTING_NAMES) {
      if (settings[name] !== undefined || s[name] === undefined) continue;
      settings[name] = s[name];
      from[name] = p.id;
    }
  }
  const eff = settings as PolicySettings;
  let timing: Timing | null = null;
  if (eff.schedule !== undefined) {
    const timeZone = eff.time_zone ?? DEFAULT_TIME_ZONE;
    const schedule = parseSchedule(eff.schedule, timeZone);
    const window = eff.window === undefined ? null : parseWindow(eff.window);
    // A machine's backups spread by the machine (all its safes alike); a safe without one by the safe.
    const splayMs = splayFor(target.machineId ?? target.safeId ?? target.customerId, schedule, window, now, isCron(eff.schedule));
    timing = { schedule, window, timeZone, splayMs };
  }
  return {
    customerId: target.customerId, machineId: target.machineId, safeId: target.safeId, settings: eff, from, timing,
    intervalSeconds: timing === null ? null : Math.round(timing.schedule.intervalMs(now) / 1000),
  };
}

/** The disk safe a machine's scheduled backups go to: its first (as "run now" chooses). */
export async function machineSafe(ctx: ServiceContext, machineId: string): Promise<DiskSafe | undefined> {
  return ctx.db.selectFrom('disk_safes').selectAll().where('machine_id', '=', machineId).where('deleting_at', 'is', null)
    .orderBy('created_at').orderBy('name').limit(1).executeTakeFirst();
}

/**
 * The effective policy of disk safe `safeId`, or of machine `machineId`
 * (its first disk safe's, or the machine's and customer's when it has
 * none). NotFound for a safe or machine that does not exist. For the other
 * services (alerts: the stale threshold; verification: its settings); no
 * scope check: the caller has one.
 */
export async function effectivePolicy(ctx: ServiceContext, of: { safeId: string } | { machineId: string }): Promise<EffectivePolicy> {
  let customerId: string;
  let machineId: string | null;
  let safeId: string | null;
  if ('safeId' in of) {
    const s = await ctx.db.selectFrom('disk_safes').select(['id', 'customer_id', 'machine_id']).where('id', '=', of.safeId).executeTakeFirst();
    if (!s) throw new NotFound('disk safe', of.safeId);
    [customerId, machineId, safeId] = [s.customer_id, s.machine_id, s.id];
  } else {
    const m = await ctx.db.selectFrom('machines').select(['id', 'customer_id']).where('id', '=', of.machineId).executeTakeFirst();
    if (!m) throw new NotFound('machine', of.machineId);
    [customerId, machineId, safeId] = [m.customer_id, m.id, (await machineSafe(ctx, m.id))?.id ?? null];
  }
  const targets = [`customer:${customerId}`, ...(machineId ? [`machine:${machineId}`] : []), ...(safeId ? [`safe:${safeId}`] : [])];
  const rows = await ctx.db.selectFrom('policies').selectAll().where('target', 'in', targets).execute();
  return resolveTarget(new Map(rows.map((r) => [r.target, r])), { customerId, machineId, safeId }, ctx.now().getTime());
}

/** The policies of customers `customerIds` (and of their machines and safes) by target: one query for resolveTarget of many. */
export async function policiesOf(ctx: ServiceContext, customerIds: readonly string[]): Promise<Map<string, Policy>> {
  if (customerIds.length === 0) return new Map();
  const rows = await ctx.db.selectFrom('policies').selectAll().where('customer_id', 'in', [...new Set(customerIds)]).execute();
  return new Map(rows.map((r) => [r.target, r]));
}

/** resolve() of `target` from the policies that apply to it, by target (`customer:ID`, `machine:ID`, `safe:ID`). */
export function resolveTarget(policies: ReadonlyMap<string, Policy>, target: { customerId: string; machineId: string | null; safeId: string | null }, now: number): EffectivePolicy {
  return resolve({
    customer: policies.get(`customer:${target.customerId}`),
    machine: target.machineId ? policies.get(`machine:${target.machineId}`) : undefined,
    safe: target.safeId ? policies.get(`safe:${target.safeId}`) : undefined,
  }, target, now);
}

/** When the next scheduled backup of `e` runs after `now` (ms); null without a schedule, a backup, a machine or a safe. */
export function nextBackupRun(e: EffectivePolicy, now: number): number | null {
  const runs = e.timing !== null && e.settings.backup !== undefined && e.machineId !== null && e.safeId !== null;
  return runs ? nextRunAfter(e.timing!, now) : null;
}

function policyBody(p: Policy): PolicyBody {
  return {
    id: p.id, customer_id: p.customer_id, machine_id: p.machine_id, safe_id: p.safe_id,
    attached_to: p.safe_id !== null ? 'safe' : p.machine_id !== null ? 'machine' : 'customer',
    ...settingsOf(p), created_at: p.created_at, updated_at: p.updated_at, updated_by: p.updated_by,
  };
}

/** The settings of a request, without the ids. */
function settingsFrom(req: CreatePolicyRequest | ReplacePolicyRequest): PolicySettings {
  const out: Record<string, unknown> = {};
  for (const name of POLICY_SETTING_NAMES) if (req[name] !== undefined) out[name] = req[name];
  return out as PolicySettings;
}

function checkDuration(field: string, d: string | undefined, minMs: number, min: string): void {
  if (d === undefined) return;
  let ms: number;
  try {
    ms = parseDuration(d);
  } catch (e) {
    throw new BadRequest(`${field}: ${(e as Error).message}`);
  }
  if (ms < minMs) throw new BadRequest(`${field} "${d}": at least ${min}`);
  if (!(ms <= MAX_INTERVAL)) throw new BadRequest(`${field} "${d}": at most 366d`);
}

/**
 * Refuses settings that cannot be used, saying which and why (400): a
 * schedule, window or time zone that does not parse, a duration too short,
 * retention without a rule, a prune grace below the server's minimum, a
 * soft quota above the hard one. A window alone is fine: it narrows the
 * schedule a less specific policy gives.
 */
function checkSettings(ctx: ServiceContext, s: PolicySettings): void {
  try {
    if (s.time_zone !== undefined) parseSchedule('every 1h', s.time_zone);
    if (s.schedule !== undefined) parseSchedule(s.schedule, s.time_zone ?? DEFAULT_TIME_ZONE);
    if (s.window !== undefined) parseWindow(s.window);
  } catch (e) {
    if (e instanceof ScheduleError) throw new BadRequest(e.message);
    throw e;
  }
  checkDuration('timeout', s.timeout, 60_000, '1m');
  if (s.retention !== undefined) {
    checkDuration('retention.every', s.retention.every, 3_600_000, '1h');
    const { every: _every, ...rules } = s.retention;
    retentionPolicyOf(rules);
  }
  if (s.prune !== undefined) {
    checkDuration('prune.every', s.prune.every, 3_600_000, '1h');
    if (s.prune.grace_seconds !== undefined && s.prune.grace_seconds * 1000 < ctx.minGraceMs) {
      throw new BadRequest(`prune.grace_seconds ${s.prune.grace_seconds}: shorter than the server's minimum of ${ctx.minGraceMs / 1000} s, which backups running alongside rely on`);
    }
  }
  if (s.verify !== undefined) checkDuration('verify.every', s.verify.every, 3_600_000, '1h');
  if (s.restore_test !== undefined) checkDuration('restore_test.every', s.restore_test.every, 3_600_000, '1h');
  if (s.quota !== undefined) checkQuotas(s.quota.hard ?? null, s.quota.soft ?? null);
}

async function findPolicy(ctx: ServiceContext, p: Principal, id: string): Promise<Policy> {
  const row = await ctx.db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || !sees(p, row)) throw new NotFound('policy', id);
  return row;
}

/** The policies the caller sees, the customer's first, then the machines' and safes'. */
export async function listPolicies(ctx: ServiceContext, p: Principal): Promise<PolicyBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('policies').selectAll().orderBy('customer_id').orderBy('target');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('machine_id', '=', p.machineId);
  return (await q.execute()).map(policyBody);
}

export async function getPolicy(ctx: ServiceContext, p: Principal, id: string): Promise<PolicyBody> {
  const row = await findPolicy(ctx, p, id);
  requireRead(p);
  return policyBody(row);
}

/** Attaches a new policy to a customer, or to a machine or disk safe of it; Conflict when that one has a policy already. */
export async function createPolicy(ctx: ServiceContext, p: Principal, req: CreatePolicyRequest): Promise<PolicyBody> {
  if (req.machine_id !== undefined && req.safe_id !== undefined) throw new BadRequest('a policy is attached to a machine or to a disk safe, not both: give machine_id or safe_id');
  let machineId = req.machine_id ?? null;
  if (req.machine_id !== undefined) {
    const m = await findMachine(ctx, p, req.machine_id);
    if (m.customer_id !== req.customer_id) throw new NotFound('machine', req.machine_id);
  }
  if (req.safe_id !== undefined) {
    const s = await ctx.db.selectFrom('disk_safes').select(['id', 'customer_id', 'machine_id']).where('id', '=', req.safe_id).executeTakeFirst();
    if (!s || !sees(p, s) || s.customer_id !== req.customer_id) throw new NotFound('disk safe', req.safe_id);
    machineId = s.machine_id;
  }
  await requireCustomer(ctx, p, req.customer_id, { machineId });
  requireManage(p);
  const settings = settingsFrom(req);
  // Quotas are the provider's to set, here as on customers and safes.
  if (settings.quota !== undefined) requireProvider(p);
  checkSettings(ctx, settings);
  const now = ctx.now().toISOString();
  const target = req.safe_id !== undefined ? `safe:${req.safe_id}` : req.machine_id !== undefined ? `machine:${req.machine_id}` : `customer:${req.customer_id}`;
  const row: Policy = {
    id: randomUUID(), customer_id: req.customer_id, machine_id: req.machine_id ?? null, safe_id: req.safe_id ?? null, target,
    settings: JSON.stringify(settings), created_at: now, updated_at: now, updated_by: p.actor,
  };
  try {
    await ctx.db.insertInto('policies').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`the ${target.split(':')[0]} has a policy already: change it (PUT /api/v1/policies/ID, holdfast server policy set) or delete it first`);
    throw e;
  }
  await audit(ctx, p, 'policy.create', row.id, row.customer_id);
  return policyBody(row);
}

/** Replaces policy `id`'s settings with `req`'s (a setting left out is removed); a quota change needs a provider role. */
export async function replacePolicy(ctx: ServiceContext, p: Principal, id: string, req: ReplacePolicyRequest): Promise<PolicyBody> {
  const row = await findPolicy(ctx, p, id);
  requireManage(p);
  const settings = settingsFrom(req);
  // A customer's admin may change the rest of a policy that carries the provider's quota, as long as the quota stays as it is.
  if (JSON.stringify(settings.quota ?? null) !== JSON.stringify(settingsOf(row).quota ?? null)) requireProvider(p);
  checkSettings(ctx, settings);
  const next: Policy = { ...row, settings: JSON.stringify(settings), updated_at: ctx.now().toISOString(), updated_by: p.actor };
  await ctx.db.updateTable('policies').set({ settings: next.settings, updated_at: next.updated_at, updated_by: next.updated_by }).where('id', '=', id).execute();
  await audit(ctx, p, 'policy.update', id, row.customer_id);
  return policyBody(next);
}

/**
 * Removes policy `id`: what it set comes from the less specific policies again (a quota it held needs a provider role).
 * The safes it applied to are stamped, so that the schedule they fall back to starts at its next slot, not its last past one.
 */
export async function deletePolicy(ctx: ServiceContext, p: Principal, id: string): Promise<void> {
  const row = await findPolicy(ctx, p, id);
  requireManage(p);
  if (settingsOf(row).quota !== undefined) requireProvider(p);
  const now = ctx.now().toISOString();
  await ctx.db.transaction().execute(async (trx) => {
    const stamp = trx.updateTable('disk_safes').set({ policy_removed_at: now });
    await (row.safe_id !== null ? stamp.where('id', '=', row.safe_id) : row.machine_id !== null ? stamp.where('machine_id', '=', row.machine_id) : stamp.where('customer_id', '=', row.customer_id)).execute();
    await trx.deleteFrom('policies').where('id', '=', id).execute();
  });
  await audit(ctx, p, 'policy.delete', id, row.customer_id);
}

/** The effective policy as the API shows it, with the next scheduled backup (null without a schedule, a backup or a machine). */
function effectiveBody(e: EffectivePolicy, now: number): EffectivePolicyBody {
  const next = nextBackupRun(e, now);
  return {
    customer_id: e.customerId, machine_id: e.machineId, safe_id: e.safeId, settings: e.settings, from: e.from,
    interval_seconds: e.intervalSeconds, next_run: next === null ? null : new Date(next).toISOString(),
  };
}

/** GET /machines/ID/policy: the machine's effective policy (its first disk safe's), for whoever may read the machine. */
export async function machinePolicy(ctx: ServiceContext, p: Principal, machineId: string): Promise<EffectivePolicyBody> {
  const m = await findMachine(ctx, p, machineId);
  requireRead(p);
  return effectiveBody(await effectivePolicy(ctx, { machineId: m.id }), ctx.now().getTime());
}

/** GET /safes/ID/policy: the disk safe's effective policy, for whoever may read the safe. */
export async function safePolicy(ctx: ServiceContext, p: Principal, safeId: string): Promise<EffectivePolicyBody> {
  const s = await ctx.db.selectFrom('disk_safes').select(['id', 'customer_id', 'machine_id']).where('id', '=', safeId).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound('disk safe', safeId);
  requireRead(p);
  return effectiveBody(await effectivePolicy(ctx, { safeId: s.id }), ctx.now().getTime());
}

/**
 * POST /safes/ID/retention-preview: what `req`'s rules (or, when it has
 * none, the safe's effective retention) would keep and remove of the safe's
 * snapshots now, and why: forget's dry run; nothing is removed.
 */
export async function retentionPreview(ctx: ServiceContext, p: Principal, safeId: string, req: RetentionPreviewRequest): Promise<ForgetResultBody> {
  const s = await ctx.db.selectFrom('disk_safes').select(['id', 'customer_id', 'machine_id']).where('id', '=', safeId).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound('disk safe', safeId);
  let rules: RetentionPreviewRequest = req;
  if (Object.keys(req).length === 0) {
    const retention = (await effectivePolicy(ctx, { safeId: s.id })).settings.retention;
    if (retention === undefined) throw new BadRequest('the disk safe\'s policies have no retention: give the rules to preview (keep_last, keep_daily, …)');
    const { every: _every, ...keep } = retention;
    rules = keep;
  }
  return forgetSafe(ctx, p, s.id, { ...rules, dry_run: true });
}

/**
 * The quota `safe` takes from its policies when it has none of its own
 * (the most specific policy's `quota`), or undefined. For every upload:
 * one query, no schedule read.
 */
export async function policyQuota(ctx: ServiceContext, safe: Pick<DiskSafe, 'id' | 'customer_id' | 'machine_id'>): Promise<{ hard: number | null; soft: number | null } | undefined> {
  const order = [`safe:${safe.id}`, ...(safe.machine_id ? [`machine:${safe.machine_id}`] : []), `customer:${safe.customer_id}`];
  const rows = await ctx.db.selectFrom('policies').select(['target', 'settings']).where('target', 'in', order).execute();
  for (const target of order) {
    const row = rows.find((r) => r.target === target);
    const q = row && (JSON.parse(row.settings) as PolicySettings).quota;
    if (q) return { hard: q.hard ?? null, soft: q.soft ?? null };
  }
  return undefined;
}

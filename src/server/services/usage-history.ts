/**
 * A disk safe's and a customer's stored bytes over time, from the hourly
 * samples the usage ledger records as they change (usage.ts,
 * `usage_samples`): per day, the bytes at its end (a safe with no change
 * that day keeps its earlier value), the growth per day over the period, and
 * when the hard quota fills at that rate. What the web interface's storage
 * chart draws.
 */
import type { UsageHistoryBody, UsageHistoryQuery } from '../../api/v1.js';
import type { DiskSafe } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { NotFound } from './errors.js';
import { requireCustomer } from './machines.js';
import { requireRead, sees, type Principal } from './principal.js';

const DAY_MS = 86_400_000;
export const DEFAULT_HISTORY_DAYS = 30;

/** The history of `safes` together over the last `days` days, against `quotaHard`. */
async function historyOf(ctx: ServiceContext, safes: readonly Pick<DiskSafe, 'location'>[], days: number, quotaHard: number | null): Promise<UsageHistoryBody> {
  const now = ctx.now();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (days - 1) * DAY_MS);
  const locations = safes.map((s) => s.location);
  const samples = locations.length === 0 ? [] : await ctx.db.selectFrom('usage_samples').selectAll().where('location', 'in', locations).orderBy('hour').execute();
  const points: UsageHistoryBody['days'] = [];
  const last = new Map<string, number>();
  let i = 0;
  for (let d = 0; d < days; d++) {
    const end = new Date(first.getTime() + (d + 1) * DAY_MS).toISOString();
    while (i < samples.length && samples[i]!.hour < end) {
      last.set(samples[i]!.location, samples[i]!.stored_bytes);
      i++;
    }
    if (last.size > 0) points.push({ day: new Date(first.getTime() + d * DAY_MS).toISOString().slice(0, 10), stored_bytes: [...last.values()].reduce((a, b) => a + b, 0) });
  }
  const growth = points.length >= 2 ? (points.at(-1)!.stored_bytes - points[0]!.stored_bytes) / (Date.parse(points.at(-1)!.day) - Date.parse(points[0]!.day)) * DAY_MS : null;
  const current = points.at(-1)?.stored_bytes ?? 0;
  const fillsAt = quotaHard !== null && growth !== null && growth > 0 ? new Date(now.getTime() + Math.max(0, quotaHard - current) / growth * DAY_MS).toISOString() : null;
  return { days: points, growth_per_day: growth === null ? null : Math.round(growth), quota_hard: quotaHard, fills_at: fillsAt };
}

/** Disk safe `id`'s history, for a caller who sees it. */
export async function safeUsageHistory(ctx: ServiceContext, p: Principal, id: string, q: UsageHistoryQuery): Promise<UsageHistoryBody> {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!safe || !sees(p, safe)) throw new NotFound('disk safe', id);
  requireRead(p);
  return historyOf(ctx, [safe], q.days ?? DEFAULT_HISTORY_DAYS, safe.quota_hard);
}

/** Customer `id`'s history (all its safes the caller sees), against the customer's hard quota. */
export async function customerUsageHistory(ctx: ServiceContext, p: Principal, id: string, q: UsageHistoryQuery): Promise<UsageHistoryBody> {
  await requireCustomer(ctx, p, id);
  requireRead(p);
  const customer = await ctx.db.selectFrom('customers').select('quota_hard').where('id', '=', id).executeTakeFirstOrThrow();
  const safes = (await ctx.db.selectFrom('disk_safes').selectAll().where('customer_id', '=', id).execute()).filter((s) => sees(p, s));
  return historyOf(ctx, safes, q.days ?? DEFAULT_HISTORY_DAYS, customer.quota_hard);
}

/**
 * The storage chart's arithmetic on a usage history (GET
 * /api/v1/safes|customers/ID/usage-history): each day's growth over the
 * day before, the chart's scale, and how many days are left until the
 * hard quota fills at the history's rate (the server's `fills_at`).
 */
import type { UsageHistoryBody } from '../../../src/api/v1.js';

const DAY_MS = 86_400_000;

/** One day of the chart. */
export interface UsagePoint {
  readonly day: string;
  readonly bytes: number;
  /** Bytes added since the day before it in the history (null for the first). */
  readonly growth: number | null;
}

/** The history's days with each one's growth over the one before. */
export function usagePoints(days: UsageHistoryBody['days']): UsagePoint[] {
  return days.map((d, i) => ({ day: d.day, bytes: d.stored_bytes, growth: i === 0 ? null : d.stored_bytes - days[i - 1]!.stored_bytes }));
}

/**
 * The value at the top of the chart: a round number (1, 2 or 5 times a
 * power of 1024 or of ten of it) above every point, and above the hard
 * quota when the quota is within twice the largest point (else the quota
 * would flatten the line).
 */
export function chartTop(values: readonly number[], quota: number | null): number {
  const most = Math.max(1, ...values);
  const top = quota !== null && quota <= 2 * most ? Math.max(most, quota) : most;
  let unit = 1;
  while (unit * 1024 <= top) unit *= 1024;
  for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1024]) if (step * unit >= top) return step * unit;
  return 1024 * unit;
}

/** Whole days from `now` until `fillsAt` (0 when it is today or past); null when the history has no date (no quota, not growing). */
export function daysLeft(fillsAt: string | null, now: number): number | null {
  if (fillsAt === null) return null;
  return Math.max(0, Math.floor((Date.parse(fillsAt) - now) / DAY_MS));
}

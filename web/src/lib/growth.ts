/**
 * Growth of used space from its history: bytes per day (a least-squares
 * line through the points of the last `days`), and the day the space
 * reaches a limit at that rate. Plain TypeScript.
 */

export interface UsagePoint {
  /** ms since the epoch */
  readonly t: number;
  readonly bytes: number;
}

const DAY = 86_400_000;

/** Bytes per day over the points of the last `days` before the newest (null with fewer than two points or no time between them). */
export function growthPerDay(points: readonly UsagePoint[], days = 30): number | null {
  if (points.length < 2) return null;
  const end = Math.max(...points.map((p) => p.t));
  const recent = points.filter((p) => p.t >= end - days * DAY);
  if (recent.length < 2) return null;
  const n = recent.length;
  const mt = recent.reduce((s, p) => s + p.t, 0) / n;
  const mb = recent.reduce((s, p) => s + p.bytes, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of recent) {
    num += (p.t - mt) * (p.bytes - mb);
    den += (p.t - mt) ** 2;
  }
  if (den === 0) return null;
  return (num / den) * DAY;
}

/** When `current` bytes reach `limit` growing `perDay` from `now` (ms); null when it does not grow or there is no limit; `now` when already there. */
export function fillDate(current: number, limit: number | null, perDay: number | null, now: number): number | null {
  if (limit === null) return null;
  if (current >= limit) return now;
  if (perDay === null || perDay <= 0) return null;
  return now + ((limit - current) / perDay) * DAY;
}

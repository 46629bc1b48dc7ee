/**
 * Retention: which snapshots of one group a policy keeps. A pure function of
 * (snapshots, policy, now), with restic's semantics (`ApplyPolicy` in restic
 * 0.14, `internal/restic/snapshot_policy.go`) so that a policy moved from
 * restic keeps exactly the same snapshots; `test/jobs/forget-restic.test.ts`
 * checks this against the real restic binary.
 *
 *   sort newest first (ties: by id)
 *   latest = time of the newest snapshot that is not after `now`
 *   for each snapshot s, newest to oldest:
 *     keep if s has every tag of one --keep-tag list            "has tags [a, b]"
 *     keep if s.time > latest − within                           "within 1y2m"
 *     for each counted rule (last, minutely, hourly, daily, weekly, monthly,
 *     yearly) that has count left, or is unlimited:
 *       b = bucket(s): its position (last), or its minute / hour / day /
 *           ISO week / month / year in local time
 *       if b ≠ the bucket of the snapshot this rule kept last:
 *         keep, count −= 1                                        "daily snapshot"
 *     for each within-rule (hourly … yearly within D):
 *       if s.time > latest − D and bucket(s) ≠ the rule's last bucket:
 *         keep                                                    "daily within 1y"
 *
 * So `--keep-daily 7` keeps the newest snapshot of each of the 7 newest days
 * that have snapshots (not of the last 7 calendar days), and rules add up:
 * a snapshot is kept if any rule keeps it.
 *
 * Differences from restic 0.14, each deliberate:
 * - `minutely` is holdfast's own rule (restic has none).
 * - A count of `UNLIMITED` (-1, `unlimited` on the command line) means "every
 *   bucket", as in later restic versions; restic 0.14 treats -1 as 0.
 * - `latest` ignores snapshots in the future of `now` (a host with a wrong
 *   clock must not make keep-within drop everything), as later restic does.
 * - restic 0.16 and later also keep the oldest snapshot while a rule has
 *   count left; holdfast keeps 0.14's behaviour, which the test can check.
 *
 * Local time is the process's time zone (TZ), like restic's.
 */

/** A calendar duration, restic's `1y5m7d2h` (m is months). */
export interface Duration {
  readonly years: number;
  readonly months: number;
  readonly days: number;
  readonly hours: number;
}

/** A count meaning "no limit": keep one snapshot per bucket, all the way back. */
export const UNLIMITED = -1;

/** What to keep. Absent or 0 counts and zero durations are rules that are off. */
export interface RetentionPolicy {
  /** Keep the newest n snapshots. */
  readonly last?: number;
  /** Keep the newest snapshot of each of the newest n minutes that have one. */
  readonly minutely?: number;
  readonly hourly?: number;
  readonly daily?: number;
  /** Weeks are ISO 8601 weeks (Monday to Sunday, the year of their Thursday). */
  readonly weekly?: number;
  readonly monthly?: number;
  readonly yearly?: number;
  /** Keep every snapshot newer than this, relative to the newest snapshot. */
  readonly within?: Duration;
  readonly withinHourly?: Duration;
  readonly withinDaily?: Duration;
  readonly withinWeekly?: Duration;
  readonly withinMonthly?: Duration;
  readonly withinYearly?: Duration;
  /** Keep every snapshot that has all tags of at least one list. */
  readonly tags?: readonly (readonly string[])[];
}

/** The counts left after a snapshot was looked at (restic's `counters`). */
export interface RetentionCounters {
  last?: number;
  minutely?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

/** The little the policy needs to know about a snapshot. */
export interface Retainable {
  readonly id: string;
  readonly snapshot: { readonly time: string; readonly tags: readonly string[] };
}

/** The verdict on one snapshot. */
export interface RetentionDecision<T extends Retainable> {
  readonly item: T;
  readonly keep: boolean;
  /** Why it is kept (restic's wording), or why no rule keeps it. */
  readonly reasons: readonly string[];
  /** Counts left after this snapshot (only meaningful when kept). */
  readonly counters: RetentionCounters;
}

type Bucketer = (t: Date, index: number) => number;

const COUNTED: readonly { key: keyof RetentionCounters; bucket: Bucketer; reason: string; unit: string }[] = [
  { key: 'last', bucket: (_t, i) => i, reason: 'last snapshot', unit: '' },
  { key: 'minutely', bucket: (t) => ymdh(t) * 100 + t.getMinutes(), reason: 'minutely snapshot', unit: 'minute' },
  { key: 'hourly', bucket: (t) => ymdh(t), reason: 'hourly snapshot', unit: 'hour' },
  { key: 'daily', bucket: (t) => ymd(t), reason: 'daily snapshot', unit: 'day' },
  { key: 'weekly', bucket: (t) => isoYearWeek(t), reason: 'weekly snapshot', unit: 'week' },
  { key: 'monthly', bucket: (t) => t.getFullYear() * 100 + t.getMonth() + 1, reason: 'monthly snapshot', unit: 'month' },
  { key: 'yearly', bucket: (t) => t.getFullYear(), reason: 'yearly snapshot', unit: 'year' },
];

const WITHIN: readonly { key: keyof RetentionPolicy; bucket: Bucketer; reason: string; unit: string }[] = [
  { key: 'withinHourly', bucket: (t) => ymdh(t), reason: 'hourly within', unit: 'hour' },
  { key: 'withinDaily', bucket: (t) => ymd(t), reason: 'daily within', unit: 'day' },
  { key: 'withinWeekly', bucket: (t) => isoYearWeek(t), reason: 'weekly within', unit: 'week' },
  { key: 'withinMonthly', bucket: (t) => t.getFullYear() * 100 + t.getMonth() + 1, reason: 'monthly within', unit: 'month' },
  { key: 'withinYearly', bucket: (t) => t.getFullYear(), reason: 'yearly within', unit: 'year' },
];

function ymd(t: Date): number {
  return t.getFullYear() * 10000 + (t.getMonth() + 1) * 100 + t.getDate();
}

function ymdh(t: Date): number {
  return ymd(t) * 100 + t.getHours();
}

/** YYYYWW of the ISO 8601 week holding t's local date (Go's `ISOWeek`). */
export function isoYearWeek(t: Date): number {
  // Calendar arithmetic on the local date, in UTC so that DST cannot shift a day.
  const day = Date.UTC(t.getFullYear(), t.getMonth(), t.getDate());
  const weekday = (new Date(day).getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(day + (3 - weekday) * 86_400_000);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
  return year * 100 + week;
}

const isZero = (d: Duration | undefined): boolean => d === undefined || (d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0);
const isOn = (n: number | undefined): boolean => n !== undefined && (n > 0 || n === UNLIMITED);

/** True when the policy has no rule at all: then everything is kept. */
export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return COUNTED.every((c) => !isOn(p[c.key])) && isZero(p.within) && WITHIN.every((w) => isZero(p[w.key] as Duration | undefined))
    && (p.tags === undefined || p.tags.length === 0);
}

/** `t` minus a calendar duration, the way Go's `AddDate(-y, -m, -d).Add(-h)` does it in local time. */
export function subtractDuration(t: Date, d: Duration): Date {
  const shifted = new Date(t.getFullYear() - d.years, t.getMonth() - d.months, t.getDate() - d.days,
    t.getHours(), t.getMinutes(), t.getSeconds(), t.getMilliseconds());
  return new Date(shifted.getTime() - d.hours * 3_600_000);
}

/** Parses restic's duration syntax: `1y5m7d2h`, any subset, in any order; `m` is months. */
export function parseDuration(s: string): Duration {
  const d = { years: 0, months: 0, days: 0, hours: 0 };
  let rest = s.trim();
  if (rest === '') throw new Error(`bad duration "${s}": use a form like 1y5m7d2h`);
  while (rest !== '') {
    const m = /^(-?\d+)([ymdh])/.exec(rest);
    if (!m) throw new Error(`bad duration "${s}": use a form like 1y5m7d2h (y years, m months, d days, h hours)`);
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n)) throw new Error(`bad duration "${s}": number too large`);
    const unit = { y: 'years', m: 'months', d: 'days', h: 'hours' }[m[2] as 'y' | 'm' | 'd' | 'h'] as keyof typeof d;
    d[unit] = n;
    rest = rest.slice(m[0].length);
  }
  return d;
}

/** restic's rendering of a duration: `1y2m`, zero parts left out. */
export function formatDuration(d: Duration): string {
  return `${d.years ? `${d.years}y` : ''}${d.months ? `${d.months}m` : ''}${d.days ? `${d.days}d` : ''}${d.hours ? `${d.hours}h` : ''}`;
}

/** restic's rendering of a tag list: `[a, b]`. */
export const formatTagList = (l: readonly string[]): string => `[${l.join(', ')}]`;

/** True when the snapshot has every tag of `list`; an empty tag matches an untagged snapshot (restic). */
export function hasTags(tags: readonly string[], list: readonly string[]): boolean {
  for (const t of list) {
    if (t === '' && tags.length === 0) return true;
    if (!tags.includes(t)) return false;
  }
  return true;
}

/** One line describing the policy, like restic's "Applying Policy:" line. */
export function describePolicy(p: RetentionPolicy): string {
  const keeps: string[] = [];
  const names: Record<keyof RetentionCounters, string> = {
    last: 'latest', minutely: 'minutely', hourly: 'hourly', daily: 'daily', weekly: 'weekly', monthly: 'monthly', yearly: 'yearly',
  };
  for (const c of COUNTED) {
    const n = p[c.key];
    if (n !== undefined && n > 0) keeps.push(`${n} ${names[c.key]}`);
    else if (n === UNLIMITED) keeps.push(`all ${names[c.key]}`);
  }
  const parts: string[] = [];
  if (keeps.length > 0) parts.push(`${keeps.join(', ')} snapshots`);
  for (const w of WITHIN) {
    const d = p[w.key] as Duration | undefined;
    if (!isZero(d)) parts.push(`${w.reason.split(' ')[0]!} snapshots within ${formatDuration(d!)}`);
  }
  let s = parts.join(', ');
  if (p.tags && p.tags.length > 0) s += `${s ? ' and ' : ''}all snapshots with tags ${formatTagList(p.tags.map(formatTagList))}`;
  if (!isZero(p.within)) s += `${s ? ' and ' : ''}all snapshots within ${formatDuration(p.within!)} of the newest`;
  return s === '' ? 'keep everything (no policy)' : `keep ${s}`;
}

/**
 * Applies `policy` to one group of snapshots. Returns one decision per
 * snapshot, newest first. `now` only bounds which snapshot counts as the
 * newest for the within-rules.
 */
export function applyPolicy<T extends Retainable>(list: readonly T[], policy: RetentionPolicy, now: Date): RetentionDecision<T>[] {
  const items = list
    .map((item) => ({ item, time: new Date(item.snapshot.time) }))
    .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.item.id < b.item.id ? -1 : a.item.id > b.item.id ? 1 : 0));
  if (isEmptyPolicy(policy)) return items.map(({ item }) => ({ item, keep: true, reasons: ['policy is empty'], counters: {} }));

  let latest = 0;
  for (const { time } of items) if (time.getTime() > latest && time.getTime() <= now.getTime()) latest = time.getTime();
  const latestDate = new Date(latest);

  const counted = COUNTED.filter((c) => isOn(policy[c.key])).map((c) => ({ ...c, count: policy[c.key]!, lastBucket: NaN }));
  const within = WITHIN.filter((w) => !isZero(policy[w.key] as Duration | undefined)).map((w) => {
    const d = policy[w.key] as Duration;
    return { ...w, d, since: subtractDuration(latestDate, d).getTime(), lastBucket: NaN };
  });
  const keepWithin = isZero(policy.within) ? undefined : { d: policy.within!, since: subtractDuration(latestDate, policy.within!).getTime() };

  return items.map(({ item, time }, index) => {
    const keepReasons: string[] = [];
    const dropReasons: string[] = [];
    for (const l of policy.tags ?? []) {
      if (hasTags(item.snapshot.tags, l)) keepReasons.push(`has tags ${formatTagList(l)}`);
    }
    if (policy.tags && policy.tags.length > 0 && keepReasons.length === 0) dropReasons.push('has none of the --keep-tag tag lists');
    if (keepWithin) {
      if (time.getTime() > keepWithin.since) keepReasons.push(`within ${formatDuration(keepWithin.d)}`);
      else dropReasons.push(`older than ${formatDuration(keepWithin.d)} before the newest snapshot`);
    }
    for (const c of counted) {
      if (c.count === 0) {
        dropReasons.push(`${c.reason.split(' ')[0]!}: count used up`);
        continue;
      }
      const b = c.bucket(time, index);
      if (b !== c.lastBucket) {
        c.lastBucket = b;
        if (c.count > 0) c.count--;
        keepReasons.push(c.reason);
      } else {
        dropReasons.push(`${c.reason.split(' ')[0]!}: a newer snapshot of the same ${c.unit} is kept`);
      }
    }
    for (const w of within) {
      if (time.getTime() <= w.since) {
        dropReasons.push(`${w.reason} ${formatDuration(w.d)}: older than that`);
        continue;
      }
      const b = w.bucket(time, index);
      if (b !== w.lastBucket) {
        w.lastBucket = b;
        keepReasons.push(`${w.reason} ${formatDuration(w.d)}`);
      } else {
        dropReasons.push(`${w.reason} ${formatDuration(w.d)}: a newer snapshot of the same ${w.unit} is kept`);
      }
    }
    const counters: RetentionCounters = {};
    for (const c of counted) counters[c.key] = c.count;
    const keep = keepReasons.length > 0;
    return { item, keep, reasons: keep ? keepReasons : dropReasons, counters };
  });
}

/**
 * The time arithmetic of policies, without the database: a schedule's
 * slots (a cron expression read in a time zone, by croner, or `every
 * DURATION` counted from the Unix epoch), a machine's splay within the
 * interval, the window a job may start in, and so when a run is due.
 *
 *   slot        a time the schedule names (02:00, or every 15 minutes)
 *   run time    slot + the target's splay (a stable hash of its id into the
 *               spread: the interval, at most an hour for cron schedules,
 *               at most the window's length); one outside the window moves
 *               to the window's next opening, plus the splay
 *   due         the newest slot whose run time has come, while the window
 *               is open: one job, however many slots were missed; but
 *               only a slot whose run time came after the schedule came
 *               into effect (a policy set at 14:00 to run at 02:00 first
 *               runs at 02:00 the next day, not at once)
 */
import { createHash } from 'node:crypto';
import { Cron } from 'croner';
import { parseDuration } from '../../repo/deletion-marker.js';

/** A schedule, window or time zone that cannot be used; its message says why and what would be. */
export class ScheduleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** The longest splay of a cron schedule: its runs stay near the time its author wrote. */
const MAX_CRON_SPLAY = HOUR;
/** The shortest interval a schedule may have: a tick of the scheduler is seconds; a minute is what cron can say. */
const MIN_INTERVAL = MINUTE;
/** The longest interval a schedule or a policy's period may have: a year (a longer one is a mistake, and past Date's range a broken clock). */
export const MAX_INTERVAL = 366 * DAY;

/** A schedule's slots. */
export interface Schedule {
  /** As written in the policy. */
  readonly text: string;
  /** The gap between two slots (for cron, between the next two from now). */
  intervalMs(now: number): number;
  /** The newest slot at or before `t`, or null when there is none. */
  slotAtOrBefore(t: number): number | null;
  /** The first slot after `t`, or null when there is none. */
  slotAfter(t: number): number | null;
}

/** The zones found known (a DateTimeFormat costs ~0.1 ms, and every tick checks every safe's). */
const knownZones = new Set<string>();

/** Throws ScheduleError unless `zone` is an IANA time zone this Node knows. */
export function checkTimeZone(zone: string): void {
  if (knownZones.has(zone)) return;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new ScheduleError(`time_zone "${zone}": not a time zone (use an IANA name such as UTC, Europe/Berlin, America/New_York)`);
  }
  knownZones.add(zone);
}

const EVERY = /^every\s+(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)$/i;
const EVERY_SHORT = /^every\s+((?:\d+[smhd])+)$/i;
const UNIT: Record<string, number> = { s: 1000, m: MINUTE, h: HOUR, d: DAY };

function everyMs(text: string): number | undefined {
  const long = EVERY.exec(text);
  if (long) return Number(long[1]) * UNIT[long[2]!.toLowerCase()[0]!]!;
  const short = EVERY_SHORT.exec(text);
  return short ? parseDuration(short[1]!.toLowerCase()) : undefined;
}

/** Schedules read, by zone and text: each tick resolves every safe's policy, and most share a few schedules (bounded: cleared when full). */
const parsed = new Map<string, Schedule>();
const PARSED_MAX = 1000;
/** How many spans between runs a cron schedule remembers. */
const SPANS = 4;

/**
 * Reads `text`: `every 15m` / `every 15 minutes` / `every 1h30m`, or a
 * cron expression of five fields (minute hour day-of-month month
 * day-of-week, read in `timeZone`; croner's syntax, with Vixie cron's
 * rule that a day matching either day field runs). A schedule is pure:
 * the same text and zone give one shared object.
 */
export function parseSchedule(text: string, timeZone: string): Schedule {
  const key = `${timeZone}\n${text}`;
  let schedule = parsed.get(key);
  if (schedule === undefined) {
    schedule = readSchedule(text, timeZone);
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(key, schedule);
  }
  return schedule;
}

function readSchedule(text: string, timeZone: string): Schedule {
  const t = text.trim();
  checkTimeZone(timeZone);
  if (/^every\b/i.test(t)) {
    const ms = everyMs(t);
    if (ms === undefined) throw new ScheduleError(`schedule "${text}": write every N minutes (or hours, days), e.g. "every 15 minutes", "every 15m", "every 6h"`);
    if (ms < MIN_INTERVAL) throw new ScheduleError(`schedule "${text}": at most once a minute`);
    if (!(ms <= MAX_INTERVAL)) throw new ScheduleError(`schedule "${text}": at least once a year (every 366d at the most)`);
    return {
      text: t,
      intervalMs: () => ms,
      slotAtOrBefore: (at) => Math.floor(at / ms) * ms,
      slotAfter: (at) => (Math.floor(at / ms) + 1) * ms,
    };
  }
  let cron: Cron;
  try {
    cron = new Cron(t, { paused: true, timezone: timeZone, mode: '5-part' });
  } catch (e) {
    const why = (e as Error).message.replace(/^CronPattern: /, '');
    throw new ScheduleError(`schedule "${text}": not a cron expression of five fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * *", "*/15 * * * *") nor "every 15 minutes": ${why}`);
  }
  // The spans between two runs found last ([slot, next): no run inside): a tick asks for the slot of every safe, at times a splay apart, that fall in one or two of them.
  const spans: { slot: number; next: number }[] = [];
  // The interval at the last `now` asked for: a tick asks it for every safe of the schedule at one time.
  let last = { now: NaN, ms: 0 };
  const schedule: Schedule = {
    text: t,
    intervalMs: (now) => {
      if (now !== last.now) {
        const [a, b] = cron.nextRuns(2, new Date(now));
        last = { now, ms: a && b ? b.getTime() - a.getTime() : DAY };
      }
      return last.ms;
    },
    slotAtOrBefore: (at) => {
      const known = spans.find((sp) => at >= sp.slot && at < sp.next);
      if (known) return known.slot;
      const slot = cron.previousRuns(1, new Date(at + 1))[0]?.getTime() ?? null;
      const next = slot === null ? undefined : cron.nextRun(new Date(slot))?.getTime();
      if (slot !== null && next !== undefined) spans.splice(0, spans.length, { slot, next }, ...spans.slice(0, SPANS - 1));
      return slot;
    },
    slotAfter: (at) => cron.nextRun(new Date(at))?.getTime() ?? null,
  };
  if (schedule.slotAfter(Date.now()) === null) throw new ScheduleError(`schedule "${text}": it never runs`);
  return schedule;
}

/** The hours a scheduled job may start in: from `startMin` to `endMin` minutes after local midnight (across midnight when end ≤ start). */
export interface Window {
  readonly text: string;
  readonly startMin: number;
  readonly endMin: number;
  /** Minutes it is open a day. */
  readonly lengthMin: number;
}

/** Reads `HH:MM-HH:MM` (`22:00-06:00` crosses midnight). */
export function parseWindow(text: string): Window {
  const m = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(text.trim());
  const [h1, m1, h2, m2] = m ? m.slice(1).map(Number) as [number, number, number, number] : [NaN, NaN, NaN, NaN];
  if (!m || h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59) throw new ScheduleError(`window "${text}": write HH:MM-HH:MM in 24-hour time, e.g. 22:00-06:00 (across midnight) or 01:00-05:00`);
  const startMin = h1 * 60 + m1;
  const endMin = h2 * 60 + m2;
  if (startMin === endMin) throw new ScheduleError(`window "${text}": it starts when it ends; leave the window out to allow every hour`);
  return { text: text.trim(), startMin, endMin, lengthMin: (endMin - startMin + 1440) % 1440 };
}

const clockFormats = new Map<string, Intl.DateTimeFormat>();

/** Minutes after local midnight of `t` in `timeZone`. */
function localMinutes(t: number, timeZone: string): number {
  let f = clockFormats.get(timeZone);
  if (!f) clockFormats.set(timeZone, f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit' }));
  const parts = f.formatToParts(new Date(t));
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return get('hour') * 60 + get('minute');
}

/** Whether `t` is inside `w` in `timeZone` (the start minute in, the end minute out). */
export function inWindow(w: Window, t: number, timeZone: string): boolean {
  return (localMinutes(t, timeZone) - w.startMin + 1440) % 1440 < w.lengthMin;
}

/** The first opening of `w` at or after `t` (to the minute; a day with a daylight-saving change may move it by the change). */
function nextOpening(w: Window, t: number, timeZone: string): number {
  const start = Math.floor(t / MINUTE) * MINUTE;
  return start + ((w.startMin - localMinutes(start, timeZone) + 1440) % 1440) * MINUTE;
}

/** A stable offset of `key` (a machine's or safe's id) in [0, spreadMs): its SHA-256 read as a number. */
export function splayOf(key: string, spreadMs: number): number {
  if (spreadMs <= 0) return 0;
  const n = createHash('sha256').update(key).digest().readUIntBE(0, 6);
  return Math.floor((n / 2 ** 48) * spreadMs);
}

/** When and where a schedule runs for one target. */
export interface Timing {
  readonly schedule: Schedule;
  readonly window: Window | null;
  readonly timeZone: string;
  /** The target's splay (splayFor). */
  readonly splayMs: number;
}

/** The target's splay: within its interval, at most an hour for cron, at most the window's length. */
export function splayFor(key: string, schedule: Schedule, window: Window | null, now: number, cron: boolean): number {
  let spread = schedule.intervalMs(now);
  if (cron) spread = Math.min(spread, MAX_CRON_SPLAY);
  if (window) spread = Math.min(spread, window.lengthMin * MINUTE);
  return splayOf(key, spread);
}

/** Whether `text` is a cron expression (not `every …`). */
export const isCron = (text: string): boolean => !/^every\b/i.test(text.trim());

/** When slot `slot` runs: slot + splay, moved to the window's next opening (plus the splay) when outside it. */
export function runTimeOf(timing: Timing, slot: number): number {
  const at = slot + timing.splayMs;
  const w = timing.window;
  if (!w || inWindow(w, at, timing.timeZone)) return at;
  return nextOpening(w, at, timing.timeZone) + timing.splayMs;
}

/**
 * The slot due at `now`: the newest whose run time has come, while the
 * window (if any) is open, and came after `since` (when the schedule came
 * into effect for its target); null when none is. Missed slots before it
 * are not due: a server down for hours runs once. A slot whose run time
 * had passed when the schedule came into effect is not due either: it was
 * never missed, only the past.
 */
export function dueSlot(timing: Timing, now: number, since = -Infinity): number | null {
  if (timing.window && !inWindow(timing.window, now, timing.timeZone)) return null;
  // The newest slot whose plain run time has come, or the one before it (a window may have moved the newest past now).
  const newest = timing.schedule.slotAtOrBefore(now - timing.splayMs);
  if (newest === null) return null;
  const slot = runTimeOf(timing, newest) <= now ? newest : timing.schedule.slotAtOrBefore(newest - 1);
  if (slot === null) return null;
  const runs = runTimeOf(timing, slot);
  return runs <= now && runs > since ? slot : null;
}

/** When the next run after `now` starts (a run time that falls in the window); null when the schedule has none. */
export function nextRunAfter(timing: Timing, now: number): number | null {
  let slot = timing.schedule.slotAtOrBefore(now - timing.splayMs) ?? timing.schedule.slotAfter(now - timing.splayMs - 1);
  for (let i = 0; slot !== null && i < 10_000; i++) {
    const at = runTimeOf(timing, slot);
    if (at > now) return at;
    slot = timing.schedule.slotAfter(slot);
  }
  return null;
}

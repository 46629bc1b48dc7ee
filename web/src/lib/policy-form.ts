/**
 * The machine page's form for a policy's schedule and checks (schedule,
 * window, time zone, verification, restore test) as text fields, and back:
 * an empty field leaves the setting to the policy the machine inherits; a
 * value the server would refuse is refused here first, in words.
 */
import type { PolicySettings } from '../../../src/api/v1-policies.js';

/** The settings this form edits. */
export const SCHEDULE_KEYS = ['schedule', 'window', 'time_zone', 'verify', 'restore_test'] as const;
export type ScheduleSettings = Pick<PolicySettings, (typeof SCHEDULE_KEYS)[number]>;

/** The form's fields, as text. */
export interface ScheduleForm {
  schedule: string;
  window: string;
  time_zone: string;
  verify_every: string;
  verify_days: string;
  restore_every: string;
  restore_share: string;
}

const EVERY = /^([0-9]+[smhd])+$/;

/** The form's text for a policy's settings (a policy without them: all empty). */
export function scheduleToForm(s: ScheduleSettings | undefined): ScheduleForm {
  return {
    schedule: s?.schedule ?? '',
    window: s?.window ?? '',
    time_zone: s?.time_zone ?? '',
    verify_every: s?.verify?.every ?? '',
    verify_days: s?.verify ? String(s.verify.read_data_subset_days) : '',
    restore_every: s?.restore_test?.every ?? '',
    restore_share: s?.restore_test?.share === undefined ? '' : String(s.restore_test.share),
  };
}

/**
 * The settings a form says (only those it gives); throws an Error in words
 * for a schedule that is neither five cron fields nor `every DURATION`, a
 * window that is not HH:MM-HH:MM, a time zone the browser does not know, a
 * duration, day count or share out of shape. `restoreMinFiles` is kept from
 * the policy the form was made from (the form does not show it).
 */
export function formToSchedule(f: ScheduleForm, restoreMinFiles?: number): ScheduleSettings {
  const out: ScheduleSettings = {};
  const schedule = f.schedule.trim().replace(/\s+/g, ' ');
  if (schedule) {
    const every = /^every (.+)$/.exec(schedule);
    if (every ? !EVERY.test(every[1]!) : schedule.split(' ').length !== 5) {
      throw new Error(`Schedule: "${schedule}" is neither a cron expression of five fields (0 2 * * *) nor "every" and a duration (every 15m)`);
    }
    out.schedule = schedule;
  }
  const window = f.window.trim();
  if (window) {
    const m = /^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$/.exec(window);
    if (!m || Number(m[1]) > 23 || Number(m[3]) > 23 || Number(m[2]) > 59 || Number(m[4]) > 59) throw new Error(`Window: "${window}" is not HH:MM-HH:MM (22:00-06:00 crosses midnight)`);
    out.window = window;
  }
  const zone = f.time_zone.trim();
  if (zone) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: zone });
    } catch {
      throw new Error(`Time zone: "${zone}" is not a time zone name such as Europe/Berlin or UTC`);
    }
    out.time_zone = zone;
  }
  const duration = (label: string, v: string): string => {
    if (!EVERY.test(v)) throw new Error(`${label}: "${v}" is not a duration such as 1d, 12h or 1h30m`);
    return v;
  };
  const verifyEvery = f.verify_every.trim();
  const verifyDays = f.verify_days.trim();
  if (verifyEvery || verifyDays) {
    if (!verifyEvery || !verifyDays) throw new Error('Verification: give both how often and in how many days all the data is read');
    const days = Number(verifyDays);
    if (!/^[0-9]+$/.test(verifyDays) || days < 1 || days > 3660) throw new Error(`Verification: "${verifyDays}" is not a number of days from 1 to 3660`);
    out.verify = { every: duration('Verification', verifyEvery), read_data_subset_days: days };
  }
  const restoreEvery = f.restore_every.trim();
  const restoreShare = f.restore_share.trim();
  if (restoreEvery || restoreShare) {
    if (!restoreEvery) throw new Error('Restore test: give how often');
    const share = restoreShare === '' ? undefined : Number(restoreShare);
    if (share !== undefined && !(share > 0 && share <= 100)) throw new Error(`Restore test: "${restoreShare}" is not a share of the files above 0 and at most 100 (%)`);
    out.restore_test = { every: duration('Restore test', restoreEvery), ...(share === undefined ? {} : { share }), ...(restoreMinFiles === undefined ? {} : { min_files: restoreMinFiles }) };
  }
  return out;
}

/** A policy's settings with this form's settings replaced by `next` (those it leaves empty removed: inherited). */
export function withSchedule<T extends PolicySettings>(settings: T, next: ScheduleSettings): T {
  const rest = { ...settings };
  for (const k of SCHEDULE_KEYS) delete rest[k];
  return { ...rest, ...next };
}

/**
 * Times for people, in one form everywhere they are printed (`snapshots`,
 * `forget`, `ls -l`): local time (the TZ variable's zone), as restic prints
 * them. JSON output keeps ISO 8601 in UTC. No I/O.
 */

const p2 = (n: number): string => String(n).padStart(2, '0');

/** `YYYY-MM-DD HH:MM:SS` in local time, for ms since the epoch. */
export function localTime(ms: number): string {
  const t = new Date(ms);
  return `${t.getFullYear()}-${p2(t.getMonth() + 1)}-${p2(t.getDate())} ${p2(t.getHours())}:${p2(t.getMinutes())}:${p2(t.getSeconds())}`;
}

/** An ISO 8601 time (a snapshot's, a marker's) as `localTime` prints it. */
export function localIso(iso: string): string {
  return localTime(Date.parse(iso));
}

/** A time in nanoseconds since the epoch (a node's mtime) as ISO 8601 in UTC, to the millisecond, for `--json`. */
export function isoFromNanos(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

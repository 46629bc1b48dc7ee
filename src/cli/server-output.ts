/**
 * How the admin commands (`holdfast server …`) print the API's records:
 * tables and `label: value` lines for people, times in local time; with
 * `--json`, the API's own bodies (snake_case, times in ISO 8601 UTC), one
 * JSON document per line.
 */
import { localIso } from '../core/local-time.js';
import { say, type GlobalOptions } from './context.js';
import { printable } from './printable.js';

/** `value` as one line of JSON on stdout (printed with --quiet too: a script asked for it). */
export function printBody(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** An ISO time in local time, or `-` for none. */
export function when(iso: string | null | undefined): string {
  return iso ? localIso(iso) : '-';
}

/** Rows under a header, each column as wide as its widest cell; `none` (e.g. "no customers") when there are no rows. */
export function printTable(g: GlobalOptions, none: string, header: readonly string[], rows: readonly (readonly string[])[]): void {
  if (rows.length === 0) {
    say(g, none);
    return;
  }
  const cells = [header, ...rows].map((r) => r.map((c) => printable(c)));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  for (const r of cells) say(g, r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd());
}

/** `label: value` lines, the values aligned. */
export function printFields(g: GlobalOptions, fields: readonly (readonly [string, string])[]): void {
  const width = Math.max(...fields.map(([l]) => l.length)) + 2;
  for (const [label, value] of fields) say(g, `${`${label}:`.padEnd(width)}${value}`);
}

/**
 * What `--json` prints: every key in snake_case, as restic's JSON is, whatever
 * the job's own object calls it (jobs keep their camelCase fields; the names a
 * script reads are decided here, at printing, by src/core/snake-keys.ts).
 */
import { snakeKeys } from '../core/snake-keys.js';

/** Prints a job's report as one JSON line with snake_case keys. */
export function printJson(report: unknown): void {
  process.stdout.write(`${JSON.stringify(snakeKeys(report))}\n`);
}

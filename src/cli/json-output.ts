/**
 * What `--json` prints: every key in snake_case, as restic's JSON is, whatever
 * the job's own object calls it (jobs keep their camelCase fields; the names a
 * script reads are decided here, at printing, by src/core/snake-keys.ts).
 */
import { isUtf8 } from 'node:buffer';
import { snakeKeys } from '../core/snake-keys.js';

/**
 * Bytes (a name, a link target, an attribute's value) as `field` when they
 * are UTF-8, else in base64 as `field` with the suffix `b64` (`nameB64` in
 * the format's field names, `name_b64` in snake_case output).
 */
export function bytesField(field: string, b: Buffer, b64: 'B64' | '_b64'): Record<string, string> {
  return isUtf8(b) ? { [field]: b.toString('utf8') } : { [`${field}${b64}`]: b.toString('base64') };
}

/** Prints a job's report as one JSON line with snake_case keys. */
export function printJson(report: unknown): void {
  process.stdout.write(`${JSON.stringify(snakeKeys(report))}\n`);
}

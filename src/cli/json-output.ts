/**
 * What `--json` prints: every key in snake_case, as restic's JSON is, whatever
 * the job's own object calls it (jobs keep their camelCase fields; the names a
 * script reads are decided here, at printing).
 */

/** `packsRead` → `packs_read`. */
export const snakeCase = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * `value` with every object key below it in snake_case. Only for job reports
 * whose keys are field names: a map keyed by ids or paths would have its keys
 * rewritten too.
 */
export function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeCase(k), snakeKeys(v)]));
}

/** Prints a job's report as one JSON line with snake_case keys. */
export function printJson(report: unknown): void {
  process.stdout.write(`${JSON.stringify(snakeKeys(report))}\n`);
}

/** The type-level `snakeCase`: `'packsRead'` → `'packs_read'`. */
export type SnakeCase<S extends string> = S extends `${infer H}${infer T}`
  ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeCase<T>}`
  : S;

/** The type of `snakeKeys(value)` for a `value` of type `T`: what a script reading `--json` gets. */
export type SnakeKeys<T> = T extends readonly (infer E)[]
  ? SnakeKeys<E>[]
  : T extends object ? { [K in keyof T as K extends string ? SnakeCase<K> : K]: SnakeKeys<T[K]> } : T;

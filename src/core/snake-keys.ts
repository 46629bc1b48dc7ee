/**
 * Report keys in snake_case, as restic's JSON and the server's API name
 * them, whatever the job's own object calls them (jobs keep their camelCase
 * fields): the CLI's --json and the server's job results say the same.
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

/** The type-level `snakeCase`: `'packsRead'` → `'packs_read'`. */
export type SnakeCase<S extends string> = S extends `${infer H}${infer T}`
  ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeCase<T>}`
  : S;

/** The type of `snakeKeys(value)` for a `value` of type `T`: what a script reading `--json` gets. */
export type SnakeKeys<T> = T extends readonly (infer E)[]
  ? SnakeKeys<E>[]
  : T extends object ? { [K in keyof T as K extends string ? SnakeCase<K> : K]: SnakeKeys<T[K]> } : T;

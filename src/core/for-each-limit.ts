/**
 * Runs an async function over a list with at most `limit` calls in flight:
 * what the jobs use to read many objects of a backend at the concurrency
 * its connections allow.
 */

/** Calls `fn` on every item, at most `limit` at once; rejects with the first failure. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

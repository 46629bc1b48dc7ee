/**
 * Runs an async function over a list with at most `limit` calls in flight
 * (`forEachLimit`), or maps it in order (`mapInOrder`):
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

/**
 * `fn` of every item, in the items' order, with at most `limit` calls in
 * flight ahead of the consumer: a listing of many folders or pages read
 * several at a time and handed on in order. A consumer that stops early
 * leaves the calls started (at most `limit`) to finish unheard; the first
 * failure in order is thrown where its result would have been.
 */
export async function* mapInOrder<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): AsyncIterable<R> {
  const running: Promise<R>[] = [];
  let next = 0;
  const start = (): void => {
    const p = fn(items[next++]!);
    p.catch(() => undefined); // a failure is thrown where it is taken; one never taken is not unhandled
    running.push(p);
  };
  while (next < items.length && running.length < limit) start();
  while (running.length > 0) {
    const r = await running.shift()!;
    if (next < items.length) start();
    yield r;
  }
}

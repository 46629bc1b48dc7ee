/**
 * Waiting for work that the caller does not own (a read shared with other
 * callers, a task in flight on a worker) no longer than the caller's signal
 * allows: the work goes on for the others, the caller is released with the
 * signal's reason.
 */

/** Resolves as `p` does, or rejects with `signal.reason` once `signal` aborts, whichever is first. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined); // its failure is the others' to handle
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

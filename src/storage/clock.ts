/**
 * Time, for the wrappers that wait (rate limit, retry): the real clock in
 * use, and one a test injects so that it never waits and never depends on
 * how fast the machine runs.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Reads the time and waits. */
export interface Clock {
  /** Milliseconds from any fixed point. */
  now(): number;
  /** Resolves after `ms` milliseconds; rejects with `signal`'s reason once it is aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The process's monotonic clock and timers. */
export const REAL_CLOCK: Clock = {
  now: () => performance.now(),
  sleep: async (ms, signal) => {
    try {
      await sleep(ms, undefined, { signal });
    } catch (e) {
      // timers/promises rejects with its own AbortError; the caller wants the reason (an exit code).
      throw signal?.aborted ? signal.reason : e;
    }
  },
};

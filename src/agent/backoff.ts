/**
 * How long the agent waits before it tries the server again: capped
 * exponential backoff with full jitter (a random wait between zero and the
 * cap, so that agents that lost the server together do not all come back in
 * the same second), as the repository's RetryingBackend waits
 * (docs/decisions.md, "The agent: priority and backoff").
 */

/** The waits of one run of failures. */
export interface BackoffPolicy {
  /** The cap of the first wait, in ms; each later cap doubles. */
  readonly baseMs: number;
  /** No wait is longer than this, in ms. */
  readonly maxMs: number;
}

/** 1 s doubling to a minute: a server back after a restart is found within about a minute, and a thousand agents ask about 17 times a second between them. */
export const AGENT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 60_000 };

/** Failures in a row, and the wait after the next one. */
export class Backoff {
  private failures = 0;

  constructor(private readonly policy: BackoffPolicy = AGENT_BACKOFF, private readonly random: () => number = Math.random) {}

  /** The wait after one more failure, in ms. */
  next(): number {
    const cap = Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return Math.round(this.random() * cap);
  }

  /** A success: the next failure waits little again. */
  reset(): void {
    this.failures = 0;
  }
}

/** Resolves after `ms`, or at once (without rejecting) when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * A `Backend` wrapper that tries a call again when it fails with a
 * `TransientError` (a dropped connection, a 503), as restic's
 * `backend_retry.go` and kopia's `retrying` storage do. Every other error is
 * passed on at once: it would only fail again.
 *
 *   attempt the call
 *   on TransientError: sleep a random time in [0, min(maxDelay, base · 2^n)]
 *     ("full jitter", so that clients failing together do not retry together),
 *     then attempt again, until `attempts` calls or `maxElapsedMs` are spent
 *   then reject with RetriesExhaustedError, naming the operation, the number
 *     of attempts and the time, with the last TransientError as its cause
 *
 * The call's signal, and the command's given to the constructor, end a sleep
 * at once, with the reason. docs/decisions.md
 * ("Retries") has the numbers and why.
 *
 * An attempt may do its work and lose its answer. A later attempt of a save
 * then finds the name taken (`AlreadyExistsError`): the object is loaded and,
 * when it holds exactly `data`, the save succeeded (else the error stands:
 * someone else's object). A later attempt of a remove finds nothing to remove
 * and reports `NotFoundError` where the backend does, as for any missing
 * object: whether the first attempt removed it cannot be told, and the
 * object is gone either way (the callers that remove tolerate it).
 * A listing is retried only until it yields its first entry: after that,
 * starting again would list some objects twice, and resuming needs a place
 * to resume from that the contract does not give (the error then says so).
 */
import {
  objectLabel,
  AlreadyExistsError,
  TransientError,
  type Backend,
  type Handle,
  type ListOptions,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from './backend.js';
import { REAL_CLOCK, type Clock } from './clock.js';
import { eitherSignal, WrapperBackend } from './wrapper-backend.js';
import type { ErrorCode } from '../core/errors.js';

/** How long to keep trying. */
export interface RetryPolicy {
  /** Calls made in all, the first included. At least 1. */
  readonly attempts: number;
  /** The cap of the first sleep, in ms; each later cap doubles. */
  readonly baseDelayMs: number;
  /** No sleep is longer than this, in ms. */
  readonly maxDelayMs: number;
  /** No sleep is begun that would end more than this long, in ms, after the first attempt began. */
  readonly maxElapsedMs: number;
}

/** The policy of docs/decisions.md, "Retries": 10 attempts over at most 2 minutes. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 10, baseDelayMs: 250, maxDelayMs: 15_000, maxElapsedMs: 120_000 };

/** How a `RetryingBackend` waits, for tests and callers that want other numbers. */
export interface RetryOptions {
  /** Default `DEFAULT_RETRY_POLICY`. */
  readonly policy?: Partial<RetryPolicy>;
  /** Time, for tests; the real clock by default. */
  readonly clock?: Clock;
  /** A number in [0, 1), for the jitter; `Math.random` by default. */
  readonly random?: () => number;
  /** Called before each sleep, for a log line ("retrying save data/… in 1.2 s"). */
  readonly onRetry?: (event: RetryEvent) => void;
  /** Ends every sleep, present and future, with its reason once aborted: the command was interrupted. */
  readonly signal?: AbortSignal;
}

/** What `onRetry` is told. */
export interface RetryEvent {
  /** The operation and object, as in messages: "save data/0a1b…". */
  readonly operation: string;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  /** How long the wrapper sleeps before the next attempt, in ms. */
  readonly delayMs: number;
  /** The `TransientError` that attempt failed with. */
  readonly error: TransientError;
}

/** Thrown when a call still failed with a `TransientError` after every attempt the policy allows. */
export class RetriesExhaustedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'RETRIES_EXHAUSTED';
  constructor(
    /** The operation and object: "save data/0a1b…". */
    readonly operation: string,
    /** How many attempts were made. */
    readonly attempts: number,
    /** How long they took in all, in ms. */
    readonly elapsedMs: number,
    /** The last attempt's error. */
    readonly lastError: TransientError,
    why = '',
  ) {
    super(`${operation} failed after ${attempts} attempt${attempts === 1 ? '' : 's'} over ${(elapsedMs / 1000).toFixed(1)} s${why}: ${lastError.message}`, { cause: lastError });
    this.name = 'RetriesExhaustedError';
  }
}

/** Wraps `inner` so that calls failing with `TransientError` are tried again. */
export class RetryingBackend extends WrapperBackend {
  private readonly policy: RetryPolicy;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly onRetry: ((event: RetryEvent) => void) | undefined;
  private readonly signal: AbortSignal | undefined;

  /** Wraps `inner` with `opts.policy` over `DEFAULT_RETRY_POLICY`. */
  constructor(inner: Backend, opts: RetryOptions = {}) {
    super(inner);
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.policy };
    const { attempts, baseDelayMs, maxDelayMs, maxElapsedMs } = this.policy;
    if (!(Number.isSafeInteger(attempts) && attempts >= 1)) throw new RangeError(`retry attempts must be a whole number of at least 1, not ${attempts}`);
    for (const [k, v] of Object.entries({ baseDelayMs, maxDelayMs, maxElapsedMs })) {
      if (!(v >= 0)) throw new RangeError(`retry ${k} must be 0 or more, not ${v}`);
    }
    this.clock = opts.clock ?? REAL_CLOCK;
    this.random = opts.random ?? Math.random;
    this.onRetry = opts.onRetry;
    this.signal = opts.signal;
  }

  /** See `Backend.save`; a retry that finds exactly `data` stored takes it as its own earlier attempt's. */
  override save(h: Handle, data: Uint8Array, opts: OperationOptions = {}): Promise<void> {
    return this.retry(`save ${objectLabel(h)}`, opts.signal, async (attempt) => {
      try {
        await this.inner.save(h, data, opts);
      } catch (e) {
        if (attempt === 1 || !(e instanceof AlreadyExistsError)) throw e;
        const stored = await this.inner.load(h, opts).catch(() => undefined);
        if (stored === undefined || !stored.equals(data)) throw e;
      }
    });
  }

  /** See `Backend.load`. */
  override load(h: Handle, opts: LoadOptions = {}): Promise<Buffer> {
    return this.retry(`load ${objectLabel(h)}`, opts.signal, () => this.inner.load(h, opts));
  }

  /** See `Backend.stat`. */
  override stat(h: Handle, opts: OperationOptions = {}): Promise<ObjectInfo | undefined> {
    return this.retry(`stat ${objectLabel(h)}`, opts.signal, () => this.inner.stat(h, opts));
  }

  /** See `Backend.remove`. */
  override remove(h: Handle, opts: OperationOptions = {}): Promise<void> {
    return this.retry(`remove ${objectLabel(h)}`, opts.signal, () => this.inner.remove(h, opts));
  }

  /** See `Backend.create`. */
  override create(opts: OperationOptions = {}): Promise<void> {
    return this.retry('create', opts.signal, () => this.inner.create(opts));
  }

  /** See `Backend.list`. Retried until the first entry; see the module comment. */
  override async *list(type: ObjectType, opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const operation = `list ${type}${opts.prefix ? ` with prefix ${opts.prefix}` : ''}`;
    const started = this.clock.now();
    let listed = 0;
    let iterator: AsyncIterator<ObjectInfo> | undefined;
    // The first entry is fetched under the retry loop, with a fresh listing for each attempt.
    const first = await this.retry(operation, opts.signal, async () => {
      await Promise.resolve(iterator?.return?.()).catch(() => undefined); // the failed attempt's listing, ended
      iterator = this.inner.list(type, opts)[Symbol.asyncIterator]();
      return iterator.next();
    });
    if (iterator === undefined) return;
    try {
      for (let r = first; !r.done; r = await iterator.next()) {
        listed++;
        yield r.value;
      }
    } catch (e) {
      if (!(e instanceof TransientError)) throw e;
      throw new RetriesExhaustedError(operation, 1, this.clock.now() - started, e,
        ` (after ${listed} entries; a listing is tried again only before its first entry)`);
    } finally {
      await iterator.return?.();
    }
  }

  /** Calls `attempt` until it settles other than with a `TransientError`, or the policy is spent. */
  private async retry<T>(operation: string, callSignal: AbortSignal | undefined, attempt: (n: number) => Promise<T>): Promise<T> {
    // The command's signal ends sleeps only: a call made after Ctrl-C (releasing a lock) still runs.
    const sleepSignal = eitherSignal(this.signal, callSignal);
    const { attempts, baseDelayMs, maxDelayMs, maxElapsedMs } = this.policy;
    const started = this.clock.now();
    for (let n = 1; ; n++) {
      callSignal?.throwIfAborted();
      try {
        return await attempt(n);
      } catch (e) {
        if (!(e instanceof TransientError)) throw e;
        const elapsed = this.clock.now() - started;
        const delayMs = Math.floor(this.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (n - 1)));
        if (n >= attempts || elapsed + delayMs > maxElapsedMs) throw new RetriesExhaustedError(operation, n, elapsed, e);
        this.onRetry?.({ operation, attempt: n, delayMs, error: e });
        await this.clock.sleep(delayMs, sleepSignal);
      }
    }
  }
}


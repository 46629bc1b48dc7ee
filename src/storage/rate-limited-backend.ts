/**
 * A `Backend` wrapper that limits the rate of uploads and downloads
 * (`--limit-upload`, `--limit-download`, in KiB/s as restic has them), with
 * one token bucket for each direction, shared by all calls in flight.
 *
 *   save   waits for the object's bytes of upload tokens, then saves
 *   load   waits for the bytes asked for (a range) before loading, or for
 *          the bytes loaded (a whole object, whose size is not known yet)
 *          before handing them over
 *   the rest passed through
 *
 * A bucket holds up to one second of its rate. A call takes its bytes at
 * once, into debt when the bucket holds fewer, and waits until the debt is
 * paid; a call made meanwhile adds to the debt and waits longer. So calls go
 * in turn, and over any stretch the average stays at the rate.
 *
 * A wait can last minutes at a low rate, so it ends early when the command's
 * AbortSignal (given to the constructor) or the call's own signal fires: the
 * call rejects with the signal's reason and the object is not written or
 * handed over.
 */
import type { Backend, Handle, LoadOptions, OperationOptions } from './backend.js';
import { REAL_CLOCK, type Clock } from './clock.js';
import { eitherSignal, WrapperBackend } from './wrapper-backend.js';

/** A token bucket of bytes. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `rate`: bytes a second; the bucket holds at most a second's worth and starts full. */
  constructor(readonly rate: number, private readonly clock: Clock = REAL_CLOCK) {
    if (!(rate > 0)) throw new Error(`a rate limit must be above 0 bytes/s, not ${rate}`);
    this.tokens = rate;
    this.last = clock.now();
  }

  /**
   * Resolves once `bytes` may go: at once while the bucket holds them, else
   * once the debt they leave is paid; rejects with `signal`'s reason when it
   * is aborted before or during the wait.
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const now = this.clock.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    this.tokens -= bytes;
    if (this.tokens < 0) await this.clock.sleep((-this.tokens * 1000) / this.rate, signal);
  }
}

/** The limits, in bytes a second; a direction without one is not limited. */
export interface RateLimits {
  readonly uploadBytesPerSecond?: number;
  readonly downloadBytesPerSecond?: number;
}

/** How a `RateLimitedBackend` waits. */
export interface RateLimitOptions {
  /** Time, for tests; the real clock by default. */
  readonly clock?: Clock;
  /** Ends every wait, present and future, with its reason once aborted: the command was interrupted. */
  readonly signal?: AbortSignal;
}

export class RateLimitedBackend extends WrapperBackend {
  private readonly upload: TokenBucket | undefined;
  private readonly download: TokenBucket | undefined;

  private readonly signal: AbortSignal | undefined;

  /** Wraps `inner` with `limits`. */
  constructor(inner: Backend, limits: RateLimits, opts: RateLimitOptions = {}) {
    super(inner);
    const clock = opts.clock ?? REAL_CLOCK;
    this.signal = opts.signal;
    this.upload = limits.uploadBytesPerSecond === undefined ? undefined : new TokenBucket(limits.uploadBytesPerSecond, clock);
    this.download = limits.downloadBytesPerSecond === undefined ? undefined : new TokenBucket(limits.downloadBytesPerSecond, clock);
  }

  /** See `Backend.save`; waits for upload tokens first. */
  override async save(h: Handle, data: Uint8Array, opts: OperationOptions = {}): Promise<void> {
    const signal = eitherSignal(this.signal, opts.signal);
    await this.upload?.take(data.byteLength, signal);
    await this.inner.save(h, data, { ...opts, signal });
  }

  /** See `Backend.load`; waits for download tokens. */
  override async load(h: Handle, opts: LoadOptions = {}): Promise<Buffer> {
    const signal = eitherSignal(this.signal, opts.signal);
    if (!this.download) return this.inner.load(h, { ...opts, signal });
    const { offset, length } = opts;
    const ranged = offset !== undefined && offset >= 0 && length !== undefined;
    if (ranged) await this.download.take(length, signal);
    const data = await this.inner.load(h, { ...opts, signal });
    if (!ranged) await this.download.take(data.byteLength, signal);
    return data;
  }
}

/**
 * A `Backend` wrapper that injects faults, for reliability tests: a full disk
 * on the third save, a slow list, a flipped bit in a loaded pack.
 *
 *   const b = new FaultBackend(new MemoryBackend());
 *   b.inject({ op: 'save', type: 'data', after: 2, times: 1, error: enospc });
 *
 * Every call checks the rules in the order they were injected. A rule matches
 * a call by operation and, optionally, object type; it lets its first `after`
 * matching calls through untouched and then applies its fault to the next
 * `times` matching calls (all of them when `times` is not given).
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type {
  Backend,
  BackendCapabilities,
  Handle,
  ListOptions,
  LoadOptions,
  ObjectInfo,
  ObjectType,
  OperationOptions,
} from './backend.js';

/** The operations a rule can target. */
export type FaultOp = 'save' | 'load' | 'list' | 'remove' | 'stat';

/** What to break, when, and how. A rule may combine a delay with one other fault. */
export interface FaultRule {
  /** The operation the rule applies to. */
  readonly op: FaultOp;
  /** Only calls on objects of this type; every type when absent. */
  readonly type?: ObjectType;
  /** Let this many matching calls through before faulting. Default 0. */
  readonly after?: number;
  /** Fault this many matching calls, then stop. Default: no limit. */
  readonly times?: number;
  /** Reject with this error (for example one with `code: 'ENOSPC'`) instead of calling the inner backend. */
  readonly error?: Error;
  /** Wait this long before carrying on (or before throwing `error`). */
  readonly delayMs?: number;
  /** Run this (another client's step at an exact moment of this one) before carrying on, after any delay. */
  readonly interleave?: () => Promise<void>;
  /** `load` only: flip every bit of the middle byte of the loaded data. */
  readonly corrupt?: boolean;
  /** `load` only: return only the first `truncate` bytes of the loaded data. */
  readonly truncate?: number;
}

interface RuleState {
  readonly rule: FaultRule;
  seen: number;
  fired: number;
}

/** A `Backend` that passes every call to `inner` unless a rule says to break it. */
export class FaultBackend implements Backend {
  private readonly rules: RuleState[] = [];

  /** Wraps `inner`; `rules` are injected in order. */
  constructor(
    readonly inner: Backend,
    rules: readonly FaultRule[] = [],
  ) {
    for (const r of rules) this.inject(r);
  }

  /** The inner backend's location. */
  get location(): string {
    return this.inner.location;
  }

  /** The inner backend's capabilities. */
  get capabilities(): BackendCapabilities {
    return this.inner.capabilities;
  }

  /** Adds a rule, checked after those added before it. */
  inject(rule: FaultRule): void {
    if ((rule.corrupt || rule.truncate !== undefined) && rule.op !== 'load') {
      throw new Error(`corrupt and truncate apply to load results, not to ${rule.op}`);
    }
    this.rules.push({ rule, seen: 0, fired: 0 });
  }

  /** Removes every rule: the wrapper becomes transparent. */
  clear(): void {
    this.rules.length = 0;
  }

  /** How many calls the rules have faulted so far, in total. */
  get faults(): number {
    return this.rules.reduce((n, s) => n + s.fired, 0);
  }

  /** See `Backend.save`. */
  async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await this.before('save', h.type, opts?.signal);
    return this.inner.save(h, data, opts);
  }

  /** See `Backend.load`. Applies `corrupt` and `truncate` rules to the result. */
  async load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    const active = await this.before('load', h.type, opts?.signal);
    let data = await this.inner.load(h, opts);
    for (const r of active) {
      if (r.truncate !== undefined) data = data.subarray(0, r.truncate);
      if (r.corrupt && data.length > 0) {
        data = Buffer.from(data);
        const i = Math.floor(data.length / 2);
        data[i] = (data[i] ?? 0) ^ 0xff;
      }
    }
    return data;
  }

  /** See `Backend.stat`. */
  async stat(h: Handle, opts?: OperationOptions): Promise<ObjectInfo | undefined> {
    await this.before('stat', h.type, opts?.signal);
    return this.inner.stat(h, opts);
  }

  /** See `Backend.list`. A fault strikes when iteration starts, before the first entry. */
  async *list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    await this.before('list', type, opts?.signal);
    yield* this.inner.list(type, opts);
  }

  /** See `Backend.remove`. */
  async remove(h: Handle, opts?: OperationOptions): Promise<void> {
    await this.before('remove', h.type, opts?.signal);
    return this.inner.remove(h, opts);
  }

  /** Passed through, never faulted. */
  async create(opts?: OperationOptions): Promise<void> {
    return this.inner.create(opts);
  }

  /** Passed through, never faulted. */
  async close(): Promise<void> {
    return this.inner.close();
  }

  /**
   * Counts the call against every matching rule, waits and throws as the
   * firing rules say, and returns them so `load` can damage its result.
   */
  private async before(op: FaultOp, type: ObjectType, signal: AbortSignal | undefined): Promise<FaultRule[]> {
    const firing: FaultRule[] = [];
    for (const s of this.rules) {
      if (s.rule.op !== op || (s.rule.type !== undefined && s.rule.type !== type)) continue;
      s.seen++;
      if (s.seen <= (s.rule.after ?? 0) || s.fired >= (s.rule.times ?? Infinity)) continue;
      s.fired++;
      firing.push(s.rule);
    }
    for (const r of firing) {
      if (r.delayMs === undefined) continue;
      try {
        await sleep(r.delayMs, undefined, { signal });
      } catch (e) {
        throw signal?.aborted ? signal.reason : e; // a slow call ends with the caller's reason, as a real one would
      }
    }
    for (const r of firing) if (r.interleave) await r.interleave();
    const failing = firing.find((r) => r.error !== undefined);
    if (failing?.error) throw failing.error;
    return firing;
  }
}

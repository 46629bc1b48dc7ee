/**
 * `RetryingBackend`: it passes the conformance suite over a backend whose
 * every operation fails with a `TransientError` on its first calls; it never
 * retries a permanent error; it gives up, with an error naming the operation
 * and the attempts, when the policy's attempts or time are spent; its sleeps
 * are full jitter under the cap and end with the signal. Time is a test
 * clock: nothing here waits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  AlreadyExistsError,
  NotFoundError,
  TransientError,
  type Backend,
  type Handle,
  type ListOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from '../../src/storage/backend.js';
import type { Clock } from '../../src/storage/clock.js';
import { FaultBackend, type FaultOp } from '../../src/storage/fault-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { RetriesExhaustedError, RetryingBackend, type RetryEvent } from '../../src/storage/retrying-backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import { backendConformance, bytes, handleOf, listAll } from './conformance.js';

/** A clock whose sleeps return at once and move its time on by what they slept. */
class TestClock implements Clock {
  t = 0;
  readonly sleeps: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.t += ms;
  }
}

const OPS: readonly FaultOp[] = ['save', 'load', 'stat', 'list', 'remove'];
const transient = (): TransientError => new TransientError('503 Slow Down', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) });

/** `inner` behind a wrapper that fails the first `n` calls of every operation with a `TransientError`. */
function flaky(inner: Backend, n: number): FaultBackend {
  return new FaultBackend(inner, OPS.map((op) => ({ op, times: n, error: transient() })));
}

backendConformance('RetryingBackend over transient faults', async (o) =>
  new RetryingBackend(flaky(new MemoryBackend(o), 2), { clock: new TestClock(), policy: { attempts: 3 } }));

describe('RetryingBackend', () => {
  it('retries every operation through two transient faults each, and the data is whole', async () => {
    const faulty = flaky(new MemoryBackend(), 2);
    const events: RetryEvent[] = [];
    const b = new RetryingBackend(faulty, { clock: new TestClock(), policy: { attempts: 3 }, onRetry: (e) => events.push(e) });
    const h = handleOf('data', 'whole');
    await b.save(h, bytes(100));
    assert.deepEqual(await b.load(h), bytes(100));
    assert.deepEqual(await b.stat(h), { name: h.name, size: 100 });
    assert.deepEqual(await listAll(b, 'data'), [{ name: h.name, size: 100 }]);
    await b.remove(h);
    assert.equal(faulty.faults, 10, 'two faults of each of five operations');
    assert.deepEqual(events.map((e) => `${e.operation.split(' ')[0]} ${e.attempt}`), OPS.flatMap((op) => [`${op} 1`, `${op} 2`]));
    assert.ok(events.every((e) => e.error instanceof TransientError));
  });

  it('does not retry a permanent error', async () => {
    const eacces = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const faulty = new FaultBackend(new MemoryBackend(), [{ op: 'save', times: 1, error: eacces }]);
    const clock = new TestClock();
    const b = new RetryingBackend(faulty, { clock });
    const h = handleOf('index', 'denied');
    await assert.rejects(b.save(h, bytes(5)), (e: unknown) => e === eacces);
    assert.equal(faulty.faults, 1, 'one attempt');
    assert.deepEqual(clock.sleeps, []);
    await assert.rejects(b.load(handleOf('index', 'absent')), NotFoundError);
    await b.save(h, bytes(5));
    await assert.rejects(b.save(h, bytes(6)), AlreadyExistsError, 'an existing name is not a lost answer on a first attempt');
    assert.deepEqual(clock.sleeps, [], 'NotFoundError and AlreadyExistsError are not retried either');
  });

  it('gives up after the attempts, naming the operation and the attempts, with the last error as the cause', async () => {
    const faulty = new FaultBackend(new MemoryBackend(), [{ op: 'stat', error: transient() }]);
    const clock = new TestClock();
    const b = new RetryingBackend(faulty, { clock, random: () => 0.5, policy: { attempts: 4, baseDelayMs: 200, maxDelayMs: 10_000 } });
    const h = handleOf('snapshot', 'gone');
    await assert.rejects(b.stat(h), (e: unknown) => {
      assert.ok(e instanceof RetriesExhaustedError);
      assert.equal(e.message, `stat snapshot/${h.name} failed after 4 attempts over 0.7 s: 503 Slow Down`);
      assert.equal(e.operation, `stat snapshot/${h.name}`);
      assert.equal(e.attempts, 4);
      assert.ok(e.cause instanceof TransientError);
      return true;
    });
    assert.equal(faulty.faults, 4);
    assert.deepEqual(clock.sleeps, [100, 200, 400], 'half of 200, 400, 800 ms with random() = 0.5');
  });

  it('sleeps full jitter under a doubling cap, and never past maxDelayMs', async () => {
    const faulty = new FaultBackend(new MemoryBackend(), [{ op: 'load', times: 6, error: transient() }]);
    const clock = new TestClock();
    const randoms = [0, 0.999, 0.25, 0.999, 0.999, 0.5];
    const b = new RetryingBackend(faulty, { clock, random: () => randoms.shift() ?? 0, policy: { attempts: 7, baseDelayMs: 1000, maxDelayMs: 5000 } });
    const h = handleOf('key', 'k');
    await faulty.inner.save(h, bytes(3));
    assert.deepEqual(await b.load(h), bytes(3));
    assert.deepEqual(clock.sleeps, [0, 1998, 1000, 4995, 4995, 2500]);
  });

  it('gives up when the next sleep would end past maxElapsedMs', async () => {
    const faulty = new FaultBackend(new MemoryBackend(), [{ op: 'remove', error: transient() }]);
    const clock = new TestClock();
    const b = new RetryingBackend(faulty, { clock, random: () => 0.999, policy: { attempts: 100, baseDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3500 } });
    await assert.rejects(b.remove(handleOf('lock', 'l')), /^RetriesExhaustedError: remove lock\/\S+ failed after 4 attempts over 3\.0 s: 503 Slow Down$/);
    assert.deepEqual(clock.sleeps, [999, 999, 999]);
    assert.equal(faulty.faults, 4);
  });

  it('ends a sleep with the signal’s reason and makes no further attempt', async () => {
    const faulty = new FaultBackend(new MemoryBackend(), [{ op: 'load', error: transient() }]);
    const ac = new AbortController();
    const reason = new Error('interrupted');
    const waiting: Clock = {
      now: () => 0,
      sleep: (_ms, signal) => new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason))),
    };
    const b = new RetryingBackend(faulty, { clock: waiting, onRetry: () => setImmediate(() => ac.abort(reason)) });
    await assert.rejects(b.load(handleOf('data', 'x'), { signal: ac.signal }), (e: unknown) => e === reason);
    assert.equal(faulty.faults, 1);
  });

  it('takes a save whose answer was lost as done when the object holds its bytes, and not when it holds others', async () => {
    const inner = new MemoryBackend();
    const b = new RetryingBackend(new LosesAnswers(inner), { clock: new TestClock() });
    const h = handleOf('data', 'landed');
    await b.save(h, bytes(40, 1));
    assert.deepEqual(await inner.load(h), bytes(40, 1));
    await assert.rejects(b.remove(h), NotFoundError, 'a remove whose answer was lost finds nothing the second time');
    assert.equal(await inner.stat(h), undefined);

    const racing = new LosesAnswers(inner, (g) => inner.remove(g).then(() => inner.save(g, bytes(40, 2))));
    await assert.rejects(new RetryingBackend(racing, { clock: new TestClock() }).save(h, bytes(40, 1)), AlreadyExistsError);
    assert.deepEqual(await inner.load(h), bytes(40, 2));
  });

  it('retries a listing until its first entry, and after it says why it cannot', async () => {
    const inner = new MemoryBackend();
    for (const n of ['aa', 'bb', 'cc']) await inner.save({ type: 'index', name: n }, bytes(1));
    const flakyList = new FaultBackend(inner, [{ op: 'list', times: 2, error: transient() }]);
    assert.deepEqual((await listAll(new RetryingBackend(flakyList, { clock: new TestClock() }), 'index')).map((i) => i.name), ['aa', 'bb', 'cc']);

    const midway = new RetryingBackend(new BreaksAfterOne(inner), { clock: new TestClock() });
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const info of midway.list('index')) seen.push(info.name);
      })(),
      /^RetriesExhaustedError: list index failed after 1 attempt over 0\.0 s \(after 1 entries; a listing is tried again only before its first entry\): 503 Slow Down$/,
    );
    assert.equal(seen.length, 1);
  });

  it('keeps the inner capabilities and refuses a nonsense policy', () => {
    const inner = new MemoryBackend();
    assert.deepEqual(new RetryingBackend(inner).capabilities, inner.capabilities);
    assert.throws(() => new RetryingBackend(inner, { policy: { attempts: 0 } }), RangeError);
    assert.throws(() => new RetryingBackend(inner, { policy: { maxDelayMs: -1 } }), RangeError);
  });
});

/** Does each save and remove, then fails the first of each with a TransientError (the answer lost on the way back). */
class LosesAnswers extends WrapperBackend {
  private lost = new Set<string>();
  constructor(inner: Backend, private readonly meanwhile?: (h: Handle) => Promise<void>) {
    super(inner);
  }
  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await this.inner.save(h, data, opts);
    await this.loseFirst('save', h);
  }
  override async remove(h: Handle, opts?: OperationOptions): Promise<void> {
    await this.inner.remove(h, opts);
    await this.loseFirst('remove', h);
  }
  private async loseFirst(op: string, h: Handle): Promise<void> {
    if (this.lost.has(op)) return;
    this.lost.add(op);
    await this.meanwhile?.(h);
    throw transient();
  }
}

/** Lists one entry, then fails with a TransientError. */
class BreaksAfterOne extends WrapperBackend {
  override async *list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    for await (const info of this.inner.list(type, opts)) {
      yield info;
      throw transient();
    }
  }
}

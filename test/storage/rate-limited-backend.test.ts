/**
 * The rate-limiting wrapper: on a clock the test advances by hand, uploads
 * and downloads go out no faster than the rate, calls in flight share one
 * bucket, an idle bucket fills up to one second's worth and no more; with a
 * limit too high to matter it passes the shared conformance suite.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import type { Clock } from '../../src/storage/clock.js';
import { RateLimitedBackend } from '../../src/storage/rate-limited-backend.js';
import { backendConformance, bytes, handleOf } from './conformance.js';

/** A clock that moves only when the test says. */
class ManualClock implements Clock {
  private t = 0;
  private readonly timers: { at: number; wake: () => void }[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((wake) => this.timers.push({ at: this.t + ms, wake }));
  }

  /** Moves time on by `ms`, waking every sleeper due, and lets the woken calls run. */
  async advance(ms: number): Promise<void> {
    this.t += ms;
    for (const timer of this.timers.filter((x) => x.at <= this.t)) {
      this.timers.splice(this.timers.indexOf(timer), 1);
      timer.wake();
    }
    for (let i = 0; i < 5; i++) await tick();
  }
}

/** Starts `calls`, and records which of them have settled. */
function tracked(calls: Promise<unknown>[]): { settled: () => number } {
  let n = 0;
  for (const c of calls) void c.then(() => n++);
  return { settled: () => n };
}

describe('RateLimitedBackend', () => {
  it('uploads no faster than the rate, calls in flight sharing one bucket', async () => {
    const clock = new ManualClock();
    const inner = new MemoryBackend();
    const b = new RateLimitedBackend(inner, { uploadBytesPerSecond: 1000 }, { clock });
    const saves = tracked([0, 1, 2, 3, 4].map((i) => b.save(handleOf('data', `s${i}`), bytes(1000, i))));
    await clock.advance(0);
    // The full bucket lets the first second's worth through at once.
    assert.equal(saves.settled(), 1);
    for (let second = 1; second <= 4; second++) {
      await clock.advance(999);
      assert.equal(saves.settled(), second, `just before ${second} s`);
      await clock.advance(1);
      assert.equal(saves.settled(), second + 1, `at ${second} s`);
    }
    for (let i = 0; i < 5; i++) assert.deepEqual(await inner.load(handleOf('data', `s${i}`)), bytes(1000, i));
  });

  it('fills an idle bucket to one second of the rate, no more; an object larger than that waits for the rest', async () => {
    const clock = new ManualClock();
    const b = new RateLimitedBackend(new MemoryBackend(), { uploadBytesPerSecond: 1000 }, { clock });
    await b.save(handleOf('data', 'first'), bytes(1000));
    await clock.advance(60_000);
    const big = tracked([b.save(handleOf('data', 'big'), bytes(3000))]);
    await clock.advance(1999);
    assert.equal(big.settled(), 0, 'a minute idle paid for 1000 bytes, not 3000');
    await clock.advance(1);
    assert.equal(big.settled(), 1);
    const next = tracked([b.save(handleOf('data', 'next'), bytes(1))]);
    await clock.advance(0);
    assert.equal(next.settled(), 0, 'the bucket is empty');
    await clock.advance(1);
    assert.equal(next.settled(), 1);
  });

  it('waits for download tokens before a range is read, and before a whole object is handed over', async () => {
    const clock = new ManualClock();
    const inner = new MemoryBackend();
    await inner.save(handleOf('data', 'obj'), bytes(3000, 5));
    let loads = 0;
    const counting = Object.assign(Object.create(inner) as MemoryBackend, {
      load: (...args: Parameters<MemoryBackend['load']>) => {
        loads++;
        return inner.load(...args);
      },
    });
    const b = new RateLimitedBackend(counting, { downloadBytesPerSecond: 1000, uploadBytesPerSecond: 1 }, { clock });
    const first = tracked([b.load(handleOf('data', 'obj'), { offset: 0, length: 1000 })]);
    await clock.advance(0);
    assert.deepEqual([first.settled(), loads], [1, 1]);
    const range = tracked([b.load(handleOf('data', 'obj'), { offset: 1000, length: 2000 })]);
    await clock.advance(1999);
    assert.deepEqual([range.settled(), loads], [0, 1], 'a range is not read before its tokens are there');
    await clock.advance(1);
    assert.deepEqual([range.settled(), loads], [1, 2]);
    let whole: Buffer | undefined;
    void b.load(handleOf('data', 'obj')).then((d) => (whole = d));
    await clock.advance(0);
    assert.deepEqual([whole, loads], [undefined, 3], 'a whole object is read, then held until its tokens are there');
    await clock.advance(3000);
    assert.deepEqual(whole, bytes(3000, 5));
  });

  it('ends a wait with the signal\'s reason once it is aborted, and writes nothing (the real clock)', async () => {
    const inner = new MemoryBackend();
    const abort = new AbortController();
    const b = new RateLimitedBackend(inner, { uploadBytesPerSecond: 1000 }, { signal: abort.signal });
    await b.save(handleOf('data', 'first'), bytes(1000, 1));
    // A day's debt: only the abort can end this wait.
    const waiting = b.save(handleOf('data', 'second'), bytes(86_400_000, 2));
    const reason = new Error('interrupted');
    abort.abort(reason);
    await assert.rejects(waiting, (e) => e === reason);
    await assert.rejects(b.save(handleOf('data', 'third'), bytes(1, 3)), (e) => e === reason);
    assert.equal(await inner.stat(handleOf('data', 'second')), undefined);
    assert.equal(await inner.stat(handleOf('data', 'third')), undefined);
  });

  it('refuses a rate of 0', () => {
    assert.throws(() => new RateLimitedBackend(new MemoryBackend(), { uploadBytesPerSecond: 0 }), /above 0/);
  });
});

backendConformance('RateLimitedBackend', async (o) => new RateLimitedBackend(new MemoryBackend(o), { uploadBytesPerSecond: 1e12, downloadBytesPerSecond: 1e12 }));

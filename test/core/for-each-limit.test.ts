/**
 * mapInOrder: results in the items' order whatever order the calls end in,
 * never more than `limit` calls in flight, the first failure in order thrown
 * where its result would be, and a consumer that stops early leaving no
 * failure unhandled.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapInOrder } from '../../src/core/for-each-limit.js';

describe('mapInOrder', () => {
  it('hands results on in order, with at most `limit` calls in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const items = Array.from({ length: 40 }, (_, i) => i);
    const out: number[] = [];
    for await (const r of mapInOrder(items, 5, async (i) => {
      most = Math.max(most, ++inFlight);
      await sleep((i * 7) % 5); // later items often end first
      inFlight--;
      return i * 2;
    })) out.push(r);
    assert.deepEqual(out, items.map((i) => i * 2));
    assert.equal(most, 5);
  });

  it('throws the first failure in order, after the results before it', async () => {
    const out: number[] = [];
    await assert.rejects(async () => {
      for await (const r of mapInOrder([0, 1, 2, 3], 4, async (i) => {
        await sleep(i === 3 ? 0 : 5);
        if (i >= 2) throw new Error(`item ${i}`);
        return i;
      })) out.push(r);
    }, /item 2/);
    assert.deepEqual(out, [0, 1]);
  });

  it('starts nothing more once the consumer stops, and leaves no failure unhandled', async () => {
    const started: number[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      for await (const r of mapInOrder([0, 1, 2, 3, 4, 5, 6, 7], 3, async (i) => {
        started.push(i);
        await sleep(1);
        if (i > 0) throw new Error(`item ${i}`);
        return i;
      })) {
        assert.equal(r, 0);
        break;
      }
      await sleep(20);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.deepEqual(started, [0, 1, 2, 3]); // three at first, one more when the first was taken
    assert.deepEqual(unhandled, []);
  });
});

/** The storage chart's arithmetic without a browser (web/src/lib/usage.ts): growth per day, the chart's top, the days left until the quota fills. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { chartTop, daysLeft, usagePoints } from '../../web/src/lib/usage.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

it('each day\'s growth is its bytes over the day before; the first has none', () => {
  assert.deepEqual(usagePoints([{ day: '2026-03-01', stored_bytes: 100 }, { day: '2026-03-02', stored_bytes: 250 }, { day: '2026-03-03', stored_bytes: 200 }]), [
    { day: '2026-03-01', bytes: 100, growth: null },
    { day: '2026-03-02', bytes: 250, growth: 150 },
    { day: '2026-03-03', bytes: 200, growth: -50 },
  ]);
  assert.deepEqual(usagePoints([]), []);
});

it('the chart\'s top is a round size above every point, and above the quota when it is within twice the largest', () => {
  assert.equal(chartTop([700 * MiB, 900 * MiB], null), 1000 * MiB);
  assert.equal(chartTop([1.5 * GiB], null), 2 * GiB);
  assert.equal(chartTop([1.5 * GiB], 2.5 * GiB), 5 * GiB, 'the quota in reach is drawn');
  assert.equal(chartTop([1.5 * GiB], 100 * GiB), 2 * GiB, 'a quota far above would flatten the line');
  assert.equal(chartTop([], null), 1);
  assert.equal(chartTop([3], null), 5);
  assert.equal(chartTop([1000 * MiB], null), 1000 * MiB);
  assert.equal(chartTop([1001 * MiB], null), 1 * GiB);
  for (const v of [1, 7, 999, 1023, 1025, 5 * GiB + 1, 3e12]) assert.ok(chartTop([v], null) >= v, String(v));
});

it('the days left are whole days from now until the quota fills; none without a date; zero once it is past', () => {
  const now = Date.parse('2026-03-10T12:00:00Z');
  assert.equal(daysLeft('2026-03-20T18:00:00Z', now), 10);
  assert.equal(daysLeft('2026-03-10T13:00:00Z', now), 0);
  assert.equal(daysLeft('2026-03-01T00:00:00Z', now), 0);
  assert.equal(daysLeft(null, now), null);
});

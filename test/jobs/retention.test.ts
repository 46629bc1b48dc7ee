/**
 * The retention policy as a pure function: buckets in local time, ISO weeks,
 * counts, unlimited, keep-within relative to the newest snapshot, tags, the
 * reasons given, grouping, and properties over random inputs. The comparison
 * with the real restic is in test/cli/forget-restic.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  UNLIMITED, applyPolicy, describePolicy, formatDuration, hasTags, isEmptyPolicy, isoYearWeek, parseDuration, subtractDuration,
  type RetentionPolicy,
} from '../../src/jobs/forget/retention.js';
import { DEFAULT_GROUP_BY, describeGroup, groupSnapshots, parseGroupBy } from '../../src/jobs/forget/group-by.js';
import { planForget } from '../../src/jobs/forget/forget.js';
import type { Snapshot } from '../../src/repo/snapshot.js';

let n = 0;
/** A snapshot at local time `y-m-d h:mi:s` (months 1-based). */
function snap(local: [number, number, number, number?, number?, number?], extra: Partial<Snapshot> = {}): { id: string; snapshot: Snapshot } {
  const [y, mo, d, h = 12, mi = 0, s = 0] = local;
  const id = (n++).toString(16).padStart(64, '0');
  return {
    id,
    snapshot: {
      time: new Date(y, mo - 1, d, h, mi, s).toISOString(), hostname: 'h', username: 'u', paths: ['/p'], tags: [], tree: '0'.repeat(64),
      summary: {} as Snapshot['summary'], blobs: [], ...extra,
    },
  };
}

const kept = (list: ReturnType<typeof snap>[], p: RetentionPolicy, now = new Date(2100, 0, 1)): string[] =>
  applyPolicy(list, p, now).filter((d) => d.keep).map((d) => d.item.id);

const withTz = (tz: string): void => {
  let saved: string | undefined;
  before(() => {
    saved = process.env['TZ'];
    process.env['TZ'] = tz;
  });
  after(() => {
    if (saved === undefined) delete process.env['TZ'];
    else process.env['TZ'] = saved;
  });
};

describe('retention: calendar', () => {
  withTz('Europe/Berlin');

  it('numbers ISO weeks like Go (week-year of the Thursday)', () => {
    const w = (y: number, m: number, d: number): number => isoYearWeek(new Date(y, m - 1, d, 12));
    assert.equal(w(2023, 1, 1), 202252); // a Sunday: still week 52 of 2022
    assert.equal(w(2023, 1, 2), 202301);
    assert.equal(w(2024, 12, 29), 202452);
    assert.equal(w(2024, 12, 30), 202501); // a Monday: week 1 of 2025
    assert.equal(w(2020, 12, 31), 202053);
    assert.equal(w(2021, 1, 3), 202053);
    assert.equal(w(2021, 1, 4), 202101);
    assert.equal(isoYearWeek(new Date(2023, 2, 26, 0, 30)), isoYearWeek(new Date(2023, 2, 26, 23, 30))); // a DST day
  });

  it('buckets days by local time, not UTC', () => {
    // 23:59:59 and 00:00:01 in Berlin summer time are both on 2023-06-15 in UTC.
    const a = snap([2023, 6, 15, 23, 59, 59]);
    const b = snap([2023, 6, 16, 0, 0, 1]);
    assert.equal(a.snapshot.time.slice(0, 10), b.snapshot.time.slice(0, 10));
    assert.deepEqual(kept([a, b], { daily: 5 }).sort(), [a.id, b.id].sort());
  });

  it('subtracts calendar durations like Go AddDate (months overflow into the next month)', () => {
    assert.deepEqual(subtractDuration(new Date(2023, 2, 31, 10), { years: 0, months: 1, days: 0, hours: 0 }), new Date(2023, 2, 3, 10));
    assert.deepEqual(subtractDuration(new Date(2024, 1, 29, 10), { years: 1, months: 0, days: 0, hours: 0 }), new Date(2023, 2, 1, 10));
    // Across the spring DST change (2023-03-26 02:00), a day back keeps the wall clock; hours are absolute.
    assert.deepEqual(subtractDuration(new Date(2023, 2, 26, 12), { years: 0, months: 0, days: 1, hours: 0 }), new Date(2023, 2, 25, 12));
    assert.deepEqual(subtractDuration(new Date(2023, 2, 26, 12), { years: 0, months: 0, days: 0, hours: 24 }), new Date(2023, 2, 25, 11));
  });
});

describe('retention: under UTC the same pair is one day', () => {
  withTz('UTC');
  it('keeps one of two snapshots that share a UTC day', () => {
    const a = snap([2023, 6, 15, 21, 59, 59]);
    const b = snap([2023, 6, 15, 22, 0, 1]);
    assert.deepEqual(kept([a, b], { daily: 5 }), [b.id]);
  });
});

describe('retention: rules', () => {
  withTz('Europe/Berlin');

  it('an empty policy keeps everything, saying so', () => {
    const list = [snap([2023, 1, 1]), snap([2023, 1, 2])];
    assert.ok(isEmptyPolicy({}) && isEmptyPolicy({ daily: 0, within: { years: 0, months: 0, days: 0, hours: 0 }, tags: [] }));
    const d = applyPolicy(list, {}, new Date());
    assert.ok(d.every((x) => x.keep && x.reasons[0] === 'policy is empty'));
  });

  it('keeps the newest snapshot of each of the newest n days that have snapshots', () => {
    const list = [snap([2023, 1, 1, 9]), snap([2023, 1, 1, 18]), snap([2023, 1, 3, 9]), snap([2023, 1, 7, 9]), snap([2023, 1, 7, 10])];
    const [a, b, c, d, e] = list.map((s) => s.id) as [string, string, string, string, string];
    assert.deepEqual(kept(list, { daily: 2 }), [e, c]);
    assert.deepEqual(kept(list, { daily: 10 }), [e, c, b]); // restic 0.14: the oldest day's older snapshot is not kept
    assert.deepEqual(kept(list, { daily: UNLIMITED }), [e, c, b]);
    assert.deepEqual(kept(list, { last: 2 }), [e, d]);
    assert.deepEqual(kept(list, { last: UNLIMITED }), [e, d, c, b, a]);
  });

  it('minutely, hourly, weekly, monthly and yearly buckets', () => {
    const list = [
      snap([2023, 5, 1, 10, 0, 5]), snap([2023, 5, 1, 10, 0, 50]), snap([2023, 5, 1, 10, 1, 0]), snap([2023, 5, 1, 11, 30]),
      snap([2023, 5, 7, 9]), snap([2023, 5, 8, 9]), snap([2023, 6, 1]), snap([2024, 1, 1]),
    ];
    const id = (i: number): string => list[i]!.id;
    assert.deepEqual(kept(list, { minutely: 3 }), [id(7), id(6), id(5)]);
    assert.deepEqual(kept(list.slice(0, 4), { minutely: 10 }), [id(3), id(2), id(1)]);
    assert.deepEqual(kept(list.slice(0, 4), { hourly: 10 }), [id(3), id(2)]);
    assert.deepEqual(kept(list, { weekly: 10 }), [id(7), id(6), id(5), id(4)]); // May 7 is a Sunday, May 8 a Monday
    assert.deepEqual(kept(list, { monthly: 10 }), [id(7), id(6), id(5)]);
    assert.deepEqual(kept(list, { yearly: 10 }), [id(7), id(6)]);
  });

  it('keep-within counts back from the newest snapshot that is not in the future', () => {
    const list = [snap([2023, 1, 1]), snap([2023, 1, 9]), snap([2023, 1, 10]), snap([2023, 1, 10, 13])];
    const future = snap([2099, 1, 1]);
    const now = new Date(2024, 0, 1);
    const within = (d: string, l = list): string[] => kept(l, { within: parseDuration(d) }, now);
    assert.deepEqual(within('1d'), [list[3]!.id, list[2]!.id]);
    assert.deepEqual(within('1d1h'), [list[3]!.id, list[2]!.id]); // exactly 1d1h before the newest: not "within" (restic: After)
    assert.deepEqual(within('1d2h'), [list[3]!.id, list[2]!.id, list[1]!.id]);
    assert.deepEqual(within('1d', [...list, future]), [future.id, list[3]!.id, list[2]!.id]); // kept, but not the reference
  });

  it('keep-tag keeps snapshots with all tags of any list; an empty tag means untagged', () => {
    const a = snap([2023, 1, 1], { tags: ['x', 'y'] });
    const b = snap([2023, 1, 2], { tags: ['x'] });
    const c = snap([2023, 1, 3]);
    assert.deepEqual(kept([a, b, c], { tags: [['x', 'y']] }), [a.id]);
    assert.deepEqual(kept([a, b, c], { tags: [['y'], ['x']] }), [b.id, a.id]);
    assert.deepEqual(kept([a, b, c], { tags: [['']] }), [c.id]);
    assert.ok(hasTags(['a'], []) && !hasTags([], ['a']));
  });

  it('gives restic\'s reasons for keeping, and reasons for removing', () => {
    const list = [snap([2023, 1, 1, 10], { tags: ['a', 'b'] }), snap([2023, 1, 1, 11]), snap([2023, 1, 2, 9])];
    const d = applyPolicy(list, { last: 1, daily: 5, tags: [['a', 'b']], within: parseDuration('2h'), withinDaily: parseDuration('1y') }, new Date(2024, 0, 1));
    assert.deepEqual(d.map((x) => x.keep), [true, true, true]);
    assert.deepEqual(d[0]!.reasons, ['within 2h', 'last snapshot', 'daily snapshot', 'daily within 1y']);
    assert.deepEqual(d[2]!.reasons, ['has tags [a, b]']);
    assert.deepEqual(d[0]!.counters, { last: 0, daily: 4 });
    const r = applyPolicy(list, { daily: 1 }, new Date(2024, 0, 1));
    assert.deepEqual(r.map((x) => x.keep), [true, false, false]);
    assert.deepEqual(r[1]!.reasons, ['daily: count used up']);
    const s = applyPolicy(list, { daily: 5 }, new Date(2024, 0, 1));
    assert.deepEqual(s[2]!.reasons, ['daily: a newer snapshot of the same day is kept']);
  });

  it('parses and prints restic durations and describes policies', () => {
    assert.deepEqual(parseDuration('1y5m7d2h'), { years: 1, months: 5, days: 7, hours: 2 });
    assert.deepEqual(parseDuration('36h'), { years: 0, months: 0, days: 0, hours: 36 });
    assert.equal(formatDuration(parseDuration('2h1y')), '1y2h');
    for (const bad of ['', '5', 'y', '1w', '1d x', '3.5d']) assert.throws(() => parseDuration(bad), /bad duration/, bad);
    assert.equal(describePolicy({ last: 2, daily: UNLIMITED, withinDaily: parseDuration('1m'), tags: [['a', 'b']], within: parseDuration('2d') }),
      'keep 2 latest, all daily snapshots, daily snapshots within 1m and all snapshots with tags [[a, b]] and all snapshots within 2d of the newest');
  });
});

describe('retention: properties', () => {
  withTz('America/New_York');
  const snapshots = fc.uniqueArray(fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2024, 0, 1) }), { minLength: 1, maxLength: 60 })
    .map((times) => times.map((t, i) => ({
      id: i.toString(16).padStart(64, '0'),
      snapshot: { time: new Date(t).toISOString(), tags: i % 3 === 0 ? ['t'] : [] },
    })));
  const count = fc.oneof(fc.constant(undefined), fc.integer({ min: 0, max: 8 }), fc.constant(UNLIMITED));
  // An empty policy keeps everything (restic: "no policy was specified"), so
  // it is no rule that adds up with others: the properties take real rules.
  const policy = fc.record({ last: count, hourly: count, daily: count, weekly: count, monthly: count, yearly: count, minutely: count }, { requiredKeys: [] })
    .filter((p) => !isEmptyPolicy(p));
  const keptSet = (l: Parameters<typeof applyPolicy>[0], p: RetentionPolicy): Set<string> =>
    new Set(applyPolicy(l, p, new Date(2030, 0, 1)).filter((d) => d.keep).map((d) => d.item.id));

  it('rules add up: what two policies keep together is the union of what each keeps', () => {
    fc.assert(fc.property(snapshots, policy, policy, (l, p, q) => {
      const both: RetentionPolicy = Object.fromEntries(Object.keys({ ...p, ...q }).map((k) => {
        const a = (p as Record<string, number | undefined>)[k];
        const b = (q as Record<string, number | undefined>)[k];
        return [k, a === UNLIMITED || b === UNLIMITED ? UNLIMITED : Math.max(a ?? 0, b ?? 0)];
      }));
      const union = new Set([...keptSet(l, p), ...keptSet(l, q)]);
      // Counts merge by max, which keeps a superset of each; with disjoint rules it is exactly the union.
      const disjoint = Object.keys(p).every((k) => !(k in q) || (p as Record<string, unknown>)[k] === undefined || (q as Record<string, unknown>)[k] === undefined);
      const got = keptSet(l, both);
      for (const id of union) assert.ok(got.has(id));
      if (disjoint) assert.deepEqual([...got].sort(), [...union].sort());
    }), { numRuns: 200 });
  });

  it('--keep-daily n keeps the newest snapshot of each of the newest n days, nothing else', () => {
    fc.assert(fc.property(snapshots, fc.integer({ min: 1, max: 70 }), (l, days) => {
      const dayOf = (iso: string): string => new Date(iso).toLocaleDateString('en-CA');
      const newestPerDay = new Map<string, { id: string; t: number }>();
      for (const s of l) {
        const d = dayOf(s.snapshot.time);
        const t = Date.parse(s.snapshot.time);
        if ((newestPerDay.get(d)?.t ?? -Infinity) < t) newestPerDay.set(d, { id: s.id, t });
      }
      const expected = [...newestPerDay.entries()].sort(([a], [b]) => (a < b ? 1 : -1)).slice(0, days).map(([, v]) => v.id).sort();
      assert.deepEqual([...keptSet(l, { daily: days })].sort(), expected);
    }), { numRuns: 200 });
  });

  it('--keep-last n keeps exactly the newest n', () => {
    fc.assert(fc.property(snapshots, fc.integer({ min: 0, max: 70 }), (l, k) => {
      const expected = [...l].sort((a, b) => Date.parse(b.snapshot.time) - Date.parse(a.snapshot.time)).slice(0, k).map((s) => s.id).sort();
      assert.deepEqual([...keptSet(l, k === 0 ? { tags: [['nope']] } : { last: k })].sort(), expected);
    }), { numRuns: 200 });
  });
});

describe('grouping', () => {
  it('parses --group-by like restic and refuses unknown words', () => {
    assert.deepEqual(parseGroupBy('host,paths'), DEFAULT_GROUP_BY);
    assert.deepEqual(parseGroupBy('hosts,tag'), { host: true, paths: false, tags: true });
    assert.deepEqual(parseGroupBy(''), { host: false, paths: false, tags: false });
    assert.throws(() => parseGroupBy('host,user'), /unknown grouping "user"/);
  });

  it('groups by host and sorted paths and tags, and plans per group', () => {
    const mk = (host: string, paths: string[], tags: string[], day: number): ReturnType<typeof snap> => snap([2023, 1, day], { hostname: host, paths, tags });
    const list = [mk('a', ['/x', '/y'], ['t2', 't1'], 1), mk('a', ['/y', '/x'], ['t1', 't2'], 2), mk('b', ['/x', '/y'], [], 3), mk('a', ['/x'], [], 4)];
    const byHostPaths = groupSnapshots(list, DEFAULT_GROUP_BY);
    assert.deepEqual(byHostPaths.map((g) => [describeGroup(g.key), g.items.length]), [['host a, paths /x /y', 2], ['host a, paths /x', 1], ['host b, paths /x /y', 1]]);
    const byTags = groupSnapshots(list, { host: false, paths: false, tags: true });
    assert.deepEqual(byTags.map((g) => [g.key.tags, g.items.length]), [[['t1', 't2'], 2], [[], 2]]);
    const plan = planForget(list, { last: 1 }, DEFAULT_GROUP_BY, new Date());
    assert.deepEqual(plan.remove, [list[0]!.id]);
    assert.equal(describeGroup({ hostname: null, paths: null, tags: null }), 'all snapshots');
  });
});

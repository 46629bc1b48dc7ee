/** The web interface's logic without a browser: a machine's status from its jobs, snapshots from backup jobs, sizes as people type them. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { countByStatus, machineState, staleAfterSeconds } from '../../web/src/lib/fleet-status.js';
import { parseSize } from '../../web/src/lib/sizes.js';
import { defaultRestoreSource, snapshotPoints } from '../../web/src/lib/snapshots.js';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const H = 3600_000;
let n = 0;
const job = (kind: string, state: string, endedHoursAgo: number | null, result: Record<string, unknown> | null = null) => ({
  id: `j${++n}`, kind, state, error: state === 'failed' ? 'boom' : null, result,
  created_at: new Date(NOW - (endedHoursAgo ?? 0) * H - 60_000).toISOString(),
  finished_at: endedHoursAgo === null ? null : new Date(NOW - endedHoursAgo * H).toISOString(),
});

it('a machine is running, failed, never backed up, stale or OK, in that order of precedence', () => {
  assert.equal(machineState([], NOW).status, 'never');
  assert.equal(machineState([job('backup', 'running', null), job('backup', 'failed', 1)], NOW).status, 'running');
  assert.equal(machineState([job('backup', 'failed', 1), job('backup', 'succeeded', 2)], NOW).status, 'failed');
  // A restore or check that failed is a failure of the last 24 h but not the machine's status; a cancelled backup does not count.
  const s = machineState([job('restore', 'failed', 1), job('backup', 'cancelled', 2), job('backup', 'succeeded', 3)], NOW);
  assert.equal(s.status, 'ok');
  assert.equal(s.failures24h.length, 1);
  assert.equal(s.lastSuccessAt, new Date(NOW - 3 * H).toISOString());
  assert.equal(machineState([job('backup', 'succeeded', 73)], NOW).status, 'stale');
  assert.equal(machineState([job('backup', 'succeeded', 71)], NOW).status, 'ok');
  // Three intervals of a machine backed up every hour.
  assert.equal(machineState([job('image-backup', 'succeeded', 4)], NOW, null, staleAfterSeconds(3600)).status, 'stale');
  assert.equal(machineState([job('backup', 'expired', 5)], NOW).status, 'failed');
  assert.equal(machineState([job('backup', 'failed', 30)], NOW).failures24h.length, 0);
  assert.deepEqual(countByStatus([{ status: 'ok' }, { status: 'ok' }, { status: 'stale' }]), { ok: 2, running: 0, failed: 0, stale: 1, never: 0 });
});

it('takes the snapshots\' sizes from the index\'s summaries, oldest first, and the last success from the newest snapshot', () => {
  const snap = (id: string, hoursAgo: number, summary: Record<string, number | string>) => ({ id, time: new Date(NOW - hoursAgo * H).toISOString(), image: false, incomplete: false, paths: ['/srv'], summary });
  const points = snapshotPoints([
    snap('b', 1, { total_bytes: 2000, data_added: 10, files_new: 1, files_changed: 1, files_unchanged: 1 }),
    snap('a', 5, { total_bytes: 1000, start: '2026-03-10T07:00:00Z' }),
  ]);
  assert.deepEqual(points.map((p) => [p.id, p.size, p.added, p.files]), [['a', 1000, null, null], ['b', 2000, 10, 3]]);
  // A restore offers first the newest snapshot the server does not flag unauthentic, else latest.
  const flagged = snapshotPoints([{ ...snap('c', 0, {}), unauthentic: true }, snap('b', 1, {}), snap('a', 5, {})]).reverse();
  assert.deepEqual(flagged.map((p) => [p.id, p.unauthentic]), [['c', true], ['b', false], ['a', false]]);
  assert.equal(defaultRestoreSource(flagged), 'b');
  assert.equal(defaultRestoreSource(flagged.slice(0, 1)), 'latest');
  // A snapshot newer than any job's success (the CLI's backup over HTTPS) is the last success; one older than 3 days is stale.
  assert.equal(machineState([job('backup', 'succeeded', 80)], NOW, new Date(NOW - H).toISOString()).status, 'ok');
  assert.equal(machineState([], NOW, new Date(NOW - 80 * H).toISOString()).status, 'stale');
  assert.equal(machineState([job('backup', 'succeeded', 2)], NOW, new Date(NOW - 80 * H).toISOString()).lastSuccessAt, new Date(NOW - 2 * H).toISOString());
});

it('reads sizes as people type them and refuses the rest in words', () => {
  assert.equal(parseSize(''), null);
  assert.equal(parseSize('500 GiB'), 500 * 1024 ** 3);
  assert.equal(parseSize('2TB'), 2e12);
  assert.equal(parseSize('1.5 g'), 1.5 * 1024 ** 3);
  assert.equal(parseSize('4096'), 4096);
  assert.throws(() => parseSize('2 gigs'), /"2 gigs" is not a size/);
  assert.throws(() => parseSize('-1 GiB'), /is not a size/);
});

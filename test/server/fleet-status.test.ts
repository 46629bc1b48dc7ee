/**
 * GET /api/v1/machines?status=true, the fleet dashboard's one call, on both
 * databases, by the server's clock: each status (never, ok, running, failed,
 * stale by the policy's interval and by the server's default), the last
 * success from a job or a snapshot, the next run as GET /machines/ID/policy
 * gives it, the safe's stored bytes and the quota its policy gives, the
 * failures of the last 24 hours; pages by name; a customer's admin and a
 * machine's token see only theirs, never another customer's machines.
 * Jobs and snapshots are planted in the database (no agent needed).
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { openDatabase, type ControlPlaneDatabase } from '../../src/server/db/open-database.js';
import type { MachineBody } from '../../src/api/v1.js';
import type { Job } from '../../src/server/db/schema.js';
import { snapshotGroupKey } from '../../src/server/services/snapshot-time-policy.js';

const NOW = Date.parse('2026-06-10T12:00:00.000Z');
const H = 3600_000;
const iso = (ms: number): string => new Date(ms).toISOString();

databaseSuites('fleet status', (fx) => {
  let t: TestServer;
  let db: ControlPlaneDatabase;
  let acme = '';
  let other = '';
  const ids: Record<string, string> = {};
  const safes: Record<string, string> = {};
  let job = 0;
  const plant = async (machine: string, kind: Job['kind'], state: Job['state'], finishedAgoH: number | null, error: string | null = null): Promise<string> => {
    const id = `job-${++job}`;
    const finished = finishedAgoH === null ? null : iso(NOW - finishedAgoH * H);
    await db.db.insertInto('jobs').values({
      id, customer_id: machine.startsWith('b-') ? other : acme, machine_id: ids[machine]!, safe_id: safes[machine]!, runner: 'agent', runner_node: null, kind, spec: '{}', state,
      created_by: 'test', created_at: iso(NOW - 30 * 24 * H + job), started_at: null, last_report_at: null, finished_at: finished, result: null, error,
      expires_at: null, cancelled_by: null, lease_until: null, slot_at: null, admitted_at: null, timeout_seconds: null,
    }).execute();
    return id;
  };
  const list = async (token: string, query = 'status=true'): Promise<MachineBody[]> => {
    const r = await t.call('GET', `/api/v1/machines?${query}`, { token });
    assert.equal(r.status, 200, r.text);
    return r.body as MachineBody[];
  };

  before(async () => {
    const url = await fx.newUrl();
    t = await setUp(url, undefined, { clock: () => new Date(NOW), staleAfterMs: 48 * H });
    db = await openDatabase(url, '');
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    other = (await t.create('/api/v1/customers', { name: 'Bravo' })).id;
    for (const name of ['a-failed', 'a-hourly', 'a-never', 'a-ok', 'a-running', 'a-stale', 'b-web']) {
      const customer = name.startsWith('b-') ? other : acme;
      ids[name] = (await t.create('/api/v1/machines', { customer_id: customer, name })).id;
      safes[name] = (await t.create('/api/v1/safes', { customer_id: customer, machine_id: ids[name], name })).id;
    }
    // a-ok's safe holds 1234 bytes in storage before the server first counts it.
    await mkdir(join(t.dataDir, 'data', 'safes', safes['a-ok']!, 'keys'), { recursive: true });
    await writeFile(join(t.dataDir, 'data', 'safes', safes['a-ok']!, 'keys', 'a'.repeat(64)), Buffer.alloc(1234));
    await t.create('/api/v1/policies', { customer_id: acme, machine_id: ids['a-hourly'], schedule: 'every 1h', backup: { paths: ['/srv'] } });
    await t.create('/api/v1/policies', { customer_id: acme, machine_id: ids['a-ok'], quota: { hard: 10_000, soft: 8000 } });
    await plant('a-ok', 'backup', 'succeeded', 30);
    await plant('a-ok', 'restore', 'failed', 2, 'the folder is not empty');
    await plant('a-ok', 'backup', 'cancelled', 1);
    await plant('a-failed', 'backup', 'succeeded', 5);
    await plant('a-failed', 'backup', 'interrupted', 3, 'the agent went away');
    await plant('a-failed', 'backup', 'skipped', 1);
    await plant('a-running', 'backup', 'failed', 3, 'disk full');
    await plant('a-running', 'image-backup', 'running', null);
    // a-hourly: its last success 4 h ago is past 3 × 1 h; a-stale's, by a snapshot only, 50 h ago past the server's 48 h.
    await plant('a-hourly', 'backup', 'succeeded', 4);
    await db.db.insertInto('snapshot_index').values({
      safe_id: safes['a-stale']!, id: 'f'.repeat(64), time: iso(NOW - 50 * H), hostname: 'a-stale', username: 'root', paths: '["/srv"]', tags: '[]', parent: null,
      incomplete: 0, image: 0, summary: '{}', stored_at: iso(NOW - 50 * H), group_key: snapshotGroupKey('a-stale', ['/srv']),
    }).execute();
    await plant('b-web', 'backup', 'succeeded', 1);
  });
  after(async () => {
    await db?.close();
    await t?.stop();
  });

  it('gives every machine its status, last success, next run, safe and failures in one call', async () => {
    const all = await list(t.adminToken);
    assert.deepEqual(all.map((m) => m.name), ['a-failed', 'a-hourly', 'a-never', 'a-ok', 'a-running', 'a-stale', 'b-web']);
    const by = new Map(all.map((m) => [m.name, m.status!]));
    assert.deepEqual(Object.fromEntries([...by].map(([n, s]) => [n, s.status])), {
      'a-failed': 'failed', 'a-hourly': 'stale', 'a-never': 'never', 'a-ok': 'ok', 'a-running': 'running', 'a-stale': 'stale', 'b-web': 'ok',
    });
    const ok = by.get('a-ok')!;
    assert.equal(ok.last_success_at, iso(NOW - 30 * H));
    assert.equal(ok.stale_after_seconds, 48 * 3600);
    assert.deepEqual(ok.safe, { id: safes['a-ok'], name: 'a-ok', stored_bytes: 1234, quota_hard: 10_000, quota_soft: 8000 });
    assert.equal(ok.failures_24h, 1);
    assert.equal(ok.last_failure?.kind, 'restore');
    assert.equal(ok.last_failure?.error, 'the folder is not empty');
    assert.equal(ok.customer_name, 'Acme');
    assert.equal(ok.next_run_at, null);
    assert.equal(by.get('a-failed')!.last_failure?.state, 'interrupted', 'the skipped slot after it hides no failure');
    const running = by.get('a-running')!;
    assert.match(running.running_job_id ?? '', /^job-/);
    assert.equal(running.last_success_at, null);
    const hourly = by.get('a-hourly')!;
    assert.equal(hourly.stale_after_seconds, 3 * 3600);
    const policy = await t.call('GET', `/api/v1/machines/${ids['a-hourly']}/policy`, { token: t.adminToken });
    assert.ok(policy.body.next_run, policy.text);
    assert.equal(hourly.next_run_at, policy.body.next_run);
    assert.equal(by.get('a-stale')!.last_success_at, iso(NOW - 50 * H));
    assert.deepEqual(by.get('a-never')!.safe, { id: safes['a-never'], name: 'a-never', stored_bytes: 0, quota_hard: null, quota_soft: null });
    // Without status=true the list is as it was: no status, every machine.
    const plain = await list(t.adminToken, '');
    assert.equal(plain.length, 7);
    assert.ok(plain.every((m) => m.status === undefined));
  });

  it('pages by name with limit and offset', async () => {
    assert.deepEqual((await list(t.adminToken, 'status=true&limit=2&offset=2')).map((m) => [m.name, m.status?.status]), [['a-never', 'never'], ['a-ok', 'ok']]);
    assert.deepEqual((await list(t.adminToken, 'offset=5')).map((m) => m.name), ['a-stale', 'b-web']);
    assert.equal((await t.call('GET', '/api/v1/machines?limit=1001', { token: t.adminToken })).status, 400);
  });

  it('shows a customer\'s admin and a machine\'s token only theirs, never another customer\'s', async () => {
    const made = await t.create('/api/v1/users', { name: 'bea', role: 'customer-admin', customer_id: other });
    const bea = await t.login('bea', made.password as string, 'bea\'s long password');
    const seen = await list(bea);
    assert.deepEqual(seen.map((m) => [m.name, m.status?.status, m.status?.customer_name]), [['b-web', 'ok', 'Bravo']]);
    const token = (await t.create('/api/v1/tokens', { name: 'a-ok read', customer_id: acme, machine_id: ids['a-ok'], rights: ['read'] })).secret as string;
    assert.deepEqual((await list(token)).map((m) => m.name), ['a-ok']);
    assert.deepEqual((await list(token, 'status=true&offset=1')), []);
  });
});

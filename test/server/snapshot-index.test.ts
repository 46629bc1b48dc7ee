/**
 * The snapshot index (services/snapshot-index.ts): the snapshots a backup
 * through the server stores are listed per safe, per machine and per
 * customer (in pages), and each machine shows its last backup, all with the
 * storage unreachable (every read of it fails); the server's forget takes
 * its snapshots out of the index; a safe with no index (an older server's,
 * a bucket another server wrote) is read from storage once and listed the
 * same. The stored bytes' history per day, of a safe and of its customer,
 * is what the safe holds. Another customer's callers get 404 for each route.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import type { Handle, ListOptions, LoadOptions, ObjectInfo, ObjectType, OperationOptions } from '../../src/storage/backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites, forgetSnapshotIndex } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

/** Set: every read of any safe's storage fails, as with an S3 endpoint that is down. */
let unreachable = false;
/** Reads of the storage while it was unreachable (none may be needed). */
let readsRefused = 0;

class Unplugged extends WrapperBackend {
  private refuse(): void {
    if (!unreachable) return;
    readsRefused++;
    throw new Error('the storage is unreachable (test)');
  }

  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    this.refuse();
    return super.load(h, opts);
  }

  override stat(h: Handle, opts?: OperationOptions): Promise<ObjectInfo | undefined> {
    this.refuse();
    return super.stat(h, opts);
  }

  override list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    this.refuse();
    return super.list(type, opts);
  }
}

interface Listed { id: string; time: string; hostname: string; paths: string[]; tags: string[]; safe_name: string; machine_id: string | null; summary: Record<string, number> }

databaseSuites('the snapshot index', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let dbUrl = '';
  let acme = '';
  let web = '';
  let safeId = '';
  let otherManage = '';
  let env: Record<string, string> = {};
  /** What `holdfast snapshots --json` says, newest first. */
  let cliSnapshots: { id: string; time: string; hostname: string; paths: string[]; tags: string[] }[] = [];

  before(async () => {
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl, undefined, { wrapSafeBackend: (b) => new Unplugged(b) });
    s = await Sandbox.create('holdfast-snapshot-index-');
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await t.create('/api/v1/customers', { name: 'Other' })).id;
    web = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    safeId = (await t.create('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id;
    const agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    otherManage = (await t.create('/api/v1/tokens', { customer_id: other, name: 'other ops', rights: ['read', 'manage'] })).secret;
    env = { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe\'s password' };
    await s.ok(['init'], { env });
    await writeFile(s.path('f.txt'), 'one\n');
    await s.ok(['backup', '--host', 'web', '--tag', 'daily', s.path('f.txt')], { env });
    await writeFile(s.path('f.txt'), 'two, longer\n');
    await s.ok(['backup', '--host', 'web', s.path('f.txt')], { env });
    cliSnapshots = (JSON.parse((await s.ok(['snapshots', '--json'], { env })).stdout) as typeof cliSnapshots).sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
    assert.equal(cliSnapshots.length, 2);
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const list = async (path: string, token = t.adminToken): Promise<Listed[]> => {
    const r = await t.call('GET', path, { token });
    assert.equal(r.status, 200, r.text);
    return r.body as Listed[];
  };
  const sameAsCli = (got: Listed[], want = cliSnapshots): void => {
    assert.deepEqual(got.map((x) => x.id), want.map((x) => x.id));
    for (const [i, x] of got.entries()) {
      const w = want[i]!;
      assert.equal(Date.parse(x.time), Date.parse(w.time));
      assert.deepEqual([x.hostname, x.paths, x.tags, x.safe_name, x.machine_id], [w.hostname, w.paths, w.tags, 'acme-web', web]);
      assert.ok(x.summary['total_bytes']! > 0 && x.summary['files_new']! + x.summary['files_changed']! >= 1, JSON.stringify(x.summary));
    }
  };

  it('lists a safe\'s, a machine\'s and a customer\'s snapshots and the machine\'s last backup with the storage unreachable', { timeout: 60_000 }, async () => {
    unreachable = true;
    readsRefused = 0;
    try {
      sameAsCli(await list(`/api/v1/safes/${safeId}/snapshots`));
      sameAsCli(await list(`/api/v1/machines/${web}/snapshots`));
      sameAsCli(await list(`/api/v1/customers/${acme}/snapshots`));
      // Pages, newest first.
      sameAsCli(await list(`/api/v1/customers/${acme}/snapshots?limit=1`), cliSnapshots.slice(0, 1));
      sameAsCli(await list(`/api/v1/customers/${acme}/snapshots?limit=1&offset=1`), cliSnapshots.slice(1));
      const machine = (await t.call('GET', `/api/v1/machines/${web}`, { token: t.adminToken })).body;
      assert.equal(Date.parse(machine.last_backup_at), Date.parse(cliSnapshots[0]!.time));
      const machines = (await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as { id: string; last_backup_at: string | null }[];
      assert.equal(Date.parse(machines.find((m) => m.id === web)!.last_backup_at!), Date.parse(cliSnapshots[0]!.time));
      // Another customer's callers: as if none existed.
      for (const path of [`/api/v1/safes/${safeId}/snapshots`, `/api/v1/machines/${web}/snapshots`, `/api/v1/customers/${acme}/snapshots`]) {
        const r = await t.call('GET', path, { token: otherManage });
        assert.equal(r.status, 404, `${path}: ${r.text}`);
        assert.doesNotMatch(r.text, new RegExp(cliSnapshots[0]!.id));
      }
      assert.equal(readsRefused, 0, 'nothing was read from storage');
    } finally {
      unreachable = false;
    }
  });

  it('answers the stored bytes per day of a safe and of its customer, from the samples of each change', { timeout: 60_000 }, async () => {
    const stored = (await t.call('GET', `/api/v1/safes/${safeId}`, { token: t.adminToken })).body.stored_bytes as number;
    assert.ok(stored > 0);
    const today = new Date().toISOString().slice(0, 10);
    for (const path of [`/api/v1/safes/${safeId}/usage-history?days=7`, `/api/v1/customers/${acme}/usage-history`]) {
      const r = await t.call('GET', path, { token: t.adminToken });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.days, [{ day: today, stored_bytes: stored }], path);
      assert.equal(r.body.growth_per_day, null, 'one day: no rate yet');
      assert.equal(r.body.fills_at, null);
      assert.equal((await t.call('GET', path, { token: otherManage })).status, 404);
    }
  });

  it('follows the server\'s forget, and indexes a safe that has no index from its storage once', { timeout: 60_000 }, async () => {
    const forgot = await t.call('POST', `/api/v1/safes/${safeId}/forget`, { token: t.adminToken, body: { keep_last: 1 } });
    assert.equal(forgot.status, 200, forgot.text);
    assert.deepEqual(forgot.body.removed, [cliSnapshots[1]!.id]);
    unreachable = true;
    try {
      sameAsCli(await list(`/api/v1/safes/${safeId}/snapshots`), cliSnapshots.slice(0, 1));
    } finally {
      unreachable = false;
    }
    await forgetSnapshotIndex(dbUrl);
    sameAsCli(await list(`/api/v1/safes/${safeId}/snapshots`), cliSnapshots.slice(0, 1));
    unreachable = true;
    readsRefused = 0;
    try {
      sameAsCli(await list(`/api/v1/customers/${acme}/snapshots`), cliSnapshots.slice(0, 1));
      assert.equal(readsRefused, 0, 'indexed once, then read from the database');
    } finally {
      unreachable = false;
    }
  });
});

/**
 * The control-plane database on SQLite and PostgreSQL: the migrations make
 * every table, opening again changes nothing, byte counts beyond 32 bits come
 * back as numbers, and a database a newer holdfast migrated is refused.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql } from 'kysely';
import { MigrationError, MIGRATION_NAMES } from '../../src/server/db/migrations.js';
import { DatabaseUrlError, openDatabase, redactUrl } from '../../src/server/db/open-database.js';
import { databaseSuites } from '../helpers/databases.js';

databaseSuites('control-plane database', (fx) => {
  it('migrates an empty database, and opening it again keeps its rows', async () => {
    const url = await fx.newUrl();
    const first = await openDatabase(url, '');
    assert.equal(first.kind, fx.kind);
    const now = new Date().toISOString();
    await first.db.insertInto('customers').values({ id: 'c1', name: 'Acme', created_at: now }).execute();
    await first.db.insertInto('disk_safes').values({ id: 's1', customer_id: 'c1', machine_id: null, name: 'acme-web', location: 'safes/s1', quota_hard: 5 * 2 ** 40, quota_soft: null, created_at: now }).execute();
    await first.db.insertInto('audit_log').values({ at: now, actor: 'server', customer_id: null, action: 'a', target: 't', address: '' }).execute();
    await first.db.insertInto('audit_log').values({ at: now, actor: 'server', customer_id: null, action: 'b', target: 't', address: '' }).execute();
    await first.close();
    await first.close();

    const again = await openDatabase(url, '');
    try {
      const safe = await again.db.selectFrom('disk_safes').selectAll().executeTakeFirstOrThrow();
      assert.equal(safe.quota_hard, 5 * 2 ** 40);
      assert.equal(typeof safe.quota_hard, 'number');
      const log = await again.db.selectFrom('audit_log').select(['seq', 'action']).orderBy('seq').execute();
      assert.deepEqual(log.map((r) => r.action), ['a', 'b']);
      assert.equal(typeof log[0]!.seq, 'number');
      const ran = await sql<{ name: string }>`select name from holdfast_migrations order by name`.execute(again.db);
      assert.deepEqual(ran.rows.map((r) => r.name), [...MIGRATION_NAMES]);
    } finally {
      await again.close();
    }
  });

  it('0005-server-jobs keeps the jobs and events of an older database, and lets a server job have no machine', async () => {
    const url = await fx.newUrl();
    const old = await openDatabase(url, '', '0002-jobs');
    const now = new Date().toISOString();
    try {
      await old.db.insertInto('customers').values({ id: 'c1', name: 'Acme', created_at: now }).execute();
      await old.db.insertInto('machines').values({ id: 'm1', customer_id: 'c1', name: 'web', created_at: now, last_seen_at: null }).execute();
      await old.db.insertInto('disk_safes').values({ id: 's1', customer_id: 'c1', machine_id: 'm1', name: 'acme-web', location: 'safes/s1', quota_hard: null, quota_soft: null, created_at: now }).execute();
      await sql`insert into jobs (id, customer_id, machine_id, safe_id, kind, spec, state, created_by, created_at) values ('j1', 'c1', 'm1', 's1', 'check', '{}', 'queued', 'user:a', ${now})`.execute(old.db);
      await old.db.insertInto('job_events').values({ job_id: 'j1', at: now, kind: 'log', message: 'hello', data: null }).execute();
    } finally {
      await old.close();
    }
    const d = await openDatabase(url, '');
    try {
      const j = await d.db.selectFrom('jobs').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual([j.id, j.machine_id, j.runner, j.kind, j.state], ['j1', 'm1', 'agent', 'check', 'queued']);
      assert.deepEqual((await d.db.selectFrom('job_events').select(['job_id', 'message']).execute()), [{ job_id: 'j1', message: 'hello' }]);
      await d.db.insertInto('jobs').values({ ...j, id: 'j2', machine_id: null, runner: 'server', kind: 'prune' }).execute();
      assert.equal((await d.db.selectFrom('jobs').select('id').where('machine_id', 'is', null).execute()).length, 1);
      // The foreign keys still hold: an event of no job, a job of no machine are refused.
      await assert.rejects(d.db.insertInto('job_events').values({ job_id: 'nope', at: now, kind: 'log', message: 'x', data: null }).execute());
      await assert.rejects(d.db.insertInto('jobs').values({ ...j, id: 'j3', machine_id: 'nope' }).execute());
      const plan = fx.kind === 'sqlite'
        ? (await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'jobs' and sql is not null`.execute(d.db)).rows.map((r) => r.name)
        : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'jobs' and indexname <> 'jobs_pkey'`.execute(d.db)).rows.map((r) => r.name);
      assert.ok(plan.includes('jobs_machine_state'), `the index of 0002 is made again: ${plan.join(', ')}`);
    } finally {
      await d.close();
    }
  });

  it('0009-safe-names keeps the safes and what refers to them; a safe name is unique within its customer only', async () => {
    const url = await fx.newUrl();
    const old = await openDatabase(url, '', '0008-machine-retire');
    const now = new Date().toISOString();
    const safe = (id: string, customer: string, name: string) => ({ id, customer_id: customer, machine_id: null, name, location: `safes/${id}`, quota_hard: null, quota_soft: 7, created_at: now });
    try {
      for (const [id, name] of [['c1', 'Acme'], ['c2', 'Globex']] as const) await old.db.insertInto('customers').values({ id, name, created_at: now }).execute();
      await old.db.insertInto('disk_safes').values(safe('s1', 'c1', 'web1')).execute();
      await assert.rejects(old.db.insertInto('disk_safes').values(safe('s2', 'c2', 'web1')).execute(), 'server-wide before');
      await old.db.insertInto('lock_owners').values({ safe_id: 's1', name: 'lock', principal: 'token:t', added_at: now }).execute();
    } finally {
      await old.close();
    }
    const d = await openDatabase(url, '');
    try {
      // Later migrations add columns (0010: deleting_at, null for a live safe; 0014: quota_alert, null while none was raised; 0019: snapshots_indexed_at, null until its snapshots are indexed; 0021: census_at, null before its agent's first census; 0022: policy_removed_at, null until a policy of it is removed).
      assert.deepEqual(await d.db.selectFrom('disk_safes').selectAll().execute(), [{ ...safe('s1', 'c1', 'web1'), deleting_at: null, quota_alert: null, snapshots_indexed_at: null, census_at: null, policy_removed_at: null }]);
      await d.db.insertInto('disk_safes').values(safe('s2', 'c2', 'web1')).execute();
      await assert.rejects(d.db.insertInto('disk_safes').values(safe('s3', 'c1', 'web1')).execute(), 'one customer, one name');
      assert.deepEqual((await d.db.selectFrom('disk_safes').select('id').orderBy('id').execute()).map((r) => r.id), ['s1', 's2']);
      // The foreign keys to and from the rebuilt table still hold.
      assert.equal((await d.db.selectFrom('lock_owners').select('safe_id').executeTakeFirstOrThrow()).safe_id, 's1');
      await assert.rejects(d.db.insertInto('lock_owners').values({ safe_id: 'nope', name: 'x', principal: 'p', added_at: now }).execute());
      await assert.rejects(d.db.insertInto('disk_safes').values(safe('s4', 'nope', 'web2')).execute());
    } finally {
      await d.close();
    }
  });

  it('refuses a database migrated by a newer holdfast, naming the migration', async () => {
    const url = await fx.newUrl();
    const d = await openDatabase(url, '');
    await sql`insert into holdfast_migrations (name, timestamp) values ('9999-from-the-future', '2030-01-01T00:00:00.000Z')`.execute(d.db);
    await d.close();
    await assert.rejects(openDatabase(url, ''), (e: unknown) => e instanceof MigrationError && /9999-from-the-future/.test(e.message));
  });

  it('keeps names unique: a second customer or disk safe of the same name is refused', async () => {
    const d = await openDatabase(await fx.newUrl(), '');
    try {
      const now = new Date().toISOString();
      await d.db.insertInto('customers').values({ id: 'c1', name: 'Acme', created_at: now }).execute();
      await assert.rejects(d.db.insertInto('customers').values({ id: 'c2', name: 'Acme', created_at: now }).execute());
      assert.equal((await d.db.selectFrom('customers').selectAll().execute()).length, 1);
    } finally {
      await d.close();
    }
  });
});

it('refuses a --db URL it cannot open, without showing its password', async () => {
  await assert.rejects(openDatabase('mysql://root:hunter2@db/x', ''), (e: unknown) => e instanceof DatabaseUrlError && /postgres:\/\//.test(e.message) && !/hunter2/.test(e.message));
  assert.equal(redactUrl('postgres://u:hunter2@h:5432/d'), 'postgres://u:***@h:5432/d');
});

it('keeps an SQLite control plane and its -wal and -shm files readable by their owner only, narrowing an older 0644 file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-db-mode-'));
  const old = process.umask(0o022);
  try {
    const modes = async (file: string) => Promise.all([file, `${file}-wal`, `${file}-shm`].map(async (f) => ((await stat(f)).mode & 0o777).toString(8)));
    const fresh = join(dir, 'holdfast.db');
    const d = await openDatabase('', fresh);
    try {
      await d.db.insertInto('customers').values({ id: 'c1', name: 'Acme', created_at: new Date().toISOString() }).execute();
      assert.deepEqual(await modes(fresh), ['600', '600', '600']);
    } finally {
      await d.close();
    }
    const older = join(dir, 'older.db');
    await writeFile(older, '', { mode: 0o644 });
    await writeFile(`${older}-wal`, '', { mode: 0o644 });
    await writeFile(`${older}-shm`, '', { mode: 0o644 });
    const o = await openDatabase(`sqlite:${older}`, '');
    try {
      assert.deepEqual(await modes(older), ['600', '600', '600']);
    } finally {
      await o.close();
    }
  } finally {
    process.umask(old);
    await rm(dir, { recursive: true, force: true });
  }
});

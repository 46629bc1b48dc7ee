/**
 * The whole product, end to end, as a provider runs it: `holdfast server`
 * as a process of its own (real TLS on loopback), two customers, three
 * machines enrolled with `holdfast agent enroll` and served by three
 * `holdfast agent run` processes. Backups through "run now" restore byte
 * for byte (a file comes back through its agent); a customer reaches
 * nothing of the other's (API and disk safes); an agent's token deletes
 * and overwrites nothing and cannot backdate; retention and prune run on
 * the server without the key; a hard quota refuses a backup with nothing
 * half-written; kill -9 of the server in the
 * middle of an upload and of an agent in the middle of a backup both end
 * with valid disk safes and a next backup that works. On SQLite and on
 * PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox, type Started } from '../helpers/cli.js';
import { freePort } from '../helpers/listening-child.js';
import { databaseSuites } from '../helpers/databases.js';
import { assertSameTree } from '../helpers/restore-check.js';
import { startServerProcess, type Answer, type ServerProcess } from '../helpers/server.js';
import { enrolMachine, eventsOf, handleOf, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';

/** The server's prunes may delete what was marked 2 s earlier (the default minimum is 10 minutes). */
const GRACE_ENV = { HOLDFAST_MIN_GRACE: '2s' };

databaseSuites('a server and three agents for two customers', (fx) => {
  let s: Sandbox;
  let data = '';
  let port = 0;
  let db: string | undefined;
  let server: ServerProcess;
  let h: ServerHandle;
  const agents = new Map<string, Started>();
  const machines: Record<string, EnrolledMachine> = {};
  const tokens: Record<string, string> = {};

  const src = (name: string): string => s.path(`src-${name}`);

  before(async () => {
    s = await Sandbox.create('holdfast-e2e-');
    data = s.path('server-data');
    port = await freePort();
    db = fx.kind === 'postgres' ? await fx.newUrl() : undefined;
    server = await startServerProcess(data, { port, ...(db ? { db } : {}), log: 'keep', env: GRACE_ENV });
    h = await handleOf(server);
    // Acme has two machines, Globex one; each customer has a token of its own for the API.
    const acme = (await h.create('/api/v1/customers', { name: 'acme' })).id as string;
    const globex = (await h.create('/api/v1/customers', { name: 'globex' })).id as string;
    for (const [name, customer] of [['web1', acme], ['web2', acme], ['db1', globex]] as const) {
      machines[name] = await enrolMachine(h, s, name, customer);
      await mkdir(join(src(name), 'etc'), { recursive: true });
      await writeFile(join(src(name), 'etc', 'hostname'), `${name}\n`);
      await writeFile(join(src(name), 'data.bin'), randomBytes(300_000));
    }
    for (const [who, customer] of [['acme', acme], ['globex', globex]] as const) {
      tokens[who] = (await h.create('/api/v1/tokens', { customer_id: customer, name: `${who} automation`, rights: ['read', 'manage'] })).secret as string;
    }
    for (const name of Object.keys(machines)) agents.set(name, startAgent(s, machines[name]!));
  });

  after(async () => {
    for (const a of agents.values()) a.child.kill('SIGTERM');
    await Promise.all([...agents.values()].map((a) => a.done));
    await server.stop();
    await s.remove();
  });

  /** Runs a backup of the machine's source through its agent and returns the job as it ended. */
  async function backupOf(name: string): Promise<{ snapshot: string; result: Record<string, unknown> }> {
    const job = await waitJob(h, await runNow(h, machines[name]!, 'backup', { paths: [src(name)] }));
    assert.equal(job.state, 'succeeded', `${name}: ${job.error ?? ''}`);
    return { snapshot: job.result!['snapshot_id'] as string, result: job.result! };
  }

  /** Waits until the server's log, after offset `mark`, shows an upload (PUT) to a URL that holds `url`. */
  async function uploadBegun(mark: number, url: string): Promise<void> {
    const started = Date.now();
    while (!server.logText().slice(mark).split('\n').some((l) => l.includes('"method":"PUT"') && l.includes(url))) {
      assert.ok(Date.now() - started < 120_000, `no upload to ${url} was seen`);
      await sleep(5);
    }
  }

  /** `check --read-data` of the machine's safe with its own credentials passes. */
  async function assertSafeValid(name: string): Promise<void> {
    const r = await s.ok(['check', '--read-data'], { env: machines[name]!.repoEnv });
    assert.match(r.stdout, /no errors were found/, r.stdout);
  }

  it('backs every machine up through "run now", and a file comes back through its agent', { timeout: 180_000 }, async () => {
    const jobs = await Promise.all(Object.keys(machines).map(async (name) => [name, await backupOf(name)] as const));
    for (const [name, { snapshot }] of jobs) {
      const target = s.path(`restored-${name}`);
      await s.ok(['restore', snapshot, '--target', target], { env: machines[name]!.repoEnv });
      assertSameTree(src(name), join(target, src(name)));
    }
    // One file, through web1's agent, into a folder of web1.
    const web1Snap = jobs.find(([n]) => n === 'web1')![1].snapshot;
    const target = s.path('through-agent');
    const restore = await waitJob(h, await runNow(h, machines['web1']!, 'restore', { snapshot: web1Snap, target, paths: [join(src('web1'), 'data.bin')] }));
    assert.equal(restore.state, 'succeeded', restore.error ?? '');
    assert.deepEqual(await readFile(join(target, src('web1'), 'data.bin')), await readFile(join(src('web1'), 'data.bin')));
    assert.deepEqual(await readdir(join(target, src('web1'))), ['data.bin'], 'only the path asked for');
  });

  it('keeps each customer out of the other\'s machines, jobs, events and disk safes (404)', { timeout: 120_000 }, async () => {
    const web1 = machines['web1']!;
    const job = await runNow(h, web1, 'check', {});
    await waitJob(h, job);
    for (const [path, method, body] of [
      [`/api/v1/machines/${web1.id}`, 'GET', undefined],
      [`/api/v1/machines/${web1.id}/jobs`, 'GET', undefined],
      [`/api/v1/machines/${web1.id}/jobs`, 'POST', { kind: 'backup', spec: { paths: ['/etc'] } }],
      [`/api/v1/jobs/${job}`, 'GET', undefined],
      [`/api/v1/jobs/${job}/events`, 'GET', undefined],
    ] as const) {
      const r = await h.call(method, path, { token: tokens['globex'], ...(body ? { body } : {}) });
      assert.equal(r.status, 404, `${method} ${path}: ${r.status} ${r.text}`);
      assert.equal((await h.call(method === 'POST' ? 'GET' : method, path, { token: tokens['acme'] })).status, 200, `acme's own ${path}`);
    }
    const listed = (await h.call('GET', '/api/v1/machines', { token: tokens['globex'] })).body as { name: string }[];
    assert.deepEqual(listed.map((m) => m.name), ['db1']);
    // db1's agent token against web1's disk safe: no such safe, whether it exists or not.
    const foreign = await s.run(['snapshots'], { env: { ...web1.repoEnv, HOLDFAST_TOKEN: machines['db1']!.config['token'] as string } });
    assert.equal(foreign.code, 1, foreign.stderr);
    assert.match(foreign.stderr, /the server has no such disk safe, or the token \(HOLDFAST_TOKEN\) does not give access to it/);
  });

  it('gives an agent\'s token no way to delete, overwrite or backdate, and its safe stays whole', { timeout: 120_000 }, async () => {
    const web1 = machines['web1']!;
    const env = web1.repoEnv;
    const before = (JSON.parse((await s.ok(['snapshots', '--json'], { env })).stdout) as { id: string }[]).map((x) => x.id);
    const forget = await s.run(['forget', '--keep-last', '0', before[0]!], { env });
    assert.equal(forget.code, 13, forget.stderr);
    const prune = await s.run(['prune'], { env });
    assert.equal(prune.code, 13, prune.stderr);
    // Straight at the protocol: a DELETE, and a PUT over an existing pack with other bytes.
    const safe = web1.config['safe'] as string;
    const record = ((await h.call('GET', '/api/v1/safes', { token: h.adminToken })).body as { id: string; name: string }[]).find((x) => x.name === safe)!;
    const dataDir = join(data, 'safes', record.id, 'data');
    const pack = (await readdir(dataDir, { recursive: true })).map((p) => p.split('/').pop()!).find((n) => /^[0-9a-f]{64}$/.test(n))!;
    assert.ok(pack, 'web1 has packs');
    const packBytes = await readFile(join(dataDir, pack.slice(0, 2), pack));
    const agentToken = web1.config['token'] as string;
    const del = await h.call('DELETE', `/safes/${safe}/data/${pack}`, { token: agentToken });
    assert.ok(del.status === 403 || del.status === 405, `DELETE answered ${del.status}`);
    const put = await h.call('PUT', `/safes/${safe}/data/${pack}`, { token: agentToken, rawBody: 'garbage' });
    assert.ok(put.status >= 400 && put.status < 500, `PUT over a pack answered ${put.status}`);
    // A snapshot dated before the newest of its group is refused by the server.
    const backdated = await s.run(['backup', '--time', '2001-01-01 00:00:00', src('web1')], { env });
    assert.notEqual(backdated.code, 0);
    assert.match(backdated.stderr, /SNAPSHOT_BACKDATED/);
    assert.deepEqual(await readFile(join(dataDir, pack.slice(0, 2), pack)), packBytes, 'the pack is as it was');
    const after = (JSON.parse((await s.ok(['snapshots', '--json'], { env })).stdout) as { id: string }[]).map((x) => x.id);
    assert.deepEqual(after, before, 'no snapshot went, none was added');
    await assertSafeValid('web1');
  });

  it('applies retention and prune on the server, keyless: what is kept restores, the rest is gone, usage follows', { timeout: 180_000 }, async () => {
    const web1 = machines['web1']!;
    await writeFile(join(src('web1'), 'data.bin'), randomBytes(300_000));
    const newest = await backupOf('web1');
    const safe = ((await h.call('GET', '/api/v1/safes', { token: tokens['acme'] })).body as { id: string; name: string; stored_bytes: number }[]).find((x) => x.name === web1.config['safe'])!;
    const forget = (body: unknown): Promise<Answer> => h.call('POST', `/api/v1/safes/${safe.id}/forget`, { token: tokens['acme'], body });
    const dry = await forget({ keep_last: 1, dry_run: true });
    assert.equal(dry.status, 200, dry.text);
    const listed = JSON.stringify(dry.body);
    assert.ok(listed.includes(newest.snapshot), listed);
    assert.equal((await forget({ keep_last: 1 })).status, 200);
    const left = JSON.parse((await s.ok(['snapshots', '--json'], { env: web1.repoEnv })).stdout) as { id: string }[];
    assert.deepEqual(left.map((x) => x.id), [newest.snapshot], 'only the newest snapshot is kept');
    // Prune twice, as a server job each time: the first marks, the second (past the grace period) deletes.
    const prune = async (): Promise<Record<string, any>> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const r = await h.call('POST', `/api/v1/safes/${safe.id}/prune`, { token: tokens['acme'], body: { grace_seconds: 2 } });
      assert.equal(r.status, 202, r.text);
      const job = await waitJob(h, r.body.id as string);
      assert.equal(job.state, 'succeeded', job.error ?? '');
      return job.result!;
    };
    await prune();
    await sleep(2500);
    const swept = await prune();
    assert.ok(JSON.stringify(swept).match(/"packs_deleted":[1-9]/), JSON.stringify(swept));
    const after = ((await h.call('GET', `/api/v1/safes/${safe.id}`, { token: tokens['acme'] })).body as { stored_bytes: number }).stored_bytes;
    assert.ok(after < safe.stored_bytes, `usage ${safe.stored_bytes} → ${after}`);
    await assertSafeValid('web1');
    const check = await waitJob(h, await runNow(h, web1, 'check', { read_data_subset: '100%' }));
    assert.equal(check.state, 'succeeded', check.error ?? '');
    const target = s.path('after-prune');
    await s.ok(['restore', newest.snapshot, '--target', target], { env: web1.repoEnv });
    assertSameTree(src('web1'), join(target, src('web1')));
  });

  it('refuses a backup past a hard quota with nothing half-written, naming the quota and the usage', { timeout: 120_000 }, async () => {
    const web2 = machines['web2']!;
    const safe = ((await h.call('GET', '/api/v1/safes', { token: h.adminToken })).body as { id: string; name: string; stored_bytes: number }[]).find((x) => x.name === web2.config['safe'])!;
    const record = await readdir(join(data, 'safes', safe.id), { recursive: true });
    const before = JSON.parse((await s.ok(['snapshots', '--json'], { env: web2.repoEnv })).stdout) as { id: string }[];
    const setQuota = async (quota: number | null): Promise<void> => {
      assert.equal((await h.call('PATCH', `/api/v1/safes/${safe.id}`, { token: h.adminToken, body: { quota_hard: quota } })).status, 200);
    };
    await setQuota(safe.stored_bytes + 8192);
    try {
      // A customer's own token cannot lift it.
      assert.equal((await h.call('PATCH', `/api/v1/safes/${safe.id}`, { token: tokens['acme'], body: { quota_hard: null } })).status, 403);
      await writeFile(join(src('web2'), 'growth.bin'), randomBytes(1_000_000));
      const job = await waitJob(h, await runNow(h, web2, 'backup', { paths: [src('web2')] }));
      assert.equal(job.state, 'failed');
      assert.match(job.error!, /would bring the stored bytes of disk safe .* to .*, past its hard quota of .* \(stored now: .*\); the upload was refused and nothing of it stored/);
      const after = JSON.parse((await s.ok(['snapshots', '--json'], { env: web2.repoEnv })).stdout) as { id: string }[];
      assert.deepEqual(after, before, 'no snapshot was added');
      // What the backup stored before the refused upload is whole (packs and their index, each named by its bytes' hash, reused by the next backup).
      const added = (await readdir(join(data, 'safes', safe.id), { recursive: true })).filter((n) => !record.includes(n) && !/^(locks|data\/[0-9a-f]{2}$)/.test(n));
      for (const n of added) {
        assert.match(n, /^(data\/[0-9a-f]{2}|index)\/[0-9a-f]{64}$/, `${n} was added`);
        assert.equal(createHash('sha256').update(await readFile(join(data, 'safes', safe.id, n))).digest('hex'), n.slice(-64), `${n} is whole`);
      }
      await assertSafeValid('web2');
    } finally {
      await setQuota(null);
    }
    await backupOf('web2');
  });

  it('survives kill -9 of the server in the middle of an upload: the job completes after the restart, the safe is valid', { timeout: 240_000 }, async () => {
    const web2 = machines['web2']!;
    const safe = web2.config['safe'] as string;
    await writeFile(join(src('web2'), 'more.bin'), randomBytes(3_000_000));
    const mark = server.logText().length;
    const job = await runNow(h, web2, 'backup', { paths: [src('web2')] });
    // The moment the agent begins to send a pack, the server dies.
    await uploadBegun(mark, `/safes/${safe}/data/`);
    await server.stop('SIGKILL');
    server = await startServerProcess(data, { port, ...(db ? { db } : {}), log: 'keep', env: GRACE_ENV });
    const end = await waitJob(h, job);
    assert.equal(end.state, 'succeeded', `${end.error ?? ''}\n${JSON.stringify(await eventsOf(h, job))}`);
    await assertSafeValid('web2');
    const target = s.path('after-server-kill');
    await s.ok(['restore', end.result!['snapshot_id'] as string, '--target', target], { env: web2.repoEnv });
    assertSameTree(src('web2'), join(target, src('web2')));
  });

  it('survives kill -9 of an agent in the middle of a backup: the job is interrupted, the next one works', { timeout: 240_000 }, async () => {
    const db1 = machines['db1']!;
    const safe = db1.config['safe'] as string;
    await writeFile(join(src('db1'), 'dump.bin'), randomBytes(3_000_000));
    const mark = server.logText().length;
    const job = await runNow(h, db1, 'backup', { paths: [src('db1')] });
    await uploadBegun(mark, `/safes/${safe}/`);
    const agent = agents.get('db1')!;
    agent.child.kill('SIGKILL');
    await agent.done;
    agents.set('db1', startAgent(s, db1));
    const end = await waitJob(h, job);
    assert.equal(end.state, 'interrupted', JSON.stringify(end));
    const next = await backupOf('db1');
    await assertSafeValid('db1');
    const target = s.path('after-agent-kill');
    await s.ok(['restore', next.snapshot, '--target', target], { env: db1.repoEnv });
    assertSameTree(src('db1'), join(target, src('db1')));
  });
});

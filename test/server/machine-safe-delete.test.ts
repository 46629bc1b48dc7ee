/**
 * Retiring a machine and deleting a disk safe, through the API and the
 * admin CLI, from the side of those who may not as well. A retired
 * machine's agent token is refused on every route its agent used (the API
 * 401, the repository protocol 404 as for any token that reaches no safe),
 * its queued job is cancelled, a running one ends interrupted (the retirement does not wait for an agent that may ignore a cancel), and
 * its disk safe stays with every snapshot, without a machine; its name is
 * free again. A safe's deletion needs its name repeated, a person who
 * administers it (not a viewer, not a token of any right, not another
 * customer: 404), no running job and no live client's lock, and for a
 * machine that is not retired the caller's word that it is left without a
 * safe; then nothing of it is left in storage (not even a local safe's
 * empty folders) and the usage figures drop
 * to what is left, and the machine's agent, repository and jobs say that it
 * has no safe.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { acquireLock, processIdentity } from '../../src/repo/lock.js';
import { openBackend } from '../../src/storage/open-backend.js';
import { enrolMachine, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

databaseSuites('retiring a machine, deleting a disk safe', (fx) => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let acme = '';
  let alice = '';
  let viewer = '';
  let bob = '';
  let manageToken = '';
  let readToken = '';

  /** An admin CLI run as `token` (a session or an API token). */
  const admin = (args: string[], token: string) => s.run(['server', ...args], {
    env: { HOLDFAST_SERVER: `https://127.0.0.1:${t.server.port}`, HOLDFAST_SERVER_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('config'), HOLDFAST_PASSWORD: undefined, HOLDFAST_REPOSITORY: undefined },
  });
  /** A machine of Acme enrolled with one snapshot of a small tree in its safe. */
  const backedUp = async (name: string): Promise<{ m: EnrolledMachine; safe: { id: string; name: string; stored_bytes: number } }> => {
    const m = await enrolMachine(h, s, name, acme);
    const src = s.path(`${name}-src`);
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.txt'), `the files of ${name}\n`);
    await s.ok(['backup', '-q', src], { env: m.repoEnv });
    const safe = ((await t.call('GET', '/api/v1/safes', { token: alice })).body as { id: string; name: string; machine_id: string; stored_bytes: number }[]).find((x) => x.machine_id === m.id)!;
    return { m, safe };
  };
  const auditActions = async (): Promise<string[]> => ((await t.call('GET', '/api/v1/audit', { token: t.adminToken })).body as { action: string }[]).map((e) => e.action);

  before(async () => {
    s = await Sandbox.create('holdfast-retire-');
    t = await setUp(await fx.newUrl());
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id as string;
    const other = (await t.create('/api/v1/customers', { name: 'Other' })).id as string;
    const a = await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: acme });
    alice = await t.login('alice', a.password as string, 'alice has a long password');
    const v = await t.create('/api/v1/users', { name: 'victor', role: 'customer-viewer', customer_id: acme });
    viewer = await t.login('victor', v.password as string, 'victor has a long password');
    const b = await t.create('/api/v1/users', { name: 'bob', role: 'customer-admin', customer_id: other });
    bob = await t.login('bob', b.password as string, 'bob has a long password too');
    manageToken = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'automation', rights: ['manage'] }, alice)).secret as string;
    readToken = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'reader', rights: ['read'] }, alice)).secret as string;
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('retires a machine: its token refused everywhere, its queued job cancelled, its safe kept with its snapshots and without a machine', { timeout: 60_000 }, async () => {
    const { m, safe } = await backedUp('web1');
    const agentToken = m.config['token'] as string;
    const path = `/api/v1/machines/${m.id}`;
    assert.equal((await t.call('DELETE', path, { token: viewer })).status, 403);
    assert.equal((await t.call('DELETE', path, { token: manageToken })).status, 403);
    assert.equal((await t.call('DELETE', path, { token: agentToken })).status, 403);
    assert.equal((await t.call('DELETE', path, { token: bob })).status, 404);

    // A running job, whose agent ignores the cancel, does not hold the retirement back: it ends interrupted.
    const first = (await t.create(`${path}/jobs`, { kind: 'backup', spec: { paths: ['/nowhere'] } }, alice)).id as string;
    const polled = await t.call('GET', '/api/v1/agent/jobs/next', { token: agentToken });
    assert.equal(polled.body.id, first, polled.text);
    assert.equal((await t.call('POST', `/api/v1/jobs/${first}/cancel`, { token: alice })).status, 202);
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${first}/events`, { token: agentToken, body: { events: [] } })).status, 204);

    const queued = (await t.create(`${path}/jobs`, { kind: 'backup', spec: { paths: ['/nowhere'] } }, alice)).id as string;
    const retired = await t.call('DELETE', path, { token: alice });
    assert.equal(retired.status, 200, retired.text);
    assert.ok(Date.parse(retired.body.retired_at as string) > 0, retired.text);
    const job = await t.call('GET', `/api/v1/jobs/${queued}`, { token: alice });
    assert.equal(job.body.state, 'cancelled');
    assert.match(job.body.error as string, /the machine was retired before its agent took the job/);
    const ran = await t.call('GET', `/api/v1/jobs/${first}`, { token: alice });
    assert.equal(ran.body.state, 'interrupted', ran.text);
    assert.match(ran.body.error as string, /the machine was retired while the job ran; its agent's tokens are revoked/);

    // Every route its agent used refuses the token.
    for (const [method, route, body] of [
      ['GET', '/api/v1/agent/jobs/next', undefined], ['POST', `/api/v1/agent/jobs/${first}/events`, { events: [{ at: new Date().toISOString(), kind: 'log', message: 'x' }] }],
      ['POST', `/api/v1/agent/jobs/${first}/result`, { state: 'succeeded' }], ['GET', '/api/v1/agent/escrow', undefined],
    ] as const) {
      const r = await t.call(method, route, { token: agentToken, ...(body === undefined ? {} : { body }) });
      assert.equal(r.status, 401, `${method} ${route}: ${r.text}`);
    }
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: agentToken })).status, 404);
    const agentSnapshots = await s.run(['snapshots'], { env: m.repoEnv });
    assert.notEqual(agentSnapshots.code, 0);
    const tokens = (await t.call('GET', '/api/v1/tokens', { token: alice })).body as { machine_id: string | null; revoked_at: string | null }[];
    assert.ok(tokens.filter((x) => x.machine_id === m.id).every((x) => x.revoked_at !== null));

    // Listed no more; shown by its id; given nothing new.
    assert.ok(!((await t.call('GET', '/api/v1/machines', { token: alice })).body as { id: string }[]).some((x) => x.id === m.id));
    assert.equal((await t.call('GET', path, { token: alice })).body.retired_at, retired.body.retired_at);
    assert.equal((await t.call('POST', `${path}/jobs`, { token: alice, body: { kind: 'backup', spec: { paths: ['/x'] } } })).status, 409);
    assert.equal((await t.call('DELETE', path, { token: alice })).status, 200, 'retiring it again changes nothing');

    // The safe stays, without a machine, with its snapshot, readable by the customer.
    const kept = await t.call('GET', `/api/v1/safes/${safe.id}`, { token: alice });
    assert.equal(kept.body.machine_id, null);
    assert.equal(kept.body.stored_bytes, safe.stored_bytes);
    const snaps = await s.ok(['snapshots', '--json'], { env: { ...m.repoEnv, HOLDFAST_TOKEN: readToken } });
    assert.equal((JSON.parse(snaps.stdout) as unknown[]).length, 1);

    // Its name is free for a machine that replaces it.
    assert.equal((await t.call('POST', '/api/v1/machines', { token: alice, body: { customer_id: acme, name: 'web1' } })).status, 201);
    assert.equal((await t.call('POST', '/api/v1/machines', { token: alice, body: { customer_id: acme, name: 'web1' } })).status, 409);
    assert.ok((await auditActions()).includes('machine.retire'));
  });

  it('deletes a disk safe with every object of it, only for its admins, its name repeated, nothing working on it', { timeout: 60_000 }, async () => {
    const { m, safe } = await backedUp('web2');
    const agentToken = m.config['token'] as string;
    const path = `/api/v1/safes/${safe.id}`;
    const customerBytes = async () => (await t.call('GET', `/api/v1/customers/${acme}`, { token: alice })).body.stored_bytes as number;
    const before = await customerBytes();
    assert.ok(safe.stored_bytes > 0);
    const confirm = { confirm: safe.name, live_machine: true };

    for (const [who, token, status] of [['a viewer', viewer, 403], ['a manage token', manageToken, 403], ['a read token', readToken, 403], ['the backup token', agentToken, 403], ['another customer', bob, 404]] as const) {
      const r = await t.call('DELETE', path, { token, body: confirm });
      assert.equal(r.status, status, `${who}: ${r.text}`);
    }
    const unconfirmed = await t.call('DELETE', path, { token: alice, body: {} });
    assert.equal(unconfirmed.status, 400, unconfirmed.text);
    assert.match(unconfirmed.body.message, new RegExp(`repeat its name to confirm \\(\\{"confirm": "${safe.name}"\\}\\)`));
    assert.equal((await t.call('DELETE', path, { token: alice, body: { confirm: 'acme-other' } })).status, 400);
    assert.equal((await t.call('DELETE', path, { token: alice })).status, 400);

    // A running job of it, then a live client's lock, hold it back.
    const job = (await t.create(`/api/v1/machines/${m.id}/jobs`, { kind: 'check', spec: {} }, alice)).id as string;
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: agentToken })).body.id, job);
    const running = await t.call('DELETE', path, { token: alice, body: confirm });
    assert.equal(running.status, 409, running.text);
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${job}/result`, { token: agentToken, body: { state: 'succeeded' } })).status, 200);
    const client = openBackend(m.repoEnv['HOLDFAST_REPOSITORY']!, { http: { token: agentToken, fingerprint: t.server.fingerprint } });
    const lock = await acquireLock(client, { holder: processIdentity(), machine: processIdentity(), exclusive: false, operation: 'backup' });
    const locked = await t.call('DELETE', path, { token: alice, body: confirm });
    assert.equal(locked.status, 409, locked.text);
    assert.match(locked.body.message, /in use/);
    await lock.release();
    await client.close();

    // The admin CLI asks for the name too.
    const bare = await admin(['safe', 'delete', safe.name], alice);
    assert.equal(bare.code, 2, bare.stderr);
    assert.match(bare.stderr, /repeat its name with --confirm NAME/);
    // Its machine is live: refused unless the caller confirms that the machine is left without a safe.
    const live = await admin(['safe', 'delete', safe.name, '--confirm', safe.name], alice);
    assert.notEqual(live.code, 0, live.stderr);
    assert.match(live.stderr, new RegExp(`disk safe ${safe.name} is the safe of machine web2, which is not retired.*holdfast server machine delete web2.*--live-machine`));
    assert.equal((await t.call('GET', path, { token: alice })).body.stored_bytes, safe.stored_bytes, 'nothing was removed');
    // Its agent waits for a job meanwhile: the deletion answers it.
    const waiting = t.call('GET', '/api/v1/agent/jobs/next?wait=20', { token: agentToken });
    const deleted = await admin(['safe', 'delete', safe.name, '--confirm', safe.name, '--live-machine'], alice);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, new RegExp(`deleted disk safe ${safe.name} \\(${safe.id}\\) and every object in it`));

    // No object of it is left in storage, and the usage figures follow.
    assert.equal(existsSync(join(t.dataDir, 'data', 'safes', safe.id)), false, 'nothing of it stays on disk, not even its empty folders');
    assert.equal((await t.call('GET', path, { token: alice })).status, 404);
    assert.equal(await customerBytes(), before - safe.stored_bytes);
    const gone = await s.run(['snapshots'], { env: m.repoEnv });
    assert.notEqual(gone.code, 0);
    // The machine has no safe now: its agent, the repository and "run now" say so.
    const noSafe = /machine web2 has no disk safe on the server any more \(its safe was deleted\).*holdfast server machine delete web2.*holdfast agent enroll/;
    assert.match(gone.stderr, noSafe);
    const polled = await waiting;
    assert.equal(polled.status, 409, polled.text);
    assert.equal(polled.body.code, 'NO_DISK_SAFE');
    assert.match(polled.body.message, noSafe);
    const run = await t.call('POST', `/api/v1/machines/${m.id}/jobs`, { token: alice, body: { kind: 'check', spec: {} } });
    assert.equal(run.status, 409, run.text);
    assert.match(run.body.message, noSafe);
    assert.ok((await auditActions()).includes('safe.delete'));
  });

  it('deletes a disk safe that was never initialised (it has no place for a lock)', async () => {
    const safe = await t.create('/api/v1/safes', { customer_id: acme, name: 'never-initialised' }, alice);
    const r = await t.call('DELETE', `/api/v1/safes/${safe.id as string}`, { token: alice, body: { confirm: 'never-initialised' } });
    assert.equal(r.status, 204, r.text);
    assert.equal((await t.call('GET', `/api/v1/safes/${safe.id as string}`, { token: alice })).status, 404);
    assert.equal(existsSync(join(t.dataDir, 'data', 'safes', safe.id as string)), false);
  });

  it('the admin CLI retires a machine by its name', { timeout: 60_000 }, async () => {
    const m = await enrolMachine(h, s, 'web3', acme);
    const r = await admin(['machine', 'delete', 'web3'], alice);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^retired machine web3 \\(${m.id}\\): its tokens are revoked; its disk safes are kept`));
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: m.config['token'] as string })).status, 401);
  });
});

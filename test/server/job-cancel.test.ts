/**
 * Cancelling a job and the expiry of a queued one, through the REST API over
 * real HTTPS, on the server's clock (the test's): a queued job is cancelled
 * at once and never handed to the agent; a running one is marked, the
 * answer to its agent's next report asks it to stop, and its report ends it
 * `cancelled` with who cancelled it; a finished job is a 409 that says how
 * it ended; only those who may start a job cancel one (a viewer and a
 * read-only token get 403, another customer 404). A queued job that no
 * agent takes within its `expires_in` ends `expired`, saying when its
 * machine last asked for work, or that it never did. A running prune (the
 * server's own job, held at its first listing of the packs) is stopped
 * through its AbortSignal and ends `cancelled`; the safe checks clean and
 * the next prune runs.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_JOB_EXPIRES_IN, MAX_JOB_EXPIRES_IN } from '../../src/api/v1.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

const START = Date.parse('2026-03-01T00:00:00.000Z');

databaseSuites('cancelling and expiring jobs', (fx) => {
  let t: TestServer;
  let clock = START;
  let acme = '';
  let machine = '';
  let agent = '';
  let manage = '';
  let manageId = '';
  let reader = '';
  let viewer = '';
  let stranger = '';

  before(async () => {
    t = await setUp(await fx.newUrl(), undefined, { clock: () => new Date(clock) });
    const mk = (path: string, body: unknown) => t.create(path, body);
    acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await mk('/api/v1/customers', { name: 'Other' })).id;
    machine = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    await mk('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web' });
    agent = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'web agent', rights: ['backup'] })).secret;
    const ops = await mk('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] });
    manage = ops.secret;
    manageId = ops.token.id;
    reader = (await mk('/api/v1/tokens', { customer_id: acme, name: 'dashboard', rights: ['read'] })).secret;
    stranger = (await mk('/api/v1/tokens', { customer_id: other, name: 'other ops', rights: ['read', 'manage'] })).secret;
    const vic = await mk('/api/v1/users', { name: 'vic', role: 'customer-viewer', customer_id: acme });
    viewer = await t.login('vic', vic.password, 'vic has a long password');
  });
  after(() => t.stop());

  const runNow = (body: unknown, m = machine) => t.call('POST', `/api/v1/machines/${m}/jobs`, { token: manage, body });
  const poll = (token = agent) => t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token });
  const cancel = (id: string, token = manage) => t.call('POST', `/api/v1/jobs/${id}/cancel`, { token });
  const job = async (id: string) => (await t.call('GET', `/api/v1/jobs/${id}`, { token: manage })).body;
  const messages = async (id: string) => ((await t.call('GET', `/api/v1/jobs/${id}/events`, { token: manage })).body as { message: string }[]).map((e) => e.message);
  const report = (id: string, events: unknown[] = []) => t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events } });

  it('cancels a queued job at once, for those who may start one only; its agent never gets it', async () => {
    const id = (await runNow({ kind: 'backup', spec: { paths: ['/srv'] } })).body.id as string;
    for (const [who, token, status] of [['a viewer', viewer, 403], ['a read-only token', reader, 403], ['the machine\'s agent', agent, 403], ['another customer', stranger, 404]] as const) {
      const r = await cancel(id, token);
      assert.equal(r.status, status, `${who}: ${r.text}`);
    }
    assert.equal((await job(id)).state, 'queued', 'a refused cancel changes nothing');

    const r = await cancel(id);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.state, 'cancelled');
    assert.equal(r.body.cancelled_by, `token:${manageId}`);
    assert.equal(r.body.error, `cancelled by token:${manageId} before an agent took it`);
    assert.ok(r.body.finished_at);
    assert.equal((await poll()).status, 204, 'a cancelled job is not handed to the agent');
    assert.deepEqual(await messages(id), [`cancelled by token:${manageId} before an agent took it`]);
    const audit = (await t.call('GET', '/api/v1/audit', { token: t.adminToken })).body as { action: string; target: string; actor: string }[];
    assert.ok(audit.some((a) => a.action === 'job.cancel' && a.target === id && a.actor === `token:${manageId}`), JSON.stringify(audit));

    const again = await cancel(id);
    assert.equal(again.status, 409, again.text);
    assert.match(again.body.message, /is cancelled already/);
    const admin = await cancel(id, t.adminToken);
    assert.equal(admin.status, 409, 'the provider\'s admin too');
  });

  it('a running job: the answer to its agent\'s next report asks it to stop, and its report ends it cancelled with who cancelled it', async () => {
    const id = (await runNow({ kind: 'restore', spec: { snapshot: 'latest', target: '/srv/restore' } })).body.id as string;
    assert.equal((await poll()).body.id, id);
    const before = await report(id, [{ at: new Date(clock).toISOString(), kind: 'log', message: 'restoring' }]);
    assert.equal(before.status, 204, before.text);
    assert.equal(before.headers['holdfast-cancel'], undefined, 'nobody cancelled it yet');

    const r = await cancel(id);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.state, 'running', 'it runs until its agent has stopped it');
    assert.equal(r.body.cancelled_by, `token:${manageId}`);
    assert.equal((await cancel(id)).status, 202, 'asking again changes nothing');
    // An empty report: the agent only shows it is at work, and learns of the cancel.
    const told = await report(id);
    assert.equal(told.status, 204, told.text);
    assert.equal(told.headers['holdfast-cancel'], 'requested');

    const end = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'cancelled', error: 'the agent stopped it' } });
    assert.equal(end.status, 200, end.text);
    const j = await job(id);
    assert.equal(j.state, 'cancelled');
    assert.equal(j.cancelled_by, `token:${manageId}`);
    assert.equal(j.error, `cancelled by token:${manageId} while it ran: the agent stopped it`);
    assert.deepEqual(await messages(id), ['restoring', `cancelled by token:${manageId}: the agent stops the job when it next reports (within seconds)`]);
    const late = await cancel(id);
    assert.equal(late.status, 409, late.text);
    assert.match(late.body.message, /is cancelled already \(cancelled by/);
  });

  it('a cancel that came too late leaves no cancelled_by on the job that succeeded', async () => {
    const id = (await runNow({ kind: 'check', spec: {} })).body.id as string;
    assert.equal((await poll()).body.id, id);
    assert.equal((await cancel(id)).status, 202);
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: { errors: 0 } } })).status, 200);
    const j = await job(id);
    assert.equal(j.state, 'succeeded');
    assert.equal(j.cancelled_by, null);
  });

  it('takes a cancelled report only for a job someone cancelled, and a finished job is not cancelled (409 with its state)', async () => {
    const id = (await runNow({ kind: 'check', spec: {} })).body.id as string;
    assert.equal((await poll()).body.id, id);
    const bogus = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'cancelled', error: 'made up' } });
    assert.equal(bogus.status, 409, bogus.text);
    assert.match(bogus.body.message, /was not cancelled/);
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: { errors: 0 } } })).status, 200);
    const r = await cancel(id);
    assert.equal(r.status, 409, r.text);
    assert.match(r.body.message, new RegExp(`job ${id} is succeeded already`));
    assert.equal((await job(id)).state, 'succeeded');
  });

  it('ends a queued job that no agent took within its expires_in as expired, saying when the machine last asked for work, or that it never did', async () => {
    for (const expires_in of [0, MAX_JOB_EXPIRES_IN + 1, 1.5]) {
      const r = await runNow({ kind: 'check', spec: {}, expires_in });
      assert.equal(r.status, 400, `${expires_in}: ${r.text}`);
      assert.match(r.body.message, /expires_in/);
    }
    const byDefault = (await runNow({ kind: 'check', spec: {} })).body;
    assert.equal(byDefault.expires_at, new Date(clock + DEFAULT_JOB_EXPIRES_IN * 1000).toISOString());
    assert.equal((await cancel(byDefault.id)).status, 200);

    // The machine asked for work (the poll above and here), then went quiet.
    clock += 1000;
    assert.equal((await poll()).status, 204);
    const lastSeen = new Date(clock).toISOString();
    const id = (await runNow({ kind: 'backup', spec: { paths: ['/srv'] }, expires_in: 60 })).body.id as string;
    clock += 59_000;
    assert.equal((await job(id)).state, 'queued', 'not yet');
    clock += 2000;
    // The machine's jobs listed: the job ends there, not by a timer.
    const listed = (await t.call('GET', `/api/v1/machines/${machine}/jobs`, { token: manage })).body as { id: string; state: string; error: string }[];
    const expired = listed.find((j) => j.id === id)!;
    assert.equal(expired.state, 'expired');
    assert.equal(expired.error, `expired at ${new Date(START + 1000 + 60_000).toISOString()}: no agent took the job in time; machine web did not ask for work since ${lastSeen}`);
    assert.deepEqual(await messages(id), [expired.error]);
    const late = await cancel(id);
    assert.equal(late.status, 409);
    assert.match(late.body.message, /is expired already/);

    // A job that expired while the agent was away is not handed to it when it comes back.
    const stale = (await runNow({ kind: 'restore', spec: { snapshot: 'latest', target: '/srv/r' }, expires_in: 5 })).body.id as string;
    clock += 10_000;
    assert.equal((await poll()).status, 204, 'an expired job is not run');
    const j = await job(stale);
    assert.equal(j.state, 'expired');
    assert.match(j.error, /did not ask for work since/);

    // A machine whose agent never polled.
    const cold = (await t.create('/api/v1/machines', { customer_id: acme, name: 'cold' })).id as string;
    await t.create('/api/v1/safes', { customer_id: acme, machine_id: cold, name: 'acme-cold' });
    const never = (await runNow({ kind: 'check', spec: {}, expires_in: 1 }, cold)).body.id as string;
    clock += 1000;
    const n = await job(never);
    assert.equal(n.state, 'expired');
    assert.match(n.error, /machine cold never asked for work \(its agent never polled the server\)$/);
  });
});

databaseSuites('cancelling a prune the server runs', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let fault: FaultBackend | undefined;
  let safeId = '';
  let manage = '';
  let manageId = '';
  let env: Record<string, string> = {};

  before(async () => {
    t = await setUp(await fx.newUrl(), undefined, { wrapSafeBackend: (b) => (fault = new FaultBackend(b)) });
    s = await Sandbox.create('holdfast-prune-cancel-');
    const mk = (path: string, body: unknown) => t.create(path, body);
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const web = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    safeId = (await mk('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id;
    const agent = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    const ops = await mk('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] });
    manage = ops.secret;
    manageId = ops.token.id;
    env = { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe\'s password' };
    await s.ok(['init'], { env });
    await writeFile(s.path('f.txt'), 'some data to back up\n');
    await s.ok(['backup', s.path('f.txt')], { env });
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const ended = async (id: string): Promise<{ state: string; error: string | null; cancelled_by: string | null }> => {
    for (;;) {
      const j = (await t.call('GET', `/api/v1/jobs/${id}`, { token: manage })).body;
      if (j.state !== 'running' && j.state !== 'queued') return j;
      await sleep(50);
    }
  };

  it('stops the prune through its AbortSignal: it ends cancelled with who cancelled it, the safe checks clean, and the next prune runs', { timeout: 60_000 }, async () => {
    let reached!: () => void;
    const atList = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    fault!.inject({ op: 'list', type: 'data', times: 1, interleave: async () => {
      reached();
      await held;
    } });
    const started = await t.call('POST', `/api/v1/safes/${safeId}/prune`, { token: manage, body: {} });
    assert.equal(started.status, 202, started.text);
    const id = started.body.id as string;
    await atList;
    const r = await t.call('POST', `/api/v1/jobs/${id}/cancel`, { token: manage });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.cancelled_by, `token:${manageId}`);
    release();
    const j = await ended(id);
    assert.equal(j.state, 'cancelled', j.error ?? '');
    assert.equal(j.error, `cancelled by token:${manageId} while it ran`);
    const messages = ((await t.call('GET', `/api/v1/jobs/${id}/events`, { token: manage })).body as { message: string }[]).map((e) => e.message);
    assert.ok(messages.includes(`cancelled by token:${manageId}: the server node running it stops the job`), JSON.stringify(messages));
    assert.equal((await t.call('POST', `/api/v1/jobs/${id}/cancel`, { token: manage })).status, 409);

    const check = await s.run(['check', '--read-data'], { env });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const next = await t.call('POST', `/api/v1/safes/${safeId}/prune`, { token: manage, body: {} });
    assert.equal(next.status, 202, next.text);
    const done = await ended(next.body.id as string);
    assert.equal(done.state, 'succeeded', done.error ?? '');
  });
});

/**
 * Jobs through the REST API over real HTTPS: "run now" queues a job of the
 * fixed vocabulary (a bad spec is refused and nothing is queued), the
 * machine's agent takes it by long poll (woken when it is queued), reports
 * events and its result, which people read back; an agent that polls again
 * without reporting (it restarted), or goes silent past the limit,
 * interrupts its job; only the machine's own agent token takes or reports
 * its jobs, and another customer sees none of them (404).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { EVENTS_DROPPED, MAX_EVENT_CHARS_PER_JOB } from '../../src/server/services/jobs.js';

databaseSuites('jobs and the agent\'s job channel', (fx) => {
  let t: TestServer;
  let machine = '';
  let bare = '';
  let agent = '';
  let otherAgent = '';
  let manage = '';
  let stranger = '';

  before(async () => {
    t = await setUp(await fx.newUrl());
    const mk = (path: string, body: unknown) => t.create(path, body);
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await mk('/api/v1/customers', { name: 'Other' })).id;
    machine = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    bare = (await mk('/api/v1/machines', { customer_id: acme, name: 'no-safe' })).id;
    await mk('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web' });
    agent = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'web agent', rights: ['backup'] })).secret;
    otherAgent = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: bare, name: 'no-safe agent', rights: ['backup'] })).secret;
    manage = (await mk('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] })).secret;
    const om = (await mk('/api/v1/machines', { customer_id: other, name: 'web' })).id;
    stranger = (await mk('/api/v1/tokens', { customer_id: other, machine_id: om, name: 'other agent', rights: ['read', 'manage', 'backup'] })).secret;
  });
  after(() => t.stop());

  const runNow = (body: unknown, token = manage, m = machine) => t.call('POST', `/api/v1/machines/${m}/jobs`, { token, body });
  const poll = (wait = 0, token = agent) => t.call('GET', `/api/v1/agent/jobs/next?wait=${wait}`, { token });
  const jobs = async () => (await t.call('GET', `/api/v1/machines/${machine}/jobs`, { token: manage })).body as { id: string; state: string; error: string | null }[];

  it('refuses a job outside the vocabulary or with a bad spec, naming the problem, and queues nothing', async () => {
    const bad: [unknown, RegExp][] = [
      [{ kind: 'shell', spec: {} }, /kind/],
      [{ kind: 'backup', spec: {} }, /paths/],
      [{ kind: 'backup', spec: { paths: ['relative/dir'] } }, /pattern/],
      [{ kind: 'backup', spec: { paths: ['/srv'], command: 'rm -rf /' } }, /additional/],
      [{ kind: 'restore', spec: { snapshot: 'latest' } }, /target/],
      [{ kind: 'check', spec: { read_data_subset: 'all' } }, /read_data_subset/],
    ];
    for (const [body, why] of bad) {
      const r = await runNow(body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.body.message, why);
    }
    assert.deepEqual(await jobs(), []);
    const none = await runNow({ kind: 'check', spec: {} }, manage, bare);
    assert.equal(none.status, 409, none.text);
    assert.match(none.body.message, /no disk safe/);
  });

  it('hands a queued job to the agent\'s waiting poll, records its events and result in order', { timeout: 20_000 }, async () => {
    assert.equal((await poll()).status, 204);
    const seen = (await t.call('GET', `/api/v1/machines/${machine}`, { token: manage })).body;
    assert.ok(seen.last_seen_at, 'the poll is the heartbeat');
    // A poll waiting 30 s must be woken by the job (the test's timeout is shorter).
    const waiting = poll(30);
    const queued = await runNow({ kind: 'backup', spec: { paths: ['/srv/www'], excludes: ['*.tmp'] } });
    assert.equal(queued.status, 201, queued.text);
    assert.equal(queued.body.state, 'queued');
    const got = await waiting;
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.id, queued.body.id);
    assert.equal(got.body.state, 'running');
    assert.equal(got.body.safe_name, 'acme-web');
    assert.deepEqual(got.body.spec, { paths: ['/srv/www'], excludes: ['*.tmp'] });
    const id = got.body.id as string;

    const events = [
      { at: '2026-01-01T00:00:01.000Z', kind: 'log', message: 'scanning /srv/www' },
      { at: '2026-01-01T00:00:02.000Z', kind: 'progress', message: '10 files', data: { files: 10, bytes: 4096 } },
    ];
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events } })).status, 204);
    const more = [{ at: '2026-01-01T00:00:03.000Z', kind: 'log', message: 'done' }];
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events: more } })).status, 204);
    const listed = (await t.call('GET', `/api/v1/jobs/${id}/events`, { token: manage })).body as { seq: number; message: string; data: unknown }[];
    assert.deepEqual(listed.map((e) => e.message), ['scanning /srv/www', '10 files', 'done']);
    assert.deepEqual(listed[1]!.data, { files: 10, bytes: 4096 });
    const later = (await t.call('GET', `/api/v1/jobs/${id}/events?after=${listed[1]!.seq}`, { token: manage })).body as { message: string }[];
    assert.deepEqual(later.map((e) => e.message), ['done']);

    const noReason = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'failed' } });
    assert.equal(noReason.status, 400, noReason.text);
    const end = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: { snapshot: 'abcd1234' } } });
    assert.equal(end.status, 200, end.text);
    const job = (await t.call('GET', `/api/v1/jobs/${id}`, { token: manage })).body;
    assert.equal(job.state, 'succeeded');
    assert.deepEqual(job.result, { snapshot: 'abcd1234' });
    assert.ok(job.started_at && job.finished_at);
    const again = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'failed', error: 'late' } });
    assert.equal(again.status, 409, again.text);
    assert.equal((await t.call('GET', `/api/v1/jobs/${id}`, { token: manage })).body.state, 'succeeded', 'a finished job keeps its end');
  });

  it('interrupts the running job of an agent that polls again without reporting its end (it restarted)', async () => {
    const queued = [(await runNow({ kind: 'check', spec: { read_data_subset: '10%' } })).body.id, (await runNow({ kind: 'check', spec: {} })).body.id] as string[];
    const first = (await poll()).body.id as string;
    const second = (await poll()).body.id as string;
    assert.deepEqual([first, second].sort(), [...queued].sort());
    const list = await jobs();
    const lost = list.find((j) => j.id === first)!;
    assert.equal(lost.state, 'interrupted');
    assert.match(lost.error ?? '', /restarted or killed/);
    const late = await t.call('POST', `/api/v1/agent/jobs/${first}/events`, { token: agent, body: { events: [{ at: new Date().toISOString(), kind: 'log', message: 'x' }] } });
    assert.equal(late.status, 409, 'an interrupted job takes no more reports');
    assert.match(late.body.message, /interrupted/);
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${second}/result`, { token: agent, body: { state: 'failed', error: 'the disk safe is locked' } })).status, 200);
    assert.equal((await t.call('GET', `/api/v1/jobs/${second}`, { token: manage })).body.error, 'the disk safe is locked');
  });

  it('lets only the machine\'s own agent take and report its jobs; another customer sees nothing (404)', async () => {
    const id = (await runNow({ kind: 'backup', spec: { paths: ['/etc'] } })).body.id as string;
    for (const token of [manage, t.adminToken]) assert.equal((await poll(0, token)).status, 403, 'a token not scoped to a machine takes no job');
    assert.equal((await poll(0, otherAgent)).status, 204, 'another machine\'s agent is not given it');
    assert.equal((await poll(0, stranger)).status, 204);
    for (const [method, path, body] of [
      ['GET', `/api/v1/jobs/${id}`, undefined], ['GET', `/api/v1/jobs/${id}/events`, undefined], ['GET', `/api/v1/machines/${machine}/jobs`, undefined],
      ['POST', `/api/v1/machines/${machine}/jobs`, { kind: 'backup', spec: { paths: ['/'] } }],
      ['POST', `/api/v1/agent/jobs/${id}/result`, { state: 'failed', error: 'no' }],
    ] as const) {
      const r = await t.call(method, path, { token: stranger, ...(body ? { body } : {}) });
      assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
    }
    const r = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: otherAgent, body: { state: 'failed', error: 'no' } });
    assert.equal(r.status, 404, 'the same customer\'s other machine reports nothing on it');
    const got = await poll();
    assert.equal(got.body.id, id, 'the job is still there for its own agent');
    await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded' } });
  });

  it('refuses reports a database or the server cannot take with a 400, not a 500: data nested too deep, a NUL in a message', async () => {
    const id = (await runNow({ kind: 'check', spec: {} })).body.id as string;
    assert.equal((await poll()).body.id, id);
    // Written by hand: JSON.stringify itself runs out of stack on 10000 levels.
    const deep = `${'{"a":'.repeat(10_000)}{}${'}'.repeat(10_000)}`;
    const at = new Date().toISOString();
    const deepEvent = await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, rawBody: `{"events":[{"at":"${at}","kind":"log","message":"x","data":${deep}}]}` });
    assert.equal(deepEvent.status, 400, deepEvent.text);
    assert.match(deepEvent.body.message, /event 1's data nests deeper than 32 levels/);
    // PostgreSQL takes no NUL in text (SQLite does): refused on both alike.
    const nul = await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events: [{ at, kind: 'log', message: 'a\u0000b' }] } });
    assert.equal(nul.status, 400, nul.text);
    const deepResult = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, rawBody: `{"state":"succeeded","result":${deep}}` });
    assert.equal(deepResult.status, 400, deepResult.text);
    assert.match(deepResult.body.message, /the result nests deeper than 32 levels/);
    // Nothing of them was stored, and the job still takes what an agent sends.
    assert.deepEqual((await t.call('GET', `/api/v1/jobs/${id}/events`, { token: manage })).body, []);
    const shallow = { a: { b: { c: [1, { d: 'e' }] } } };
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events: [{ at, kind: 'progress', message: 'ok', data: shallow }] } })).status, 204);
    // A check's result: `snapshots` is a count there, a list of sources in an image backup's.
    const checked = { ...shallow, snapshots: 3, packs: 1, bytes_read: 0, damaged_snapshots: [] };
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: checked } })).status, 200);
  });

  it('keeps a job\'s first events up to its bounds and drops the rest, saying so once', { timeout: 120_000 }, async () => {
    const id = (await runNow({ kind: 'check', spec: {} })).body.id as string;
    assert.equal((await poll()).body.id, id);
    // The review's flood: requests of 120 events of 8000 characters, past MAX_EVENT_CHARS_PER_JOB.
    const flood = Array.from({ length: 120 }, (_, i) => ({ at: new Date().toISOString(), kind: 'log', message: `${i} ${'x'.repeat(7990)}` }));
    const requests = Math.ceil(MAX_EVENT_CHARS_PER_JOB / (120 * 8000)) + 1;
    for (let i = 0; i < requests; i++) {
      const r = await t.call('POST', `/api/v1/agent/jobs/${id}/events`, { token: agent, body: { events: flood } });
      assert.equal(r.status, 204, r.text);
    }
    const kept: { seq: number; message: string }[] = [];
    for (;;) {
      const page = (await t.call('GET', `/api/v1/jobs/${id}/events?limit=1000${kept.length > 0 ? `&after=${kept.at(-1)!.seq}` : ''}`, { token: manage })).body as typeof kept;
      if (page.length === 0) break;
      kept.push(...page);
    }
    const chars = kept.reduce((n, e) => n + e.message.length, 0);
    assert.ok(chars <= MAX_EVENT_CHARS_PER_JOB + EVENTS_DROPPED.length, `${chars} characters kept`);
    assert.ok(kept.length < requests * 120);
    assert.equal(kept.filter((e) => e.message === EVENTS_DROPPED).length, 1);
    assert.equal(kept.at(-1)!.message, EVENTS_DROPPED);
    // The job goes on: a report past the bounds still counts as the agent at work, and the job ends.
    assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: {} } })).status, 200);
  });
});

databaseSuites('enrolment', (fx) => {
  let t: TestServer;
  after(() => t.stop());

  it('makes the machine, its disk safe and its agent token together, with a customer\'s enroll token only', async () => {
    t = await setUp(await fx.newUrl());
    const mk = async (path: string, body: unknown) => (await t.call('POST', path, { token: t.adminToken, body })).body;
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const enrolToken = (await mk('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] })).secret;
    const manageToken = (await mk('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] })).secret;
    for (const token of [t.adminToken, manageToken]) {
      const r = await t.call('POST', '/api/v1/agent/enroll', { token, body: { name: 'db1' } });
      assert.equal(r.status, 403, r.text);
    }
    const r = await t.call('POST', '/api/v1/agent/enroll', { token: enrolToken, body: { name: 'DB1.example.com' } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.machine.name, 'DB1.example.com');
    assert.equal(r.body.machine.customer_id, acme);
    assert.match(r.body.safe.name, /^db1\.example\.com-[0-9a-f]{8}$/);
    assert.equal(r.body.safe.machine_id, r.body.machine.id);
    assert.deepEqual(r.body.token.rights, ['backup']);
    assert.equal(r.body.token.machine_id, r.body.machine.id);
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: r.body.secret })).status, 204, 'the new token is the machine\'s agent');
    assert.equal((await t.call('GET', '/api/v1/machines', { token: enrolToken })).status, 403, 'the enroll token reads nothing');
    const again = await t.call('POST', '/api/v1/agent/enroll', { token: enrolToken, body: { name: 'DB1.example.com' } });
    assert.equal(again.status, 409, again.text);
    const taken = await t.call('POST', '/api/v1/agent/enroll', { token: enrolToken, body: { name: 'db2', safe_name: r.body.safe.name } });
    assert.equal(taken.status, 409, taken.text);
    const safes = (await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as unknown[];
    const machines = (await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as { name: string }[];
    assert.equal(safes.length, 1, 'a refused enrolment leaves nothing half-made');
    assert.deepEqual(machines.map((m) => m.name), ['DB1.example.com'], 'the machine of an enrolment whose safe name was taken is not kept');
  });
});

databaseSuites('a silent agent\'s job', (fx) => {
  let t: TestServer;
  after(() => t.stop());

  it('is interrupted once the agent says nothing for longer than the limit', async () => {
    t = await setUp(await fx.newUrl(), undefined, { jobSilenceLimitMs: 1 });
    const mk = async (path: string, body: unknown) => (await t.call('POST', path, { token: t.adminToken, body })).body;
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const m = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    await mk('/api/v1/safes', { customer_id: acme, machine_id: m, name: 'acme-web' });
    const agent = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: m, name: 'agent', rights: ['backup'] })).secret;
    const id = (await mk(`/api/v1/machines/${m}/jobs`, { kind: 'check', spec: {} })).id;
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: agent })).body.state, 'running');
    await sleep(20); // past the 1 ms limit
    const job = (await t.call('GET', `/api/v1/jobs/${id}`, { token: t.adminToken })).body;
    assert.equal(job.state, 'interrupted');
    assert.match(job.error, /said nothing/);
  });
});

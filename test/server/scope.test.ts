/**
 * Tenancy, from the attacker's side: every route of the OpenAPI document is
 * called by customer B's session, B's manage token and a machine-scoped token
 * of B, aimed at customer A's records. A route about one of A's records, or
 * naming one of them in its body, answers 404, exactly as for a record that
 * does not exist; a route that lists answers with none of A's records; a
 * provider-only route answers 403. No answer contains anything of A, and A's
 * records are unchanged afterwards. A route added later is probed too: one
 * whose path this file does not know fails the test until it is added to
 * RECORD_OF, so that no route escapes the check.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { newRecoveryKeyPair, sealForRecovery } from '../../src/core/escrow.js';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

/** For each path with an {id}, which of A's records to aim at. */
const RECORD_OF: Record<string, keyof Records> = {
  '/api/v1/customers/{id}': 'customer',
  '/api/v1/users/{id}': 'user',
  '/api/v1/tokens/{id}': 'token',
  '/api/v1/machines/{id}': 'machine',
  '/api/v1/safes/{id}': 'safe',
  '/api/v1/safes/{id}/forget': 'safe',
  '/api/v1/safes/{id}/prune': 'safe',
  '/api/v1/safes/{id}/snapshots': 'safe',
  '/api/v1/machines/{id}/snapshots': 'machine',
  '/api/v1/customers/{id}/snapshots': 'customer',
  '/api/v1/safes/{id}/verify': 'safe',
  '/api/v1/safes/{id}/usage-history': 'safe',
  '/api/v1/customers/{id}/usage-history': 'customer',
  '/api/v1/machines/{id}/jobs': 'machine',
  '/api/v1/jobs/{id}': 'job',
  '/api/v1/jobs/{id}/events': 'job',
  '/api/v1/jobs/{id}/cancel': 'job',
  '/api/v1/agent/jobs/{id}/events': 'job',
  '/api/v1/agent/jobs/{id}/result': 'job',
  '/api/v1/customers/{id}/recovery-key': 'customer',
  '/api/v1/safes/{id}/escrow': 'safe',
  '/api/v1/safes/{id}/restore-tokens': 'safe',
  '/api/v1/notifications/{id}': 'channel',
  '/api/v1/notifications/{id}/test': 'channel',
  '/api/v1/notifications/{id}/deliveries': 'channel',
  '/api/v1/policies/{id}': 'policy',
  '/api/v1/machines/{id}/policy': 'machine',
  '/api/v1/safes/{id}/policy': 'safe',
  '/api/v1/safes/{id}/retention-preview': 'safe',
};
/** Bodies this file's generator cannot make valid (a schema chosen by another field, lists of objects). */
const BODY_OF: Record<string, Record<string, unknown>> = {
  'POST /api/v1/machines/{id}/jobs': { kind: 'backup', spec: { paths: ['/srv'] } },
  'POST /api/v1/agent/jobs/{id}/events': { events: [{ at: '2026-01-01T00:00:00.000Z', kind: 'log', message: 'probe' }] },
  'PUT /api/v1/customers/{id}/recovery-key': { public_key: `hfrk_${'A'.repeat(43)}` },
  'PUT /api/v1/safes/{id}/escrow': { wrapped_password: Buffer.alloc(120).toString('base64') },
};
/** An agent's poll with no job for it answers 204 (B's machine token has none). */
const POLL = 'GET /api/v1/agent/jobs/next';
/** Routes about the caller only (the answer is checked for A's records, whatever its status). */
const CALLER_ROUTES = new Set(['POST /api/v1/login', 'POST /api/v1/logout', 'GET /api/v1/me', 'POST /api/v1/me/password']);

interface Records { customer: string; user: string; token: string; machine: string; safe: string; job: string; channel: string; policy: string }

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; enum?: unknown[]; items?: Schema; pattern?: string };

let probe = 0;
/** A valid body for `schema` that names A's records wherever a property is an id. */
function bodyFor(schema: Schema, a: Records): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(schema.properties ?? {})) {
    const required = schema.required?.includes(k) ?? false;
    if (k === 'customer_id') out[k] = a.customer;
    else if (k === 'machine_id') out[k] = a.machine;
    else if (!required) continue;
    else if (s.enum) out[k] = k === 'role' ? 'customer-viewer' : s.enum[0];
    else if (s.type === 'array') out[k] = [s.items?.enum?.[0] ?? 'x'];
    else if (s.type === 'integer') out[k] = 1;
    else if (k.includes('password')) out[k] = 'a password of some length';
    else out[k] = `probe-${++probe}`;
  }
  return out;
}

databaseSuites('scope of every API route', (fx) => {
  let t: TestServer;
  const a = {} as Records;
  let aAdmin = '';
  const secretsOfA: string[] = [];
  const callers: Record<string, string> = {};

  before(async () => {
    t = await setUp(await fx.newUrl());
    const admin = t.adminToken;
    const mk = (path: string, body: unknown, token = admin) => t.create(path, body, token);
    a.customer = (await mk('/api/v1/customers', { name: 'Acme Alpha' })).id;
    const b = (await mk('/api/v1/customers', { name: 'Bravo Beta' })).id;
    const aUser = await mk('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: a.customer });
    a.user = aUser.user.id;
    aAdmin = await t.login('alice', aUser.password, 'alice has a long password');
    a.machine = (await mk('/api/v1/machines', { customer_id: a.customer, name: 'alpha-web-1' }, aAdmin)).id;
    a.safe = (await mk('/api/v1/safes', { customer_id: a.customer, machine_id: a.machine, name: 'alpha-web-1-files', quota_hard: 2 ** 40 })).id;
    const aToken = await mk('/api/v1/tokens', { customer_id: a.customer, machine_id: a.machine, name: 'alpha agent', rights: ['backup'] }, aAdmin);
    a.token = aToken.token.id;
    a.job = (await mk(`/api/v1/machines/${a.machine}/jobs`, { kind: 'backup', spec: { paths: ['/srv/alpha'] } }, aAdmin)).id;
    a.policy = (await mk('/api/v1/policies', { customer_id: a.customer, machine_id: a.machine, schedule: 'every 15m', backup: { paths: ['/srv/alpha'] } }, aAdmin)).id;
    // A's recovery key and its agent's escrowed password.
    const recovery = newRecoveryKeyPair().publicKey;
    assert.equal((await t.call('PUT', `/api/v1/customers/${a.customer}/recovery-key`, { token: aAdmin, body: { public_key: recovery } })).status, 200);
    const box = sealForRecovery(recovery, Buffer.from('the password of alpha-web-1-files'), 'alpha-web-1-files').toString('base64');
    assert.equal((await t.call('PUT', `/api/v1/safes/${a.safe}/escrow`, { token: aToken.secret, body: { wrapped_password: box } })).status, 200);
    // A's notification channel (to a port where nothing listens: B's probes must not even send A a test).
    const hookSecret = 'the secret of alpha\'s webhook';
    a.channel = (await mk('/api/v1/notifications', { name: 'alpha-hook', customer_id: a.customer, kind: 'webhook', events: ['job.failed'], webhook: { url: 'http://127.0.0.1:9/alpha', secret: hookSecret } }, aAdmin)).channel.id;
    secretsOfA.push(aToken.secret, aUser.password, recovery, box, hookSecret);

    const bUser = await mk('/api/v1/users', { name: 'bob', role: 'customer-admin', customer_id: b });
    callers['B session'] = await t.login('bob', bUser.password, 'bob has a long password too');
    const bMachine = (await mk('/api/v1/machines', { customer_id: b, name: 'bravo-db' }, callers['B session'])).id;
    callers['B manage token'] = (await mk('/api/v1/tokens', { customer_id: b, name: 'bravo ops', rights: ['read', 'manage'] }, callers['B session'])).secret;
    callers['B machine token'] = (await mk('/api/v1/tokens', { customer_id: b, machine_id: bMachine, name: 'bravo agent', rights: ['read', 'backup'] }, callers['B session'])).secret;
  });
  after(() => t.stop());

  it('answers customer B with nothing of customer A on every route of the OpenAPI document', async () => {
    const doc = (await t.call('GET', '/api/v1/openapi.json')).body as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> } }>> };
    const marks = [...Object.values(a), 'Acme Alpha', 'alice', 'alpha-web-1', ...secretsOfA];
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));
    assert.ok(routes.length >= 17, `the document lists ${routes.length} routes`);
    let checked = 0;
    for (const [who, token] of Object.entries(callers)) {
      for (const { path, method, op } of routes) {
        const key = `${method} ${path}`;
        const hasId = path.includes('{id}');
        if (hasId) assert.ok(RECORD_OF[path], `${key} is not in RECORD_OF: add which record of customer A it is probed with`);
        const url = hasId ? path.replace('{id}', a[RECORD_OF[path]!]) : path;
        const schema = op.requestBody?.content['application/json']?.schema;
        const body = BODY_OF[key] ?? (schema ? bodyFor(schema, a) : undefined);
        const namesA = body !== undefined && ('customer_id' in body || 'machine_id' in body);
        if (key === 'POST /api/v1/logout') continue; // would end the caller's session; it is about the caller only
        const r = await t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
        const what = `${who}: ${key} → ${r.status} ${r.text}`;
        // What the request itself named may be echoed ("machine ID does not exist"); nothing else of A may show.
        const sent = url + JSON.stringify(body ?? {});
        for (const m of marks) assert.ok(sent.includes(m) || !r.text.includes(m), `${what}: the answer shows "${m}" of customer A`);
        if (CALLER_ROUTES.has(key)) continue;
        if (hasId || namesA) assert.equal(r.status, 404, what);
        else assert.ok(r.status === 200 || r.status === 403 || (key === POLL && r.status === 204), what);
        checked++;
      }
    }
    assert.ok(checked >= 3 * 15, `${checked} probes`);
  });

  it('leaves customer A\'s records as they were, and A\'s own admin still sees each of them', async () => {
    for (const [path, record] of Object.entries(RECORD_OF)) {
      if (path.startsWith('/api/v1/agent/') || /\/(forget|prune|verify|restore-tokens|cancel|test|retention-preview)$/.test(path)) continue; // the agent's reports, a safe's retention and verification, restore tokens, a cancel, a channel's test, a retention preview: POST only
      const r = await t.call('GET', path.replace('{id}', a[record]), { token: aAdmin });
      assert.equal(r.status, 200, `${path}: ${r.text}`);
    }
    const token = (await t.call('GET', `/api/v1/tokens/${a.token}`, { token: aAdmin })).body;
    assert.equal(token.revoked_at, null);
    const job = (await t.call('GET', `/api/v1/jobs/${a.job}`, { token: aAdmin })).body;
    assert.equal(job.state, 'queued', 'no poll of another machine took A\'s job');
    assert.deepEqual((await t.call('GET', `/api/v1/jobs/${a.job}/events`, { token: aAdmin })).body, []);
    const machines = (await t.call('GET', '/api/v1/machines', { token: aAdmin })).body as { name: string }[];
    assert.deepEqual(machines.map((m) => m.name), ['alpha-web-1']);
    const safes = (await t.call('GET', '/api/v1/safes', { token: aAdmin })).body as { name: string }[];
    assert.deepEqual(safes.map((s) => s.name), ['alpha-web-1-files']);
  });

  it('answers a record that does not exist exactly as one of another customer', async () => {
    const foreign = await t.call('GET', `/api/v1/machines/${a.machine}`, { token: callers['B session']! });
    const missing = await t.call('GET', '/api/v1/machines/00000000-0000-4000-8000-000000000000', { token: callers['B session']! });
    assert.equal(foreign.status, 404);
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys(foreign.body), Object.keys(missing.body));
    assert.equal(foreign.body.code, missing.body.code);
  });
});

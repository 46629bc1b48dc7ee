/**
 * The REST API's rules beyond scope (scope.test.ts): the login limit (429
 * with Retry-After, even for the right password, and logged), API tokens
 * (the secret shown once, never listed; revoked and expired tokens
 * refused), bad input refused with a clear 400 and nothing stored, the
 * roles' limits, an audit entry for every change, and the node's
 * certificate fingerprint for authenticated callers.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { databaseSuites } from '../helpers/databases.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase } from '../../src/server/db/open-database.js';

databaseSuites('the REST API', (fx) => {
  let t: TestServer;
  let dbUrl = '';
  let acme = '';
  before(async () => {
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl);
    const r = await t.call('POST', '/api/v1/customers', { token: t.adminToken, body: { name: 'Acme' } });
    assert.equal(r.status, 201, r.text);
    acme = r.body.id;
  });
  after(() => t.stop());

  it('limits failed logins per account: the sixth try is 429 with Retry-After, even with the right password', async () => {
    const made = await t.call('POST', '/api/v1/users', { token: t.adminToken, body: { name: 'carol', role: 'customer-viewer', customer_id: acme } });
    assert.equal(made.status, 201, made.text);
    for (let i = 0; i < 5; i++) {
      const r = await t.call('POST', '/api/v1/login', { body: { name: 'carol', password: `guess ${i}` } });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.body.code, 'UNAUTHENTICATED');
    }
    const limited = await t.call('POST', '/api/v1/login', { body: { name: 'carol', password: made.body.password } });
    assert.equal(limited.status, 429, limited.text);
    assert.equal(limited.body.code, 'RATE_LIMITED');
    const wait = Number(limited.headers['retry-after']);
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${limited.headers['retry-after']}`);
    // Another account is not locked by carol's failures.
    assert.equal((await t.call('POST', '/api/v1/login', { body: { name: 'admin', password: ADMIN_PASSWORD } })).status, 200);
    const log = (await t.call('GET', '/api/v1/audit?limit=1000', { token: t.adminToken })).body as { action: string; actor: string; address: string }[];
    const failures = log.filter((e) => e.action === 'login.failure' && e.actor === 'user:carol');
    assert.equal(failures.length, 5);
    assert.equal(failures[0]!.address, '127.0.0.1');
  });

  it('shows a token\'s secret once, lists it without, and refuses it once revoked or expired', async () => {
    const made = await t.call('POST', '/api/v1/tokens', { token: t.adminToken, body: { customer_id: acme, name: 'ops', rights: ['read', 'manage'] } });
    assert.equal(made.status, 201, made.text);
    const secret = made.body.secret as string;
    assert.match(secret, /^hft_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const listed = await t.call('GET', '/api/v1/tokens', { token: t.adminToken });
    assert.ok(!listed.text.includes(secret.slice(21)), 'the listing shows the secret');
    assert.doesNotMatch(listed.text, /secret/);
    const me = await t.call('GET', '/api/v1/me', { token: secret });
    assert.equal(me.status, 200, me.text);
    assert.deepEqual([me.body.kind, me.body.token.id], ['token', made.body.token.id]);
    // A token cannot make tokens (people do), nor see another customer.
    assert.equal((await t.call('POST', '/api/v1/tokens', { token: secret, body: { customer_id: acme, name: 'more', rights: ['manage'] } })).status, 403);

    // The database holds only the hash of the secret.
    const d = await openDatabase(dbUrl, '');
    try {
      const row = await d.db.selectFrom('api_tokens').selectAll().where('id', '=', made.body.token.id).executeTakeFirstOrThrow();
      assert.ok(!JSON.stringify(row).includes(secret.slice(21)));
      assert.match(row.secret_hash, /^[0-9a-f]{64}$/);
      // Expired: the same token with its expiry moved into the past.
      await d.db.updateTable('api_tokens').set({ expires_at: '2001-01-01T00:00:00.000Z' }).where('id', '=', made.body.token.id).execute();
      const expired = await t.call('GET', '/api/v1/me', { token: secret });
      assert.equal(expired.status, 401);
      assert.match(expired.body.message, /expired/);
      await d.db.updateTable('api_tokens').set({ expires_at: null }).where('id', '=', made.body.token.id).execute();
    } finally {
      await d.close();
    }
    assert.equal((await t.call('GET', '/api/v1/me', { token: secret })).status, 200);
    const revoked = await t.call('DELETE', `/api/v1/tokens/${made.body.token.id}`, { token: t.adminToken });
    assert.equal(revoked.status, 200);
    assert.ok(revoked.body.revoked_at);
    const after = await t.call('GET', '/api/v1/me', { token: secret });
    assert.equal(after.status, 401);
    assert.match(after.body.message, /revoked/);
    // A forged secret of a real id is refused like an unknown token.
    const forged = `hft_${made.body.token.id}_${'A'.repeat(43)}`;
    assert.equal((await t.call('GET', '/api/v1/me', { token: forged })).status, 401);
  });

  it('refuses bad input with a clear 400 and stores nothing', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['/api/v1/customers', { name: 'X', plan: 'gold' }, /must NOT have additional properties/],
      ['/api/v1/customers', { name: '' }, /fewer than 1 characters/],
      ['/api/v1/safes', { customer_id: acme, name: '../etc' }, /must match pattern/],
      ['/api/v1/safes', { customer_id: acme, name: 'ok-name', quota_hard: 10, quota_soft: 20 }, /soft quota \(20 bytes\) is above the hard quota \(10 bytes\)/],
      ['/api/v1/tokens', { customer_id: acme, name: 'x', rights: ['delete'] }, /must be equal to one of the allowed values/],
      ['/api/v1/tokens', { customer_id: acme, name: 'x', rights: ['read'], expires_at: '2001-01-01T00:00:00Z' }, /not in the future/],
      ['/api/v1/users', { name: 'dave', role: 'customer-admin' }, /customer_id is needed/],
    ];
    for (const [path, body, why] of cases) {
      const r = await t.call('POST', path, { token: t.adminToken, body });
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.body.code, 'BAD_REQUEST');
      assert.match(r.body.message, why);
    }
    const notJson = await t.call('POST', '/api/v1/customers', { token: t.adminToken, rawBody: '{"name": ' });
    assert.equal(notJson.status, 400);
    const customers = (await t.call('GET', '/api/v1/customers', { token: t.adminToken })).body as { name: string }[];
    assert.deepEqual(customers.map((c) => c.name), ['Acme']);
    assert.deepEqual((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body, []);
  });

  it('keeps each role to its part: viewers change nothing, customer admins set no quotas, operators make no people', async () => {
    const mkUser = async (name: string, role: string, customer?: string) => {
      const r = await t.call('POST', '/api/v1/users', { token: t.adminToken, body: { name, role, ...(customer ? { customer_id: customer } : {}) } });
      assert.equal(r.status, 201, r.text);
      return t.login(name, r.body.password, `${name} has a long password`);
    };
    const viewer = await mkUser('vera', 'customer-viewer', acme);
    const cadmin = await mkUser('cid', 'customer-admin', acme);
    const operator = await mkUser('otto', 'provider-operator');
    assert.equal((await t.call('POST', '/api/v1/machines', { token: viewer, body: { customer_id: acme, name: 'm1' } })).status, 403);
    assert.equal((await t.call('POST', '/api/v1/machines', { token: cadmin, body: { customer_id: acme, name: 'm1' } })).status, 201);
    assert.equal((await t.call('POST', '/api/v1/safes', { token: cadmin, body: { customer_id: acme, name: 'big', quota_hard: 1e12 } })).status, 403);
    assert.equal((await t.call('POST', '/api/v1/safes', { token: operator, body: { customer_id: acme, name: 'big', quota_hard: 1e12, quota_soft: 8e11 } })).status, 201);
    assert.equal((await t.call('POST', '/api/v1/users', { token: operator, body: { name: 'eve', role: 'customer-viewer', customer_id: acme } })).status, 403);
    assert.equal((await t.call('POST', '/api/v1/users', { token: cadmin, body: { name: 'eve', role: 'provider-admin' } })).status, 403);
    assert.equal((await t.call('POST', '/api/v1/users', { token: cadmin, body: { name: 'eve', role: 'customer-viewer', customer_id: acme } })).status, 201);
    assert.equal((await t.call('POST', '/api/v1/customers', { token: operator, body: { name: 'Nope' } })).status, 403);
    const safe = ((await t.call('GET', '/api/v1/safes', { token: viewer })).body as { name: string; quota_hard: number }[]).find((s) => s.name === 'big');
    assert.equal(safe?.quota_hard, 1e12);
    // Taken names are a 409 that says so.
    const dup = await t.call('POST', '/api/v1/machines', { token: cadmin, body: { customer_id: acme, name: 'm1' } });
    assert.equal(dup.status, 409);
    assert.match(dup.body.message, /machine named "m1" already/);
    // The customer's audit log: the changes about the customer, none of the provider-wide ones.
    const log = (await t.call('GET', '/api/v1/audit?limit=1000', { token: viewer })).body as { action: string; actor: string; customer_id: string | null }[];
    for (const e of log) assert.equal(e.customer_id, acme);
    const actions = log.map((e) => `${e.actor} ${e.action}`);
    for (const want of ['user:cid machine.create', 'user:otto safe.create', 'user:cid user.create', 'user:vera user.password']) assert.ok(actions.includes(want), `${want} in ${actions.join(', ')}`);
    assert.ok(!log.some((e) => e.actor === 'server'), 'the provider-wide entry of the first admin is shown to a customer');
  });

  it('says which certificate the node serves (what the web interface puts in the commands it shows), to callers only', async () => {
    const r = await t.call('GET', '/api/v1/server', { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.fingerprint, t.server.fingerprint);
    assert.equal(typeof r.body.version, 'string');
    assert.equal((await t.call('GET', '/api/v1/server', {})).status, 401);
  });

  it('refuses hostile input with a 400, not a 500: page positions past any number, names that reorder what they show', async () => {
    const m = (await t.create('/api/v1/machines', { customer_id: acme, name: 'pager' })).id as string;
    const safe = (await t.create('/api/v1/safes', { customer_id: acme, machine_id: m, name: 'pager-safe' })).id as string;
    const job = (await t.create(`/api/v1/machines/${m}/jobs`, { kind: 'check', spec: {} })).id as string;
    // Positions a database cannot hold (SQLite answered "datatype mismatch", a 500).
    for (const path of [`/api/v1/safes/${safe}/snapshots?offset=99999999999999999999`, `/api/v1/jobs/${job}/events?after=99999999999999999999`, '/api/v1/audit?after=99999999999999999999']) {
      const r = await t.call('GET', path, { token: t.adminToken });
      assert.equal(r.status, 400, `${path}: ${r.text}`);
      assert.match(r.body.message, /must be <= 9007199254740991/);
    }
    assert.equal((await t.call('GET', `/api/v1/safes/${safe}/snapshots?offset=9007199254740991`, { token: t.adminToken })).status, 200);
    // A right-to-left override shows "evil\u202egnp.exe" as "evilexe.png"; isolates reorder alike.
    for (const name of ['evil\u202egnp.exe', 'a\u202ab', 'a\u2066b', 'a\u2069b']) {
      const made = await t.call('POST', '/api/v1/machines', { token: t.adminToken, body: { customer_id: acme, name } });
      assert.equal(made.status, 400, `${JSON.stringify(name)}: ${made.text}`);
      const channel = await t.call('POST', '/api/v1/notifications', { token: t.adminToken, body: { name, customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url: 'https://127.0.0.1:9/hook' } } });
      assert.equal(channel.status, 400, `${JSON.stringify(name)}: ${channel.text}`);
    }
    const controls = await t.call('POST', '/api/v1/notifications', { token: t.adminToken, body: { name: 'ops\nhook', customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url: 'https://127.0.0.1:9/hook' } } });
    assert.equal(controls.status, 400, controls.text);
  });

  it('answers a name given where an id goes with a 404 that says the API takes ids', async () => {
    const byName = await t.call('GET', '/api/v1/safes/web2-9d550281', { token: t.adminToken });
    assert.equal(byName.status, 404);
    assert.match(byName.body.message, /^disk safe web2-9d550281 does not exist \(the API names records by id, not by name/);
    const byId = await t.call('GET', '/api/v1/safes/0b6f5a43-8a37-4b35-9d5c-8e4a3b6d2c1f', { token: t.adminToken });
    assert.equal(byId.body.message, 'disk safe 0b6f5a43-8a37-4b35-9d5c-8e4a3b6d2c1f does not exist');
  });

  it('logs out: the session token no longer works; a login clears expired sessions', async () => {
    const d = await openDatabase(dbUrl, '');
    try {
      const admin = await d.db.selectFrom('users').select('id').where('name', '=', 'admin').executeTakeFirstOrThrow();
      await d.db.insertInto('sessions').values({ id: '0123456789abcdef', secret_hash: '0'.repeat(64), user_id: admin.id, created_at: '2001-01-01T00:00:00.000Z', expires_at: '2001-01-01T12:00:00.000Z', address: '' }).execute();
    } finally {
      await d.close();
    }
    const token = await t.login('admin', ADMIN_PASSWORD);
    const d2 = await openDatabase(dbUrl, '');
    try {
      assert.equal(await d2.db.selectFrom('sessions').select('id').where('id', '=', '0123456789abcdef').executeTakeFirst(), undefined);
    } finally {
      await d2.close();
    }
    assert.equal((await t.call('POST', '/api/v1/logout', { token })).status, 204);
    assert.equal((await t.call('GET', '/api/v1/me', { token })).status, 401);
    assert.equal((await t.call('GET', '/api/v1/me', { token: t.adminToken })).status, 200);
  });
});

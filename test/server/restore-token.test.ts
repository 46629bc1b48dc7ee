/**
 * Restore tokens for bare-metal recovery, over real TLS (SQLite and
 * PostgreSQL): an image backed up into a disk safe through the server comes
 * back byte-identical with `HOLDFAST_TOKEN=restore-token holdfast
 * restore-image`, to a file and to stdout. From the attacker's side the token
 * reads that one safe and nothing else: it cannot upload, cannot read
 * another safe of the same customer, cannot use the API, and is refused once
 * revoked or expired. Who may make one: a customer admin and the provider's
 * staff; not a viewer, not another customer (404).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { openDatabase } from '../../src/server/db/open-database.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';
import { mkExt4, mkfsUnavailable, makeTree } from '../image/images.js';

databaseSuites('restore tokens', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let dbUrl = '';
  let server = '';
  let acme = '';
  let alice = '';
  let safe = { id: '', name: 'acme-web1' };
  let otherSafe = '';
  let backupToken = '';
  let enrollToken = '';
  const image = (): string => s.path('disk.img');

  before(async () => {
    s = await Sandbox.create('holdfast-restore-token-');
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl);
    server = `https://127.0.0.1:${t.server.port}`;
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const a = await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: acme });
    alice = await t.login('alice', a.password, 'alice has a long password');
    const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' }, alice)).id;
    safe = await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web1' }, alice);
    otherSafe = (await t.create('/api/v1/safes', { customer_id: acme, name: 'acme-other' }, alice)).name;
    backupToken = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'web1 agent', rights: ['backup'] }, alice)).secret;
    enrollToken = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] }, alice)).secret;
    const other = await t.create('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'backup'] }, alice);
    await s.ok(['-r', `${server}/safes/${otherSafe}`, 'init'], { env: { HOLDFAST_TOKEN: other.secret, HOLDFAST_FINGERPRINT: t.server.fingerprint } });
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const at = (name: string): string => `${server}/safes/${name}`;
  const cli = (args: string[], token: string) => s.run(args, { env: { HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint } });

  it('who may make one: a customer admin and the provider\'s staff, not a viewer nor another customer', async () => {
    const v = await t.create('/api/v1/users', { name: 'victor', role: 'customer-viewer', customer_id: acme });
    const viewer = await t.login('victor', v.password, 'victor has a long password');
    assert.equal((await t.call('POST', `/api/v1/safes/${safe.id}/restore-tokens`, { token: viewer, body: {} })).status, 403);
    const bravo = (await t.create('/api/v1/customers', { name: 'Bravo' })).id;
    const b = await t.create('/api/v1/users', { name: 'bob', role: 'customer-admin', customer_id: bravo });
    const bob = await t.login('bob', b.password, 'bob has a long password too');
    assert.equal((await t.call('POST', `/api/v1/safes/${safe.id}/restore-tokens`, { token: bob, body: {} })).status, 404);
    const made = await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, {});
    assert.deepEqual(made.token.rights, ['restore']);
    assert.equal(made.token.safe_id, safe.id);
    // The default lifetime: 4 hours.
    const hours = (Date.parse(made.token.expires_at) - Date.parse(made.token.created_at)) / 3600_000;
    assert.ok(Math.abs(hours - 4) < 0.01, `expires after ${hours} h`);
    assert.equal((await t.call('POST', `/api/v1/safes/${safe.id}/restore-tokens`, { token: alice, body: { expires_in: 30 * 24 * 3600 } })).status, 400);
    // POST /tokens does not make restore tokens: they are for one safe.
    assert.equal((await t.call('POST', '/api/v1/tokens', { token: alice, body: { customer_id: acme, name: 'r', rights: ['restore'] } })).status, 400);
  });

  it('restores an image backed up through the server byte-identical, to a file and to stdout', { skip: mkfsUnavailable(), timeout: 120_000 }, async () => {
    await makeTree(s.path('tree'));
    mkExt4(image(), 16, s.path('tree'));
    await s.ok(['-r', at(safe.name), 'init'], { env: { HOLDFAST_TOKEN: backupToken, HOLDFAST_FINGERPRINT: t.server.fingerprint } });
    await s.ok(['-r', at(safe.name), 'backup', '--image', image()], { env: { HOLDFAST_TOKEN: backupToken, HOLDFAST_FINGERPRINT: t.server.fingerprint } });

    const restore = (await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, { expires_in: 3600, name: 'rescue of web1' }, alice)).secret;
    const out = s.path('restored.img');
    const r = await cli(['-r', at(safe.name), 'restore-image', 'latest', '--to', out], restore);
    assert.equal(r.code, 0, r.stderr);
    const original = await readFile(image());
    assert.ok((await readFile(out)).equals(original), 'the restored image is byte-identical');
    const piped = await cli(['-r', at(safe.name), 'restore-image', 'latest', '--to', '-'], restore);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(piped.stdoutBytes.equals(original), 'the image on stdout is byte-identical');
  });

  it('reads that one safe only: no upload, no other safe, no API', { timeout: 60_000 }, async () => {
    const made = await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, {}, alice);
    const restore = made.secret as string;
    const info = await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: restore });
    assert.equal(info.status, 200, info.text);
    assert.equal(info.body.rights, 'read');
    const put = await httpsJson(t.server.port, t.cert, 'PUT', `/safes/${safe.name}/keys/${'0'.repeat(64)}`, { token: restore, rawBody: 'x' });
    assert.equal(put.status, 403, put.text);
    assert.equal(put.body.code, 'READ_ONLY');
    const backup = await cli(['-r', at(safe.name), 'backup', s.path('tree')], restore);
    assert.notEqual(backup.code, 0);
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${otherSafe}`, { token: restore })).status, 404);
    const snaps = await cli(['-r', at(otherSafe), 'snapshots'], restore);
    assert.notEqual(snaps.code, 0);
    assert.match(snaps.stderr, /no such disk safe, or the token/);
    for (const path of ['/api/v1/safes', `/api/v1/safes/${safe.id}`, '/api/v1/machines', '/api/v1/tokens']) {
      assert.equal((await t.call('GET', path, { token: restore })).status, 403, path);
    }
    assert.equal((await t.call('POST', `/api/v1/safes/${safe.id}/restore-tokens`, { token: restore, body: {} })).status, 403);
    // An enroll token reads no safe either.
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: enrollToken })).status, 404);
  });

  it('is refused once revoked, and once expired', { timeout: 60_000 }, async () => {
    const revoked = await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, {}, alice);
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: revoked.secret })).status, 200);
    assert.equal((await t.call('DELETE', `/api/v1/tokens/${revoked.token.id}`, { token: alice })).status, 200);
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: revoked.secret })).status, 404);
    const r = await cli(['-r', at(safe.name), 'restore-image', 'latest', '--to', s.path('never.img')], revoked.secret);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no such disk safe, or the token/);

    const expiring = await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, { expires_in: 60 }, alice);
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: expiring.secret })).status, 200);
    // Its expiry passes: the row says a minute ago, as the server's clock will say in a minute.
    const db = await openDatabase(dbUrl, '');
    try {
      await db.db.updateTable('api_tokens').set({ expires_at: new Date(Date.now() - 60_000).toISOString() }).where('id', '=', expiring.token.id).execute();
    } finally {
      await db.close();
    }
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}`, { token: expiring.secret })).status, 404);
  });
});

/**
 * A person's session reading a disk safe over the repository protocol (the
 * web interface's snapshot browser), from the side of a user who tries more:
 * a customer's user reads its own customer's safe (by name or id) and no
 * other customer's (404, as a safe that does not exist), adds nothing (not
 * even a lock), removes nothing, reads no lock; provider staff read any safe
 * by its id; a session whose one-time password is unchanged reads nothing;
 * the reading is audited once per session and safe.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

databaseSuites('a session reads its customer\'s disk safes, and nothing more', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  const safes: Record<string, { id: string; name: string; key: string }> = {};
  let alice = '';
  let olga = '';
  let fresh = '';

  before(async () => {
    s = await Sandbox.create('holdfast-session-read-');
    t = await setUp(await fx.newUrl());
    for (const customer of ['Acme', 'Beta']) {
      const c = (await t.create('/api/v1/customers', { name: customer })).id as string;
      const m = (await t.create('/api/v1/machines', { customer_id: c, name: 'web1' })).id as string;
      // Both customers name their safe web1: a name is looked up among the caller's customer's safes.
      const safe = await t.create('/api/v1/safes', { customer_id: c, machine_id: m, name: 'web1' });
      const token = (await t.create('/api/v1/tokens', { customer_id: c, name: 'backup', rights: ['backup'], machine_id: m })).secret as string;
      await s.ok(['-r', `https://127.0.0.1:${t.port}/safes/web1`, 'init'], { env: { HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint } });
      const keys = await t.call('GET', '/safes/web1/keys', { token });
      safes[customer] = { id: safe.id as string, name: 'web1', key: (keys.body.objects as { name: string }[])[0]!.name };
      if (customer === 'Acme') {
        const u = await t.create('/api/v1/users', { name: 'alice', role: 'customer-viewer', customer_id: c });
        alice = await t.login('alice', u.password as string, 'alice has a long password');
        const v = await t.create('/api/v1/users', { name: 'victor', role: 'customer-admin', customer_id: c });
        fresh = await t.login('victor', v.password as string);
      }
    }
    const o = await t.create('/api/v1/users', { name: 'olga', role: 'provider-operator' });
    olga = await t.login('olga', o.password as string, 'olga has a long password');
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('a customer\'s user reads its own safe by name or id, and another customer\'s by neither', async () => {
    const acme = safes['Acme']!;
    const beta = safes['Beta']!;
    const info = await t.call('GET', '/safes/web1', { token: alice });
    assert.equal(info.status, 200, info.text);
    assert.equal(info.body.rights, 'read');
    for (const safe of ['web1', acme.id]) {
      const keys = await t.call('GET', `/safes/${safe}/keys`, { token: alice });
      assert.equal(keys.status, 200, keys.text);
      assert.deepEqual((keys.body.objects as { name: string }[]).map((k) => k.name), [acme.key]);
      assert.equal((await t.call('GET', `/safes/${safe}/config`, { token: alice })).status, 200);
    }
    for (const path of ['', '/config', '/keys', `/keys/${beta.key}`, '/snapshots']) {
      const r = await t.call('GET', `/safes/${beta.id}${path}`, { token: alice });
      assert.equal(r.status, 404, `GET ${path}: ${r.text}`);
      assert.equal(r.body.code, 'NO_SUCH_SAFE');
      assert.ok(!r.text.includes(beta.key));
    }
  });

  it('adds nothing, not even a lock, removes nothing, and reads no lock', async () => {
    const body = 'an object a browser tries to add';
    const name = createHash('sha256').update(body).digest('hex');
    for (const folder of ['data', 'snapshots', 'index', 'locks']) {
      const put = await t.call('PUT', `/safes/web1/${folder}/${name}`, { token: alice, rawBody: body });
      assert.equal(put.status, 403, `PUT ${folder}: ${put.text}`);
      assert.equal(put.body.code, 'READ_ONLY');
    }
    const del = await t.call('DELETE', `/safes/web1/keys/${safes['Acme']!.key}`, { token: alice });
    assert.equal(del.status, 403, del.text);
    assert.equal((await t.call('GET', `/safes/web1/keys/${safes['Acme']!.key}`, { token: alice })).status, 200, 'the key is still there');
    const locks = await t.call('GET', '/safes/web1/locks', { token: alice });
    assert.equal(locks.status, 403, locks.text);
    assert.equal(locks.body.code, 'NOT_READABLE');
    assert.equal((await t.call('POST', '/safes/web1', { token: alice })).status, 403);
  });

  it('provider staff read any customer\'s safe by its id, not by a name; an unchanged one-time password reads nothing', async () => {
    for (const safe of Object.values(safes)) {
      const r = await t.call('GET', `/safes/${safe.id}/keys`, { token: olga });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((r.body.objects as { name: string }[]).map((k) => k.name), [safe.key]);
    }
    assert.equal((await t.call('GET', '/safes/web1/keys', { token: olga })).status, 404);
    assert.equal((await t.call('GET', '/safes/web1/keys', { token: fresh })).status, 404);
  });

  it('audits a session\'s reading of a safe once', async () => {
    const log = await t.call('GET', '/api/v1/audit?limit=1000', { token: t.adminToken });
    assert.equal(log.status, 200, log.text);
    const browses = (log.body as unknown as { actor: string; action: string; target: string }[]).filter((e) => e.action === 'safe.browse');
    assert.deepEqual(browses.filter((e) => e.actor === 'user:alice').map((e) => e.target), [safes['Acme']!.id]);
    assert.deepEqual(browses.filter((e) => e.actor === 'user:olga').map((e) => e.target).sort(), [safes['Acme']!.id, safes['Beta']!.id].sort());
  });
});

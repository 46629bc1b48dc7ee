/**
 * Every right of an API token against every kind of route, from the side of
 * a token holder who tries more than the token is for: the disk safes'
 * repository routes (/safes/NAME: what it says, a listing, an object read,
 * an upload, a deletion) and the API's reading routes. `backup` appends,
 * `read` and `manage` read, and an `enroll` token (what installers get)
 * reaches no safe: 404, exactly as a safe that does not exist (a takeover
 * token, made for one safe, reads its config and keys: agent/take-over). A
 * token refused by the API is told which rights it has and which it needs.
 * A machine's manage token makes nothing beyond its machine.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

/** What each token may do on a safe of its customer: its repository rights, or none (404). */
const EXPECTED: Record<string, { rights: ['read' | 'append'] | []; api: boolean; machine?: boolean }> = {
  'read': { rights: ['read'], api: true },
  'manage': { rights: ['read'], api: true },
  'backup': { rights: ['append'], api: false },
  'backup (machine)': { rights: ['append'], api: false, machine: true },
  'enroll': { rights: [], api: false },
  'enroll,backup': { rights: ['append'], api: false },
  'enroll,read': { rights: ['read'], api: true },
};

databaseSuites('token rights on every kind of route', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let safe = { id: '', name: '' };
  const tokens: Record<string, string> = {};
  let keyName = '';

  before(async () => {
    s = await Sandbox.create('holdfast-rights-');
    t = await setUp(await fx.newUrl());
    const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
    safe = await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web1' });
    for (const label of Object.keys(EXPECTED)) {
      const rights = label.replace(' (machine)', '').split(',');
      const body = { customer_id: acme, name: `token ${label}`, rights, ...(EXPECTED[label]!.machine ? { machine_id: machine } : {}) };
      tokens[label] = (await t.create('/api/v1/tokens', body)).secret;
    }
    const env = { HOLDFAST_TOKEN: tokens['backup']!, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'a password for the safe' };
    await s.ok(['-r', `https://127.0.0.1:${t.server.port}/safes/${safe.name}`, 'init'], { env });
    const keys = await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safe.name}/keys`, { token: tokens['read']! });
    assert.equal(keys.status, 200, keys.text);
    keyName = JSON.stringify(keys.body).match(/[0-9a-f]{64}/)![0];
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('gives each right exactly its access to the safe\'s repository', async () => {
    const call = (method: string, path: string, token: string, rawBody?: string) =>
      httpsJson(t.server.port, t.cert, method, `/safes/${safe.name}${path}`, { token, ...(rawBody === undefined ? {} : { rawBody }) });
    let n = 0;
    for (const [label, want] of Object.entries(EXPECTED)) {
      const token = tokens[label]!;
      const reaches = want.rights.length > 0;
      const info = await call('GET', '', token);
      assert.equal(info.status, reaches ? 200 : 404, `${label}: GET the safe → ${info.status} ${info.text}`);
      if (reaches) assert.equal(info.body.rights, want.rights[0], label);
      for (const path of ['/keys', `/keys/${keyName}`, '/config', '/snapshots']) {
        const r = await call('GET', path, token);
        assert.equal(r.status, reaches ? 200 : 404, `${label}: GET ${path} → ${r.status} ${r.text}`);
        if (!reaches) assert.ok(!r.text.includes(keyName), `${label}: GET ${path} shows the key's name`);
      }
      const body = `an object added by ${label} ${++n}`;
      const put = await call('PUT', `/data/${createHash('sha256').update(body).digest('hex')}`, token, body);
      const wantPut = !reaches ? 404 : want.rights[0] === 'append' ? 201 : 403;
      assert.equal(put.status, wantPut, `${label}: PUT → ${put.status} ${put.text}`);
      const del = await call('DELETE', `/keys/${keyName}`, token);
      assert.equal(del.status, reaches ? 403 : 404, `${label}: DELETE → ${del.status} ${del.text}`);
    }
    // The key every DELETE aimed at is still there.
    assert.equal((await call('GET', `/keys/${keyName}`, tokens['read']!)).status, 200);
  });

  it('lets only read and manage read through the API, and tells the others which rights they have', async () => {
    for (const [label, want] of Object.entries(EXPECTED)) {
      for (const path of ['/api/v1/safes', `/api/v1/safes/${safe.id}`, '/api/v1/machines', '/api/v1/tokens']) {
        const r = await t.call('GET', path, { token: tokens[label]! });
        assert.equal(r.status, want.api ? 200 : 403, `${label}: GET ${path} → ${r.status} ${r.text}`);
        if (!want.api) {
          const rights = label.replace(' (machine)', '').split(',').join(', ');
          assert.equal(r.body.message, `this token may not read through the API: it needs the read or manage right, and its rights are ${rights}`);
        }
      }
    }
  });

  it('keeps a machine\'s manage token to its machine: it makes no machine, no customer-wide safe or policy, nothing for another machine', async () => {
    const acme = (await t.call('GET', `/api/v1/safes/${safe.id}`, { token: t.adminToken })).body.customer_id as string;
    const web1 = (await t.call('GET', `/api/v1/safes/${safe.id}`, { token: t.adminToken })).body.machine_id as string;
    const web2 = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web2' })).id;
    const scoped = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: web1, name: 'web1 manager', rights: ['manage', 'read'] })).secret;
    const refused: [string, Record<string, unknown>][] = [
      ['/api/v1/policies', { customer_id: acme, retention: { keep_last: 1, every: '1h' } }],
      ['/api/v1/policies', { customer_id: acme, machine_id: web2, retention: { keep_last: 1 } }],
      ['/api/v1/safes', { customer_id: acme, name: 'acme-wide' }],
      ['/api/v1/safes', { customer_id: acme, machine_id: web2, name: 'acme-web2' }],
      ['/api/v1/machines', { customer_id: acme, name: 'web3' }],
    ];
    for (const [path, body] of refused) {
      const r = await t.call('POST', path, { token: scoped, body });
      assert.ok(r.status === 403 || r.status === 404, `POST ${path} ${JSON.stringify(body)} → ${r.status} ${r.text}`);
    }
    const policies = (await t.call('GET', '/api/v1/policies', { token: t.adminToken })).body as unknown[];
    assert.equal(policies.length, 0, 'nothing was made');
    const own = await t.call('POST', '/api/v1/policies', { token: scoped, body: { customer_id: acme, machine_id: web1, retention: { keep_last: 3 } } });
    assert.equal(own.status, 201, own.text);
    const ownSafe = await t.call('POST', '/api/v1/policies', { token: scoped, body: { customer_id: acme, safe_id: safe.id, retention: { keep_last: 4 } } });
    assert.equal(ownSafe.status, 201, ownSafe.text);
  });
});

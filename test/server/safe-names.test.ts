/**
 * Disk safe names are unique within a customer, not server-wide (migration
 * 0009-safe-names): two customers each enrol a machine with a safe "web1",
 * each one's agent credentials back up into its own and restore its own
 * bytes, and a token on /safes/web1 reaches only its own customer's safe
 * (it never sees, reads or writes the other's). A name taken within a
 * customer is refused without naming anyone else; a user name stays
 * server-wide, refused without saying whose it is.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

databaseSuites('disk safe names per customer', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  const customers: Record<'acme' | 'globex', { id: string; agent: string; reader: string; safe: string }> = {
    acme: { id: '', agent: '', reader: '', safe: '' },
    globex: { id: '', agent: '', reader: '', safe: '' },
  };

  before(async () => {
    s = await Sandbox.create('holdfast-safe-names-');
    t = await setUp(await fx.newUrl());
    for (const [key, name] of [['acme', 'Acme'], ['globex', 'Globex']] as const) {
      const c = customers[key];
      c.id = (await t.create('/api/v1/customers', { name })).id;
      const enrol = (await t.create('/api/v1/tokens', { customer_id: c.id, name: 'installer', rights: ['enroll'] })).secret;
      const r = await t.call('POST', '/api/v1/agent/enroll', { token: enrol, body: { name: `${key}-host`, safe_name: 'web1' } });
      assert.equal(r.status, 201, `${name} enrols a safe named web1: ${r.text}`);
      assert.equal(r.body.safe.name, 'web1');
      c.agent = r.body.secret;
      c.safe = r.body.safe.id;
      c.reader = (await t.create('/api/v1/tokens', { customer_id: c.id, name: 'auditor', rights: ['read'] })).secret;
      await mkdir(s.path(key));
      await writeFile(s.path(key, 'whose.txt'), `the files of ${name}\n`);
    }
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const url = (): string => `https://127.0.0.1:${t.server.port}/safes/web1`;
  const env = (token: string, password: string): Record<string, string> => ({ HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: password });

  it('each customer\'s agent backs up into its own web1 and restores its own bytes', { timeout: 120_000 }, async () => {
    for (const key of ['acme', 'globex'] as const) {
      const e = env(customers[key].agent, `the password of ${key}`);
      await s.ok(['-r', url(), 'init'], { env: e });
      await s.ok(['-r', url(), 'backup', '-q', s.path(key)], { env: e });
    }
    for (const key of ['acme', 'globex'] as const) {
      const target = s.path(`out-${key}`);
      await s.ok(['-r', url(), 'restore', 'latest', '--target', target], { env: env(customers[key].agent, `the password of ${key}`) });
      assert.equal(await readFile(join(target, s.path(key), 'whose.txt'), 'utf8'), `the files of ${key === 'acme' ? 'Acme' : 'Globex'}\n`);
      const snaps = JSON.parse((await s.ok(['-r', url(), 'snapshots', '--json'], { env: env(customers[key].reader, `the password of ${key}`) })).stdout) as { paths: string[] }[];
      assert.deepEqual(snaps.map((x) => x.paths), [[s.path(key)]], `${key} sees only its own snapshot`);
    }
    // The other customer's password opens nothing in the safe a token reaches: it is not the other's safe.
    const wrong = await s.run(['-r', url(), 'snapshots'], { env: env(customers.acme.agent, 'the password of globex') });
    assert.notEqual(wrong.code, 0, wrong.stdout);
  });

  it('a token on /safes/web1 reaches only its own customer\'s safe', async () => {
    const listing = async (token: string): Promise<string[]> => {
      const r = await httpsJson(t.server.port, t.cert, 'GET', '/safes/web1/snapshots', { token });
      assert.equal(r.status, 200, r.text);
      return (r.body.objects as { name: string }[]).map((o) => o.name);
    };
    const acme = await listing(customers.acme.reader);
    const globex = await listing(customers.globex.reader);
    assert.equal(acme.length, 1);
    assert.equal(globex.length, 1);
    assert.notDeepEqual(acme, globex);
    assert.deepEqual(await listing(customers.acme.agent), acme);
    // Globex's token cannot read Acme's snapshot by its name: in its own web1 there is no such object.
    const foreign = await httpsJson(t.server.port, t.cert, 'GET', `/safes/web1/snapshots/${acme[0]!}`, { token: customers.globex.reader });
    assert.equal(foreign.status, 404);
    assert.equal(foreign.body.code, 'NOT_FOUND');
  });

  it('refuses a name taken within the customer without naming anyone, and a taken user name without saying whose', async () => {
    const again = await t.call('POST', '/api/v1/safes', { token: t.adminToken, body: { customer_id: customers.acme.id, name: 'web1' } });
    assert.equal(again.status, 409, again.text);
    assert.equal(again.body.message, 'the customer has a disk safe named "web1" already; choose another name');
    await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: customers.acme.id });
    const user = await t.call('POST', '/api/v1/users', { token: t.adminToken, body: { name: 'alice', role: 'customer-admin', customer_id: customers.globex.id } });
    assert.equal(user.status, 409, user.text);
    assert.equal(user.body.message, 'a user named "alice" exists already');
  });
});

/**
 * A disk safe's deletion against uploads that arrive meanwhile, and a
 * deletion cut short. The safe is marked deleting before its objects go:
 * a PUT made while they are being removed is refused with 404 (it was
 * accepted, and its object outlived the deletion), the API shows the safe
 * deleting, and when the deletion fails half way (its storage failing) the
 * safe stays marked, its repository still 404, and a repeated DELETE
 * finishes it: no object is left.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { Sandbox } from '../helpers/cli.js';
import { filesUnder, setUp, type TestServer } from '../helpers/server.js';

let t: TestServer;
let s: Sandbox;
let db: Sandbox;
let fault: FaultBackend | undefined;
let safeId = '';
let agent = '';

before(async () => {
  db = await Sandbox.create('holdfast-delete-race-db-');
  t = await setUp(`sqlite:${db.path('control.sqlite')}`, undefined, { wrapSafeBackend: (b) => (fault = new FaultBackend(b)) });
  s = await Sandbox.create('holdfast-delete-race-');
  const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id as string;
  const web = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web' })).id as string;
  safeId = (await t.create('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id as string;
  agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret as string;
  const env = { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe\'s password' };
  await s.ok(['init'], { env });
  for (let i = 0; i < 5; i++) await writeFile(s.path(`f${i}.txt`), `file ${i} to back up\n`);
  await s.ok(['backup', s.path('.')], { env });
});
after(async () => {
  await t.stop();
  await s.remove();
  await db.remove();
});

/** A raw PUT of a new data object into the safe, as an agent that does not know of the deletion sends it. */
async function putData(text: string): Promise<number> {
  const name = createHash('sha256').update(text).digest('hex');
  return (await t.call('PUT', `/safes/acme-web/data/${name}`, { token: agent, rawBody: text })).status;
}

it('uploads during a deletion get 404; a deletion cut short leaves the safe deleting, and a repeated DELETE finishes it', { timeout: 60_000 }, async () => {
  assert.equal(await putData('an upload before the deletion'), 201);
  const during: number[] = [];
  // At the deletion's first removal of a data object: uploads and a read of the repository; at the config's, the storage fails (a server killed there).
  fault!.inject({
    op: 'remove', type: 'data', times: 1, interleave: async () => {
      for (let i = 0; i < 5; i++) during.push(await putData(`an upload during the deletion ${i}`));
      during.push((await t.call('GET', '/safes/acme-web/config', { token: agent })).status);
    },
  });
  fault!.inject({ op: 'remove', type: 'config', times: 1, error: new Error('the storage went away') });
  const cut = await t.call('DELETE', `/api/v1/safes/${safeId}`, { token: t.adminToken, body: { confirm: 'acme-web', live_machine: true } });
  assert.equal(cut.status, 500, cut.text);
  assert.deepEqual(during, [404, 404, 404, 404, 404, 404], 'no upload is taken, nothing is read, while the safe is being deleted');

  const marked = await t.call('GET', `/api/v1/safes/${safeId}`, { token: t.adminToken });
  assert.equal(marked.status, 200, marked.text);
  assert.ok(marked.body.deleting_at, 'the safe cut short stays marked deleting');
  assert.equal(await putData('an upload after the deletion was cut short'), 404);
  assert.equal((await t.call('GET', '/safes/acme-web/config', { token: agent })).status, 404);

  fault!.clear();
  const again = await t.call('DELETE', `/api/v1/safes/${safeId}`, { token: t.adminToken, body: { confirm: 'acme-web', live_machine: true } });
  assert.equal(again.status, 204, again.text);
  assert.deepEqual(await filesUnder(join(t.dataDir, 'data', 'safes', safeId)).catch(() => []), []);
  assert.equal((await t.call('GET', `/api/v1/safes/${safeId}`, { token: t.adminToken })).status, 404);
});

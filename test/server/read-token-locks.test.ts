/**
 * A customer verifying its backups with a token that may only read: `check`
 * (and `check --read-data`) holds a lock while it reads, so a `read` token
 * and a restore token add lock objects and remove their own, and run check
 * to the end. From the attacker's side that is all they gain: they cannot
 * add an object of any other type, cannot remove another token's lock, and
 * cannot remove anything else.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { encodeLock, processIdentity } from '../../src/repo/lock.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

const sha = (b: string): string => createHash('sha256').update(b).digest('hex');

/** A lock object's bytes (JSON text). */
const lockOf = (id: string): string => encodeLock({
  ...processIdentity(), version: 1, id, operation: 'check', exclusive: false, created: new Date().toISOString(), heartbeat: new Date().toISOString(),
}).toString('utf8');

databaseSuites('check with a read or restore token', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let url = '';
  const safeName = 'acme-web1';
  const tokens: Record<'backup' | 'read' | 'restore', string> = { backup: '', read: '', restore: '' };
  const names: Record<string, string[]> = {};

  before(async () => {
    s = await Sandbox.create('holdfast-read-locks-');
    t = await setUp(await fx.newUrl());
    const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
    const safe = await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: safeName });
    tokens.backup = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
    tokens.read = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor', rights: ['read'] })).secret;
    tokens.restore = (await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, {})).secret;
    url = `https://127.0.0.1:${t.server.port}/safes/${safeName}`;
    await mkdir(s.path('src'));
    await writeFile(s.path('src', 'a.txt'), 'the first file\n');
    await writeFile(s.path('src', 'b.bin'), Buffer.alloc(70_000, 7));
    await s.ok(['-r', url, 'init'], { env: env('backup') });
    await s.ok(['-r', url, 'backup', '-q', s.path('src')], { env: env('backup') });
    for (const folder of ['keys', 'snapshots', 'index', 'data']) names[folder] = await list(folder);
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const env = (who: keyof typeof tokens): Record<string, string> => ({
    HOLDFAST_TOKEN: tokens[who], HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe\'s password',
  });
  const call = (method: string, path: string, who: keyof typeof tokens, rawBody?: string) =>
    httpsJson(t.server.port, t.cert, method, `/safes/${safeName}${path}`, { token: tokens[who], ...(rawBody === undefined ? {} : { rawBody }) });
  async function list(folder: string): Promise<string[]> {
    const r = await call('GET', `/${folder}`, 'read');
    assert.equal(r.status, 200, r.text);
    return (r.body.objects as { name: string }[]).map((o) => o.name);
  }

  for (const who of ['read', 'restore'] as const) {
    it(`a ${who} token runs check and check --read-data to the end, and leaves no lock`, { timeout: 60_000 }, async () => {
      for (const args of [['check'], ['check', '--read-data']]) {
        const r = await s.ok(['-r', url, ...args], { env: env(who) });
        assert.match(r.stdout, /checked 1 snapshot, \d+ index files?, \d+ packs?/, args.join(' '));
        assert.deepEqual(await list('locks'), [], `${who}: ${args.join(' ')} removed its lock`);
      }
      const keyless = await s.ok(['-r', url, 'check'], { env: { ...env(who), HOLDFAST_PASSWORD: undefined } });
      assert.match(keyless.stdout, /without the key/);
    });
  }

  it('a read token adds nothing but a lock, removes only its own, and nothing else', { timeout: 60_000 }, async () => {
    // Another token's lock, which the reader must not remove.
    const theirs = lockOf('the agent\'s');
    assert.equal((await call('PUT', `/locks/${sha(theirs)}`, 'backup', theirs)).status, 201);
    for (const who of ['read', 'restore'] as const) {
      // Every other type: refused for what it is, before its bytes are looked at.
      for (const folder of ['data', 'snapshots', 'keys', 'index', 'deletions']) {
        const body = `an object of ${folder} from ${who}`;
        const r = await call('PUT', `/${folder}/${sha(body)}`, who, body);
        assert.equal(r.status, 403, `${who}: PUT ${folder} → ${r.status} ${r.text}`);
        assert.equal(r.body.code, 'READ_ONLY');
      }
      assert.equal((await call('POST', '', who)).status, 403, `${who}: POST the layout`);
      const mine = lockOf(who);
      assert.equal((await call('PUT', `/locks/${sha(mine)}`, who, mine)).status, 201, `${who}: its own lock`);
      // A lock that is not a lock is refused as one.
      const junk = `not a lock from ${who}`;
      assert.equal((await call('PUT', `/locks/${sha(junk)}`, who, junk)).body.code, 'BAD_LOCK');
      const del = await call('DELETE', `/locks/${sha(theirs)}`, who);
      assert.equal(del.status, 403, `${who}: DELETE another token's lock → ${del.status} ${del.text}`);
      for (const folder of ['keys', 'snapshots', 'index', 'data']) {
        const r = await call('DELETE', `/${folder}/${names[folder]![0]!}`, who);
        assert.equal(r.status, 403, `${who}: DELETE ${folder} → ${r.status} ${r.text}`);
      }
      assert.equal((await call('DELETE', `/locks/${sha(mine)}`, who)).status, 204, `${who}: removes its own lock`);
    }
    // All that was there is there still, and nothing was added but the agent's lock.
    for (const folder of ['keys', 'snapshots', 'index', 'data']) assert.deepEqual(await list(folder), names[folder], folder);
    assert.deepEqual(await list('locks'), [sha(theirs)]);
    assert.equal((await call('DELETE', `/locks/${sha(theirs)}`, 'backup')).status, 204);
  });
});

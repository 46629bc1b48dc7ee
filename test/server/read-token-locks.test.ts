/**
 * A customer verifying its backups with a token that may only read: `check`
 * (and `check --read-data`) holds a lock while it reads, so a `read` token
 * and a restore token add lock objects and remove their own, and run check
 * to the end. From the attacker's side that is all they gain: they cannot
 * add an object of any other type, cannot remove another token's lock, and
 * cannot remove anything else. A lock taken "in the past" passes only as
 * the heartbeat of a lock the token holds; an expired token's locks are
 * removed when it comes back and before the server's own work on the safe.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { join } from 'node:path';
import { encodeLock, processIdentity } from '../../src/repo/lock.js';
import { openDatabase } from '../../src/server/db/open-database.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

const sha = (b: string): string => createHash('sha256').update(b).digest('hex');

/** A lock object's bytes (JSON text), as holdfast writes it unless `change` says otherwise. */
const lockOf = (id: string, change: Record<string, unknown> = {}): string => encodeLock({
  ...processIdentity(), version: 1, id, operation: 'check', exclusive: false, created: new Date().toISOString(), heartbeat: new Date().toISOString(), ...change,
}).toString('utf8');

databaseSuites('check with a read or restore token', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let url = '';
  const safeName = 'acme-web1';
  const tokens: Record<'backup' | 'read' | 'restore', string> = { backup: '', read: '', restore: '' };
  const names: Record<string, string[]> = {};
  let acme = '';
  let safeId = '';
  let web1 = '';
  let dbUrl = '';

  before(async () => {
    s = await Sandbox.create('holdfast-read-locks-');
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl);
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
    web1 = machine;
    const safe = await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: safeName });
    tokens.backup = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
    tokens.read = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor', rights: ['read'] })).secret;
    tokens.restore = (await t.create(`/api/v1/safes/${safe.id}/restore-tokens`, {})).secret;
    safeId = safe.id;
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
  const call = (method: string, path: string, who: keyof typeof tokens, rawBody?: string) => callAs(method, path, tokens[who], rawBody);
  const callAs = (method: string, path: string, token: string, rawBody?: string) =>
    httpsJson(t.server.port, t.cert, method, `/safes/${safeName}${path}`, { token, ...(rawBody === undefined ? {} : { rawBody }) });
  /** PUT of lock `body` with `token`: the answer's status and wire code. */
  const putLock = async (token: string, body: string): Promise<{ status: number; code: unknown; text: string }> => {
    const r = await callAs('PUT', `/locks/${sha(body)}`, token, body);
    return { status: r.status, code: r.body?.code, text: r.text };
  };
  const storedBytes = async (): Promise<number> => (await t.call('GET', `/api/v1/safes/${safeId}`, { token: t.adminToken })).body.stored_bytes as number;
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

  it('a reader\'s lock is shared, of its time and holdfast\'s fields, and a few at once', { timeout: 60_000 }, async () => {
    const hour = 3600_000;
    for (const who of ['read', 'restore'] as const) {
      const refused = async (change: Record<string, unknown>, status: number, code: string, what: string): Promise<void> => {
        const r = await putLock(tokens[who], lockOf(`${who} ${what}`, change));
        assert.deepEqual([r.status, r.code], [status, code], `${who}: ${what}: ${r.text}`);
      };
      // An exclusive lock would stop every backup and the server's prune ("locked exclusively").
      await refused({ exclusive: true }, 403, 'READ_ONLY', 'exclusive');
      // A heartbeat in 2099 would never go stale: a shared one would hold off the safe's deletion forever.
      await refused({ heartbeat: '2099-01-01T00:00:00.000Z', created: '2099-01-01T00:00:00.000Z' }, 403, 'LOCK_TIME', 'heartbeat in 2099');
      await refused({ created: '2099-01-01T00:00:00.000Z' }, 403, 'LOCK_TIME', 'taken in 2099');
      await refused({ heartbeat: new Date(Date.now() + hour).toISOString() }, 403, 'LOCK_TIME', 'heartbeat an hour ahead');
      await refused({ heartbeat: new Date(Date.now() - hour).toISOString() }, 403, 'LOCK_TIME', 'heartbeat an hour ago');
      // Padding: a field holdfast does not write, or a long one.
      await refused({ pad: 'x'.repeat(3500) }, 400, 'BAD_LOCK', 'padded with a field of its own');
      await refused({ hostname: 'h'.repeat(3500) }, 400, 'BAD_LOCK', 'padded hostname');
    }
    // The same time rule for an agent's token.
    const late = await putLock(tokens.backup, lockOf('agent 2099', { heartbeat: '2099-01-01T00:00:00.000Z' }));
    assert.deepEqual([late.status, late.code], [403, 'LOCK_TIME'], late.text);
    assert.deepEqual(await list('locks'), []);

    // Four live locks of a reader; the fifth is refused, and says why.
    const bytesBefore = await storedBytes();
    const four = [0, 1, 2, 3].map((i) => lockOf(`reader ${i}`));
    for (const l of four) assert.equal((await putLock(tokens.read, l)).status, 201);
    const fifth = await putLock(tokens.read, lockOf('reader 4'));
    assert.deepEqual([fifth.status, fifth.code], [409, 'TOO_MANY_LOCKS'], fifth.text);
    assert.match(fifth.text, /holds 4 lock objects in disk safe acme-web1 already, at most 4 at once/);
    // Another token has its own count; the locks move no stored bytes.
    const restoreLock = lockOf('restore 0');
    assert.equal((await putLock(tokens.restore, restoreLock)).status, 201);
    assert.equal(await storedBytes(), bytesBefore, 'locks are not stored bytes');
    for (const l of [...four, restoreLock]) assert.equal((await callAs('DELETE', `/locks/${sha(l)}`, l === restoreLock ? tokens.restore : tokens.read)).status, 204);
  });

  it('a full hard quota keeps no client from its lock: check runs, a backup\'s lock is taken', { timeout: 60_000 }, async () => {
    const used = await storedBytes();
    const patch = await t.call('PATCH', `/api/v1/safes/${safeId}`, { token: t.adminToken, body: { quota_hard: used } });
    assert.equal(patch.status, 200, patch.text);
    try {
      for (const who of ['read', 'restore'] as const) {
        const r = await s.ok(['-r', url, 'check'], { env: env(who) });
        assert.match(r.stdout, /checked 1 snapshot/);
      }
      const lock = lockOf('agent at its quota');
      assert.equal((await putLock(tokens.backup, lock)).status, 201);
      assert.equal((await call('DELETE', `/locks/${sha(lock)}`, 'backup')).status, 204);
      // Data is refused still.
      const body = JSON.stringify('a pack past the quota');
      const r = await call('PUT', `/data/${sha(body)}`, 'backup', body);
      assert.deepEqual([r.status, r.body.code], [413, 'QUOTA_EXCEEDED'], r.text);
    } finally {
      await t.call('PATCH', `/api/v1/safes/${safeId}`, { token: t.adminToken, body: { quota_hard: null } });
    }
  });

  it('a lock taken more than 5 minutes ago passes only as the heartbeat of a lock the token holds', { timeout: 60_000 }, async () => {
    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    const auditor = await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor old', rights: ['read'] });
    // Taken an hour ago, heartbeat now: it would hold prune's sweep back to that hour for as long as it beats.
    const fresh = await putLock(auditor.secret, lockOf('taken an hour ago', { created: hourAgo }));
    assert.deepEqual([fresh.status, fresh.code], [403, 'LOCK_TIME'], fresh.text);
    assert.match(fresh.text, /is no heartbeat of a lock the token holds in the safe/);
    // A lock the server accepted an hour ago (planted as its record would be), and its heartbeat now.
    const first = lockOf('held for an hour', { created: hourAgo, heartbeat: hourAgo });
    await writeFile(join(t.dataDir, 'data', 'safes', safeId, 'locks', sha(first)), first);
    const db = await openDatabase(dbUrl, '');
    try {
      await db.db.insertInto('lock_owners').values({ safe_id: safeId, name: sha(first), principal: `token:${auditor.token.id as string}`, added_at: hourAgo }).execute();
    } finally {
      await db.close();
    }
    const beat = lockOf('held for an hour', { created: hourAgo });
    const again = await putLock(auditor.secret, beat);
    assert.equal(again.status, 201, again.text);
    // Not another token's heartbeat of it.
    const other = await putLock(tokens.read, lockOf('held for an hour', { created: hourAgo, heartbeat: new Date(Date.now() + 1).toISOString() }));
    assert.deepEqual([other.status, other.code], [403, 'LOCK_TIME'], other.text);
    assert.equal((await t.call('DELETE', `/api/v1/tokens/${auditor.token.id as string}`, { token: t.adminToken })).status, 200);
    assert.deepEqual(await list('locks'), []);
  });

  it('an expired token\'s locks are removed when it comes back, or before the server\'s own work on the safe', { timeout: 60_000 }, async () => {
    const a = await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor a', rights: ['read'] });
    const b = await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor b', rights: ['read'] });
    const la = lockOf('auditor a');
    const lb = lockOf('auditor b', { exclusive: false });
    assert.equal((await putLock(a.secret, la)).status, 201);
    assert.equal((await putLock(b.secret, lb)).status, 201);
    const db = await openDatabase(dbUrl, '');
    try {
      await db.db.updateTable('api_tokens').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('id', 'in', [a.token.id, b.token.id]).execute();
    } finally {
      await db.close();
    }
    // a comes back: refused, and its lock goes with it.
    assert.equal((await callAs('GET', '/config', a.secret)).status, 404);
    assert.deepEqual(await list('locks'), [sha(lb)]);
    // b never does: the server's forget (a dry run, even) sweeps its lock first.
    const f = await t.call('POST', `/api/v1/safes/${safeId}/forget`, { token: t.adminToken, body: { keep_last: 1, dry_run: true } });
    assert.equal(f.status, 200, f.text);
    assert.deepEqual(await list('locks'), []);
  });

  it('revoking a token, or retiring its machine, removes the locks it added: a backup then runs', { timeout: 60_000 }, async () => {
    const auditor = await t.create('/api/v1/tokens', { customer_id: acme, name: 'auditor 2', rights: ['read'] });
    // Six sent at once: four pass, as one after the other.
    const sent = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => putLock(auditor.secret, lockOf(`auditor 2 ${i}`))));
    assert.deepEqual(sent.map((r) => r.status).sort(), [201, 201, 201, 201, 409, 409], JSON.stringify(sent));
    assert.equal((await list('locks')).length, 4);
    // Another token that appends may take an exclusive lock; one it leaves stops every backup of the safe.
    const other = await t.create('/api/v1/tokens', { customer_id: acme, name: 'agent 2', rights: ['backup'] });
    const exclusive = lockOf('agent 2', { exclusive: true, operation: 'repair' });
    assert.equal((await putLock(other.secret, exclusive)).status, 201);
    const blocked = await s.run(['-r', url, 'backup', '-q', s.path('src')], { env: env('backup') });
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.stderr, /locked exclusively/);

    assert.equal((await t.call('DELETE', `/api/v1/tokens/${auditor.token.id}`, { token: t.adminToken })).status, 200);
    assert.deepEqual((await list('locks')).sort(), [sha(exclusive)], 'the revoked reader\'s locks are gone, the other token\'s stay');
    assert.equal((await t.call('DELETE', `/api/v1/tokens/${other.token.id}`, { token: t.adminToken })).status, 200);
    assert.deepEqual(await list('locks'), []);
    await s.ok(['-r', url, 'backup', '-q', s.path('src')], { env: env('backup') });

    // Retiring a machine revokes its tokens, and so removes their locks (the safe stays, without a machine).
    const web1Token = await t.create('/api/v1/tokens', { customer_id: acme, machine_id: web1, name: 'web1 agent 2', rights: ['backup'] });
    const web1Lock = lockOf('web1 agent 2', { exclusive: true, operation: 'repair' });
    assert.equal((await putLock(web1Token.secret, web1Lock)).status, 201);
    assert.deepEqual(await list('locks'), [sha(web1Lock)]);
    const retired = await t.call('DELETE', `/api/v1/machines/${web1}`, { token: t.adminToken });
    assert.equal(retired.status, 200, retired.text);
    assert.deepEqual(await list('locks'), []);
  });
});

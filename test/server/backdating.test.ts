/**
 * The server's refusal of backdated snapshots (services/snapshot-time-policy.ts)
 * asks the snapshot index, not the storage: snapshot uploads through the
 * repository protocol read no stored snapshot (the rule read and decoded
 * every one at each upload); a backdated upload is refused by the host and
 * paths in any order, also when the safe's index was just built from
 * storage, where a damaged snapshot does not count and one the census found
 * unauthentic still does; a NUL in a host or user name is refused (the
 * index could not hold it on PostgreSQL); migration 0023 keys the rows
 * before it.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { openDatabase } from '../../src/server/db/open-database.js';
import { snapshotGroupKey } from '../../src/server/services/snapshot-time-policy.js';
import { encodeSnapshot } from '../../src/repo/snapshot.js';
import type { Handle, ListOptions, LoadOptions, ObjectInfo, ObjectType } from '../../src/storage/backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites, forgetSnapshotIndex } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

/** Reads of snapshot objects in any safe's storage: loads and listings. */
const snapshotReads = { loads: 0, lists: 0 };

class CountingSnapshotReads extends WrapperBackend {
  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    if (h.type === 'snapshot') snapshotReads.loads++;
    return super.load(h, opts);
  }

  override list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    if (type === 'snapshot') snapshotReads.lists++;
    return super.list(type, opts);
  }
}

const MIN = 60_000;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A snapshot object at `time` of `hostname` and `paths`, sealed under a key of no repository (the server cannot check a MAC). */
function snapshotBytes(time: number, hostname: string, paths: string[], username = 'root'): Buffer {
  const at = new Date(time).toISOString();
  return encodeSnapshot({
    time: at, hostname, username, paths, tags: [], tree: randomBytes(32).toString('hex'), blobs: [],
    summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 1, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: at, end: at },
  }, randomBytes(32));
}

databaseSuites('the rule against backdated snapshots', (fx) => {
  let t: TestServer;
  let dbUrl = '';
  let agent = '';
  let safeDir = '';
  let s: Sandbox;

  /** One request of the repository protocol with the agent's token: its status and wire code. */
  const send = (method: string, path: string, body?: Buffer): Promise<{ status: number; code: string | undefined; text: string }> => new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: t.server.port, method, path, ca: t.cert, servername: 'localhost', agent: false, checkServerIdentity: () => undefined,
      headers: { authorization: `Bearer ${agent}`, 'content-type': 'application/octet-stream', 'content-length': body?.length ?? 0 },
    });
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, code: res.headers['holdfast-error'] as string | undefined, text: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
  /** Uploads a snapshot: its status and wire code, and the snapshot reads of storage it took. */
  const upload = async (bytes: Buffer): Promise<{ status: number; code: string | undefined; text: string; loads: number; lists: number }> => {
    snapshotReads.loads = 0;
    snapshotReads.lists = 0;
    const r = await send('PUT', `/safes/acme-web/snapshots/${sha(bytes)}`, bytes);
    return { ...r, ...snapshotReads };
  };

  before(async () => {
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl, undefined, { wrapSafeBackend: (b) => new CountingSnapshotReads(b) });
    const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const web = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    const safe = await t.create('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' });
    agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    s = await Sandbox.create('holdfast-backdating-');
    await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe\'s password' } });
    safeDir = join(t.dataDir, 'data', 'safes', safe.id);
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('reads no stored snapshot at an upload, refuses a backdated one from the index, and a snapshot the index could not hold', { timeout: 60_000 }, async () => {
    const now = Date.now();
    // The last four minutes ahead, within the skew of the server's clock.
    for (const [i, minutes] of [-3, -2, -1, 0, 4].entries()) {
      const r = await upload(snapshotBytes(now + minutes * MIN, 'web', ['/srv', '/etc']));
      assert.equal(r.status, 201, r.text);
      // The rule listed and read every stored snapshot here: a listing and i loads at this upload, 10 loads in all.
      assert.deepEqual([r.loads, r.lists], [0, 0], `upload ${i + 1}: no snapshot read from storage`);
    }
    const backdated = await upload(snapshotBytes(now - 2 * MIN, 'web', ['/etc', '/srv']));
    assert.equal(backdated.status, 403, backdated.text);
    assert.equal(backdated.code, 'SNAPSHOT_BACKDATED');
    assert.match(backdated.text, /is earlier than snapshot [0-9a-f]{8} of the same host and paths/);
    assert.deepEqual([backdated.loads, backdated.lists], [0, 0]);
    // Another host, other paths: groups of their own, with nothing stored.
    for (const [host, paths] of [['db', ['/srv', '/etc']], ['web', ['/srv']]] as const) {
      const r = await upload(snapshotBytes(now - 2 * MIN, host, [...paths]));
      assert.equal(r.status, 201, `${host} ${paths.join(',')}: ${r.text}`);
    }
    const far = await upload(snapshotBytes(now - 60 * MIN, 'db', ['/var']));
    assert.equal(far.code, 'SNAPSHOT_BACKDATED');
    assert.match(far.text, /from the server's clock/);
    const junk = await upload(Buffer.from('not a snapshot'));
    assert.deepEqual([junk.status, junk.code], [400, 'BAD_SNAPSHOT']);
    // A NUL in a name PostgreSQL would not hold: stored, the snapshot would be missing from the index there (it answered 500 with the object stored).
    for (const [host, user] of [['web\u0000', 'root'], ['web', 'root\u0000']] as const) {
      const nul = await upload(snapshotBytes(now, host, ['/srv'], user));
      assert.deepEqual([nul.status, nul.code], [400, 'BAD_SNAPSHOT'], nul.text);
      assert.match(nul.text, /a NUL character in its host or user name/);
    }
  });

  it('refuses a backdated upload when the index was just built from storage, where a damaged snapshot does not count and an unauthentic one does', { timeout: 60_000 }, async () => {
    const now = Date.now();
    const ahead = snapshotBytes(now + 4 * MIN, 'mail', ['/home']);
    assert.equal((await upload(ahead)).status, 201);
    // Planted in storage under a name its bytes do not have, an hour ahead: damage, which the rule never counted.
    await mkdir(join(safeDir, 'snapshots'), { recursive: true });
    await writeFile(join(safeDir, 'snapshots', 'e'.repeat(64)), snapshotBytes(now + 60 * MIN, 'mail', ['/home']));
    await forgetSnapshotIndex(dbUrl);
    const backdated = await upload(snapshotBytes(now - 2 * MIN, 'mail', ['/home']));
    assert.equal(backdated.code, 'SNAPSHOT_BACKDATED', backdated.text);
    assert.ok(backdated.text.includes(`snapshot ${sha(ahead).slice(0, 8)} of the same host and paths`), backdated.text);
    assert.ok(backdated.loads >= 2 && backdated.lists === 1, `the index was built from storage at this upload: ${backdated.loads} loads, ${backdated.lists} listings`);
    // The census found every snapshot unauthentic: still stored, still counted.
    const db = await openDatabase(dbUrl, '');
    try {
      await db.db.updateTable('snapshot_index').set({ unauthentic: 1, census_at: new Date(now).toISOString() }).execute();
    } finally {
      await db.close();
    }
    const again = await upload(snapshotBytes(now - 2 * MIN, 'mail', ['/home']));
    assert.equal(again.code, 'SNAPSHOT_BACKDATED', again.text);
    assert.deepEqual([again.loads, again.lists], [0, 0]);
    // Within the skew of the one ahead (not of the damaged one an hour ahead): taken.
    const taken = await upload(snapshotBytes(now, 'mail', ['/home']));
    assert.equal(taken.status, 201, taken.text);
  });

  it('keys the index rows of before migration 0023 by their host and sorted paths', { timeout: 60_000 }, async () => {
    const url = await fx.newUrl();
    const old = await openDatabase(url, '', '0022-policy-removed');
    try {
      await old.db.insertInto('snapshot_index' as never).values({
        safe_id: 's1', id: 'a'.repeat(64), time: new Date().toISOString(), hostname: 'web', username: 'root', paths: '["/srv","/etc"]', tags: '[]',
        parent: null, incomplete: 0, image: 0, summary: '{}', stored_at: new Date().toISOString(),
      } as never).execute();
    } finally {
      await old.close();
    }
    const db = await openDatabase(url, '');
    try {
      const rows = await db.db.selectFrom('snapshot_index').select(['id', 'group_key']).execute();
      assert.deepEqual(rows, [{ id: 'a'.repeat(64), group_key: snapshotGroupKey('web', ['/etc', '/srv']) }]);
    } finally {
      await db.close();
    }
  });
});

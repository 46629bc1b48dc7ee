/**
 * A server that dies while it runs its own jobs (a prune) puts them back in
 * the queue as soon as it starts again, without waiting for their lease to
 * run out, and runs them again: the jobs its node ran (server.json's node
 * id, or none recorded), never another node's sharing the database, whose
 * lease is still fresh. The lock objects its dead process left in their
 * safes are removed at that start; another machine's live lock stays.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { sha256 } from '../../src/core/crypto.js';
import { encodeLock, LOCK_VERSION, processIdentity, type LockInfo } from '../../src/repo/lock.js';
import { startServer, type RunningServer } from '../../src/server/backup-server.js';
import { openDatabase } from '../../src/server/db/open-database.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { adminClient, ADMIN_PASSWORD, httpsJson } from '../helpers/server.js';

/** A lock object as `holder` would write it now. */
function lockBytes(holder: Partial<LockInfo>): Buffer {
  const now = new Date().toISOString();
  return encodeLock({ ...processIdentity(), version: LOCK_VERSION, id: sha256(Buffer.from(JSON.stringify(holder))).toString('hex'), operation: 'prune', exclusive: false, created: now, heartbeat: now, ...holder });
}

databaseSuites('a server that starts again after it died', (fx) => {
  let dir = '';
  let dbUrl = '';
  let server: RunningServer | undefined;
  let s: Sandbox;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-restart-'));
    dbUrl = await fx.newUrl();
    s = await Sandbox.create('holdfast-restart-');
  });
  after(async () => {
    await server?.close();
    await s.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('queues its own running jobs again at once, not another node\'s, and removes its dead process\'s locks', { timeout: 60_000 }, async () => {
    const dataDir = join(dir, 'data');
    server = await startServer({ dataDir, listen: '127.0.0.1:0', db: dbUrl });
    const cert = await readFile(join(dataDir, 'tls', 'cert.pem'), 'utf8');
    const admin = await adminClient(server.port, cert, server.firstAdmin!);
    const acme = (await admin.create('/api/v1/customers', { name: 'Acme' })).id;
    const web = (await admin.create('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    const safeId = (await admin.create('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id;
    const otherSafeId = (await admin.create('/api/v1/safes', { customer_id: acme, name: 'acme-other' })).id;
    const agent = (await admin.create('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${server.port}/safes/acme-web`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: server.fingerprint } });
    await server.close();
    server = undefined;

    // What a killed server leaves: its prunes running with a fresh heartbeat, and the lock its process held.
    const node = (JSON.parse(await readFile(join(dataDir, 'server.json'), 'utf8')) as { node: string }).node;
    assert.match(node, /^[0-9a-f-]{36}$/);
    const db = await openDatabase(dbUrl, '');
    const now = new Date().toISOString();
    try {
      for (const [id, runnerNode, safe] of [['mine', node, safeId], ['from-before-nodes', null, safeId], ['another-nodes', 'another-node', otherSafeId]] as const) {
        await db.db.insertInto('jobs').values({
          id, customer_id: acme, machine_id: web, safe_id: safe, runner: 'server', runner_node: runnerNode, kind: 'prune', spec: '{}', state: 'running',
          created_by: 'user:admin', created_at: now, started_at: now, last_report_at: now, finished_at: null, result: null, error: null,
        }).execute();
      }
    } finally {
      await db.close();
    }
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    const locks = join(dataDir, 'safes', safeId, 'locks');
    const deadLock = lockBytes({ pid: dead, processStart: '1' });
    const elsewhere = lockBytes({ hostname: 'another-machine', pid: 1, bootId: 'another-boot' });
    for (const b of [deadLock, elsewhere]) await writeFile(join(locks, sha256(b).toString('hex')), b);

    server = await startServer({ dataDir, listen: '127.0.0.1:0', db: dbUrl });
    const token = (await httpsJson(server.port, cert, 'POST', '/api/v1/login', { body: { name: 'admin', password: ADMIN_PASSWORD } })).body.token as string;
    const job = async (id: string) => (await httpsJson(server!.port, cert, 'GET', `/api/v1/jobs/${id}`, { token })).body;
    const events = async (id: string) => (await httpsJson(server!.port, cert, 'GET', `/api/v1/jobs/${id}/events`, { token })).body as { message: string }[];
    for (const id of ['mine', 'from-before-nodes']) {
      let j = await job(id);
      while (j.state === 'queued' || j.state === 'running') j = await job(id);
      // It ran again (one server job of a safe at a time): a prune alone in the safe, which another machine's live lock refuses.
      assert.equal(j.state, 'failed', `${id}: ${JSON.stringify(j)}`);
      assert.match(j.error, /on another-machine/);
      const said = (await events(id)).map((e) => e.message);
      assert.ok(said.some((m) => /was stopped without ending it .* has started again; the job is queued again/.test(m)), said.join('\n'));
      assert.ok(said.some((m) => /server node .* took the job/.test(m)), said.join('\n'));
    }
    assert.equal((await job('another-nodes')).state, 'running', 'another node\'s job is that node\'s while its lease is fresh');
    assert.deepEqual(await readdir(locks), [sha256(elsewhere).toString('hex')], 'the dead process\'s lock is gone, another machine\'s live one stays');
  });
});

/**
 * Quotas of `holdfast server`, through the real CLI over TLS: a backup that
 * fits, then one that would pass the disk safe's hard quota (or its
 * customer's, spread over two safes) is refused with exit code 14 and a
 * message naming the quota and the usage, and nothing is half-written: the
 * safe keeps every object it had and gains no snapshot, what was stored
 * before the refusal is whole, `check` passes and the earlier snapshot
 * restores byte for byte. A soft quota warns once and the
 * backup succeeds. Concurrent uploads cannot together pass a hard quota.
 * An agent's job logs the soft quota's warning once and fails with the hard
 * quota's message. The usage the API shows is the sum of the safe's files
 * on disk, after the server's own forget removed some and after a restart,
 * and a customer cannot change its own quotas.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, it } from 'node:test';
import { buildTree, compareTrees, pseudoRandomBytes, removeTree } from '../fixtures/tree.js';
import { enrolMachine, eventsOf, runNow, startAgent, waitJob, type ServerHandle } from '../helpers/agent.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { writeRandom } from '../helpers/random-file.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';
import { startServer } from '../../src/server/backup-server.js';

/** Every file below `dir` (relative path → size): a safe's objects as they lie on disk. */
async function filesOf(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = join(rel, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(p, (await stat(join(dir, p))).size);
    }
  };
  await walk('');
  return out;
}

const total = (files: Map<string, number>): number => [...files.values()].reduce((a, b) => a + b, 0);

databaseSuites('quotas of holdfast server', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let dbUrl = '';
  let customer = '';
  let agent: Started | undefined;
  const safes: Record<string, { id: string; token: string }> = {};
  const as = (safe: string, extra: Record<string, string | undefined> = {}) => ({
    env: {
      HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/${safe}`, HOLDFAST_TOKEN: safes[safe]!.token,
      HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_RETRY_FOR: '1s', ...extra,
    },
  });
  const dirOf = (safe: string): string => join(t.dataDir, 'data', 'safes', safes[safe]!.id);
  const usage = async (safe: string): Promise<number> => {
    const r = await t.call('GET', `/api/v1/safes/${safes[safe]!.id}`, { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    return r.body.stored_bytes as number;
  };
  const setQuotas = async (path: string, quotas: Record<string, number | null>): Promise<void> => {
    const r = await t.call('PATCH', path, { token: t.adminToken, body: quotas });
    assert.equal(r.status, 200, r.text);
  };
  /**
   * A backup the quota refuses: exit 14 and the message; the safe keeps
   * every object it had, gains no snapshot and nothing half-written (what
   * the backup stored before the refusal is whole: each object hashes to its
   * name, and its index lets the next backup reuse it); check passes and
   * `restoredFrom` restores from the earlier snapshot.
   */
  const refused = async (safe: string, path: string, message: RegExp, restoredFrom: string): Promise<void> => {
    const before = await filesOf(dirOf(safe));
    const r = await s.run(['backup', '-q', path], as(safe));
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, message);
    const after = await filesOf(dirOf(safe));
    for (const [f, size] of before) assert.equal(after.get(f), size, f);
    for (const f of after.keys()) {
      if (before.has(f) || f === 'config') continue;
      assert.doesNotMatch(f, /^(snapshots|locks)\//, `${f}: no snapshot was added, and the lock was removed`);
      const bytes = await readFile(join(dirOf(safe), f));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), basename(f), `${f} is whole`);
    }
    await s.ok(['check', '--read-data'], as(safe));
    const out = s.path(`out-${safe}`);
    await s.ok(['restore', 'latest', '--target', out], as(safe));
    await compareTrees(restoredFrom, join(out, restoredFrom));
    assert.equal(await usage(safe), total(after));
  };

  before(async () => {
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl);
    s = await Sandbox.create('holdfast-quota-');
    customer = (await t.create('/api/v1/customers', { name: 'Quota Co' })).id;
    for (const name of ['qc-web', 'qc-db', 'qc-soft']) {
      const machine = (await t.create('/api/v1/machines', { customer_id: customer, name })).id;
      const id = (await t.create('/api/v1/safes', { customer_id: customer, machine_id: machine, name })).id;
      const token = (await t.create('/api/v1/tokens', { customer_id: customer, machine_id: machine, name, rights: ['backup'] })).secret;
      safes[name] = { id, token };
    }
    await buildTree(s.path('small'), { kind: 'dir', entries: { 'a.txt': { kind: 'file', content: pseudoRandomBytes('a', 20_000) }, 'b.txt': { kind: 'file', content: 'hello\n' } } });
    await mkdir(s.path('big'));
    await writeRandom(s.path('big', 'random.bin'), 1024 * 1024);
  });
  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.done;
    await t.stop();
    await removeTree(s.dir);
  });

  it('refuses a backup past the safe\'s hard quota with nothing half-written, and the usage is the safe\'s bytes on disk', { timeout: 120_000 }, async () => {
    await s.ok(['init'], as('qc-web'));
    await s.ok(['backup', '-q', s.path('small')], as('qc-web'));
    const used = total(await filesOf(dirOf('qc-web')));
    assert.equal(await usage('qc-web'), used);
    // Room for the backup's lock, not for its 1 MiB of new data.
    await setQuotas(`/api/v1/safes/${safes['qc-web']!.id}`, { quota_hard: used + 4096 });
    await refused('qc-web', s.path('big'), /this upload of 1\.\d+ MiB would bring the stored bytes of disk safe qc-web to 1\.\d+ MiB, past its hard quota of [\d.]+ KiB \(stored now: [\d.]+ KiB(, and [\d.]+ \w+ being uploaded)?\); the upload was refused and nothing of it stored/, s.path('small'));
  });

  it('refuses a backup past the customer\'s hard quota, spread over two safes', { timeout: 120_000 }, async () => {
    await s.ok(['init'], as('qc-db'));
    await s.ok(['backup', '-q', s.path('small')], as('qc-db'));
    const web = await usage('qc-web');
    const db = await usage('qc-db');
    const soft = await usage('qc-soft');
    // Each safe alone is far from it; together they are at it.
    await setQuotas(`/api/v1/safes/${safes['qc-web']!.id}`, { quota_hard: null });
    await setQuotas(`/api/v1/customers/${customer}`, { quota_hard: web + db + soft + 4096 });
    const c = await t.call('GET', `/api/v1/customers/${customer}`, { token: t.adminToken });
    assert.equal(c.body.stored_bytes, web + db + soft);
    assert.equal(c.body.quota_hard, web + db + soft + 4096);
    await refused('qc-db', s.path('big'), /this upload of 1\.\d+ MiB would bring the stored bytes of customer Quota Co \(all its disk safes\) to 1\.\d+ MiB, past its hard quota of [\d.]+ KiB \(stored now: [\d.]+ KiB(, and [\d.]+ \w+ being uploaded)?\)/, s.path('small'));
    await setQuotas(`/api/v1/customers/${customer}`, { quota_hard: null });
  });

  it('takes a safe\'s quota from its policy when the safe has none of its own', { timeout: 120_000 }, async () => {
    const machine = (await t.call('GET', `/api/v1/safes/${safes['qc-db']!.id}`, { token: t.adminToken })).body.machine_id as string;
    const policy = await t.create('/api/v1/policies', { customer_id: customer, machine_id: machine, quota: { hard: (await usage('qc-db')) + 4096 } });
    await refused('qc-db', s.path('big'), /this upload of 1\.\d+ MiB would bring the stored bytes of disk safe qc-db to 1\.\d+ MiB, past its hard quota of [\d.]+ KiB/, s.path('small'));
    // The safe's own quota comes first.
    await setQuotas(`/api/v1/safes/${safes['qc-db']!.id}`, { quota_hard: 2 ** 40 });
    await s.ok(['backup', '-q', s.path('big')], as('qc-db'));
    await setQuotas(`/api/v1/safes/${safes['qc-db']!.id}`, { quota_hard: null });
    assert.equal((await t.call('DELETE', `/api/v1/policies/${policy.id}`, { token: t.adminToken })).status, 204);
  });

  it('warns once of a soft quota, backs up, and records it in the audit log', { timeout: 120_000 }, async () => {
    await setQuotas(`/api/v1/safes/${safes['qc-soft']!.id}`, { quota_soft: 1024 });
    await s.ok(['init'], as('qc-soft'));
    const r = await s.ok(['backup', '-q', s.path('big')], as('qc-soft'));
    const warnings = r.stderr.split('\n').filter((l) => l.includes('soft quota'));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0]!, /^warning: https:\/\/127\.0\.0\.1:\d+\/safes\/qc-soft: disk safe qc-soft is over its soft quota: [\d.]+ (KiB|MiB) of 1\.00 KiB used$/);
    const out = s.path('out-soft');
    await s.ok(['restore', 'latest', '--target', out], as('qc-soft'));
    await compareTrees(s.path('big'), join(out, s.path('big')));
    const log = (await t.call('GET', '/api/v1/audit?limit=1000', { token: t.adminToken })).body as { action: string; target: string }[];
    assert.deepEqual(log.filter((e) => e.action.includes('soft_quota')).map((e) => [e.action, e.target]), [['safe.soft_quota_exceeded', safes['qc-soft']!.id]]);
    assert.equal(await usage('qc-soft'), total(await filesOf(dirOf('qc-soft'))));
  });

  it('lets concurrent uploads take no more than the hard quota', { timeout: 60_000 }, async () => {
    const safe = 'qc-web';
    const used = await usage(safe);
    const size = 10_000;
    await setQuotas(`/api/v1/safes/${safes[safe]!.id}`, { quota_hard: used + 3.5 * size });
    const before = await filesOf(dirOf(safe));
    const bodies = Array.from({ length: 8 }, () => randomBytes(size / 2).toString('hex'));
    const answers = await Promise.all(bodies.map((b) => httpsJson(t.server.port, t.cert, 'PUT', `/safes/${safe}/data/${createHash('sha256').update(b).digest('hex')}`, {
      token: safes[safe]!.token, rawBody: b,
    })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 201, 413, 413, 413, 413, 413]);
    for (const a of answers.filter((x) => x.status === 413)) {
      assert.equal(a.body.code, 'QUOTA_EXCEEDED');
      assert.equal(a.headers['holdfast-error'], 'QUOTA_EXCEEDED');
    }
    const after = await filesOf(dirOf(safe));
    assert.equal(after.size, before.size + 3);
    assert.equal(await usage(safe), used + 3 * size);
    assert.equal(await usage(safe), total(after));
    await setQuotas(`/api/v1/safes/${safes[safe]!.id}`, { quota_hard: null });
  });

  it('does not let a customer change its own quotas', async () => {
    const admin = await t.create('/api/v1/users', { name: 'qc-admin', role: 'customer-admin', customer_id: customer });
    const session = await t.login('qc-admin', admin.password, 'a long customer password');
    const c = await t.call('PATCH', `/api/v1/customers/${customer}`, { token: session, body: { quota_hard: null } });
    assert.equal(c.status, 403, c.text);
    const sf = await t.call('PATCH', `/api/v1/safes/${safes['qc-soft']!.id}`, { token: session, body: { quota_soft: null } });
    assert.equal(sf.status, 403, sf.text);
    const mk = await t.call('POST', '/api/v1/safes', { token: session, body: { customer_id: customer, name: 'qc-big', quota_hard: 2 ** 50 } });
    assert.equal(mk.status, 403, mk.text);
    assert.equal((await t.call('GET', `/api/v1/safes/${safes['qc-soft']!.id}`, { token: session })).body.quota_soft, 1024);
    const bad = await t.call('PATCH', `/api/v1/safes/${safes['qc-soft']!.id}`, { token: t.adminToken, body: { quota_hard: 100 } });
    assert.equal(bad.status, 400, 'a hard quota below the soft one');
    assert.match(bad.body.message, /soft quota \(1024 bytes\) is above the hard quota \(100 bytes\)/);
  });

  it('tells an agent\'s job: a soft quota warns once in its log, a hard quota fails it with the message', { timeout: 180_000 }, async () => {
    const h: ServerHandle = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    const m = await enrolMachine(h, s, 'qa1');
    const all = (await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as { id: string; name: string; stored_bytes: number }[];
    const safe = all.find((x) => x.name === m.config['safe'])!;
    await setQuotas(`/api/v1/safes/${safe.id}`, { quota_soft: 1024 });
    agent = startAgent(s, m);
    const ok = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('small')] }));
    assert.equal(ok.state, 'succeeded', ok.error ?? '');
    const warnings = (await eventsOf(h, ok.id)).filter((e) => e.kind === 'log' && e.message.includes('soft quota'));
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.message, new RegExp(`^warning: https://127\\.0\\.0\\.1:\\d+/safes/${safe.name}: disk safe ${safe.name} is over its soft quota: `));
    const used = (await t.call('GET', `/api/v1/safes/${safe.id}`, { token: t.adminToken })).body.stored_bytes as number;
    await setQuotas(`/api/v1/safes/${safe.id}`, { quota_hard: used + 4096 });
    const failed = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('big')] }));
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', new RegExp(`this upload of 1\\.\\d+ MiB would bring the stored bytes of disk safe ${safe.name} to 1\\.\\d+ MiB, past its hard quota of [\\d.]+ KiB \\(stored now: [\\d.]+ KiB`));
  });

  it('counts what the server\'s own forget removes', { timeout: 120_000 }, async () => {
    await s.ok(['backup', '-q', s.path('big')], as('qc-soft'));
    const before = await filesOf(dirOf('qc-soft'));
    assert.equal(await usage('qc-soft'), total(before));
    const r = await t.call('POST', `/api/v1/safes/${safes['qc-soft']!.id}/forget`, { token: t.adminToken, body: { keep_last: 1 } });
    assert.equal(r.status, 200, r.text);
    const after = await filesOf(dirOf('qc-soft'));
    const gone = [...before.keys()].filter((f) => !after.has(f));
    assert.equal(gone.length, 1, JSON.stringify(gone));
    assert.match(gone[0]!, /^snapshots\//);
    assert.equal(await usage('qc-soft'), total(after));
  });

  it('counts the usage from storage again after a restart', { timeout: 60_000 }, async () => {
    const dataDir = join(t.dataDir, 'data');
    await t.server.close();
    // What a crash between storing and counting would leave: an object the last process never counted.
    const extra = Buffer.from('stored while no server counted');
    await writeFile(join(dirOf('qc-web'), 'index', createHash('sha256').update(extra).digest('hex')), extra);
    const again = await startServer({ dataDir, listen: '127.0.0.1:0', db: dbUrl });
    try {
      for (const safe of Object.keys(safes)) {
        const r = await httpsJson(again.port, t.cert, 'GET', `/api/v1/safes/${safes[safe]!.id}`, { token: t.adminToken });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.stored_bytes, total(await filesOf(dirOf(safe))), safe);
      }
    } finally {
      await again.close();
    }
  });
});

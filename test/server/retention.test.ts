/**
 * Retention and prune of a disk safe on the server, keyless, through the
 * API: an agent's backup token makes five snapshots over HTTPS at chosen
 * times (the server's clock is the test's, so that none is backdated);
 * forget's dry run says per snapshot what the policy keeps and why, and the
 * forget then removes exactly that; prune, a server job followed at
 * /jobs/ID, marks the unreferenced packs and a later one deletes them; every
 * remaining snapshot restores byte for byte and check --read-data passes.
 * Neither route is open to a backup token or a customer viewer, and another
 * customer gets 404. A prune that sweeps while a backup runs through the
 * server loses nothing of that backup. A snapshot a restore test is queued
 * or running on is left out of forget (its `skipped` says why) until the
 * test ends, so the test's report is taken; then a forget removes it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import { Sandbox, type RunResult, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type Answer, type TestServer } from '../helpers/server.js';
import { openDatabase } from '../../src/server/db/open-database.js';

// Calendar buckets are in the server's (this process's) time zone, and --time in the CLI's.
process.env['TZ'] = 'UTC';

const HOUR = 3_600_000;
/** The snapshots' times: four days, the last with two. */
const TIMES = ['2026-03-01T12:00:00Z', '2026-03-02T12:00:00Z', '2026-03-03T12:00:00Z', '2026-03-04T09:00:00Z', '2026-03-04T12:00:00Z'].map(Date.parse);

/** "2026-03-01 12:00:00", as backup --time takes it (local time: UTC here). */
const cliTime = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

async function bytesIn(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  return n;
}

databaseSuites('retention and prune of a disk safe on the server', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let clock = TIMES[0]!;
  let safeId = '';
  let machineId = '';
  let dbUrl = '';
  let safeDir = '';
  const who: Record<string, string> = {};
  /** Snapshot id → the bytes of the file it holds. */
  const contents = new Map<string, Buffer>();
  const ids: string[] = []; // in the order of TIMES

  const cli = (extra: Record<string, string> = {}) => ({
    env: {
      HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: who['agent']!,
      HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_MIN_GRACE: '2s', HOLDFAST_RETRY_FOR: '1s', ...extra,
    },
  });
  const backupArgs = (at: number): string[] => ['backup', '--json', '--host', 'web', '--time', cliTime(at), s.path('src')];
  const snapshotIdOf = (r: RunResult): string => (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { snapshot_id: string }).snapshot_id;
  const backup = async (at: number, bytes: Buffer): Promise<string> => {
    clock = at;
    await writeFile(s.path('src', 'f.bin'), bytes);
    const id = snapshotIdOf(await s.ok(backupArgs(at), cli()));
    contents.set(id, bytes);
    return id;
  };
  const snapshotIds = async (): Promise<string[]> => (JSON.parse((await s.ok(['snapshots', '--json'], cli())).stdout) as { id: string }[]).map((x) => x.id).sort();
  const restoresExactly = async (id: string): Promise<void> => {
    const out = s.path(`out-${id.slice(0, 8)}`);
    await s.ok(['restore', id, '--target', out], cli());
    assert.ok((await readFile(join(out, s.path('src'), 'f.bin'))).equals(contents.get(id)!), `snapshot ${id.slice(0, 8)} restores its bytes`);
  };
  const forget = (body: unknown, token = who['manage']!): Promise<Answer> => t.call('POST', `/api/v1/safes/${safeId}/forget`, { token, body });
  const prune = (body: unknown, token = who['manage']!): Promise<Answer> => t.call('POST', `/api/v1/safes/${safeId}/prune`, { token, body });
  /** Waits for server job `id` to end; returns it and its events. */
  const finished = async (id: string): Promise<{ job: Answer['body']; events: Answer['body'] }> => {
    for (;;) {
      const r = await t.call('GET', `/api/v1/jobs/${id}`, { token: who['admin']! });
      assert.equal(r.status, 200, r.text);
      if (r.body.state !== 'running' && r.body.state !== 'queued') return { job: r.body, events: (await t.call('GET', `/api/v1/jobs/${id}/events`, { token: who['admin']! })).body };
      await sleep(50);
    }
  };
  const runPrune = async (body: Record<string, unknown>): Promise<Answer['body']> => {
    const r = await prune(body);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.runner, 'server');
    assert.equal(r.body.kind, 'prune');
    // The safe's machine's agent is never given the server's job, nor does its poll count it as its own lost one.
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: who['agent']! })).status, 204);
    const { job, events } = await finished(r.body.id);
    assert.equal(job.state, 'succeeded', job.error);
    assert.ok((events as { message: string }[]).some((e) => /prune of acme-web with a grace period of 2s/.test(e.message)), JSON.stringify(events));
    return job.result;
  };

  before(async () => {
    dbUrl = await fx.newUrl();
    t = await setUp(dbUrl, undefined, { clock: () => new Date(clock), minGraceMs: 2000 });
    s = await Sandbox.create('holdfast-retention-');
    await mkdir(s.path('src'));
    const mk = (path: string, body: unknown, token?: string) => t.create(path, body, token);
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await mk('/api/v1/customers', { name: 'Other' })).id;
    const web = machineId = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    safeId = (await mk('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id;
    safeDir = join(t.dataDir, 'data', 'safes', safeId);
    who['agent'] = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    who['manage'] = (await mk('/api/v1/tokens', { customer_id: acme, name: 'acme ops', rights: ['read', 'manage'] })).secret;
    who['other manage'] = (await mk('/api/v1/tokens', { customer_id: other, name: 'other ops', rights: ['read', 'manage'] })).secret;
    const users = [['admin', 'alice', 'customer-admin', acme], ['viewer', 'vic', 'customer-viewer', acme], ['other admin', 'olga', 'customer-admin', other]] as const;
    const made = [];
    for (const [, name, role, customer] of users) made.push(await mk('/api/v1/users', { name, role, customer_id: customer }));

    await s.ok(['init'], cli());
    for (const at of TIMES) ids.push(await backup(at, randomBytes(200_000)));
    // Sessions expire by the server's clock, which the backups moved on: log in now.
    for (const [i, [key, name]] of users.entries()) who[key] = await t.login(name, made[i].password, `${name} has a long password`);
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('refuses forget and prune to a backup token and a viewer (403), and to another customer (404), changing nothing', { timeout: 60_000 }, async () => {
    const policy = { keep_last: 1 };
    for (const [name, status] of [['agent', 403], ['viewer', 403], ['other admin', 404], ['other manage', 404]] as const) {
      for (const [call, body] of [[forget, policy], [prune, {}]] as const) {
        const r = await call(body, who[name]!);
        assert.equal(r.status, status, `${name}: ${r.text}`);
        if (status === 404) assert.doesNotMatch(r.text, /acme/i);
      }
    }
    assert.deepEqual(await snapshotIds(), [...ids].sort());
    assert.deepEqual((await t.call('GET', `/api/v1/machines/${machineId}/jobs`, { token: who['admin']! })).body, [], 'no prune job was started');
  });

  it('says what is wrong with a policy, and removes nothing', { timeout: 60_000 }, async () => {
    const none = await forget({ dry_run: false });
    assert.equal(none.status, 400);
    assert.match(none.body.message, /no retention rule was given/);
    const bad = await forget({ keep_within: '5x' });
    assert.equal(bad.status, 400, bad.text);
    const unknown = await forget({ keep_last: 1, keep_forever: true });
    assert.equal(unknown.status, 400, unknown.text);
    const grace = await prune({ grace_seconds: 1 });
    assert.equal(grace.status, 400, grace.text);
    assert.match(grace.body.message, /shorter than the minimum of 2s/);
    assert.deepEqual(await snapshotIds(), [...ids].sort());
  });

  it('previews a policy with its reasons, then forgets exactly what it previewed', { timeout: 60_000 }, async () => {
    const policy = { keep_last: 1, keep_daily: 3 };
    const dry = await forget({ ...policy, dry_run: true }, who['admin']);
    assert.equal(dry.status, 200, dry.text);
    assert.equal(dry.body.dry_run, true);
    assert.equal(dry.body.groups.length, 1);
    const g = dry.body.groups[0];
    assert.equal(g.host, 'web');
    assert.deepEqual(g.paths, [s.path('src')]);
    // Newest first: T5 is the last and the newest of its day; T4 shares T5's day; T3, T2 are the next days; T1 is past three days.
    assert.deepEqual(g.decisions.map((d: { id: string; action: string; reasons: string[] }) => [d.id, d.action, d.reasons]), [
      [ids[4], 'keep', ['last snapshot', 'daily snapshot']],
      [ids[3], 'remove', ['last: count used up', 'daily: a newer snapshot of the same day is kept']],
      [ids[2], 'keep', ['daily snapshot']],
      [ids[1], 'keep', ['daily snapshot']],
      [ids[0], 'remove', ['last: count used up', 'daily: count used up']],
    ]);
    assert.equal(g.keep, 3);
    assert.equal(g.remove, 2);
    assert.deepEqual(dry.body.removed, []);
    assert.deepEqual(await snapshotIds(), [...ids].sort(), 'a dry run removes nothing');

    const real = await forget(policy);
    assert.equal(real.status, 200, real.text);
    assert.deepEqual(real.body.groups, dry.body.groups);
    assert.deepEqual([...real.body.removed].sort(), [ids[0], ids[3]].sort());
    assert.deepEqual(await snapshotIds(), [ids[1]!, ids[2]!, ids[4]!].sort());
    const audit = (await t.call('GET', '/api/v1/audit', { token: who['admin']! })).body as { action: string; target: string; actor: string }[];
    assert.equal(audit.filter((e) => e.action === 'safe.forget' && e.target === safeId).length, 1, 'the forget is audited, the dry run is not');
  });

  it('prunes as a server job: marks the forgotten snapshots\' packs, deletes them after the grace period, and the rest restores', { timeout: 120_000 }, async () => {
    const packsBefore = await countFiles(join(safeDir, 'data'));
    const dry = await runPrune({ dry_run: true, grace_seconds: 2 });
    assert.equal(dry.dry_run, true);
    assert.equal(await countFiles(join(safeDir, 'deletions')).catch(() => 0), 0, 'a dry run writes no marker');
    const marked = await runPrune({ grace_seconds: 2 });
    assert.equal(marked.mark.unused_packs, dry.mark.unused_packs);
    assert.ok(marked.mark.unused_packs >= 2, `the packs of the two forgotten snapshots are unused: ${JSON.stringify(marked.mark)}`);
    assert.equal(marked.sweep.packs_deleted, 0);
    assert.equal(await countFiles(join(safeDir, 'data')), packsBefore, 'marking deletes nothing');
    clock += HOUR;
    const swept = await runPrune({ grace_seconds: 2 });
    assert.equal(swept.sweep.packs_deleted, marked.mark.unused_packs);
    assert.equal(await countFiles(join(safeDir, 'data')), packsBefore - marked.mark.unused_packs);
    const usage = (await t.call('GET', `/api/v1/safes/${safeId}`, { token: who['admin']! })).body.stored_bytes;
    assert.equal(usage, await bytesIn(safeDir), 'the safe\'s usage counts what the prune deleted');
    for (const id of [ids[1]!, ids[2]!, ids[4]!]) await restoresExactly(id);
    await s.ok(['check', '--read-data'], cli());
    const audit = (await t.call('GET', '/api/v1/audit', { token: who['admin']! })).body as { action: string }[];
    assert.equal(audit.filter((e) => e.action === 'safe.prune').length, 3);
  });

  it('a prune that sweeps while a backup runs through the server loses nothing of it', { timeout: 180_000 }, async () => {
    // Forget T2 and mark its pack; once that is due, back its content up again while a prune sweeps it (restic issue 3126's race).
    const forgotten = ids[1]!;
    const f = await forget({ keep_last: 2 });
    assert.deepEqual(f.body.removed, [forgotten]);
    await runPrune({ grace_seconds: 2 });
    clock += HOUR;
    const big = Buffer.concat([contents.get(forgotten)!, randomBytes(6_000_000)]);
    await writeFile(s.path('src', 'f.bin'), big);
    const running: Started = s.start(backupArgs(clock), cli());
    let ended = false;
    void running.done.then(() => (ended = true));
    // Start the prune once the backup holds its lock (unless it ended first: what follows must hold either way).
    while (!ended && (await readdir(join(safeDir, 'locks')).catch(() => [])).length === 0) await sleep(20);
    const swept = await runPrune({ grace_seconds: 2 });
    const b = await running.done;
    assert.equal(b.code, 0, b.stderr);
    const id = snapshotIdOf(b);
    contents.set(id, big);
    assert.ok(swept.sweep.packs_deleted >= 1, JSON.stringify(swept.sweep));
    await restoresExactly(id);
    for (const kept of [ids[2]!, ids[4]!]) await restoresExactly(kept);
    await s.ok(['check', '--read-data'], cli());
  });

  it('a server job whose node died is taken over once its lease has run out, and runs again; the machine\'s agent polling does not end it', { timeout: 60_000 }, async () => {
    // A prune left running by a server node that was killed: its lease (60 s by default) was last renewed a minute ago.
    const db = await openDatabase(dbUrl, '');
    const started = new Date(clock - 60_000).toISOString();
    try {
      await db.db.insertInto('jobs').values({
        id: 'dead-prune', customer_id: (await db.db.selectFrom('disk_safes').select('customer_id').executeTakeFirstOrThrow()).customer_id, machine_id: machineId, safe_id: safeId,
        runner: 'server', runner_node: 'a-dead-node', kind: 'prune', spec: JSON.stringify({ grace_seconds: 2 }), state: 'running', created_by: 'user:alice', created_at: started, started_at: started, last_report_at: started,
        lease_until: new Date(clock + 1000).toISOString(), attempts: 1, admitted_at: started, finished_at: null, result: null, error: null,
      }).execute();
    } finally {
      await db.close();
    }
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: who['agent']! })).status, 204);
    assert.equal((await t.call('GET', '/api/v1/jobs/dead-prune', { token: who['admin']! })).body.state, 'running', 'the agent\'s poll left it alone');
    const refused = await prune({ grace_seconds: 2 });
    assert.equal(refused.status, 409, refused.text);
    assert.match(refused.body.message, /a prune of disk safe acme-web is running already: job dead-prune/);
    // Its lease runs out: this node takes it over and runs it from the beginning.
    clock += 5 * 60_000;
    const { job, events } = await finished('dead-prune');
    assert.equal(job.state, 'succeeded', job.error);
    const said = (events as { message: string }[]).map((e) => e.message);
    assert.ok(said.some((m) => /took the job over: the lease of node a-dead-node ran out/.test(m)), said.join('\n'));
    assert.ok(said.some((m) => /prune of acme-web with a grace period of 2s/.test(m)), said.join('\n'));
  });

  it('leaves the snapshot a restore test is queued or running on out of forget until the test ends, then removes it', { timeout: 60_000 }, async () => {
    const listed = (await t.call('GET', `/api/v1/safes/${safeId}/snapshots`, { token: who['admin']! })).body as { id: string; time: string }[];
    const byTime = listed.sort((a, b) => a.time.localeCompare(b.time)).map((x) => x.id);
    assert.ok(byTime.length >= 3, JSON.stringify(byTime));
    const oldest = byTime[0]!;
    const newest = byTime.at(-1)!;
    const job = (await t.create(`/api/v1/machines/${machineId}/jobs`, { kind: 'verify-restore', spec: { snapshot: oldest.slice(0, 12) } }, who['admin'])).id as string;
    const held = (f: Answer, state: string): void => {
      assert.equal(f.status, 200, f.text);
      const why = (f.body.skipped as { id: string; error: string }[]).find((x) => x.id === oldest)?.error ?? '';
      assert.match(why, new RegExp(`a restore test of it is ${state} \\(job ${job}\\): not removed until the test ends`));
      const decided = (f.body.groups as { decisions: { id: string }[] }[]).flatMap((g) => g.decisions.map((d) => d.id));
      assert.ok(!decided.includes(oldest), 'out of its group: the policy would have removed it');
    };

    // Queued: keep_last 1 would remove every snapshot but the newest; the one under test stays.
    const dry = await forget({ keep_last: 1, dry_run: true });
    held(dry, 'queued');
    const queued = await forget({ keep_last: 1 });
    held(queued, 'queued');
    assert.deepEqual([...queued.body.removed].sort(), byTime.slice(1, -1).sort());
    assert.deepEqual(await snapshotIds(), [oldest, newest].sort());

    // Running: the agent took it; still held, and its report is taken.
    const taken = await t.call('GET', '/api/v1/agent/jobs/next', { token: who['agent']! });
    assert.equal(taken.status, 200, taken.text);
    assert.equal(taken.body.id, job);
    const running = await forget({ keep_last: 1 });
    held(running, 'running');
    assert.deepEqual(running.body.removed, []);
    const report = await t.call('POST', `/api/v1/agent/jobs/${job}/result`, { token: who['agent']!, body: { state: 'succeeded', result: { snapshot: oldest, restorable: true } } });
    assert.equal(report.status, 200, report.text);
    assert.equal((await t.call('GET', `/api/v1/machines/${machineId}`, { token: who['admin']! })).body.proven_restorable_snapshot, oldest);

    // Ended: the next forget removes it as its policy says.
    const after = await forget({ keep_last: 1 });
    assert.equal(after.status, 200, after.text);
    assert.deepEqual(after.body.removed, [oldest]);
    assert.deepEqual(after.body.skipped, []);
    assert.deepEqual(await snapshotIds(), [newest]);

    // A test of `latest` holds the newest snapshot: a policy that would remove it (no snapshot has the tag) spares it while the test is queued.
    const latest = (await t.create(`/api/v1/machines/${machineId}/jobs`, { kind: 'verify-restore', spec: {} }, who['admin'])).id as string;
    const tagged = await forget({ keep_tags: ['none-has-it'] });
    assert.equal(tagged.status, 200, tagged.text);
    assert.deepEqual(tagged.body.removed, []);
    assert.deepEqual(tagged.body.skipped, [{ id: newest, error: `a restore test of it is queued (job ${latest}): not removed until the test ends` }]);
    assert.equal((await t.call('POST', `/api/v1/jobs/${latest}/cancel`, { token: who['admin']! })).status, 200);
    assert.deepEqual(await snapshotIds(), [newest]);
  });

  it('a restore test holds its snapshot only while it lives: not once it expired untaken, its agent went silent, or it ran past its timeout', { timeout: 60_000 }, async () => {
    const [older] = await snapshotIds();
    clock += HOUR;
    await backup(clock, randomBytes(50_000));
    const heldNow = async (): Promise<boolean> => {
      const f = await forget({ keep_last: 1, dry_run: true });
      assert.equal(f.status, 200, f.text);
      return (f.body.skipped as { id: string }[]).some((x) => x.id === older);
    };
    const queue = async (extra: Record<string, unknown> = {}): Promise<string> =>
      (await t.create(`/api/v1/machines/${machineId}/jobs`, { kind: 'verify-restore', spec: { snapshot: older!.slice(0, 12) }, ...extra }, who['admin'])).id as string;
    const take = async (job: string): Promise<void> => {
      const taken = await t.call('GET', '/api/v1/agent/jobs/next', { token: who['agent']! });
      assert.equal(taken.status, 200, taken.text);
      assert.equal(taken.body.id, job);
    };

    // Queued for an agent that never takes it: held until it expires, not after.
    await queue({ expires_in: 60 });
    assert.ok(await heldNow(), 'held while queued');
    clock += 61_000;
    assert.ok(!await heldNow(), 'still held once expired untaken');

    // Taken by an agent that then says nothing: held until the silence limit (120 s), not after.
    await take(await queue());
    assert.ok(await heldNow(), 'held while running');
    clock += 121_000;
    assert.ok(!await heldNow(), 'still held once its agent went silent');

    // Taken by an agent that reports and never ends it: held no longer than the default timeout (24 h).
    const endless = await queue();
    await take(endless);
    const db = await openDatabase(dbUrl, '');
    try {
      await db.db.updateTable('jobs').set({ started_at: new Date(clock - 24 * HOUR - 1000).toISOString() }).where('id', '=', endless).execute();
    } finally {
      await db.close();
    }
    assert.ok(!await heldNow(), 'still held past its timeout');
    const removed = await forget({ keep_last: 1 });
    assert.equal(removed.status, 200, removed.text);
    assert.deepEqual(removed.body.removed, [older]);
  });
});

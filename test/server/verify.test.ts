/**
 * Verification on the server and restore tests through the agent, with a
 * real agent (`holdfast agent run`, a child process) over real TLS:
 *
 *   - bytes flipped in a pack of a safe on the server's storage: the
 *     server's keyless verification records the damaged pack and the
 *     snapshot that references it (shown with the safe), fails its job, and
 *     takes the pack out of use; the agent's next backup takes no damaged
 *     parent, stores again what was damaged, restores byte for byte, and
 *     `holdfast check --read-data` passes
 *   - the rotating read: with N slices, N runs read every pack once (pack
 *     ids read, as the storage saw them), and a run that failed before it
 *     read its slice leaves the slice for the next run
 *   - the `verify.damage` alert reaches the customer's webhook once per
 *     damage found
 *   - a restore test (job kind verify-restore) that passes sets the
 *     machine's "last proven restorable"; one that finds planted damage
 *     fails, marks its snapshot damaged, raises `restore-test.failed`, and the verification the server
 *     then starts takes the damaged pack out of use: the next backup and
 *     its restore test pass
 *   - `every_pack` reads every pack and leaves the rotation where it is
 *   - the admin commands: `holdfast server safe verify` (with --json, --every-pack), the
 *     damaged snapshots in `safe show`, "proven restorable" in `machine show`
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend, Handle, LoadOptions } from '../../src/storage/backend.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { assertSameTree } from '../helpers/restore-check.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { writeRandom } from '../helpers/random-file.js';
import { enrolMachine, eventsOf, runNow, startAgent, waitJob, type EnrolledMachine, type JobView, type ServerHandle } from '../helpers/agent.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/notify-receivers.js';

/** Records the packs read whole through the server's storage, and fails the next listing of packs when asked to. */
class Watch {
  readonly packsRead = new Set<string>();
  failNextPackListing = false;

  wrap(b: Backend): Backend {
    return new Proxy(b, {
      get: (target, prop, receiver) => {
        if (prop === 'load') {
          return (h: Handle, o?: LoadOptions) => {
            if (h.type === 'data' && o?.offset === undefined && o?.length === undefined) this.packsRead.add(h.name);
            return target.load(h, o);
          };
        }
        if (prop === 'list') {
          return (type: Parameters<Backend['list']>[0], o?: Parameters<Backend['list']>[1]) => {
            if (type === 'data' && this.failNextPackListing) {
              this.failNextPackListing = false;
              throw new Error('planted: the pack listing failed');
            }
            return target.list(type, o);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

databaseSuites('verification on the server, restore tests through the agent', (fx) => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let agent: Started;
  let safeId = '';
  let hook: WebhookReceiver;
  let channel = '';
  const watch = new Watch();
  const src = (): string => s.path('src');
  /** The safe's folder on the server's storage. */
  const safeDir = (): string => join(t.dataDir, 'data', 'safes', safeId);

  /** Every pack of the safe, by name → path. */
  async function packs(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const dir of await readdir(join(safeDir(), 'data'))) for (const name of await readdir(join(safeDir(), 'data', dir))) out.set(name, join(safeDir(), 'data', dir, name));
    return out;
  }

  /** Flips bytes in the middle of the pack at `path`. */
  async function damage(path: string): Promise<void> {
    const bytes = await readFile(path);
    for (let i = 0; i < 16; i++) bytes[(bytes.length >> 1) + i]! ^= 0xff;
    await writeFile(path, bytes);
  }

  /** The largest of `names` (a data pack holds the files' bytes; a tree pack is small). */
  async function largest(all: Map<string, string>, names: Iterable<string>): Promise<string> {
    let best = { name: '', size: -1 };
    for (const n of names) {
      const { size } = await stat(all.get(n)!);
      if (size > best.size) best = { name: n, size };
    }
    return best.name;
  }

  async function backup(): Promise<JobView> {
    const j = await waitJob(h, await runNow(h, m, 'backup', { paths: [src()] }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    return j;
  }

  async function verify(body: Record<string, unknown> = {}): Promise<JobView> {
    const r = await t.call('POST', `/api/v1/safes/${safeId}/verify`, { token: t.adminToken, body });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.kind, 'verify');
    assert.equal(r.body.runner, 'server');
    return waitJob(h, r.body.id as string);
  }

  async function safe(): Promise<{ damaged_snapshots: { snapshot_id: string; source: string; job_id: string; reason: string }[] }> {
    const r = await t.call('GET', `/api/v1/safes/${safeId}`, { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    return r.body;
  }

  /** The alerts of `kind` queued for the customer's webhook so far (raised with the change that caused them: counted when the job has ended). */
  async function alerts(kind: string): Promise<{ summary: string }[]> {
    const r = await t.call('GET', `/api/v1/notifications/${channel}/deliveries`, { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    return (r.body as { event: string; summary: string }[]).filter((d) => d.event === kind);
  }

  /** The webhook's deliveries of `kind`, once `count` have arrived. */
  async function received(kind: string, count: number): Promise<Record<string, any>[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
    for (;;) {
      const hits = hook.hits.filter((h) => h.json?.event === kind).map((h) => h.json as Record<string, unknown>);
      if (hits.length >= count) return hits;
      await sleep(100);
    }
  }

  async function machine(): Promise<{ proven_restorable_at: string | null; proven_restorable_snapshot: string | null }> {
    const r = await t.call('GET', `/api/v1/machines/${m.id}`, { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    return r.body;
  }

  before(async () => {
    s = await Sandbox.create('holdfast-verify-');
    t = await setUp(await fx.newUrl(), undefined, { wrapSafeBackend: (b) => watch.wrap(b) });
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'db1');
    hook = await startWebhookReceiver('/alerts');
    const customer = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: t.adminToken })).body.customer_id as string;
    channel = (await t.create('/api/v1/notifications', { name: 'ops', customer_id: customer, kind: 'webhook', events: ['verify.damage', 'restore-test.failed'], webhook: { url: hook.url } })).channel.id;
    const listed = await t.call('GET', '/api/v1/safes', { token: t.adminToken });
    safeId = (listed.body as { id: string; name: string }[]).find((x) => x.name === m.config['safe'])!.id;
    await mkdir(join(src(), 'sub'), { recursive: true });
    await writeRandom(join(src(), 'a.bin'), 300_000);
    await writeRandom(join(src(), 'sub', 'b.bin'), 200_000);
    await writeFile(join(src(), 'sub', 'c.txt'), 'a small file\n');
    agent = startAgent(s, m);
  });
  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.done;
    await hook?.close();
    await t.stop();
    await s.remove();
  });

  it('finds bytes flipped in a pack, records the pack and the snapshot, and the next backup heals the safe', { timeout: 120_000 }, async () => {
    const first = (await backup()).result!['snapshot_id'] as string;
    const clean = await verify();
    assert.equal(clean.state, 'succeeded', clean.error ?? '');
    assert.deepEqual(clean.result!['damaged_packs'], []);
    assert.deepEqual((await safe()).damaged_snapshots, []);

    const all = await packs();
    const bad = await largest(all, all.keys());
    await damage(all.get(bad)!);
    const found = await verify();
    assert.equal(found.state, 'failed');
    assert.match(found.error!, /verification found \d+ error\(s\)/);
    assert.deepEqual(found.result!['damaged_packs'], [bad]);
    assert.deepEqual(found.result!['damaged_snapshots'], [first]);
    assert.deepEqual(found.result!['packs_condemned'], [bad], 'the damaged pack is taken out of use');
    const damaged = (await safe()).damaged_snapshots;
    assert.deepEqual(damaged.map((d) => [d.snapshot_id, d.source, d.job_id]), [[first, 'verify', found.id]]);
    const [alert] = await received('verify.damage', 1);
    assert.match(alert!['summary'], /^machine db1 of db1: verification found 1 damaged pack\(s\) and 1 damaged snapshot\(s\)/);
    assert.deepEqual(alert!['details'], { damaged_packs: [bad], damaged_snapshots: [first] });
    assert.deepEqual(alert!['job'], { id: found.id, kind: 'verify' });
    // Found again, it is not new damage.
    const again = await verify();
    assert.deepEqual(again.result!['new_damaged_snapshots'], []);
    assert.deepEqual(again.result!['new_damaged_packs'], []);
    assert.equal((await alerts('verify.damage')).length, 1, 'damage found again is not told again');

    // The next backup takes no damaged parent and stores again what was damaged.
    const healing = await backup();
    const healed = healing.result!['snapshot_id'] as string;
    const events = (await eventsOf(h, healing.id)).map((e) => e.message);
    assert.ok(events.some((e) => /1 snapshot\(s\) found damaged/.test(e)), events.join('\n'));
    assert.ok(!events.some((e) => e.startsWith('using parent snapshot')), events.join('\n'));
    assert.equal(healing.result!['files_new'], 3, JSON.stringify(healing.result));
    const target = s.path('restored');
    await s.ok(['restore', healed, '--target', target], { env: m.repoEnv });
    assertSameTree(src(), join(target, src()));
    await s.ok(['check', '--read-data'], { env: m.repoEnv });
    // The safe verifies clean again (the damaged pack, marked for deletion, is only a warning until a prune deletes it), and the damaged snapshot stays recorded.
    const after = await verify();
    assert.equal(after.state, 'succeeded', after.error ?? '');
    assert.deepEqual(after.result!['damaged_snapshots'], []);
    assert.deepEqual((await safe()).damaged_snapshots.map((d) => d.snapshot_id), [first]);
  });

  it('reads every pack once in N runs of N slices, and a run that failed leaves its slice to the next', { timeout: 120_000 }, async () => {
    // More packs: a few more backups of changed files.
    for (let i = 0; i < 3; i++) {
      await writeRandom(join(src(), `more-${i}.bin`), 150_000);
      await backup();
    }
    const all = new Set((await packs()).keys());
    assert.ok(all.size >= 6, `${all.size} packs`);
    const reads: Set<string>[] = [];
    const slices: unknown[] = [];
    for (let run = 0; run < 3; run++) {
      if (run === 1) {
        // A run that fails before it reads anything: the next run reads the slice it would have read.
        watch.failNextPackListing = true;
        const failed = await verify({ read_data_days: 3 });
        assert.equal(failed.state, 'failed');
        assert.match(failed.error!, /planted: the pack listing failed/);
      }
      watch.packsRead.clear();
      const j = await verify({ read_data_days: 3 });
      assert.equal(j.result!['packs_read'], watch.packsRead.size, JSON.stringify(j.result));
      reads.push(new Set(watch.packsRead));
      slices.push(j.result!['slice']);
    }
    assert.deepEqual(slices, [1, 2, 3]);
    const union = new Set(reads.flatMap((r) => [...r]));
    assert.deepEqual([...union].sort(), [...all].sort(), 'every pack read within 3 runs');
    assert.equal(reads.reduce((n, r) => n + r.size, 0), all.size, 'each pack read once');
    // The rotation starts again.
    assert.equal((await verify({ read_data_days: 3 })).result!['slice'], 1);
  });

  it('keeps a restore test\'s result: a pass is "last proven restorable", a failure marks the snapshot and the server takes the damage out of use', { timeout: 120_000 }, async () => {
    assert.deepEqual(await machine(), { ...(await machine()), proven_restorable_at: null, proven_restorable_snapshot: null });
    const latest = (await backup()).result!['snapshot_id'] as string;
    const passed = await waitJob(h, await runNow(h, m, 'verify-restore', {}));
    assert.equal(passed.state, 'succeeded', passed.error ?? '');
    assert.equal(passed.result!['snapshot'], latest);
    assert.equal(passed.result!['restorable'], true);
    const proven = await machine();
    assert.equal(proven.proven_restorable_snapshot, latest);
    assert.ok(proven.proven_restorable_at !== null);

    // A new file in a new pack, then that pack damaged: the restore test finds it.
    const before = new Set((await packs()).keys());
    await writeRandom(join(src(), 'new.bin'), 400_000);
    const snap = (await backup()).result!['snapshot_id'] as string;
    const now = await packs();
    const bad = await largest(now, [...now.keys()].filter((p) => !before.has(p)));
    await damage(now.get(bad)!);
    const failed = await waitJob(h, await runNow(h, m, 'verify-restore', { snapshot: snap.slice(0, 12), min_files: 100 }));
    assert.equal(failed.state, 'failed');
    assert.match(failed.error!, /did NOT restore exactly/);
    assert.equal(failed.result!['restorable'], false);
    assert.equal(failed.result!['snapshot'], snap);
    const marked = (await safe()).damaged_snapshots.find((d) => d.snapshot_id === snap);
    assert.equal(marked?.source, 'restore-test');
    assert.equal(marked?.job_id, failed.id);
    assert.equal((await machine()).proven_restorable_snapshot, latest, 'a failed test proves nothing');
    const [told] = await received('restore-test.failed', 1);
    assert.match(told!['summary'], new RegExp(`^machine db1 of db1: snapshot ${snap.slice(0, 8)} failed its restore test: snapshot ${snap.slice(0, 8)} did NOT restore exactly`));
    assert.equal(told!['details'].snapshot, snap);

    // The server read every pack to find the damage, and took the pack out of use.
    const jobs = (await t.call('GET', `/api/v1/machines/${m.id}/jobs`, { token: t.adminToken })).body as (JobView & { kind: string; created_by: string })[];
    const started = jobs.find((j) => j.kind === 'verify' && j.created_by === 'server');
    assert.ok(started, JSON.stringify(jobs.map((j) => [j.kind, j.created_by])));
    const check = await waitJob(h, started.id);
    assert.equal(check.state, 'failed');
    assert.ok((check.result!['packs_condemned'] as string[]).includes(bad), JSON.stringify(check.result));

    const next = (await backup()).result!['snapshot_id'] as string;
    const retest = await waitJob(h, await runNow(h, m, 'verify-restore', {}));
    assert.equal(retest.state, 'succeeded', retest.error ?? '');
    assert.equal(retest.result!['snapshot'], next);
    assert.equal((await machine()).proven_restorable_snapshot, next);
  });

  it('holdfast server safe verify runs one and follows it; --json prints its events', { timeout: 120_000 }, async () => {
    const env = { HOLDFAST_SERVER: `https://127.0.0.1:${t.port}`, HOLDFAST_SERVER_TOKEN: t.adminToken, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('nowhere') };
    const r = await s.run(['server', 'safe', 'verify', m.config['safe'] as string, '--read-data-days', '2'], { env });
    assert.match(r.stdout, /verification job \S+ started on the server/);
    const json = await s.run(['--json', 'server', 'safe', 'verify', safeId], { env });
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; message: string });
    assert.ok(lines.some((l) => /^verification of /.test(l.message)), json.stdout);
    const shown = await s.ok(['server', 'safe', 'show', safeId], { env });
    assert.match(shown.stdout, /damaged snapshots:\s+[0-9a-f]{8} \(verify, [^)]+\), [0-9a-f]{8} \(restore-test, [^)]+\)/);
    const machineShown = await s.ok(['server', 'machine', 'show', m.id], { env });
    assert.match(machineShown.stdout, /proven restorable:\s+.+: snapshot [0-9a-f]{8}\n/);
    // Every pack, outside the rotation: the rotation stays where it was.
    const next = (await verify({ read_data_days: 2 })).result!['slice'] as number;
    const every = await verify({ every_pack: true });
    assert.equal(every.result!['packs_read'], (await packs()).size);
    assert.equal((await verify({ read_data_days: 2 })).result!['slice'], next === 2 ? 1 : 2);
    const both = await t.call('POST', `/api/v1/safes/${safeId}/verify`, { token: t.adminToken, body: { every_pack: true, read_data_days: 2 } });
    assert.equal(both.status, 400, both.text);
    const cliEvery = await s.run(['server', 'safe', 'verify', safeId, '--every-pack'], { env });
    assert.match(cliEvery.stdout, /the stored bytes of every pack \(outside the rotation\)/);
    const bad = await s.run(['server', 'safe', 'verify', safeId, '--read-data-days', '0'], { env });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--read-data-days wants a whole number from 1 to 3660/);
  });

  it('a pack the index names that is gone is taken out of use too, and the next backup stores its data again', { timeout: 120_000 }, async () => {
    const before = new Set((await packs()).keys());
    await writeRandom(join(src(), 'gone.bin'), 300_000);
    await backup();
    const now = await packs();
    const lost = await largest(now, [...now.keys()].filter((p) => !before.has(p)));
    await rm(now.get(lost)!);
    const found = await verify({ every_pack: true });
    assert.equal(found.state, 'failed');
    assert.deepEqual(found.result!['missing_packs'], [lost]);
    assert.ok((found.result!['packs_condemned'] as string[]).includes(lost), JSON.stringify(found.result));
    const healed = (await backup()).result!['snapshot_id'] as string;
    const target = s.path('restored-gone');
    await s.ok(['restore', healed, '--target', target], { env: m.repoEnv });
    assertSameTree(src(), join(target, src()));
    await s.ok(['check', '--read-data'], { env: m.repoEnv });
  });
});

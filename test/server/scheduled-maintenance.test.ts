/**
 * What the scheduler runs from a policy besides backups (issue 17, issue 19
 * §3), over a day of the server's injected clock (nothing waits for real
 * hours): retention every 6 h (keep_last 2), a prune every 12 h, a
 * verification every 8 h reading 3 slices, a restore test every day.
 * Backups are the real CLI's through the server (`--time` at the server's
 * clock, which refuses backdated snapshots), every 3 hours; the server's
 * jobs really run; the restore test is taken and reported through the
 * agent API with the machine's token. Checked: each job made once per
 * slot (a second tick at the same time makes none), the slots one period
 * apart (a restore test due while a backup is queued waits for its end);
 * each retention job removes what it says (the safe's snapshot list
 * before and after it) and leaves the 2 newest; the prunes run and mark
 * what the removed snapshots left unused; the verifications read slices
 * 1, 2, 3 in turn; a restore test a slot, taken and reported by the machine.
 *
 * Then a hostile machine's restore-test results: another snapshot than the
 * job's, a made-up id, another safe's snapshot, are refused (400) and
 * change nothing (the machine's "proven restorable", the damaged snapshots).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { enrolMachine, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { writeRandom } from '../helpers/random-file.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase, type ControlPlaneDatabase } from '../../src/server/db/open-database.js';
import type { JobKind } from '../../src/server/db/schema.js';

const HOUR = 3_600_000;
const START = Date.parse('2026-06-01T00:00:00Z');

interface JobRow { id: string; safe_id: string; runner: string; kind: string; state: string; error: string | null; slot_at: string | null; spec: Record<string, any>; result: Record<string, any> | null } // eslint-disable-line @typescript-eslint/no-explicit-any

databaseSuites('the scheduled retention, prune, verification and restore tests', (fx) => {
  let t: TestServer;
  let db: ControlPlaneDatabase;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let other: EnrolledMachine;
  let safeId = '';
  /** The machines and the policy date from the day before the one run (a schedule's first slot is the next after it: scheduler.ts). */
  let clock = START - 24 * HOUR;
  /** The admin's session, logged in again before it expires (12 h of the server's clock). */
  let session = { token: '', at: 0 };
  const admin = (): string => session.token;
  async function freshSession(): Promise<void> {
    if (clock - session.at < 10 * HOUR) return;
    session = { token: await t.login(t.server.firstAdmin!.name, ADMIN_PASSWORD), at: clock };
  }

  /** A backup of a new random file by the CLI through the server, dated at the server's clock. */
  async function backup(of: EnrolledMachine): Promise<void> {
    await writeRandom(s.path('src', 'data.bin'), 50_000);
    const time = new Date(clock).toISOString().slice(0, 19).replace('T', ' ');
    await s.ok(['backup', '--time', time, s.path('src')], { env: { ...of.repoEnv, TZ: 'UTC' } });
  }
  const snapshotsOf = async (safe: string): Promise<string[]> => {
    const r = await t.call('GET', `/api/v1/safes/${safe}/snapshots`, { token: admin() });
    assert.equal(r.status, 200, r.text);
    return (r.body as { id: string; time: string }[]).sort((a, b) => a.time.localeCompare(b.time)).map((x) => x.id);
  };
  const safeOf = async (machine: EnrolledMachine): Promise<string> => {
    const listed = await t.call('GET', '/api/v1/safes', { token: admin() });
    return (listed.body as { id: string; name: string }[]).find((x) => x.name === machine.config['safe'])!.id;
  };
  const jobs = async (): Promise<JobRow[]> => {
    const r = await t.call('GET', `/api/v1/machines/${m.id}/jobs`, { token: admin() });
    assert.equal(r.status, 200, r.text);
    return (r.body as JobRow[]).filter((j) => j.safe_id === safeId);
  };
  /** The slots of the scheduler's jobs of `kind`, oldest first. */
  const slotsOf = async (kind: JobKind): Promise<number[]> => {
    const rows = await db.db.selectFrom('jobs').select('slot_at').where('safe_id', '=', safeId).where('kind', '=', kind).where('created_by', '=', 'server:scheduler').orderBy('slot_at').execute();
    return rows.map((r) => Date.parse(r.slot_at!));
  };
  /** Until no server job of the safe is queued or running. */
  async function serverJobsDone(): Promise<void> {
    for (;;) {
      const busy = (await jobs()).filter((j) => j.runner === 'server' && (j.state === 'queued' || j.state === 'running'));
      if (busy.length === 0) return;
      await sleep(50);
    }
  }
  const machineToken = (of: EnrolledMachine): string => of.config['token'] as string;
  /** The agent's poll, with the machine's token: the job it is given, if any. */
  async function poll(of: EnrolledMachine): Promise<JobRow | undefined> {
    const r = await t.call('GET', '/api/v1/agent/jobs/next', { token: machineToken(of) });
    if (r.status === 204) return undefined;
    assert.equal(r.status, 200, r.text);
    return r.body as JobRow;
  }
  const report = (of: EnrolledMachine, id: string, body: unknown) => t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: machineToken(of), body });

  before(async () => {
    s = await Sandbox.create('holdfast-sched-');
    const url = await fx.newUrl();
    t = await setUp(url, undefined, { clock: () => new Date(clock), scheduler: { tickMs: 0 } });
    db = await openDatabase(url, '');
    session = { token: t.adminToken, at: clock };
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'web1');
    other = await enrolMachine(h, s, 'web2');
    await mkdir(s.path('src'));
    safeId = await safeOf(m);
    const customer = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: admin() })).body.customer_id as string;
    await t.create('/api/v1/policies', {
      customer_id: customer, retention: { every: '6h', keep_last: 2 }, prune: { every: '12h' },
      verify: { every: '8h', read_data_subset_days: 3 }, restore_test: { every: '1d', share: 50, min_files: 1 },
    });
    clock = START;
  });
  after(async () => {
    await db.close();
    await t.stop();
    await s.remove();
  });

  it('runs a day of retention, prunes, verifications and a restore test, each once per slot', { timeout: 300_000 }, async () => {
    const forgets: { job: JobRow; before: string[]; after: string[] }[] = [];
    for (let hour = 0; hour < 24; hour++, clock += HOUR) {
      await freshSession();
      if (hour % 3 === 0) await backup(m);
      const before = await snapshotsOf(safeId);
      const done = new Set((await jobs()).map((j) => j.id));
      if (hour === 0) {
        // A backup of the safe queued: the restore test due now waits for its end, for the same slot.
        const queued = (await t.create(`/api/v1/machines/${m.id}/jobs`, { kind: 'backup', spec: { paths: [s.path('src')] } }, admin())).id as string;
        await t.server.tickScheduler();
        assert.deepEqual(await slotsOf('verify-restore'), [], 'no restore test while a backup is queued');
        assert.equal((await t.call('POST', `/api/v1/jobs/${queued}/cancel`, { token: admin() })).status, 200);
      }
      await t.server.tickScheduler();
      assert.equal((await t.server.tickScheduler()).created, 0, `hour ${hour}: a second tick at the same time makes nothing`);
      await serverJobsDone();
      const mine = await poll(m);
      if (mine) {
        assert.equal(mine.kind, 'verify-restore');
        assert.deepEqual(mine.spec, { share: 50, min_files: 1 });
        const r = await report(m, mine.id, { state: 'succeeded', result: { snapshot: before.at(-1), restorable: true } });
        assert.equal(r.status, 200, r.text);
      }
      const forget = (await jobs()).find((j) => j.kind === 'forget' && !done.has(j.id));
      if (forget) forgets.push({ job: forget, before, after: await snapshotsOf(safeId) });
    }
    const all = await jobs();
    for (const j of all.filter((x) => x.runner === 'server')) assert.equal(j.state, 'succeeded', `${j.kind}: ${j.error ?? ''}`);

    // Once per slot, one period apart.
    for (const [kind, period] of [['forget', 6], ['prune', 12], ['verify', 8], ['verify-restore', 24]] as const) {
      const slots = await slotsOf(kind);
      assert.ok(slots.length >= Math.floor(24 / period) && slots.length <= Math.ceil(24 / period) + 1, `${kind}: ${slots.length} jobs`);
      for (let i = 1; i < slots.length; i++) assert.equal(slots[i]! - slots[i - 1]!, period * HOUR, `${kind}: slots ${slots.map((x) => new Date(x).toISOString()).join(', ')}`);
    }

    // Retention: each job removed what it says, the oldest, and left the 2 newest.
    assert.equal(forgets.length, (await slotsOf('forget')).length);
    for (const { job, before, after } of forgets) {
      assert.deepEqual(after, before.slice(-2));
      assert.deepEqual([...job.result!['removed'] as string[]].sort(), before.slice(0, -2).sort());
      assert.equal(job.result!['kept'], after.length);
      assert.equal(job.result!['removed_count'], before.length - after.length);
    }
    assert.ok(forgets.reduce((n, f) => n + f.before.length - f.after.length, 0) >= 4, 'retention removed snapshots');

    // Prune: ran, and marked the packs the removed snapshots left unused.
    const prunes = all.filter((j) => j.kind === 'prune');
    assert.ok(prunes.some((j) => (j.result!['mark'] as { unused_packs: number }).unused_packs > 0), JSON.stringify(prunes.map((j) => j.result!['mark'])));

    // Verification: the next of 3 slices each run.
    const verifies = all.filter((j) => j.kind === 'verify').reverse();
    assert.deepEqual(verifies.map((j) => j.spec), verifies.map(() => ({ read_data_days: 3 })));
    assert.deepEqual(verifies.map((j) => [j.result!['slice'], j.result!['slices']]), verifies.map((_, i) => [(i % 3) + 1, 3]));

    // The restore tests: one a slot, each taken by the agent and proving the machine restorable.
    const tests = all.filter((j) => j.kind === 'verify-restore');
    assert.equal(tests.length, (await slotsOf('verify-restore')).length);
    assert.ok(tests.every((j) => j.state === 'succeeded'));
    const machine = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: admin() })).body;
    assert.equal(machine.proven_restorable_snapshot, tests[0]!.result!['snapshot']);

    // A verification asked for without read_data_days takes the policy's.
    const asked = await t.call('POST', `/api/v1/safes/${safeId}/verify`, { token: admin(), body: {} });
    assert.equal(asked.status, 202, asked.text);
    assert.deepEqual(asked.body.spec, { read_data_days: 3 });
    await serverJobsDone();
  });

  it('refuses a restore-test result that names another snapshot, a made-up one or another safe\'s, and records nothing', { timeout: 120_000 }, async () => {
    await freshSession();
    await backup(other);
    const theirs = (await snapshotsOf(await safeOf(other))).at(-1)!;
    const [older, newest] = (await snapshotsOf(safeId)).slice(-2) as [string, string];
    const proven = async (): Promise<unknown[]> => {
      const b = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: admin() })).body;
      return [b.proven_restorable_at, b.proven_restorable_snapshot];
    };
    const damagedBefore = (await t.call('GET', `/api/v1/safes/${safeId}`, { token: admin() })).body.damaged_snapshots;

    for (const asked of [older.slice(0, 12), undefined]) {
      const provenBefore = await proven();
      const id = (await t.create(`/api/v1/machines/${m.id}/jobs`, { kind: 'verify-restore', spec: asked === undefined ? {} : { snapshot: asked } }, admin())).id as string;
      assert.equal((await poll(m))?.id, id);
      const lies = [...(asked === undefined ? [] : [newest]), 'ab'.repeat(32), theirs];
      for (const snapshot of lies) {
        for (const body of [{ state: 'succeeded', result: { snapshot, restorable: true } }, { state: 'failed', error: 'it did not restore', result: { snapshot, restorable: false } }]) {
          const r = await report(m, id, body);
          assert.equal(r.status, 400, `${snapshot.slice(0, 8)} (${body.state}): ${r.text}`);
        }
      }
      assert.deepEqual(await proven(), provenBefore, 'proven restorable unchanged');
      assert.deepEqual((await t.call('GET', `/api/v1/safes/${safeId}`, { token: admin() })).body.damaged_snapshots, damagedBefore, 'no snapshot marked damaged');
      assert.equal((await jobs()).find((j) => j.id === id)!.state, 'running', 'the refused report ended nothing');
      // The true answer is taken.
      const r = await report(m, id, { state: 'succeeded', result: { snapshot: asked === undefined ? newest : older, restorable: true } });
      assert.equal(r.status, 200, r.text);
    }
    assert.equal((await t.call('GET', `/api/v1/machines/${m.id}`, { token: admin() })).body.proven_restorable_snapshot, newest);
  });
});

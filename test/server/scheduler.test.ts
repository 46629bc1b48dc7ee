/**
 * The scheduler with the server's injected clock (nothing waits for real
 * minutes): a day of 15-minute schedules for 50 machines of two customers
 * (45 and 5) and two machines with a window across midnight, ticked every
 * 5 minutes of the clock. The agents are simulated in the database (taking
 * an admitted job as the agent's poll does, with a conditional update, and
 * ending it succeeded): what is tested is what the scheduler makes and
 * admits. Checked: one backup per machine and slot, spread by the splay
 * (measured: jobs made per tick), none outside the window, never more than
 * the cap admitted or running, the small customer's jobs admitted in the
 * first round; after 3 hours down, one job per machine, not 12; a backup
 * still running makes the next slot skipped once, and is cancelled past
 * its timeout. A policy set or changed, a machine added, and a machine's
 * own policy removed (its safe back on the customer's), run their first
 * slot after it, not their most recent past one at once; the catch-up
 * after downtime stays.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { databaseSuites } from '../helpers/databases.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase, type ControlPlaneDatabase } from '../../src/server/db/open-database.js';

const MINUTE = 60_000;
const START = Date.parse('2026-06-01T00:00:00Z');
const CAP = 12;

databaseSuites('the scheduler', (fx) => {
  let t: TestServer;
  let db: ControlPlaneDatabase;
  let clock = START;
  const machines: Record<string, string> = {}; // name → id
  const customerOf: Record<string, string> = {};
  let big = '';
  let small = '';
  let night = '';

  /** The simulated agents: every admitted job taken, and ended succeeded unless its machine is `holding`. */
  const agents = async (holding?: string): Promise<void> => {
    const now = new Date(clock).toISOString();
    await db.db.updateTable('jobs').set({ state: 'running', started_at: now, last_report_at: now })
      .where('state', '=', 'queued').where('runner', '=', 'agent').where('admitted_at', 'is not', null).execute();
    let q = db.db.updateTable('jobs').set({ state: 'succeeded', finished_at: now, last_report_at: now }).where('state', '=', 'running').where('runner', '=', 'agent');
    if (holding) q = q.where('machine_id', '!=', holding);
    await q.execute();
  };
  const running = async (): Promise<number> => Number((await db.db.selectFrom('jobs').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'running').executeTakeFirstOrThrow()).n);
  /** Ticks at the clock's time until nothing more is admitted, the agents working in between; the jobs made. */
  const step = async (holding?: string): Promise<number> => {
    let made = 0;
    for (;;) {
      const r = await t.server.tickScheduler();
      made += r.created;
      assert.ok(r.admitted <= CAP, `admitted ${r.admitted}`);
      assert.ok(await running() + r.admitted <= CAP + (holding ? 1 : 0));
      await agents(holding);
      if (r.admitted === 0) return made;
    }
  };
  const backupsOf = async (machine: string) => db.db.selectFrom('jobs').selectAll().where('machine_id', '=', machines[machine]!).where('kind', '=', 'backup').orderBy('created_at').execute();

  before(async () => {
    const url = await fx.newUrl();
    t = await setUp(url, undefined, { clock: () => new Date(clock), scheduler: { tickMs: 0, maxRunning: CAP } });
    db = await openDatabase(url, '');
    big = (await t.create('/api/v1/customers', { name: 'Big' })).id;
    small = (await t.create('/api/v1/customers', { name: 'Small' })).id;
    night = (await t.create('/api/v1/customers', { name: 'Night' })).id;
    for (const [customer, prefix, n] of [[big, 'big', 45], [small, 'small', 5], [night, 'night', 2]] as const) {
      for (let i = 0; i < n; i++) {
        const name = `${prefix}-${i}`;
        const id = (await t.create('/api/v1/machines', { customer_id: customer, name })).id;
        await t.create('/api/v1/safes', { customer_id: customer, machine_id: id, name });
        machines[name] = id;
        customerOf[name] = customer;
      }
    }
    for (const customer of [big, small]) await t.create('/api/v1/policies', { customer_id: customer, schedule: '*/15 * * * *', backup: { paths: ['/srv'] }, timeout: '1h' });
    await t.create('/api/v1/policies', { customer_id: night, schedule: 'every 15m', window: '22:00-06:00', time_zone: 'Europe/Berlin', backup: { paths: ['/srv'] } });
  });
  after(async () => {
    await db.close();
    await t.stop();
  });

  it('runs a day of 15-minute schedules: one job per machine and slot, spread, inside the window, under the cap, fair', { timeout: 120_000 }, async () => {
    // The policies were set at 00:00: their newest slot, 23:45, is the past, not a run.
    assert.equal((await t.server.tickScheduler()).created, 0, 'no slot from before the policies is run at once');
    // By 00:15 every machine's first slot (00:00 plus its splay) has come; the cap admits 12, the small customer's 5 among the first 10.
    clock = START + 15 * MINUTE;
    const first = await t.server.tickScheduler();
    assert.equal(first.created, 52, 'every machine, the night ones too (it is 02:15 in Berlin: their window is open)');
    const admitted = await db.db.selectFrom('jobs').select('customer_id').where('admitted_at', 'is not', null).execute();
    assert.equal(admitted.length, CAP);
    assert.equal(admitted.filter((j) => j.customer_id === small).length, 5, 'the small customer\'s 5 machines are not behind the big one\'s 45');
    await agents();
    await step();
    const perTick: number[] = [];
    for (clock = START + 20 * MINUTE; clock < START + 24 * 60 * MINUTE; clock += 5 * MINUTE) perTick.push(await step());
    // Each machine: one job per 15-minute slot of the day whose run time came by the last tick (23:55).
    for (const name of Object.keys(machines).filter((n) => !n.startsWith('night'))) {
      const jobs = await backupsOf(name);
      assert.ok(jobs.length >= 95 && jobs.length <= 96, `${name}: ${jobs.length} backups`);
      assert.equal(new Set(jobs.map((j) => j.slot_at)).size, jobs.length, `${name}: one job per slot`);
      assert.ok(jobs.every((j) => j.state === 'succeeded'), name);
    }
    // The splay spreads them: without it, 48 machines would start in one tick of each three and none in the others.
    const steady = perTick.slice(3);
    const [min, max] = [Math.min(...steady), Math.max(...steady)];
    assert.ok(min >= 5 && max <= 30, `jobs made per 5-minute tick: min ${min}, max ${max}`);
    process.stdout.write(`# jobs made per 5-minute tick over the day: min ${min}, max ${max}, mean ${(steady.reduce((a, b) => a + b, 0) / steady.length).toFixed(1)}\n`);
    // The window, 22:00-06:00 in Berlin (20:00-04:00 UTC in summer): no job made outside it.
    for (const name of ['night-0', 'night-1']) {
      const jobs = await backupsOf(name);
      assert.ok(jobs.length >= 30, `${name}: ${jobs.length}`);
      for (const j of jobs) {
        const h = new Date(j.created_at).getUTCHours();
        assert.ok(h >= 20 || h < 4, `${name}: a job made at ${j.created_at}`);
      }
    }
  });

  it('catches up once after 3 hours down, records a skip once, and cancels a backup past its timeout', { timeout: 120_000 }, async () => {
    const before = new Map<string, number>();
    for (const name of Object.keys(machines)) before.set(name, (await backupsOf(name)).length);
    clock += 3 * 60 * MINUTE; // 03:00 UTC: the night machines' window is open
    await step('x');
    for (const name of Object.keys(machines)) assert.equal((await backupsOf(name)).length, before.get(name)! + 1, `${name}: one catch-up job`);

    // small-0's next backup keeps running: the following slots are skipped, recorded once.
    const held = machines['small-0']!;
    clock += 15 * MINUTE;
    await step(held);
    for (let i = 0; i < 3; i++) {
      clock += 15 * MINUTE;
      await step(held);
    }
    const jobs = await backupsOf('small-0');
    const skipped = jobs.filter((j) => j.state === 'skipped');
    assert.equal(skipped.length, 1, JSON.stringify(jobs.slice(-5)));
    assert.match(skipped[0]!.error!, /skipped: the previous backup of this disk safe \(job [0-9a-f-]+\) is still running/);
    const runningJob = jobs.find((j) => j.state === 'running')!;
    // An hour after it started (the policy's timeout): cancelled, as job cancel does; its agent stops it at its next report.
    clock = Date.parse(runningJob.started_at!) + 61 * MINUTE;
    const r = await t.server.tickScheduler();
    assert.ok(r.timedOut >= 1);
    const after = await db.db.selectFrom('jobs').selectAll().where('id', '=', runningJob.id).executeTakeFirstOrThrow();
    assert.equal(after.cancelled_by, 'server:scheduler');
    const events = await db.db.selectFrom('job_events').select('message').where('job_id', '=', runningJob.id).execute();
    assert.ok(events.some((e) => /cancelled by server:scheduler \(it ran past its timeout of 3600 s\)/.test(e.message)), JSON.stringify(events));
  });

  it('leaves alone a safe whose saved policy cannot be used, not every other customer\'s jobs', { timeout: 120_000 }, async () => {
    // A policy saved before its rule existed (no API takes it now): the big customer's prune period past Date's range, its first safes made first.
    const policy = await db.db.selectFrom('policies').selectAll().where('target', '=', `customer:${big}`).executeTakeFirstOrThrow();
    const broken = { ...JSON.parse(policy.settings) as Record<string, unknown>, prune: { every: '99999999999999999999h' } };
    await db.db.updateTable('policies').set({ settings: JSON.stringify(broken) }).where('id', '=', policy.id).execute();
    const others = ['big-44', 'small-1', 'small-4'];
    const before = new Map<string, number>();
    for (const name of others) before.set(name, (await backupsOf(name)).length);
    clock = Date.parse('2026-06-02T12:00:00Z');
    await step();
    for (const name of others) assert.equal((await backupsOf(name)).length, before.get(name)! + 1, `${name} is backed up on its schedule`);
  });

  it('runs a policy set or changed, a machine added and a policy removed at its first slot after, not its last past one at once; catches up after downtime', { timeout: 120_000 }, async () => {
    const at = (iso: string): number => (clock = Date.parse(iso));
    at('2026-06-03T14:00:00Z');
    // Sessions expire by the server's clock, which moves by days here: a new one for each change.
    const admin = (): Promise<string> => t.login(t.server.firstAdmin!.name, ADMIN_PASSWORD);
    const customer = (await t.create('/api/v1/customers', { name: 'Newcomer' }, await admin())).id as string;
    const addMachine = async (name: string): Promise<void> => {
      const token = await admin();
      machines[name] = (await t.create('/api/v1/machines', { customer_id: customer, name }, token)).id;
      await t.create('/api/v1/safes', { customer_id: customer, machine_id: machines[name], name }, token);
    };
    const slots = async (name: string): Promise<string[]> => (await backupsOf(name)).map((j) => j.slot_at!);
    await addMachine('new-0');
    // 14:00: every day at 02:00. Today's 02:00 is the past: nothing starts now, nor this afternoon.
    const policy = (await t.create('/api/v1/policies', { customer_id: customer, schedule: '0 2 * * *', backup: { paths: ['/srv'] } }, await admin())).id as string;
    await step();
    at('2026-06-03T14:30:00Z');
    await step();
    assert.deepEqual(await slots('new-0'), [], 'no backup at once');
    // Its first slot: 02:00 the next night (plus a splay of at most an hour).
    at('2026-06-04T03:05:00Z');
    await step();
    assert.deepEqual(await slots('new-0'), ['2026-06-04T02:00:00.000Z']);

    // 14:00: changed to 09:00. Today's 09:00 is the past.
    at('2026-06-04T14:00:00Z');
    const changed = await t.call('PUT', `/api/v1/policies/${policy}`, { token: await admin(), body: { schedule: '0 9 * * *', backup: { paths: ['/srv'] } } });
    assert.equal(changed.status, 200, changed.text);
    await step();
    at('2026-06-04T14:30:00Z');
    await step();
    assert.deepEqual(await slots('new-0'), ['2026-06-04T02:00:00.000Z'], 'no backup at once after the change');

    // The server is down from 08:00 to 12:00 the next day, across 09:00: one catch-up run when it is back.
    at('2026-06-05T12:00:00Z');
    await step();
    assert.deepEqual(await slots('new-0'), ['2026-06-04T02:00:00.000Z', '2026-06-05T09:00:00.000Z'], 'the slot missed while down is run once');

    // A machine added at 14:00 under the policy: not backed up at once; at its first 09:00.
    at('2026-06-05T14:00:00Z');
    await addMachine('new-1');
    await step();
    assert.deepEqual(await slots('new-1'), []);
    at('2026-06-06T10:05:00Z');
    await step();
    assert.deepEqual(await slots('new-1'), ['2026-06-06T09:00:00.000Z']);
    assert.equal((await slots('new-0')).at(-1), '2026-06-06T09:00:00.000Z');

    // new-1 gets a policy of its own (20:00), runs its first slot, and at 13:00 the next day the policy is removed:
    // the customer's 09:00 of that morning is the past, so it does not start at once; the next morning's does.
    at('2026-06-06T12:00:00Z');
    const own = (await t.create('/api/v1/policies', { customer_id: customer, machine_id: machines['new-1'], schedule: '0 20 * * *', backup: { paths: ['/srv'] } }, await admin())).id as string;
    at('2026-06-07T12:00:00Z');
    await step();
    assert.deepEqual(await slots('new-1'), ['2026-06-06T09:00:00.000Z', '2026-06-06T20:00:00.000Z']);
    at('2026-06-07T13:00:00Z');
    const removed = await t.call('DELETE', `/api/v1/policies/${own}`, { token: await admin() });
    assert.equal(removed.status, 204, removed.text);
    await step();
    at('2026-06-07T13:30:00Z');
    await step();
    assert.deepEqual(await slots('new-1'), ['2026-06-06T09:00:00.000Z', '2026-06-06T20:00:00.000Z'], 'no backup at once after the removal');
    at('2026-06-08T10:05:00Z');
    await step();
    assert.equal((await slots('new-1')).at(-1), '2026-06-08T09:00:00.000Z');
  });
});

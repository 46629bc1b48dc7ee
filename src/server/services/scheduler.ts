/**
 * The scheduler: a loop on every server node that, at each tick of the
 * server's clock, makes the jobs the policies say are due and lets them
 * start as capacity allows. Every step is safe on several nodes at once
 * (each is a conditional write in the database):
 *
 *   due       per disk safe, its effective policy (policies.ts): the newest
 *             slot of its backup schedule whose run time (splay, window:
 *             schedule.ts) has come; one job per safe, kind and slot (the
 *             unique `slot_at`: a second tick's insert does nothing), so a
 *             server down for hours runs each safe once, not once per slot;
 *             and only a slot whose run time came after the safe's schedule
 *             came into effect (the newest of its policies' last changes,
 *             its machine's and its own creation): a policy set at 14:00
 *             to back up at 02:00 first runs the next night, not at once
 *   kinds     agent jobs for the machine's first safe while the machine is
 *             live: `backup` on `schedule`, `verify-restore` every
 *             `restore_test.every` (made once the safe has a snapshot and
 *             while no backup of it is queued or running: postponed to a
 *             later tick, not skipped); server jobs for every safe, each
 *             every its `every` in the window, spread by the safe (none made
 *             while one of its kind and safe is queued or running):
 *             `forget` (retention, default daily), `prune`, `verify` (the
 *             next of `read_data_subset_days` slices)
 *   skipped   a backup due while the safe's previous one is still queued or
 *             running is not made; the first such slot is recorded as a job
 *             `skipped`, naming the one it waits for (once per blocking job)
 *   admitted  scheduled jobs wait `queued` without `admitted_at`; each tick
 *             admits as many as the cap leaves room for, in the fair order
 *             (fairQueue: round-robin across customers); an agent takes only
 *             admitted jobs
 *   timeout   a running scheduled job past its `timeout_seconds` is
 *             cancelled as `job cancel` cancels it
 */
import { randomUUID } from 'node:crypto';
import { BACKUP_JOB_KINDS, DEFAULT_JOB_EXPIRES_IN } from '../../api/v1.js';
import type { Job, NewJob, Policy } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { stopRunningJob } from './jobs.js';
import { DEFAULT_RETENTION_EVERY, DEFAULT_TIMEOUT, durationMs, resolve, type EffectivePolicy } from './policies.js';
import { dueSlot, parseSchedule, splayFor, type Timing } from './schedule.js';

/** How the scheduler runs. */
export interface SchedulerOptions {
  /** Real milliseconds between two ticks (default 30 s); 0: no loop (tests call tick()). */
  readonly tickMs?: number;
  /** The most jobs running (or admitted and about to be taken) at once on the server, all nodes together (default 16). */
  readonly maxRunning?: number;
}

export const DEFAULT_TICK_MS = 30_000;
export const DEFAULT_MAX_RUNNING = 16;
/** An admitted agent job its agent has not taken this long after (the machine is offline) stops holding a place under the cap. */
const ADMITTED_HOLDS_MS = 120_000;

/** What one tick did. */
export interface TickReport {
  created: number;
  skipped: number;
  admitted: number;
  timedOut: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * The safes with their machine and the policies that apply to them, resolved at `now`, and since when
 * (ms): the newest of those policies' last changes, the last removal of one that applied, the machine's and the safe's creation.
 */
async function effectivePolicies(ctx: ServiceContext, now: number): Promise<{ eff: EffectivePolicy; firstOfMachine: boolean; since: number }[]> {
  const safes = await ctx.db.selectFrom('disk_safes').leftJoin('machines', 'machines.id', 'disk_safes.machine_id')
    .select(['disk_safes.id', 'disk_safes.customer_id', 'disk_safes.machine_id', 'disk_safes.created_at', 'disk_safes.name', 'disk_safes.policy_removed_at', 'machines.retired_at', 'machines.created_at as machine_created_at'])
    .where('disk_safes.deleting_at', 'is', null).orderBy('disk_safes.created_at').orderBy('disk_safes.name').execute();
  const policies = new Map<string, Policy>((await ctx.db.selectFrom('policies').selectAll().execute()).map((p) => [p.target, p]));
  const seenMachine = new Set<string>();
  const out: { eff: EffectivePolicy; firstOfMachine: boolean; since: number }[] = [];
  for (const s of safes) {
    const machineId = s.machine_id !== null && s.retired_at === null ? s.machine_id : null;
    const firstOfMachine = machineId !== null && !seenMachine.has(machineId);
    if (machineId) seenMachine.add(machineId);
    try {
      const chain = { customer: policies.get(`customer:${s.customer_id}`), machine: machineId ? policies.get(`machine:${machineId}`) : undefined, safe: policies.get(`safe:${s.id}`) };
      const eff = resolve(chain, { customerId: s.customer_id, machineId, safeId: s.id }, now);
      const changes = [s.created_at, s.machine_created_at, s.policy_removed_at, chain.customer?.updated_at, chain.machine?.updated_at, chain.safe?.updated_at];
      out.push({ eff, firstOfMachine, since: Math.max(...changes.map((at) => (at ? Date.parse(at) : -Infinity))) });
    } catch {
      // A policy saved before a rule it breaks existed: the safe is left alone rather than the whole tick.
    }
  }
  return out;
}

/** The timing of a server job that runs `every` (`1d`) within the policy's window, spread by the safe. */
function everyTiming(eff: EffectivePolicy, every: string, now: number): Timing {
  const timeZone = eff.settings.time_zone ?? 'UTC';
  const schedule = parseSchedule(`every ${every}`, timeZone);
  const window = eff.timing?.window ?? null;
  return { schedule, window, timeZone, splayMs: splayFor(`${eff.safeId}`, schedule, window, now, false) };
}

/** Inserts `row` unless its safe, kind and slot has a job already; whether it did. */
async function insertOnce(ctx: ServiceContext, row: NewJob): Promise<boolean> {
  const r = await ctx.db.insertInto('jobs').values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
  return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
}

function jobRow(eff: EffectivePolicy, kind: NewJob['kind'], runner: 'agent' | 'server', spec: unknown, slot: number, now: number): NewJob {
  return {
    id: randomUUID(), customer_id: eff.customerId, machine_id: eff.machineId, safe_id: eff.safeId!, runner, runner_node: null, kind, spec: JSON.stringify(spec),
    state: 'queued', created_by: 'server:scheduler', created_at: iso(now), started_at: null, last_report_at: null, finished_at: null, result: null, error: null,
    expires_at: runner === 'agent' ? iso(now + DEFAULT_JOB_EXPIRES_IN * 1000) : null, cancelled_by: null, lease_until: null,
    slot_at: iso(slot), admitted_at: null, timeout_seconds: Math.round(durationMs(eff.settings.timeout ?? DEFAULT_TIMEOUT) / 1000),
  };
}

/**
 * Whether a scheduled restore test of safe `safeId` may be made now: the
 * safe has a snapshot (in its index; one never indexed is given the
 * benefit of the doubt), and no restore test and no backup of it is queued
 * or running (the test would race the backup for the machine and test the
 * snapshot before the one being made). Not made now, it is made by the
 * first tick after, for the same slot: postponed, not skipped.
 */
async function restoreTestCanStart(ctx: ServiceContext, safeId: string): Promise<boolean> {
  const busy = await ctx.db.selectFrom('jobs').select('id').where('safe_id', '=', safeId).where('kind', 'in', [...BACKUP_JOB_KINDS, 'verify-restore'])
    .where('state', 'in', ['queued', 'running']).limit(1).executeTakeFirst();
  if (busy) return false;
  const safe = await ctx.db.selectFrom('disk_safes').select('snapshots_indexed_at').where('id', '=', safeId).executeTakeFirstOrThrow();
  if (safe.snapshots_indexed_at === null) return true;
  return (await ctx.db.selectFrom('snapshot_index').select('id').where('safe_id', '=', safeId).limit(1).executeTakeFirst()) !== undefined;
}

/** A safe's blocking backup: its oldest queued or running one, and whether a skip naming it was recorded already. */
interface Blocker {
  readonly id: string;
  readonly state: string;
  readonly createdAt: string;
  skipRecorded: boolean;
}

/**
 * Every safe's blocking backup (Blocker), in one query: each queued or
 * running backup with the skipped backups of its safe made since it was
 * (a skip naming it can only come after it), so that a tick with many
 * blocked safes asks once, not twice a safe.
 */
async function blockers(ctx: ServiceContext): Promise<Map<string, Blocker>> {
  const rows = await ctx.db.selectFrom('jobs as b')
    .leftJoin('jobs as s', (join) => join.onRef('s.safe_id', '=', 'b.safe_id').on('s.kind', '=', 'backup').on('s.state', '=', 'skipped').onRef('s.created_at', '>=', 'b.created_at'))
    .select(['b.safe_id', 'b.id', 'b.state', 'b.created_at', 's.result'])
    .where('b.kind', 'in', BACKUP_JOB_KINDS).where('b.state', 'in', ['queued', 'running']).execute();
  const out = new Map<string, Blocker>();
  for (const r of rows) {
    const known = out.get(r.safe_id);
    if (known === undefined || r.created_at < known.createdAt || (r.created_at === known.createdAt && r.id < known.id)) {
      out.set(r.safe_id, { id: r.id, state: r.state, createdAt: r.created_at, skipRecorded: false });
    }
  }
  for (const r of rows) {
    const b = out.get(r.safe_id)!;
    if (r.id === b.id && r.result !== null && (JSON.parse(r.result) as { blocked_by?: string }).blocked_by === b.id) b.skipRecorded = true;
  }
  return out;
}

/** Makes the jobs due at `now` (see the module comment); returns how many it made and skipped. */
export async function createDueJobs(ctx: ServiceContext, now: number): Promise<{ created: number; skipped: number }> {
  let created = 0;
  let skipped = 0;
  // The slots of the last days that have their job: most ticks find each safe's due slot among them and write nothing.
  const made = new Set((await ctx.db.selectFrom('jobs').select(['safe_id', 'kind', 'slot_at']).where('slot_at', '>=', iso(now - 2 * 86_400_000)).execute())
    .map((j) => `${j.safe_id} ${j.kind} ${j.slot_at}`));
  const has = (eff: EffectivePolicy, kind: string, slot: number): boolean => made.has(`${eff.safeId} ${kind} ${iso(slot)}`);
  // Read on the first backup due this tick; a backup made or skipped here blocks nothing else this tick (one a safe).
  let blocking: Map<string, Blocker> | undefined;
  for (const { eff, firstOfMachine, since } of await effectivePolicies(ctx, now)) {
    // One safe whose policy cannot be used (saved before a rule it breaks existed) is left alone, not the whole tick: every other customer's jobs are made.
    try {
      const s = eff.settings;
      // Backups: the machine's first safe (where "run now" backs up), while the machine is live.
      if (eff.timing && s.backup && firstOfMachine) {
        const slot = dueSlot(eff.timing, now, since);
        if (slot !== null && !has(eff, 'backup', slot)) {
          blocking ??= await blockers(ctx);
          const blocker = blocking.get(eff.safeId!);
          if (!blocker) {
            if (await insertOnce(ctx, jobRow(eff, 'backup', 'agent', s.backup, slot, now))) created++;
          } else if (!blocker.skipRecorded) {
            const row: NewJob = {
              ...jobRow(eff, 'backup', 'agent', s.backup, slot, now), state: 'skipped', finished_at: iso(now), expires_at: null,
              result: JSON.stringify({ blocked_by: blocker.id }), error: `skipped: the previous backup of this disk safe (job ${blocker.id}) is still ${blocker.state}`,
            };
            if (await insertOnce(ctx, row)) skipped++;
          }
        }
      }
      // Restore tests, by the machine's agent as its backups, once the safe has a snapshot to test and no backup of it is queued or running.
      if (s.restore_test && firstOfMachine) {
        const slot = dueSlot(everyTiming(eff, s.restore_test.every, now), now, since);
        if (slot !== null && !has(eff, 'verify-restore', slot) && await restoreTestCanStart(ctx, eff.safeId!)) {
          const { every: _every, ...spec } = s.restore_test;
          if (await insertOnce(ctx, jobRow(eff, 'verify-restore', 'agent', spec, slot, now))) created++;
        }
      }
      // The server's own jobs on the safe, each on its period.
      const server: [NewJob['kind'], string | undefined, unknown][] = [
        ['forget', s.retention && (s.retention.every ?? DEFAULT_RETENTION_EVERY), s.retention && (({ every: _e, ...rules }) => rules)(s.retention)],
        ['prune', s.prune?.every, s.prune && (({ every: _e, ...rest }) => rest)(s.prune)],
        ['verify', s.verify?.every, s.verify && { read_data_days: s.verify.read_data_subset_days }],
      ];
      for (const [kind, every, spec] of server) {
        if (every === undefined || !ctx.serverJobs.knows(kind)) continue;
        const slot = dueSlot(everyTiming(eff, every, now), now, since);
        if (slot === null || has(eff, kind, slot)) continue;
        const busy = await ctx.db.selectFrom('jobs').select('id').where('safe_id', '=', eff.safeId!).where('kind', '=', kind).where('state', 'in', ['queued', 'running']).limit(1).executeTakeFirst();
        if (!busy && await insertOnce(ctx, jobRow(eff, kind, 'server', spec, slot, now))) created++;
      }
    } catch {
      // Left alone: see above.
    }
  }
  return { created, skipped };
}

/**
 * The fair queue: up to `limit` scheduled jobs waiting for admission, in
 * the order they should start: each customer's oldest first, taking one
 * of each customer in turn (a customer's n-th job after every customer's
 * (n-1)-th), so that one customer's 500 machines do not starve another's 5.
 */
export async function fairQueue(ctx: ServiceContext, limit: number): Promise<Job[]> {
  if (limit <= 0) return [];
  const ranked = ctx.db.selectFrom('jobs').selectAll()
    .select((eb) => eb.fn.agg<number>('row_number').over((ob) => ob.partitionBy('customer_id').orderBy('created_at').orderBy('id')).as('turn'))
    .where('state', '=', 'queued').where('admitted_at', 'is', null).as('waiting');
  const rows = await ctx.db.selectFrom(ranked).selectAll().orderBy('turn').orderBy('created_at').orderBy('customer_id').limit(limit).execute();
  return rows.map(({ turn: _turn, ...job }) => job as Job);
}

/** How many jobs hold a place under the cap at `now`: running, or admitted and not yet taken (for a while). */
async function placesTaken(ctx: ServiceContext, now: number): Promise<number> {
  const r = await ctx.db.selectFrom('jobs').select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where((eb) => eb.or([eb('state', '=', 'running'), eb.and([eb('state', '=', 'queued'), eb('admitted_at', '>=', iso(now - ADMITTED_HOLDS_MS))])]))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Admits waiting jobs in the fair order while the cap has room; returns how many. */
export async function admitJobs(ctx: ServiceContext, now: number, maxRunning: number): Promise<number> {
  let admitted = 0;
  for (const j of await fairQueue(ctx, maxRunning - await placesTaken(ctx, now))) {
    const r = await ctx.db.updateTable('jobs').set({ admitted_at: iso(now) }).where('id', '=', j.id).where('admitted_at', 'is', null).where('state', '=', 'queued').executeTakeFirst();
    if (r.numUpdatedRows === 0n) continue;
    admitted++;
    if (j.runner === 'agent' && j.machine_id !== null) ctx.jobSignals.notify(j.machine_id);
  }
  if (admitted > 0) ctx.serverJobs.poke();
  return admitted;
}

/** Cancels the running jobs past their timeout, as `job cancel` does; returns how many. */
export async function cancelTimedOut(ctx: ServiceContext, now: number): Promise<number> {
  const running = await ctx.db.selectFrom('jobs').selectAll().where('state', '=', 'running').where('timeout_seconds', 'is not', null).where('cancelled_by', 'is', null).execute();
  let n = 0;
  for (const j of running) {
    if (j.started_at === null || Date.parse(j.started_at) + j.timeout_seconds! * 1000 > now) continue;
    await stopRunningJob(ctx, j, 'server:scheduler', `it ran past its timeout of ${j.timeout_seconds!} s`);
    n++;
  }
  return n;
}

/** The loop of one server node. */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<TickReport> | undefined;
  private readonly maxRunning: number;

  constructor(private readonly ctx: ServiceContext, private readonly opts: SchedulerOptions = {}) {
    this.maxRunning = opts.maxRunning ?? DEFAULT_MAX_RUNNING;
  }

  /** Starts ticking every `tickMs` (none when 0). */
  start(): void {
    const every = this.opts.tickMs ?? DEFAULT_TICK_MS;
    if (every > 0) this.timer = setInterval(() => void this.tick().catch(() => undefined), every);
  }

  /** One tick at the server's clock's now: due jobs made, timed-out ones cancelled, waiting ones admitted. One at a time. */
  tick(): Promise<TickReport> {
    this.ticking ??= (async () => {
      const started = performance.now();
      const now = this.ctx.now().getTime();
      const { created, skipped } = await createDueJobs(this.ctx, now);
      const timedOut = await cancelTimedOut(this.ctx, now);
      const admitted = await admitJobs(this.ctx, now, this.maxRunning);
      // Its own time, not the injected clock's: what a tick costs the node (holdfast_scheduler_tick_seconds).
      this.ctx.metrics.tickEnded((performance.now() - started) / 1000);
      return { created, skipped, admitted, timedOut };
    })().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /** Stops the loop and waits for a tick under way; idempotent. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking?.catch(() => undefined);
  }
}

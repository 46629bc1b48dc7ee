/**
 * The jobs the server runs itself (a prune of a disk safe), recorded in the
 * jobs table beside the agents' jobs so that a caller follows them the same
 * way (GET /api/v1/jobs/ID and its events). Several server nodes may share
 * the database: a job is queued by whichever node was asked, and run by
 * exactly one node at a time, which holds a lease on it.
 *
 *   enqueue: the row is inserted `queued` (runner `server`, no node)
 *   claim:   a node's loop (every `pollMs`, and at once when it queued one
 *            itself) takes the oldest queued job, or a running one whose
 *            lease ran out (its node died): in one transaction, the row
 *            locked with FOR UPDATE SKIP LOCKED on PostgreSQL (two nodes
 *            never take the same row; SQLite serialises its writers and the
 *            update is conditional on the row being unchanged); the job
 *            becomes `running` with runner_node this node, lease_until
 *            now + `leaseMs`, attempts + 1
 *   while it works: every `leaseMs / 4` the node renews the lease, if the
 *            job is still its own: a node that lost it (it stalled past the
 *            lease and another node took the job over) stops its work and
 *            records nothing; a cancel recorded by any node (cancelled_by)
 *            aborts the work; its log lines become events
 *   end:     `succeeded` with the work's result, or `failed` with its
 *            message; `cancelled` when someone cancelled it; recorded only
 *            while the job is still this node's (so a job completes once)
 *   a node that stops (close) puts its running jobs back in the queue for
 *            any node; one that was killed does so when it starts again
 *            (`releaseOwn`), or another node takes them over once their
 *            lease has run out: a job's work must therefore be safe to run
 *            again after a kill part-way (prune is: docs/decisions.md,
 *            "Several server nodes")
 *
 * The work of each kind is made from the job's row (`ServerWorkOf`), so that
 * any node can run any job.
 */
import { listLocks, onThisMachine, processAlive } from '../../repo/lock.js';
import { NotFoundError } from '../../storage/backend.js';
import type { Job, NewJob } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { jobFailed, raiseEvent } from './notifications.js';
import { workingBackendOf } from './safe-storage.js';

/** What a server job's work can say while it runs. */
export interface JobLog {
  /** Records a log line (an event of kind `log`). */
  log(message: string, data?: Record<string, unknown>): Promise<void>;
}

/** The work of a server job: resolves with its result, rejects with why it failed; stops when `signal` aborts. */
export type ServerWork = (log: JobLog, signal: AbortSignal) => Promise<Record<string, unknown>>;

/** Makes the work of a server job of one kind from its row (its spec and safe), on whichever node claimed it. */
export type ServerWorkOf = (ctx: ServiceContext, job: Job) => ServerWork;

/** A server job's work ran to its end and found what fails it (a verification that found damage): the job fails with this message and keeps its result. */
export class ServerJobFailedError extends Error {
  constructor(message: string, readonly result: Record<string, unknown>) {
    super(message);
    this.name = 'ServerJobFailedError';
  }
}

/** How a node runs server jobs. */
export interface ServerJobsOptions {
  /** How long a claim holds without renewal (milliseconds; default 60 s): a dead node's jobs are taken over after this. */
  readonly leaseMs?: number;
  /** How often a node looks for queued jobs and expired leases (milliseconds; default 2 s). */
  readonly pollMs?: number;
  /** How many server jobs one node runs at once (default 4). */
  readonly concurrency?: number;
}

export const DEFAULT_JOB_LEASE_MS = 60_000;
const DEFAULT_POLL_MS = 2000;
const DEFAULT_CONCURRENCY = 4;

/** The error of a job that a node put back in the queue because it was stopped while the job ran. */
const REQUEUED_CLOSED = 'the server node running this job was stopped; the job is queued again and starts from the beginning on the next node that takes it';

/** The event of a job that its node, killed while it ran, put back in the queue when it started again. */
const REQUEUED_RESTARTED = 'the server node running this job was stopped without ending it (killed, or its machine went down) and has started again; the job is queued again and starts from the beginning';

/** The reason a cancelled server job's work is aborted with: its message is the job's error. */
class JobCancelledError extends Error {
  constructor(by: string) {
    super(`cancelled by ${by} while it ran`);
    this.name = 'JobCancelledError';
  }
}

/** The reason a job's work is aborted when its node is stopping: the job goes back to the queue. */
class NodeClosingError extends Error {
  constructor() {
    super(REQUEUED_CLOSED);
    this.name = 'NodeClosingError';
  }
}

/** The reason a job's work is aborted when its lease was lost (another node took it over): nothing is recorded. */
class LeaseLostError extends Error {
  constructor() {
    super('the job\'s lease ran out and another server node took it over');
    this.name = 'LeaseLostError';
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class ServerJobs {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly concurrency: number;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private again = false;
  private ctx: ServiceContext | undefined;

  /** `kinds`: the work of each server job kind. */
  constructor(private readonly kinds: Readonly<Record<string, ServerWorkOf>>, opts: ServerJobsOptions = {}) {
    this.leaseMs = opts.leaseMs ?? DEFAULT_JOB_LEASE_MS;
    this.pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  }

  /**
   * Queues server job `row` (any state given is replaced by `queued`) for
   * the first node that claims it, this one at once if it has room. Asked
   * for now (by a user or by the server), it is admitted as it is queued:
   * only the scheduler's jobs wait for the fair queue (scheduler.ts).
   */
  async enqueue(ctx: ServiceContext, row: NewJob): Promise<Job> {
    if (this.closed) throw new Error('the server is closing: no job starts');
    const queued = {
      ...row, runner: 'server' as const, state: 'queued' as const, runner_node: null, started_at: null, last_report_at: null, lease_until: null, finished_at: null,
      admitted_at: row.admitted_at ?? ctx.now().toISOString(),
    };
    await ctx.db.insertInto('jobs').values(queued).execute();
    this.kick();
    return { attempts: 0, ...queued } as Job;
  }

  /** Starts this node's loop: it claims and runs server jobs until `close`. */
  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    this.timer = setInterval(() => this.kick(), this.pollMs);
    this.kick();
  }

  /** Looks for jobs to claim now (again once the look under way ends, if one is). */
  /** Whether this node knows how to run server jobs of `kind`. */
  knows(kind: string): boolean {
    return kind in this.kinds;
  }

  /** Looks for jobs to claim now (the scheduler admitted some). */
  poke(): void {
    this.kick();
  }

  private kick(): void {
    if (this.closed || this.ctx === undefined) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    const ctx = this.ctx;
    this.claiming = (async () => {
      do {
        this.again = false;
        while (!this.closed && this.running.size < this.concurrency) {
          const job = await this.claimOne(ctx);
          if (!job) break;
          this.run(ctx, job);
        }
      } while (this.again && !this.closed);
    })().catch(() => undefined).finally(() => { // the database is away for now: the next tick tries again
      this.claiming = undefined;
    });
  }

  /**
   * Claims one job: the oldest queued one (whose `lease_until`, on a queued
   * job the time before which it waits, has passed), or a running one of
   * another node whose lease ran out. Undefined when there is none.
   */
  private async claimOne(ctx: ServiceContext): Promise<Job | undefined> {
    const now = ctx.now().getTime();
    const claimed = await ctx.db.transaction().execute(async (trx) => {
      let q = trx.selectFrom('jobs').selectAll().where('runner', '=', 'server')
        .where((eb) => eb.or([
          eb.and([eb('state', '=', 'queued'), eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', iso(now))])]),
          eb.and([eb('state', '=', 'running'), eb.or([eb('runner_node', 'is', null), eb('runner_node', '!=', ctx.node)]),
            eb.or([eb('lease_until', '<', iso(now)), eb.and([eb('lease_until', 'is', null), eb('last_report_at', '<', iso(now - this.leaseMs))])])]),
        ]))
        // One server job of a safe at a time (each takes the safe's maintenance lock): a job waits while another of its safe runs under a live lease.
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('jobs as other').select('other.id')
          .whereRef('other.safe_id', '=', 'jobs.safe_id').whereRef('other.id', '!=', 'jobs.id')
          .where('other.runner', '=', 'server').where('other.state', '=', 'running')
          .where((eb) => eb.or([eb('other.lease_until', '>=', iso(now)), eb.and([eb('other.lease_until', 'is', null), eb('other.last_report_at', '>=', iso(now - this.leaseMs))])])))))
        // A scheduled job starts once the fair queue admitted it (scheduler.ts).
        .where('admitted_at', 'is not', null)
        .orderBy('created_at').orderBy('id').limit(1);
      if (ctx.dbKind === 'postgres') q = q.forUpdate().skipLocked();
      const j = await q.executeTakeFirst();
      if (!j) return undefined;
      const fields = { state: 'running' as const, runner_node: ctx.node, lease_until: iso(now + this.leaseMs), started_at: j.started_at ?? iso(now), last_report_at: iso(now), attempts: j.attempts + 1 };
      // On SQLite the row may have changed since it was read (another process's write): the update takes it only unchanged.
      const won = await trx.updateTable('jobs').set(fields).where('id', '=', j.id).where('state', '=', j.state)
        .where((eb) => (j.runner_node === null ? eb('runner_node', 'is', null) : eb('runner_node', '=', j.runner_node)))
        .where('attempts', '=', j.attempts).executeTakeFirst();
      if (won.numUpdatedRows === 0n) return undefined;
      const message = j.state === 'running'
        ? `server node ${ctx.node} took the job over: the lease of node ${j.runner_node ?? '(unrecorded)'} ran out (it stopped or lost the database); the job starts again from the beginning`
        : `server node ${ctx.node} took the job${j.attempts > 0 ? ` (attempt ${j.attempts + 1})` : ''}`;
      await trx.insertInto('job_events').values({ job_id: j.id, at: iso(now), kind: 'log', message, data: null }).execute();
      return { ...j, ...fields };
    });
    return claimed;
  }

  /** Runs claimed job `job` in the background. */
  private run(ctx: ServiceContext, job: Job): void {
    const abort = new AbortController();
    const mine = () => ctx.db.updateTable('jobs').where('id', '=', job.id).where('state', '=', 'running').where('runner_node', '=', ctx.node);
    const renew = async (): Promise<void> => {
      const now = ctx.now().getTime();
      const r = await mine().set({ lease_until: iso(now + this.leaseMs), last_report_at: iso(now) }).returning('cancelled_by').executeTakeFirst();
      if (r === undefined) abort.abort(new LeaseLostError());
      else if (r.cancelled_by !== null) abort.abort(new JobCancelledError(r.cancelled_by));
    };
    const log: JobLog = {
      log: async (message, data) => {
        await ctx.db.insertInto('job_events').values({ job_id: job.id, at: ctx.now().toISOString(), kind: 'log', message, data: data === undefined ? null : JSON.stringify(data) }).execute();
      },
    };
    const timer = setInterval(() => void renew().catch(() => undefined), Math.max(50, Math.floor(this.leaseMs / 4)));
    const end = async (fields: Partial<Pick<Job, 'state' | 'result' | 'error' | 'runner_node' | 'started_at' | 'last_report_at' | 'finished_at'>>): Promise<void> => {
      const now = ctx.now().toISOString();
      await ctx.db.transaction().execute(async (trx) => {
        const done = await trx.updateTable('jobs').where('id', '=', job.id).where('state', '=', 'running').where('runner_node', '=', ctx.node)
          .set({ finished_at: now, last_report_at: now, ...fields, lease_until: null }).executeTakeFirst();
        if (done.numUpdatedRows === 0n || fields.state === undefined) return;
        if (fields.state === 'failed') await raiseEvent(ctx, jobFailed(job, fields.error ?? 'no reason given'), trx);
        ctx.metrics.jobEnded({ ...job, ...fields }, fields.state, fields.finished_at ?? now, typeof fields.result === 'string' ? JSON.parse(fields.result) as Record<string, unknown> : null);
      });
      ctx.notifier.kick();
    };
    const done = (async () => {
      try {
        const make = this.kinds[job.kind];
        if (make === undefined) throw new Error(`this server does not know how to run a ${job.kind} job (a newer server node queued it?)`);
        // A job begun before (its node died): the locks that node's process left on this machine would hold it back for minutes.
        if (job.attempts > 1) await removeDeadLocksOfSafe(ctx, job.safe_id).catch(() => undefined);
        const result = await make(ctx, job)(log, abort.signal);
        await end({ state: 'succeeded', result: JSON.stringify(result), error: null });
      } catch (e) {
        const reason: unknown = abort.signal.reason;
        if (!abort.signal.aborted) await end({ state: 'failed', result: e instanceof ServerJobFailedError ? JSON.stringify(e.result) : null, error: e instanceof Error ? e.message : String(e) });
        else if (reason instanceof JobCancelledError) await end({ state: 'cancelled', result: null, error: reason.message });
        else if (reason instanceof NodeClosingError) {
          await end({ state: 'queued', result: null, error: null, runner_node: null, started_at: null, last_report_at: null, finished_at: null });
          await log.log(REQUEUED_CLOSED);
        }
        // A lost lease: the job is another node's now, and this one records nothing.
      } finally {
        clearInterval(timer);
        this.running.delete(job.id);
        this.kick();
      }
    })().catch(() => undefined); // the database went away first: the lease runs out, and another node (or this one) takes the job over
    this.running.set(job.id, { abort, done });
  }

  /**
   * Stops running job `id` because `by` cancelled it (the caller recorded
   * cancelled_by): its work is aborted, and the job ends `cancelled` once
   * the work has stopped. A job another node runs learns it when that node
   * renews its lease; one that no node holds any more (its lease ran out)
   * ends cancelled at once.
   */
  async cancel(ctx: ServiceContext, id: string, by: string): Promise<void> {
    const here = this.running.get(id);
    if (here) {
      here.abort.abort(new JobCancelledError(by));
      return;
    }
    const now = ctx.now().toISOString();
    await ctx.db.updateTable('jobs').set({ state: 'cancelled', finished_at: now, last_report_at: now, lease_until: null, error: `${new JobCancelledError(by).message}; no server node was running it any more` })
      .where('id', '=', id).where('state', '=', 'running').where('lease_until', '<', now).execute();
  }

  /**
   * At the node's start, before it serves: puts the jobs this node was
   * running when it died (runner_node this node's, or none: a job from
   * before nodes were recorded) back in the queue, not another node's (that
   * node renews their leases, or they run out). Then removes, from each of
   * their safes, the lock objects written on this machine by a process that
   * has ended (the dead server's, as the lock protocol judges them stale at
   * once on their own machine), so that they hold back no prune and refuse
   * no exclusive lock for the ten minutes it takes them to go stale for
   * everyone; one the storage does not let go now is left to go stale.
   * Returns how many jobs it queued again.
   */
  async releaseOwn(ctx: ServiceContext): Promise<number> {
    const orphans = await ctx.db.selectFrom('jobs').select(['id', 'safe_id'])
      .where('runner', '=', 'server').where('state', '=', 'running')
      .where((eb) => eb.or([eb('runner_node', '=', ctx.node), eb('runner_node', 'is', null)]))
      .execute();
    const now = ctx.now().toISOString();
    for (const j of orphans) {
      const back = await ctx.db.updateTable('jobs').set({ state: 'queued', runner_node: null, lease_until: null, started_at: null, last_report_at: null })
        .where('id', '=', j.id).where('state', '=', 'running').executeTakeFirst();
      if (back.numUpdatedRows > 0n) await ctx.db.insertInto('job_events').values({ job_id: j.id, at: now, kind: 'log', message: REQUEUED_RESTARTED, data: null }).execute();
    }
    for (const safeId of new Set(orphans.map((j) => j.safe_id))) await removeDeadLocksOfSafe(ctx, safeId).catch(() => undefined);
    return orphans.length;
  }

  /** Stops claiming, aborts every running job (each goes back to the queue) and waits until each has recorded it; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.claiming;
    const all = [...this.running.values()];
    for (const j of all) j.abort.abort(new NodeClosingError());
    await Promise.all(all.map((j) => j.done));
  }
}

/** Removes the safe's lock objects written on this machine by a process that has ended (see `releaseOwn`). */
async function removeDeadLocksOfSafe(ctx: ServiceContext, safeId: string): Promise<void> {
  const safe = await ctx.db.selectFrom('disk_safes').select('location').where('id', '=', safeId).executeTakeFirst();
  if (!safe) return;
  const backend = workingBackendOf(ctx.safeStorage, safe);
  for (const e of await listLocks(backend)) {
    if (!e.lock || !onThisMachine(e.lock, ctx.identity) || processAlive(e.lock.pid, e.lock.processStart)) continue;
    await backend.remove({ type: 'lock', name: e.name }).catch((err: unknown) => {
      if (!(err instanceof NotFoundError)) throw err;
    });
  }
}

/**
 * The jobs the server runs itself (a prune of a disk safe), in this
 * process, recorded in the jobs table beside the agents' jobs so that a
 * caller follows them the same way (GET /api/v1/jobs/ID and its events).
 *
 *   start:  the row is inserted `running` (runner `server`, runner_node this
 *           node's id), the work begins
 *   while it works: its log lines become events; a heartbeat rewrites
 *           last_report_at, so a job whose server died goes `interrupted`
 *           when someone next looks (jobs.ts), as an agent's silent job does;
 *           sooner, when its node starts again (`endOrphans`)
 *   end:    `succeeded` with the work's result, or `failed` with its message;
 *           `cancelled` when someone cancels it (its work is aborted, and
 *           stops at its next step: a prune before any deletion);
 *           `interrupted` when the server closes meanwhile (its work is
 *           aborted, and close waits for it)
 */
import { listLocks, onThisMachine, processAlive } from '../../repo/lock.js';
import { NotFoundError } from '../../storage/backend.js';
import type { Job } from '../db/schema.js';
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

/** The error of a job that was running when the server closed. */
const CLOSED = 'the server was stopped while the job ran; run it again';

/** The error of a job that was running when its server died (killed, or the machine stopped) and started again. */
const RESTARTED = 'the server was stopped without ending the job (killed, or its machine went down) and has started again; run it again';

/** The reason a cancelled server job's work is aborted with: its message is the job's error. */
class JobCancelledError extends Error {
  constructor(by: string) {
    super(`cancelled by ${by} while it ran`);
    this.name = 'JobCancelledError';
  }
}

export class ServerJobs {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private closed = false;

  /**
   * Inserts `row` (a `running` server job) and runs `work` for it in the
   * background; `heartbeatMs`: how often the job shows it is alive.
   */
  async start(ctx: ServiceContext, row: Job, work: ServerWork, heartbeatMs: number): Promise<void> {
    if (this.closed) throw new Error('the server is closing: no job starts');
    await ctx.db.insertInto('jobs').values({ ...row, runner_node: ctx.node }).execute();
    const abort = new AbortController();
    const beat = async (): Promise<void> => {
      await ctx.db.updateTable('jobs').set({ last_report_at: ctx.now().toISOString() }).where('id', '=', row.id).where('state', '=', 'running').execute();
    };
    const log: JobLog = {
      log: async (message, data) => {
        await ctx.db.insertInto('job_events').values({ job_id: row.id, at: ctx.now().toISOString(), kind: 'log', message, data: data === undefined ? null : JSON.stringify(data) }).execute();
        await beat();
      },
    };
    const timer = setInterval(() => void beat().catch(() => undefined), heartbeatMs);
    const end = async (fields: Pick<Job, 'state' | 'result' | 'error'>): Promise<void> => {
      const now = ctx.now().toISOString();
      await ctx.db.transaction().execute(async (trx) => {
        const done = await trx.updateTable('jobs').set({ ...fields, finished_at: now, last_report_at: now }).where('id', '=', row.id).where('state', '=', 'running').executeTakeFirst();
        if (done.numUpdatedRows > 0n && fields.state === 'failed') await raiseEvent(ctx, jobFailed(row, fields.error ?? 'no reason given'), trx);
      });
    };
    const done = (async () => {
      try {
        const result = await work(log, abort.signal);
        await end({ state: 'succeeded', result: JSON.stringify(result), error: null });
      } catch (e) {
        const reason: unknown = abort.signal.reason;
        await end(!abort.signal.aborted
          ? { state: 'failed', result: null, error: e instanceof Error ? e.message : String(e) }
          : reason instanceof JobCancelledError ? { state: 'cancelled', result: null, error: reason.message } : { state: 'interrupted', result: null, error: CLOSED });
      } finally {
        clearInterval(timer);
        this.running.delete(row.id);
      }
    })().catch(() => undefined); // the database went away first: the heartbeat stops, and the job goes interrupted when looked at
    this.running.set(row.id, { abort, done });
  }

  /**
   * Stops running job `id` because `by` cancelled it: its work is aborted,
   * and the job ends `cancelled` once the work has stopped. A job this
   * process does not run (the server that ran it stopped) ends cancelled at
   * once: nothing works on it any more.
   */
  async cancel(ctx: ServiceContext, id: string, by: string): Promise<void> {
    const here = this.running.get(id);
    if (here) {
      here.abort.abort(new JobCancelledError(by));
      return;
    }
    const now = ctx.now().toISOString();
    await ctx.db.updateTable('jobs').set({ state: 'cancelled', finished_at: now, last_report_at: now, error: `${new JobCancelledError(by).message}; no server process was running it any more` })
      .where('id', '=', id).where('state', '=', 'running').execute();
  }

  /**
   * At the server's start, before it serves: ends `interrupted` the jobs
   * this node was running when it died (runner_node this node's, or none:
   * a job from before nodes were recorded, when one server ran them all),
   * not another node's. Then removes, from each of their safes, the lock
   * objects written on this machine by a process that has ended (the dead
   * server's, as the lock protocol judges them stale at once on their own
   * machine), so that they delay no prune and refuse no exclusive lock for
   * the ten minutes it takes them to go stale for everyone; one the storage
   * does not let go now is left to go stale. Returns how many jobs it ended.
   */
  async endOrphans(ctx: ServiceContext): Promise<number> {
    const orphans = await ctx.db.selectFrom('jobs').innerJoin('disk_safes', 'disk_safes.id', 'jobs.safe_id')
      .select(['jobs.id', 'disk_safes.location'])
      .where('jobs.runner', '=', 'server').where('jobs.state', '=', 'running')
      .where((eb) => eb.or([eb('jobs.runner_node', '=', ctx.node), eb('jobs.runner_node', 'is', null)]))
      .execute();
    const now = ctx.now().toISOString();
    for (const j of orphans) {
      await ctx.db.updateTable('jobs').set({ state: 'interrupted', finished_at: now, error: RESTARTED }).where('id', '=', j.id).where('state', '=', 'running').execute();
    }
    for (const location of new Set(orphans.map((j) => j.location))) {
      await removeDeadLocks(ctx, location).catch(() => undefined);
    }
    return orphans.length;
  }

  /** Aborts every running job and waits until each has recorded how it ended; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.running.values()];
    for (const j of all) j.abort.abort(new Error(CLOSED));
    await Promise.all(all.map((j) => j.done));
  }
}

/** Removes the safe's lock objects written on this machine by a process that has ended (see `endOrphans`). */
async function removeDeadLocks(ctx: ServiceContext, location: string): Promise<void> {
  const backend = workingBackendOf(ctx.safeStorage, { location });
  for (const e of await listLocks(backend)) {
    if (!e.lock || !onThisMachine(e.lock, ctx.identity) || processAlive(e.lock.pid, e.lock.processStart)) continue;
    await backend.remove({ type: 'lock', name: e.name }).catch((err: unknown) => {
      if (!(err instanceof NotFoundError)) throw err;
    });
  }
}

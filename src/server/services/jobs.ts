/**
 * Jobs: what a machine's agent is asked to do ("run now"), from a fixed
 * vocabulary (backups, restore, check, restore test; src/api/v1.ts has each kind's spec),
 * on the machine's disk safe. People and manage tokens queue them, read
 * them with their events and cancel them; the machine's own agent (its
 * machine-scoped token with the `backup` right) takes them one at a time
 * and reports on them:
 *
 *   queued ──agent polls──▶ running ──agent reports──▶ succeeded | failed
 *     │  │                     │ │
 *     │  │                     │ └─ cancel: recorded; the agent learns it from the answer
 *     │  │                     │    to its next report, stops the job ─▶ cancelled
 *     │  │                     └─ agent silent past the limit, or polls again
 *     │  │                        without reporting (it restarted) ─▶ interrupted
 *     │  └─ cancel ─▶ cancelled
 *     └─ not taken by expires_at ─▶ expired
 *
 * The poll is the agent's heartbeat (machines.last_seen_at). Nothing runs on
 * a timer: silent and expired jobs are marked when someone looks (the job,
 * the machine's jobs, the agent's poll; docs/format.md §2.6).
 */
import { randomUUID } from 'node:crypto';
import { DEFAULT_JOB_EXPIRES_IN, type CreateJobRequest, type JobBody, type JobEventBody, type JobEventsQuery, type ReportEventsRequest, type ReportResultRequest } from '../../api/v1.js';
import { sql, type Kysely, type UpdateQueryBuilder, type UpdateResult } from 'kysely';
import type { ControlPlane, Job, JobEvent } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { recordCensus } from './census.js';
import { damagedSnapshotIds } from './damage.js';
import { BadRequest, Conflict, Forbidden, NoDiskSafe, NotFound } from './errors.js';
import { findLiveMachine, findMachine, requireSomeSafe } from './machines.js';
import { jobFailed, raiseEvent } from './notifications.js';
import { requireManage, requireRead, sees, type Principal } from './principal.js';
import { checkRestoreTestResult, restoreTestEnded } from './restore-tests.js';

/** A job as the API shows it; `safeName` is its disk safe's NAME (what the agent opens). */
export function jobBody(j: Job, safeName: string): JobBody {
  return {
    id: j.id, customer_id: j.customer_id, machine_id: j.machine_id, safe_id: j.safe_id, safe_name: safeName, runner: j.runner,
    kind: j.kind, spec: JSON.parse(j.spec) as JobBody['spec'], state: j.state, created_by: j.created_by, created_at: j.created_at,
    started_at: j.started_at, finished_at: j.finished_at, result: j.result === null ? null : JSON.parse(j.result) as Record<string, unknown>, error: j.error,
    expires_at: j.expires_at, cancelled_by: j.cancelled_by,
  };
}

function eventBody(e: JobEvent): JobEventBody {
  return { seq: e.seq, at: e.at, kind: e.kind as JobEventBody['kind'], message: e.message, data: e.data === null ? null : JSON.parse(e.data) as Record<string, unknown> };
}

/** Jobs with their disk safes' names, as the API shows them. */
export async function withSafeNames(ctx: ServiceContext, jobs: Job[]): Promise<JobBody[]> {
  if (jobs.length === 0) return [];
  const safes = await ctx.db.selectFrom('disk_safes').select(['id', 'name']).where('id', 'in', [...new Set(jobs.map((j) => j.safe_id))]).execute();
  const names = new Map(safes.map((s) => [s.id, s.name]));
  return jobs.map((j) => jobBody(j, names.get(j.safe_id) ?? ''));
}

/**
 * Marks the running agent jobs of machine `where.machineId`, of disk safe
 * `where.safeId`, or job `where.jobId`, whose agent has been silent past
 * the limit as interrupted. (A server job has a lease instead: another node
 * takes it over when its node goes silent; server-jobs.ts.)
 */
export async function interruptSilent(ctx: ServiceContext, where: { machineId: string } | { safeId: string } | { jobId: string }): Promise<void> {
  const now = ctx.now();
  const cutoff = new Date(now.getTime() - ctx.jobSilenceLimitMs).toISOString();
  const error = `the agent said nothing about the job for ${Math.round(ctx.jobSilenceLimitMs / 1000)} s (it stopped, or lost its connection to the server)`;
  await interrupt(ctx, error, (trx) => {
    const q = trx.updateTable('jobs').where('runner', '=', 'agent').where('state', '=', 'running').where('last_report_at', '<', cutoff);
    return 'jobId' in where ? q.where('id', '=', where.jobId) : 'safeId' in where ? q.where('safe_id', '=', where.safeId) : q.where('machine_id', '=', where.machineId);
  });
}

/**
 * Ends the running jobs `which` selects as interrupted with `error`, and
 * raises `job.failed` for each (its customer hears that it did not finish),
 * in one transaction.
 */
async function interrupt(ctx: ServiceContext, error: string, which: (trx: Kysely<ControlPlane>) => UpdateQueryBuilder<ControlPlane, 'jobs', 'jobs', UpdateResult>): Promise<void> {
  const now = ctx.now().toISOString();
  await ctx.db.transaction().execute(async (trx) => {
    const ended = await which(trx).set({ state: 'interrupted', finished_at: now, error })
      .returning(['id', 'kind', 'customer_id', 'machine_id', 'safe_id', 'started_at']).execute();
    for (const j of ended) {
      await raiseEvent(ctx, jobFailed(j, error, 'interrupted'), trx);
      ctx.metrics.jobEnded(j, 'interrupted', now, null);
    }
  });
  ctx.notifier.kick();
}

/** Records a log line of job `jobId` said by the server itself (a cancel, an expiry). */
async function serverSays(ctx: ServiceContext, jobId: string, message: string): Promise<void> {
  await ctx.db.insertInto('job_events').values({ job_id: jobId, at: ctx.now().toISOString(), kind: 'log', message, data: null }).execute();
}

/**
 * Ends the queued jobs of machine `where.machineId`, or job `where.jobId`,
 * that no agent took before their `expires_at` as expired, saying when the
 * machine last asked for work (its agent's poll), or that it never did.
 */
async function expireUntaken(ctx: ServiceContext, where: { machineId: string } | { jobId: string }): Promise<void> {
  const now = ctx.now().toISOString();
  let q = ctx.db.selectFrom('jobs').innerJoin('machines', 'machines.id', 'jobs.machine_id')
    .select(['jobs.id', 'jobs.expires_at', 'machines.name', 'machines.last_seen_at'])
    .where('jobs.state', '=', 'queued').where('jobs.expires_at', '<=', now);
  q = 'jobId' in where ? q.where('jobs.id', '=', where.jobId) : q.where('jobs.machine_id', '=', where.machineId);
  for (const j of await q.execute()) {
    const error = `expired at ${j.expires_at!}: no agent took the job in time; machine ${j.name} `
      + (j.last_seen_at === null ? 'never asked for work (its agent never polled the server)' : `did not ask for work since ${j.last_seen_at}`);
    const done = await ctx.db.updateTable('jobs').set({ state: 'expired', finished_at: now, error }).where('id', '=', j.id).where('state', '=', 'queued').executeTakeFirst();
    if (done.numUpdatedRows > 0n) await serverSays(ctx, j.id, error);
  }
}

/** Brings the jobs `where` names up to date before they are shown or taken: silent ones interrupted, untaken ones expired. */
async function settle(ctx: ServiceContext, where: { machineId: string } | { jobId: string }): Promise<void> {
  await interruptSilent(ctx, where);
  await expireUntaken(ctx, where);
}

async function findJob(ctx: ServiceContext, p: Principal, id: string): Promise<Job> {
  const j = await ctx.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  if (!j || !sees(p, j)) throw new NotFound('job', id);
  return j;
}

/** "Run now": queues a job for machine `machineId`'s agent, on the machine's disk safe. */
export async function createJob(ctx: ServiceContext, p: Principal, machineId: string, req: CreateJobRequest): Promise<JobBody> {
  const m = await findLiveMachine(ctx, p, machineId, 'jobs');
  requireManage(p);
  const safe = await ctx.db.selectFrom('disk_safes').select(['id', 'name']).where('machine_id', '=', m.id).orderBy('created_at').orderBy('name').executeTakeFirst();
  if (!safe) throw new NoDiskSafe(m.name);
  const now = ctx.now();
  const row: Job = {
    id: randomUUID(), customer_id: m.customer_id, machine_id: m.id, safe_id: safe.id, runner: 'agent', runner_node: null, kind: req.kind, spec: JSON.stringify(req.spec),
    state: 'queued', created_by: p.actor, created_at: now.toISOString(),
    started_at: null, last_report_at: null, finished_at: null, result: null, error: null,
    expires_at: new Date(now.getTime() + (req.expires_in ?? DEFAULT_JOB_EXPIRES_IN) * 1000).toISOString(), cancelled_by: null, lease_until: null, attempts: 0,
    slot_at: null, admitted_at: now.toISOString(), timeout_seconds: null,
  };
  await ctx.db.insertInto('jobs').values(row).execute();
  await audit(ctx, p, `job.create.${req.kind}`, row.id, row.customer_id);
  ctx.jobSignals.notify(m.id);
  return jobBody(row, safe.name);
}

/** The machine's jobs, newest first (the last 100). */
export async function listMachineJobs(ctx: ServiceContext, p: Principal, machineId: string): Promise<JobBody[]> {
  const m = await findMachine(ctx, p, machineId);
  requireRead(p);
  await settle(ctx, { machineId: m.id });
  return withSafeNames(ctx, await ctx.db.selectFrom('jobs').selectAll().where('machine_id', '=', m.id).orderBy('created_at', 'desc').orderBy('id').limit(100).execute());
}

export async function getJob(ctx: ServiceContext, p: Principal, id: string): Promise<JobBody> {
  await findJob(ctx, p, id);
  requireRead(p);
  await settle(ctx, { jobId: id });
  const j = await findJob(ctx, p, id);
  return (await withSafeNames(ctx, [j]))[0]!;
}

/**
 * Cancels job `id`, for whoever may start such a job on its machine (see
 * createJob, retention.ts's prune: the customer's people and tokens with
 * `manage`). A queued job is cancelled at once; a running one is marked,
 * and its runner stops it and ends it `cancelled` (the agent when it next
 * reports, the server's own job through its AbortSignal). A job that ended
 * already is a Conflict that says how it ended.
 */
export async function cancelJob(ctx: ServiceContext, p: Principal, id: string): Promise<JobBody> {
  await findJob(ctx, p, id);
  requireManage(p);
  await settle(ctx, { jobId: id });
  let j = await findJob(ctx, p, id);
  if (j.state === 'queued') {
    const end = { state: 'cancelled' as const, finished_at: ctx.now().toISOString(), cancelled_by: p.actor, error: `cancelled by ${p.actor} before ${j.runner === 'agent' ? 'an agent' : 'a server node'} took it` };
    const done = await ctx.db.updateTable('jobs').set(end).where('id', '=', id).where('state', '=', 'queued').executeTakeFirst();
    if (done.numUpdatedRows > 0n) {
      await serverSays(ctx, id, end.error);
      await audit(ctx, p, 'job.cancel', id, j.customer_id);
      return (await withSafeNames(ctx, [{ ...j, ...end }]))[0]!;
    }
    j = await findJob(ctx, p, id); // its runner took it meanwhile: cancelled as a running job
  }
  if (j.state !== 'running') throw new Conflict(`job ${id} is ${j.state} already${j.error ? ` (${j.error})` : ''}: there is nothing to cancel`);
  await stopRunningJob(ctx, j, p.actor);
  await audit(ctx, p, 'job.cancel', id, j.customer_id);
  return (await withSafeNames(ctx, [await findJob(ctx, p, id)]))[0]!;
}

/**
 * Cancels running job `j` as `by` (a person's cancel, or the scheduler's
 * timeout, saying `why`): marked, and stopped by its runner (the agent when
 * it next reports, the server node through its work's signal).
 */
export async function stopRunningJob(ctx: ServiceContext, j: Job, by: string, why?: string): Promise<void> {
  if (j.cancelled_by === null) {
    await ctx.db.updateTable('jobs').set({ cancelled_by: by }).where('id', '=', j.id).where('state', '=', 'running').where('cancelled_by', 'is', null).execute();
    await serverSays(ctx, j.id, `cancelled by ${by}${why ? ` (${why})` : ''}: ${j.runner === 'agent' ? 'the agent stops the job when it next reports (within seconds)' : 'the server node running it stops the job'}`);
  }
  if (j.runner === 'server') await ctx.serverJobs.cancel(ctx, j.id, by);
}

/** The job's events after `after` (a seq), oldest first, at most `limit` (default 1000). */
export async function listJobEvents(ctx: ServiceContext, p: Principal, id: string, q: JobEventsQuery): Promise<JobEventBody[]> {
  await findJob(ctx, p, id);
  requireRead(p);
  await settle(ctx, { jobId: id });
  const rows = await ctx.db.selectFrom('job_events').selectAll().where('job_id', '=', id).where('seq', '>', q.after ?? 0).orderBy('seq').limit(q.limit ?? 1000).execute();
  return rows.map(eventBody);
}

/** The caller must be a machine's agent: a machine-scoped token with the `backup` right. Returns its machine. */
function requireAgent(p: Principal): string {
  if (p.kind !== 'token' || p.machineId === null || !p.rights.includes('backup')) {
    throw new Forbidden('only a machine\'s agent takes and reports jobs (a token scoped to the machine, with the backup right)');
  }
  return p.machineId;
}

async function seen(ctx: ServiceContext, machineId: string): Promise<void> {
  await ctx.db.updateTable('machines').set({ last_seen_at: ctx.now().toISOString() }).where('id', '=', machineId).execute();
}

/** Takes the machine's oldest queued job that has not expired (it becomes running), or undefined when none is queued. */
async function claimNext(ctx: ServiceContext, machineId: string): Promise<Job | undefined> {
  for (;;) {
    const now = ctx.now().toISOString();
    // A scheduled job waits until the fair queue admits it (scheduler.ts); people's jobs are admitted when made.
    const next = await ctx.db.selectFrom('jobs').selectAll().where('machine_id', '=', machineId).where('runner', '=', 'agent').where('state', '=', 'queued')
      .where('admitted_at', 'is not', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)])).orderBy('created_at').orderBy('id').limit(1).executeTakeFirst();
    if (!next) return undefined;
    // Only one poll wins a job, even if two arrive together.
    const won = await ctx.db.updateTable('jobs').set({ state: 'running', started_at: now, last_report_at: now }).where('id', '=', next.id).where('state', '=', 'queued').executeTakeFirst();
    if (won.numUpdatedRows > 0n) return { ...next, state: 'running', started_at: now, last_report_at: now };
  }
}

/**
 * The agent's poll: its machine's next job (now running), waiting up to
 * `waitSeconds` for one to be queued; undefined when none came; NoDiskSafe
 * once the machine has no disk safe. An agent
 * polls only between jobs, so a job of its still running is one it lost
 * (it restarted): that job is interrupted. `gone` aborts when the agent's
 * connection closes before the answer: the poll then ends without a job.
 */
export async function nextJob(ctx: ServiceContext, p: Principal, waitSeconds: number, gone?: AbortSignal): Promise<JobBody | undefined> {
  const machineId = requireAgent(p);
  // Before this poll counts as the machine's last: an expired job says when the machine asked before.
  await expireUntaken(ctx, { machineId });
  await seen(ctx, machineId);
  await interrupt(ctx, 'the agent asked for another job without reporting the end of this one (it was restarted or killed)',
    (trx) => trx.updateTable('jobs').where('machine_id', '=', machineId).where('runner', '=', 'agent').where('state', '=', 'running'));
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    if (gone?.aborted) return undefined;
    const version = ctx.jobSignals.version(machineId);
    // Its safe was deleted while it was live (then or while this poll waited): the agent stops and says so, rather than wait for jobs that cannot be made.
    await requireSomeSafe(ctx, machineId);
    const job = await claimNext(ctx, machineId);
    if (job) {
      const body = (await withSafeNames(ctx, [job]))[0]!;
      // A backup never takes a damaged snapshot as its parent: the agent is told which they are with the job.
      if (job.kind === 'backup' || job.kind === 'image-backup') body.damaged_snapshots = await damagedSnapshotIds(ctx, job.safe_id);
      return body;
    }
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    await ctx.jobSignals.wait(machineId, version, left, gone);
    // A poll whose agent went away takes no job: nobody would receive it, and the agent's next poll would find it lost.
    if (ctx.jobSignals.isClosed || gone?.aborted) return undefined;
  }
}

/** The agent's own running job `id`; NotFound for another machine's, Conflict once it is not running any more. */
async function runningJobOf(ctx: ServiceContext, p: Principal, id: string): Promise<Job> {
  await findJob(ctx, p, id);
  const machineId = requireAgent(p);
  await seen(ctx, machineId);
  await interruptSilent(ctx, { machineId });
  const j = await findJob(ctx, p, id);
  if (j.runner !== 'agent') throw new Forbidden(`job ${id} is run by the server itself: it takes no reports`);
  if (j.state !== 'running') throw new Conflict(`job ${id} is ${j.state}${j.error ? ` (${j.error})` : ''}: stop working on it`);
  return j;
}

/**
 * The most events a job keeps, and the most characters of their messages
 * and data together: an agent reports about one event a second (its
 * progress), so 20000 hold five and a half hours of it with its logs; a
 * security review filled a job with 4800 events of 8000 bytes in 4 s
 * (the database went from 328 KB to 37 MB). Past either, the job's further
 * events are dropped, and one event says so.
 */
export const MAX_EVENTS_PER_JOB = 20_000;
export const MAX_EVENT_CHARS_PER_JOB = 8 * 1024 * 1024;

/**
 * The deepest an event's data or a job's result may nest (objects and arrays; the value itself is 1).
 * What agents send nests three or four deep; a report nested 10000 deep was a 500 (storing it
 * ran JSON.stringify out of stack).
 */
export const MAX_REPORT_DEPTH = 32;

/** Refuses (400) `value` when it nests deeper than MAX_REPORT_DEPTH; `what` names it in the message. Iterative: the value may be deeper than the stack. */
function refuseTooDeep(value: unknown, what: string): void {
  const todo: [unknown, number][] = [[value, 1]];
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    const [v, depth] = next;
    if (v === null || typeof v !== 'object') continue;
    if (depth > MAX_REPORT_DEPTH) throw new BadRequest(`${what} nests deeper than ${MAX_REPORT_DEPTH} levels of objects and arrays`);
    for (const x of Object.values(v)) todo.push([x, depth + 1]);
  }
}

/** The event that says a job's further events were dropped (MAX_EVENTS_PER_JOB). */
export const EVENTS_DROPPED = `the agent reported more events than a job keeps (${MAX_EVENTS_PER_JOB} events, ${MAX_EVENT_CHARS_PER_JOB / 1024 / 1024} MiB of text): its further events were dropped`;

/**
 * Records what the agent saw happen on its running job `id` (none: it only
 * shows it is at work), up to the job's bounds (MAX_EVENTS_PER_JOB); each
 * report keeps the job from counting as silent. Answers whether the job was
 * cancelled: then the agent stops it.
 */
export async function reportEvents(ctx: ServiceContext, p: Principal, id: string, req: ReportEventsRequest): Promise<{ cancelled: boolean }> {
  for (const [i, e] of req.events.entries()) refuseTooDeep(e.data, `event ${i + 1}'s data`);
  const j = await runningJobOf(ctx, p, id);
  if (req.events.length > 0) {
    const held = await ctx.db.selectFrom('job_events')
      .select((eb) => [eb.fn.countAll().as('events'), eb.fn.sum(sql`length(message) + coalesce(length(data), 0)`).as('chars')])
      .where('job_id', '=', id).executeTakeFirstOrThrow();
    let events = Number(held.events);
    let chars = Number(held.chars ?? 0);
    const rows = [];
    for (const e of req.events) {
      const data = e.data === undefined ? null : JSON.stringify(e.data);
      const size = e.message.length + (data?.length ?? 0);
      if (events >= MAX_EVENTS_PER_JOB || chars + size > MAX_EVENT_CHARS_PER_JOB) break;
      rows.push({ job_id: id, at: new Date(e.at).toISOString(), kind: e.kind, message: e.message, data });
      events++;
      chars += size;
    }
    if (rows.length < req.events.length) {
      const told = await ctx.db.selectFrom('job_events').select('seq').where('job_id', '=', id).where('kind', '=', 'log').where('message', '=', EVENTS_DROPPED).executeTakeFirst();
      if (told === undefined) rows.push({ job_id: id, at: ctx.now().toISOString(), kind: 'log', message: EVENTS_DROPPED, data: null });
    }
    if (rows.length > 0) await ctx.db.insertInto('job_events').values(rows).execute();
  }
  await ctx.db.updateTable('jobs').set({ last_report_at: ctx.now().toISOString() }).where('id', '=', id).where('state', '=', 'running').execute();
  return { cancelled: j.cancelled_by !== null };
}

/**
 * Ends the agent's running job `id` as it reports: succeeded with its
 * result, failed with the reason, or cancelled (only a job someone
 * cancelled) with what stopping it left.
 */
export async function reportResult(ctx: ServiceContext, p: Principal, id: string, req: ReportResultRequest): Promise<JobBody> {
  if (req.state === 'failed' && req.error === undefined) throw new BadRequest('a failed job needs its reason (error)');
  if (req.state === 'succeeded' && req.error !== undefined) throw new BadRequest('a succeeded job has no error');
  refuseTooDeep(req.result, 'the result');
  const j = await runningJobOf(ctx, p, id);
  if (req.state === 'cancelled' && j.cancelled_by === null) throw new Conflict(`job ${id} was not cancelled: report how it ended (succeeded or failed)`);
  if (j.kind === 'verify-restore') await checkRestoreTestResult(ctx, j, req);
  const now = ctx.now().toISOString();
  const error = req.state === 'cancelled' ? `cancelled by ${j.cancelled_by!} while it ran${req.error ? `: ${req.error}` : ''}` : req.error ?? null;
  // A cancel that came too late (the job ended first) leaves no trace on a job that was not cancelled.
  const cancelledBy = req.state === 'cancelled' ? j.cancelled_by : null;
  const end = { state: req.state, finished_at: now, last_report_at: now, result: req.result === undefined ? null : JSON.stringify(req.result), error, cancelled_by: cancelledBy };
  let ended = false;
  await ctx.db.transaction().execute(async (trx) => {
    const done = await trx.updateTable('jobs').set(end).where('id', '=', id).where('state', '=', 'running').executeTakeFirst();
    if (done.numUpdatedRows === 0n) return;
    ended = true;
    if (req.state === 'failed') await raiseEvent(ctx, jobFailed(j, error!), trx);
    ctx.metrics.jobEnded(j, req.state, now, req.result ?? null);
  });
  ctx.notifier.kick();
  if (ended && j.kind === 'verify-restore') await restoreTestEnded(ctx, j, req);
  if (ended && req.state === 'succeeded' && req.result !== undefined) await recordCensus(ctx, j, req.result);
  return (await withSafeNames(ctx, [{ ...j, ...end }]))[0]!;
}

/**
 * Jobs: what a machine's agent is asked to do ("run now"), from a fixed
 * vocabulary (backup, restore, check; src/api/v1.ts has each kind's spec),
 * on the machine's disk safe. People and manage tokens queue them and read
 * them with their events; the machine's own agent (its machine-scoped token
 * with the `backup` right) takes them one at a time and reports on them:
 *
 *   queued ──agent polls──▶ running ──agent reports──▶ succeeded | failed
 *                              │
 *                              └─ agent silent past the limit, or polls again
 *                                 without reporting (it restarted) ─▶ interrupted
 *
 * The poll is the agent's heartbeat (machines.last_seen_at). Nothing runs on
 * a timer: silent jobs are marked when someone looks (docs/format.md §2.6).
 */
import { randomUUID } from 'node:crypto';
import type { CreateJobRequest, JobBody, JobEventBody, JobEventsQuery, ReportEventsRequest, ReportResultRequest } from '../../api/v1.js';
import type { Job, JobEvent, JobRunner } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { BadRequest, Conflict, Forbidden, NotFound } from './errors.js';
import { findMachine } from './machines.js';
import { requireManage, requireRead, sees, type Principal } from './principal.js';

/** A job as the API shows it; `safeName` is its disk safe's NAME (what the agent opens). */
export function jobBody(j: Job, safeName: string): JobBody {
  return {
    id: j.id, customer_id: j.customer_id, machine_id: j.machine_id, safe_id: j.safe_id, safe_name: safeName, runner: j.runner,
    kind: j.kind, spec: JSON.parse(j.spec) as JobBody['spec'], state: j.state, created_by: j.created_by, created_at: j.created_at,
    started_at: j.started_at, finished_at: j.finished_at, result: j.result === null ? null : JSON.parse(j.result) as Record<string, unknown>, error: j.error,
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

/** Why a silent job was interrupted, by who ran it. */
function silenceError(ctx: ServiceContext, runner: JobRunner): string {
  const s = Math.round(ctx.jobSilenceLimitMs / 1000);
  return runner === 'agent'
    ? `the agent said nothing about the job for ${s} s (it stopped, or lost its connection to the server)`
    : `the server that ran the job gave no sign of it for ${s} s (it stopped or was restarted while the job ran)`;
}

/**
 * Marks the running jobs of machine `where.machineId` (its agent's), or job
 * `where.jobId`, whose runner has been silent past the limit as interrupted.
 */
export async function interruptSilent(ctx: ServiceContext, where: { machineId: string } | { jobId: string }): Promise<void> {
  const now = ctx.now();
  const cutoff = new Date(now.getTime() - ctx.jobSilenceLimitMs).toISOString();
  for (const runner of ['agent', 'server'] as const) {
    let q = ctx.db.updateTable('jobs')
      .set({ state: 'interrupted', finished_at: now.toISOString(), error: silenceError(ctx, runner) })
      .where('runner', '=', runner).where('state', '=', 'running').where('last_report_at', '<', cutoff);
    q = 'jobId' in where ? q.where('id', '=', where.jobId) : q.where('machine_id', '=', where.machineId);
    await q.execute();
  }
}

async function findJob(ctx: ServiceContext, p: Principal, id: string): Promise<Job> {
  const j = await ctx.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  if (!j || !sees(p, j)) throw new NotFound(`job ${id}`);
  return j;
}

/** "Run now": queues a job for machine `machineId`'s agent, on the machine's disk safe. */
export async function createJob(ctx: ServiceContext, p: Principal, machineId: string, req: CreateJobRequest): Promise<JobBody> {
  const m = await findMachine(ctx, p, machineId);
  requireManage(p);
  const safe = await ctx.db.selectFrom('disk_safes').select(['id', 'name']).where('machine_id', '=', m.id).orderBy('created_at').orderBy('name').executeTakeFirst();
  if (!safe) throw new Conflict(`machine ${m.name} has no disk safe to work on: enrol its agent, or create one with POST /api/v1/safes`);
  const row: Job = {
    id: randomUUID(), customer_id: m.customer_id, machine_id: m.id, safe_id: safe.id, runner: 'agent', kind: req.kind, spec: JSON.stringify(req.spec),
    state: 'queued', created_by: p.actor, created_at: ctx.now().toISOString(),
    started_at: null, last_report_at: null, finished_at: null, result: null, error: null,
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
  await interruptSilent(ctx, { machineId: m.id });
  return withSafeNames(ctx, await ctx.db.selectFrom('jobs').selectAll().where('machine_id', '=', m.id).orderBy('created_at', 'desc').orderBy('id').limit(100).execute());
}

export async function getJob(ctx: ServiceContext, p: Principal, id: string): Promise<JobBody> {
  await findJob(ctx, p, id);
  requireRead(p);
  await interruptSilent(ctx, { jobId: id });
  const j = await findJob(ctx, p, id);
  return (await withSafeNames(ctx, [j]))[0]!;
}

/** The job's events after `after` (a seq), oldest first, at most `limit` (default 1000). */
export async function listJobEvents(ctx: ServiceContext, p: Principal, id: string, q: JobEventsQuery): Promise<JobEventBody[]> {
  await findJob(ctx, p, id);
  requireRead(p);
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

/** Takes the machine's oldest queued job (it becomes running), or undefined when none is queued. */
async function claimNext(ctx: ServiceContext, machineId: string): Promise<Job | undefined> {
  for (;;) {
    const next = await ctx.db.selectFrom('jobs').selectAll().where('machine_id', '=', machineId).where('runner', '=', 'agent').where('state', '=', 'queued').orderBy('created_at').orderBy('id').limit(1).executeTakeFirst();
    if (!next) return undefined;
    const now = ctx.now().toISOString();
    // Only one poll wins a job, even if two arrive together.
    const won = await ctx.db.updateTable('jobs').set({ state: 'running', started_at: now, last_report_at: now }).where('id', '=', next.id).where('state', '=', 'queued').executeTakeFirst();
    if (won.numUpdatedRows > 0n) return { ...next, state: 'running', started_at: now, last_report_at: now };
  }
}

/**
 * The agent's poll: its machine's next job (now running), waiting up to
 * `waitSeconds` for one to be queued; undefined when none came. An agent
 * polls only between jobs, so a job of its still running is one it lost
 * (it restarted): that job is interrupted. `gone` aborts when the agent's
 * connection closes before the answer: the poll then ends without a job.
 */
export async function nextJob(ctx: ServiceContext, p: Principal, waitSeconds: number, gone?: AbortSignal): Promise<JobBody | undefined> {
  const machineId = requireAgent(p);
  await seen(ctx, machineId);
  await ctx.db.updateTable('jobs')
    .set({ state: 'interrupted', finished_at: ctx.now().toISOString(), error: 'the agent asked for another job without reporting the end of this one (it was restarted or killed)' })
    .where('machine_id', '=', machineId).where('runner', '=', 'agent').where('state', '=', 'running')
    .execute();
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    if (gone?.aborted) return undefined;
    const version = ctx.jobSignals.version(machineId);
    const job = await claimNext(ctx, machineId);
    if (job) return (await withSafeNames(ctx, [job]))[0]!;
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

/** Records what the agent saw happen on its running job `id`; each report keeps the job from counting as silent. */
export async function reportEvents(ctx: ServiceContext, p: Principal, id: string, req: ReportEventsRequest): Promise<void> {
  await runningJobOf(ctx, p, id);
  await ctx.db.insertInto('job_events').values(req.events.map((e) => ({
    job_id: id, at: new Date(e.at).toISOString(), kind: e.kind, message: e.message, data: e.data === undefined ? null : JSON.stringify(e.data),
  }))).execute();
  await ctx.db.updateTable('jobs').set({ last_report_at: ctx.now().toISOString() }).where('id', '=', id).where('state', '=', 'running').execute();
}

/** Ends the agent's running job `id` as it reports: succeeded with its result, or failed with the reason. */
export async function reportResult(ctx: ServiceContext, p: Principal, id: string, req: ReportResultRequest): Promise<JobBody> {
  if (req.state === 'failed' && req.error === undefined) throw new BadRequest('a failed job needs its reason (error)');
  if (req.state === 'succeeded' && req.error !== undefined) throw new BadRequest('a succeeded job has no error');
  const j = await runningJobOf(ctx, p, id);
  const now = ctx.now().toISOString();
  const end = { state: req.state, finished_at: now, last_report_at: now, result: req.result === undefined ? null : JSON.stringify(req.result), error: req.error ?? null };
  await ctx.db.updateTable('jobs').set(end).where('id', '=', id).where('state', '=', 'running').execute();
  return (await withSafeNames(ctx, [{ ...j, ...end }]))[0]!;
}

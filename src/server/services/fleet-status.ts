/**
 * The fleet dashboard's view of its machines (`GET /machines?status=true`):
 * each machine's status, last success, next scheduled backup, the disk safe
 * its backups go to with its stored bytes and quotas, and its failures of
 * the last 24 hours. A page of machines costs the same few queries whatever
 * its size, never one per machine:
 *
 *   jobs      one SELECT over the machines with a correlated subquery per
 *             figure (running backup, last succeeded and last ended backup,
 *             failures in 24 h and the newest); each seeks the machine's
 *             jobs by (machine_id, finished_at) or (machine_id, state)
 *   snapshots each machine's `last_backup_at`, as the list has it (the snapshot index)
 *   safes     one SELECT; a machine's first live safe is where its
 *             backups go (as "run now" and the scheduler choose)
 *   policies  policiesOf: every policy of the page's customers, resolved
 *             per machine in memory (resolveTarget, nextBackupRun)
 *   bytes     the usage ledger's record (one SELECT; a safe never counted is
 *             counted, but a restart does not make every safe counted again)
 *   failures  one SELECT of the newest failed job of each
 *
 * The status is the one the web interface's machine page works out from
 * a machine's jobs (web/src/lib/fleet-status.ts), by the server's clock
 * and with the stale threshold of the alerts (alerts.ts: staleThreshold).
 */
import { BACKUP_JOB_KINDS, type FleetStatusName, type MachineBody, type MachineStatusBody } from '../../api/v1.js';
import type { Policy } from '../db/schema.js';
import { staleThreshold } from './alerts.js';
import type { ServiceContext } from './context.js';
import { nextBackupRun, policiesOf, resolveTarget, type EffectivePolicy } from './policies.js';

/** How a job ends that did not do its work (a cancelled or skipped one is neither success nor failure). */
const FAILED_STATES = ['failed', 'interrupted', 'expired'] as const;
const DAY_MS = 24 * 3600 * 1000;

const iso = (ms: number): string => new Date(ms).toISOString();
const later = (a: string | null, b: string | null): string | null => (a === null ? b : b === null || Date.parse(a) >= Date.parse(b) ? a : b);

/** The status of each of `machines` (live ones, as listMachines gives them, with their `last_backup_at`) at the server's now, by machine id. */
export async function machineStatuses(ctx: ServiceContext, machines: readonly MachineBody[]): Promise<Map<string, MachineStatusBody>> {
  if (machines.length === 0) return new Map();
  const now = ctx.now().getTime();
  const ids = machines.map((m) => m.id);
  const since = iso(now - DAY_MS);
  const jobs = await ctx.db.selectFrom('machines').innerJoin('customers', 'customers.id', 'machines.customer_id')
    .select((eb) => {
      const of = () => eb.selectFrom('jobs').whereRef('jobs.machine_id', '=', 'machines.id');
      return [
        'machines.id', 'customers.name as customer_name',
        of().select('jobs.id').where('jobs.state', '=', 'running').where('jobs.kind', 'in', BACKUP_JOB_KINDS).limit(1).as('running_job_id'),
        of().select('jobs.finished_at').where('jobs.state', '=', 'succeeded').where('jobs.kind', 'in', BACKUP_JOB_KINDS).where('jobs.finished_at', 'is not', null)
          .orderBy('jobs.finished_at', 'desc').limit(1).as('last_job_success'),
        of().select('jobs.state').where('jobs.kind', 'in', BACKUP_JOB_KINDS).where('jobs.finished_at', 'is not', null).where('jobs.state', 'not in', ['cancelled', 'skipped'])
          .orderBy('jobs.finished_at', 'desc').limit(1).as('last_ended_state'),
        of().select((f) => f.fn.countAll<number | string>().as('n')).where('jobs.state', 'in', FAILED_STATES).where('jobs.finished_at', '>=', since).as('failures'),
        of().select('jobs.id').where('jobs.state', 'in', FAILED_STATES).where('jobs.finished_at', '>=', since).orderBy('jobs.finished_at', 'desc').limit(1).as('last_failure_id'),
      ];
    })
    .where('machines.id', 'in', ids).execute();
  const safes = await ctx.db.selectFrom('disk_safes').select(['id', 'name', 'machine_id', 'location', 'quota_hard', 'quota_soft'])
    .where('machine_id', 'in', ids).where('deleting_at', 'is', null).orderBy('created_at').orderBy('name').execute();
  const safeOf = new Map<string, (typeof safes)[number]>();
  for (const s of safes) if (!safeOf.has(s.machine_id!)) safeOf.set(s.machine_id!, s);
  const policies = await policiesOf(ctx, machines.map((m) => m.customer_id));
  const stored = await ctx.usage.recordedBytesOf([...safeOf.values()]);
  const failureIds = jobs.map((j) => j.last_failure_id).filter((id): id is string => id !== null);
  const failures = new Map(failureIds.length === 0 ? [] : (await ctx.db.selectFrom('jobs').select(['id', 'kind', 'state', 'finished_at', 'error'])
    .where('id', 'in', failureIds).execute()).map((j) => [j.id, j]));

  const jobsOf = new Map(jobs.map((r) => [r.id, r]));
  const out = new Map<string, MachineStatusBody>();
  for (const m of machines) {
    const j = jobsOf.get(m.id);
    if (j === undefined) continue;
    const safe = safeOf.get(m.id);
    const policy = policyOf(policies, m, safe?.id ?? null, now);
    const staleAfterMs = policy === null ? ctx.staleAfterMs : staleThreshold(policy, ctx.staleAfterMs);
    const lastSuccess = later(j.last_job_success, m.last_backup_at);
    let status: FleetStatusName;
    if (j.running_job_id !== null) status = 'running';
    else if (j.last_ended_state !== null && (FAILED_STATES as readonly string[]).includes(j.last_ended_state)) status = 'failed';
    else if (lastSuccess === null) status = 'never';
    else if (now - Date.parse(lastSuccess) > staleAfterMs) status = 'stale';
    else status = 'ok';
    const next = policy === null ? null : nextBackupRun(policy, now);
    const quota = safe === undefined ? null : safe.quota_hard !== null || safe.quota_soft !== null ? { hard: safe.quota_hard, soft: safe.quota_soft } : policy?.settings.quota;
    const failure = j.last_failure_id === null ? undefined : failures.get(j.last_failure_id);
    out.set(m.id, {
      status, last_success_at: lastSuccess, stale_after_seconds: Math.round(staleAfterMs / 1000), next_run_at: next === null ? null : iso(next),
      running_job_id: j.running_job_id, customer_name: j.customer_name,
      safe: safe === undefined ? null : { id: safe.id, name: safe.name, stored_bytes: stored.get(safe.location) ?? 0, quota_hard: quota?.hard ?? null, quota_soft: quota?.soft ?? null },
      failures_24h: Number(j.failures ?? 0),
      last_failure: failure === undefined ? null : { job_id: failure.id, kind: failure.kind, state: failure.state, finished_at: failure.finished_at!, error: failure.error },
    });
  }
  return out;
}

/** The machine's effective policy (its safe's), or null when a saved policy no longer resolves (the scheduler leaves such a safe alone too). */
function policyOf(policies: ReadonlyMap<string, Policy>, m: MachineBody, safeId: string | null, now: number): EffectivePolicy | null {
  try {
    return resolveTarget(policies, { customerId: m.customer_id, machineId: m.id, safeId }, now);
  } catch {
    return null;
  }
}

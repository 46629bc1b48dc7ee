/**
 * A machine's status on its page, from the time of its newest snapshot
 * (the machine's `last_backup_at`, from the server's snapshot index) and
 * its jobs (newest first, as GET /machines/ID/jobs lists them); the fleet
 * dashboard has the same statuses from the server for every machine at
 * once (GET /machines?status=true, src/server/services/fleet-status.ts):
 *
 *   running  a backup of it runs now
 *   failed   its latest finished backup did not succeed
 *   never    no backup of it ever succeeded
 *   stale    its last success is older than its threshold (three of its
 *            backup intervals; three days when its schedule is not known)
 *   ok       otherwise
 *
 * Plain TypeScript (no DOM, no React): the unit tests import it.
 */

/** The job fields the status needs (JobBody has them). */
export interface JobLike {
  readonly id: string;
  readonly kind: string;
  readonly state: string;
  readonly created_at: string;
  readonly finished_at: string | null;
  readonly error: string | null;
}

export const FLEET_STATUSES = ['ok', 'running', 'failed', 'stale', 'never'] as const;
export type FleetStatus = (typeof FLEET_STATUSES)[number];

/** The job kinds that make a snapshot of the machine. */
export const BACKUP_KINDS: ReadonlySet<string> = new Set(['backup', 'image-backup', 'command-backup', 'database-backup']);

/** The threshold of a machine whose backup interval is not known (3 days). */
export const DEFAULT_STALE_AFTER_SECONDS = 3 * 24 * 3600;

/** The stale threshold of a machine backed up every `intervalSeconds` (null: not known). */
export function staleAfterSeconds(intervalSeconds: number | null | undefined): number {
  return intervalSeconds ? 3 * intervalSeconds : DEFAULT_STALE_AFTER_SECONDS;
}

export interface MachineState<J extends JobLike = JobLike> {
  readonly status: FleetStatus;
  /** When its last successful backup ended (null: never). */
  readonly lastSuccessAt: string | null;
  /** The backup that runs now, if any. */
  readonly running: J | null;
  /** Its jobs of any kind that failed within the last 24 hours, newest first. */
  readonly failures24h: J[];
}

const FAILED_STATES: ReadonlySet<string> = new Set(['failed', 'interrupted', 'expired']);

/**
 * The machine's state at `now` (ms since the epoch) from its jobs, newest
 * first, and the time of its newest snapshot (a backup not made by a job
 * counts too: the CLI's over HTTPS).
 */
export function machineState<J extends JobLike>(jobs: readonly J[], now: number, lastBackupAt: string | null = null, staleAfter: number = DEFAULT_STALE_AFTER_SECONDS): MachineState<J> {
  const backups = jobs.filter((j) => BACKUP_KINDS.has(j.kind));
  const running = backups.find((j) => j.state === 'running') ?? null;
  const lastEnded = backups.find((j) => j.finished_at !== null && j.state !== 'cancelled') ?? null;
  const lastSuccess = backups.find((j) => j.state === 'succeeded' && j.finished_at !== null) ?? null;
  const byJob = lastSuccess?.finished_at ?? null;
  const lastSuccessAt = byJob === null || (lastBackupAt !== null && Date.parse(lastBackupAt) > Date.parse(byJob)) ? lastBackupAt : byJob;
  const failures24h = jobs.filter((j) => FAILED_STATES.has(j.state) && j.finished_at !== null && now - Date.parse(j.finished_at) <= 24 * 3600 * 1000);
  let status: FleetStatus;
  if (running) status = 'running';
  else if (lastEnded && FAILED_STATES.has(lastEnded.state)) status = 'failed';
  else if (!lastSuccessAt) status = 'never';
  else if (now - Date.parse(lastSuccessAt) > staleAfter * 1000) status = 'stale';
  else status = 'ok';
  return { status, lastSuccessAt, running, failures24h };
}

/** How many machines have each status. */
export function countByStatus(states: readonly { status: FleetStatus }[]): Record<FleetStatus, number> {
  const counts = Object.fromEntries(FLEET_STATUSES.map((s) => [s, 0])) as Record<FleetStatus, number>;
  for (const s of states) counts[s.status]++;
  return counts;
}

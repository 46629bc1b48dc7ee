/**
 * A machine's snapshots as the machine page shows them: taken from its
 * backup jobs that succeeded (each job's result names its snapshot and its
 * figures: files and bytes processed, bytes added). Plain TypeScript.
 */
import { BACKUP_KINDS, type JobLike } from './fleet-status.js';

export interface SnapshotPoint {
  readonly id: string;
  /** When the backup ended. */
  readonly time: string;
  /** Bytes the snapshot holds (its files' sizes), null when the result does not say. */
  readonly size: number | null;
  /** Bytes this backup added to the disk safe (what changed, before compression), null when not said. */
  readonly added: number | null;
  readonly files: number | null;
  readonly kind: string;
  readonly jobId: string;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The snapshots made by `jobs` (any order), oldest first. */
export function snapshotsFromJobs(jobs: readonly (JobLike & { result: Record<string, unknown> | null })[]): SnapshotPoint[] {
  const out: SnapshotPoint[] = [];
  for (const j of jobs) {
    if (!BACKUP_KINDS.has(j.kind) || j.state !== 'succeeded' || !j.result || j.finished_at === null) continue;
    const id = j.result['snapshot_id'];
    if (typeof id !== 'string') continue;
    out.push({
      id, time: j.finished_at, kind: j.kind, jobId: j.id,
      size: num(j.result['total_bytes_processed']), added: num(j.result['data_added']), files: num(j.result['total_files_processed']),
    });
  }
  return out.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
}

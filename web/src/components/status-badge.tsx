/** A machine's or job's status as a coloured word. */
import type { FleetStatus } from '../lib/fleet-status.js';

const WORDS: Record<FleetStatus, string> = { ok: 'OK', running: 'Running', failed: 'Failed', stale: 'Stale', never: 'Never' };

export function StatusBadge({ status }: { status: FleetStatus }) {
  return <span className={`badge ${status}`}>{WORDS[status]}</span>;
}

const JOB_CLASS: Record<string, string> = { succeeded: 'ok', running: 'running', queued: 'never', failed: 'failed', interrupted: 'failed', expired: 'failed', cancelled: 'never' };

export function JobStateBadge({ state }: { state: string }) {
  return <span className={`badge ${JOB_CLASS[state] ?? 'never'}`}>{state}</span>;
}

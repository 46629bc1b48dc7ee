/**
 * One machine: what it is and where its backups go, when a restore test
 * last proved it restorable, its snapshots on a timeline, "back up now", its jobs with their logs (live while one runs),
 * and its retention policy with the preview of what it keeps.
 */
import { useMemo } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import type { JobBody, SafeBody } from '../../../src/api/v1.js';
import { ApiRequestError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { JobStateBadge, StatusBadge } from '../components/status-badge.js';
import { formatAge, formatBytes, formatDuration, formatTime } from '../format.js';
import { BACKUP_KINDS, machineState } from '../lib/fleet-status.js';
import { snapshotPoints } from '../lib/snapshots.js';
import { useLoad } from '../load.js';
import { BackupNow } from '../machine/backup-now.js';
import { JobLog } from '../machine/job-log.js';
import { PolicyCard } from '../machine/policy-card.js';
import { SnapshotTimeline } from '../machine/snapshot-timeline.js';
import { UnauthenticMark } from '../components/unauthentic-mark.js';
import { mayManage, useSession, useUser } from '../session.js';
import { NotFound } from './not-found.js';

export function MachinePage() {
  const { id = '' } = useParams();
  const { api } = useSession();
  const user = useUser();
  const [params, setParams] = useSearchParams();
  const selectedJob = params.get('job');
  const page = useLoad(async () => {
    const machine = await api.machine(id);
    const [safes, jobs, snapshots] = await Promise.all([api.safes(), api.machineJobs(id), api.machineSnapshots(id)]);
    return { machine, safe: safes.find((s) => s.machine_id === id) as SafeBody | undefined, jobs, snapshots };
  }, [api, id]);

  const jobs = page.data?.jobs ?? [];
  const state = useMemo(() => machineState(jobs, Date.now(), page.data?.machine.last_backup_at ?? null), [jobs, page.data]);
  const snapshots = useMemo(() => snapshotPoints(page.data?.snapshots ?? []), [page.data]);
  const lastPaths = (jobs.find((j) => j.kind === 'backup')?.spec as { paths?: string[] } | undefined)?.paths ?? ['/'];

  if (page.failure instanceof ApiRequestError && page.failure.status === 404) return <NotFound />;
  if (!page.data) return <section className="page"><h1>Machine</h1><ErrorBox error={page.error} retry={page.reload} />{page.loading ? <p className="muted">Loading…</p> : null}</section>;
  const { machine, safe } = page.data;
  const select = (jobId: string | null): void => {
    const next = new URLSearchParams(params);
    if (jobId) next.set('job', jobId); else next.delete('job');
    setParams(next, { replace: true });
  };
  const started = (job: JobBody): void => {
    select(job.id);
    page.reload();
  };
  // A job that ends changes the machine's state and snapshots: read them again.
  const jobChanged = (job: JobBody): void => {
    const known = jobs.find((j) => j.id === job.id);
    if (!known || known.state !== job.state) page.reload();
  };
  return (
    <section className="page">
      <div className="page-head">
        <h1>{machine.name} <StatusBadge status={state.status} /></h1>
        <div className="actions">
          {safe ? <Link className="button secondary" to={`/machines/${machine.id}/restore`}>Restore…</Link> : null}
          {safe ? <Link className="button secondary" to={`/safes/${safe.id}/browse/`}>Browse snapshots</Link> : null}
        </div>
      </div>
      <ErrorBox error={page.error} retry={page.reload} />
      <dl className="facts card">
        <dt>Last success</dt><dd title={formatTime(state.lastSuccessAt)}>{formatAge(state.lastSuccessAt)}</dd>
        <dt>Last proven restorable</dt>
        <dd title={formatTime(machine.proven_restorable_at)}>
          {machine.proven_restorable_at ? <>{formatAge(machine.proven_restorable_at)}, snapshot {safe && machine.proven_restorable_snapshot
            ? <Link to={`/safes/${safe.id}/browse/${machine.proven_restorable_snapshot}/`}><code>{machine.proven_restorable_snapshot.slice(0, 8)}</code></Link>
            : <code>{machine.proven_restorable_snapshot?.slice(0, 8) ?? '—'}</code>}</> : 'never (no restore test has passed)'}
        </dd>
        <dt>Agent last seen</dt><dd>{formatAge(machine.last_seen_at)}</dd>
        <dt>Disk safe</dt><dd>{safe ? <code>{safe.name}</code> : 'none'}</dd>
        <dt>Stored</dt><dd>{formatBytes(safe?.stored_bytes)}{safe?.quota_hard ? ` of ${formatBytes(safe.quota_hard)}` : ''}</dd>
        <dt>Enrolled</dt><dd>{formatTime(machine.created_at)}</dd>
        {machine.retired_at ? <><dt>Retired</dt><dd>{formatTime(machine.retired_at)}</dd></> : null}
      </dl>

      <h2>Snapshots</h2>
      <SnapshotTimeline snapshots={snapshots} />
      {snapshots.length > 0 ? (
        <table className="list" aria-label="snapshots">
          <thead><tr><th>Snapshot</th><th>Time</th><th className="wide">Of</th><th className="num">Size</th><th className="num">Added</th><th className="num wide">Files</th></tr></thead>
          <tbody>
            {[...snapshots].reverse().map((s) => (
              <tr key={s.id}>
                <td>{safe && !s.unauthentic ? <Link to={`/safes/${safe.id}/browse/${s.id}`}><code>{s.id.slice(0, 8)}</code></Link> : <code>{s.id.slice(0, 8)}</code>}</td>
                <td>{formatTime(s.time)}{s.incomplete ? <span className="badge failed">incomplete</span> : null}{s.unauthentic ? <UnauthenticMark /> : null}</td>
                <td className="wide">{s.image ? 'image ' : ''}{s.paths.join(', ')}</td>
                <td className="num">{formatBytes(s.size)}</td>
                <td className="num">{formatBytes(s.added)}</td>
                <td className="num wide">{s.files ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}

      {mayManage(user) && !machine.retired_at ? (<><h2>Back up now</h2><BackupNow machineId={machine.id} defaultPaths={lastPaths} onStarted={started} /></>) : null}

      <h2>Jobs</h2>
      {selectedJob ? <JobLog jobId={selectedJob} onChange={jobChanged} /> : null}
      <table className="list" aria-label="jobs">
        <thead><tr><th>Job</th><th>State</th><th>Queued</th><th className="wide">Took</th><th className="wide">By</th></tr></thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} className={j.id === selectedJob ? 'selected' : ''}>
              <td><button type="button" className="link" onClick={() => select(j.id === selectedJob ? null : j.id)}>{j.kind}{BACKUP_KINDS.has(j.kind) && j.result?.['snapshot_id'] ? ` ${String(j.result['snapshot_id']).slice(0, 8)}` : ''}</button></td>
              <td><JobStateBadge state={j.state} /></td>
              <td>{formatTime(j.created_at)}</td>
              <td className="wide">{j.started_at && j.finished_at ? formatDuration((Date.parse(j.finished_at) - Date.parse(j.started_at)) / 1000) : '—'}</td>
              <td className="wide">{j.created_by}</td>
            </tr>
          ))}
          {jobs.length === 0 ? <tr><td colSpan={5} className="muted">No job yet.</td></tr> : null}
        </tbody>
      </table>

      {safe ? (<><h2>Policy</h2><PolicyCard machineId={machine.id} customerId={machine.customer_id} safeId={safe.id} /></>) : null}
    </section>
  );
}

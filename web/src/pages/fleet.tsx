/**
 * The fleet dashboard: every machine the person may see with its status,
 * last success, next run, stored size and quota, and when it was last
 * proven restorable; counts at the top (each a filter), a search by
 * machine or customer name, the failures of the last 24 hours. All of it
 * from one call, GET /machines?status=true, a page of 1,000 machines at a
 * time (the server works the statuses out: api/client.ts fleet()). The
 * list is virtualised: only the rows on screen are in the page, so a fleet
 * of thousands scrolls smoothly.
 */
import { useVirtualizer } from '@tanstack/react-virtual';
import { useMemo, useRef } from 'react';
import { Link, useSearchParams } from 'react-router';
import type { MachineBody, MachineStatusBody } from '../../../src/api/v1.js';
import { ErrorBox } from '../components/error-box.js';
import { JobStateBadge, StatusBadge } from '../components/status-badge.js';
import { formatAge, formatBytes, formatTime } from '../format.js';
import { countByStatus, FLEET_STATUSES, type FleetStatus } from '../lib/fleet-status.js';
import { useLoad } from '../load.js';
import { isProviderRole, useSession, useUser } from '../session.js';

/** One row: the machine and its status as the server gives it. */
export interface FleetRow {
  machine: MachineBody;
  state: MachineStatusBody;
}

const ROW_HEIGHT = 44;

export function FleetPage() {
  const { api } = useSession();
  const user = useUser();
  const provider = isProviderRole(user);
  const fleet = useLoad(() => api.fleet(), [api]);
  const rows = useMemo(() => (fleet.data ?? []).map((machine): FleetRow => ({ machine, state: machine.status! })), [fleet.data]);

  const [params, setParams] = useSearchParams();
  const query = params.get('q') ?? '';
  const statusFilter = params.get('status') as FleetStatus | null;
  const set = (k: string, v: string | null): void => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v); else next.delete(k);
    setParams(next, { replace: true });
  };

  const counts = useMemo(() => countByStatus(rows.map((r) => r.state)), [rows]);
  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return rows.filter((r) => (!statusFilter || r.state.status === statusFilter)
      && (!q || r.machine.name.toLowerCase().includes(q) || r.state.customer_name.toLowerCase().includes(q)));
  }, [rows, query, statusFilter]);
  const failures = useMemo(() => rows.flatMap((r) => (r.state.last_failure ? [{ job: r.state.last_failure, count: r.state.failures_24h, row: r }] : []))
    .sort((a, b) => Date.parse(b.job.finished_at) - Date.parse(a.job.finished_at)), [rows]);

  return (
    <section className="page">
      <div className="page-head">
        <h1>Fleet</h1>
        <button type="button" className="secondary" onClick={fleet.reload} disabled={fleet.loading}>{fleet.loading ? 'Loading…' : 'Refresh'}</button>
      </div>
      <ErrorBox error={fleet.error} retry={fleet.reload} />
      <div className="counts" role="group" aria-label="machines by status">
        <button type="button" className={`count ${!statusFilter ? 'selected' : ''}`} onClick={() => set('status', null)}>
          <strong>{rows.length}</strong><span>All</span>
        </button>
        {FLEET_STATUSES.map((s) => (
          <button key={s} type="button" className={`count ${s} ${statusFilter === s ? 'selected' : ''}`} aria-pressed={statusFilter === s} onClick={() => set('status', statusFilter === s ? null : s)}>
            <strong data-testid={`count-${s}`}>{counts[s]}</strong><StatusBadge status={s} />
          </button>
        ))}
      </div>
      <div className="toolbar">
        <input type="search" placeholder={provider ? 'Search machines or customers' : 'Search machines'} aria-label="search" value={query} onChange={(e) => set('q', e.target.value || null)} />
        <span className="muted">{shown.length} of {rows.length} machines</span>
      </div>
      {fleet.data && rows.length === 0 ? <p className="notice">No machines yet. {provider || user.role === 'customer-admin' ? <Link to="/admin/enrol">Enrol a machine</Link> : null}</p> : null}
      <MachineList rows={shown} provider={provider} />
      {failures.length > 0 ? (
        <>
          <h2>Failures in the last 24 hours</h2>
          <table className="list" aria-label="failures">
            <thead><tr><th>Machine</th><th>Newest</th><th>State</th><th className="wide">Ended</th><th>Why</th><th className="num">In 24 h</th></tr></thead>
            <tbody>
              {failures.map(({ job, count, row }) => (
                <tr key={job.job_id}>
                  <td><Link to={`/machines/${row.machine.id}`}>{row.machine.name}</Link></td>
                  <td><Link to={`/machines/${row.machine.id}?job=${job.job_id}`}>{job.kind}</Link></td>
                  <td><JobStateBadge state={job.state} /></td>
                  <td className="wide">{formatTime(job.finished_at)}</td>
                  <td className="why">{job.error ?? '—'}</td>
                  <td className="num">{count}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
    </section>
  );
}

function MachineList({ rows, provider }: { rows: FleetRow[]; provider: boolean }) {
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_HEIGHT, overscan: 10 });
  return (
    <div className={`fleet ${provider ? 'with-customer' : ''}`} role="table" aria-label="machines" aria-rowcount={rows.length}>
      <div className="fleet-row head" role="row">
        <span role="columnheader">Machine</span>
        {provider ? <span role="columnheader" className="wide">Customer</span> : null}
        <span role="columnheader">Status</span>
        <span role="columnheader">Last success</span>
        <span role="columnheader" className="wide">Next run</span>
        <span role="columnheader" className="num wide">Stored</span>
        <span role="columnheader" className="num wide">Quota</span>
        <span role="columnheader" className="wide">Proven restorable</span>
      </div>
      <div className="fleet-body" ref={scroller}>
        <div style={{ height: virtual.getTotalSize() }} className="fleet-space">
          {virtual.getVirtualItems().map((v) => {
            const r = rows[v.index]!;
            const safe = r.state.safe;
            const quota = safe?.quota_hard ?? null;
            const full = quota && safe ? safe.stored_bytes / quota : 0;
            return (
              <div key={r.machine.id} role="row" className="fleet-row" style={{ transform: `translateY(${v.start}px)` }}>
                <span role="cell"><Link to={`/machines/${r.machine.id}`}>{r.machine.name}</Link></span>
                {provider ? <span role="cell" className="wide">{r.state.customer_name}</span> : null}
                <span role="cell"><StatusBadge status={r.state.status} /></span>
                <span role="cell" title={formatTime(r.state.last_success_at)}>{formatAge(r.state.last_success_at)}</span>
                <span role="cell" className="wide" title={formatTime(r.state.next_run_at)}>{r.state.next_run_at ? formatAge(r.state.next_run_at) : '—'}</span>
                <span role="cell" className="num wide">{formatBytes(safe?.stored_bytes)}</span>
                <span role="cell" className={`num wide ${full >= 0.9 ? 'warn' : ''}`}>{quota ? `${formatBytes(quota)} (${Math.round(full * 100)}%)` : '—'}</span>
                <span role="cell" className="wide" title={formatTime(r.machine.proven_restorable_at)}>{r.machine.proven_restorable_at ? formatAge(r.machine.proven_restorable_at) : '—'}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}

/**
 * The fleet dashboard: every machine the person may see with its status
 * (lib/fleet-status.ts), last success, next run, stored size and quota;
 * counts at the top (each a filter), a search by machine or customer name,
 * the failures of the last 24 hours. The list is virtualised: only the rows
 * on screen are in the page, so a fleet of thousands scrolls smoothly.
 */
import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useMemo, useRef, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import type { CustomerBody, JobBody, MachineBody, SafeBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { JobStateBadge, StatusBadge } from '../components/status-badge.js';
import { formatAge, formatBytes, formatTime } from '../format.js';
import { countByStatus, FLEET_STATUSES, machineState, mapLimited, type FleetStatus, type MachineState } from '../lib/fleet-status.js';
import { useLoad } from '../load.js';
import { isProviderRole, useSession, useUser } from '../session.js';

/** One row: the machine, its disk safe, its customer and its state. */
export interface FleetRow {
  machine: MachineBody;
  safe: SafeBody | undefined;
  customer: CustomerBody | undefined;
  /** From its newest snapshot's time until its jobs are read (then running and failed can be told too). */
  state: MachineState<JobBody>;
  nextRun: string | null;
}

const ROW_HEIGHT = 44;

export function FleetPage() {
  const { api } = useSession();
  const user = useUser();
  const provider = isProviderRole(user);
  const base = useLoad(async () => {
    const [machines, safes, customers] = await Promise.all([api.machines(), api.safes(), provider ? api.customers() : Promise.resolve([])]);
    return { machines, safes, customers };
  }, [api, provider]);
  const states = useMachineStates(base.data?.machines);
  const fleet = { ...base, error: base.error ?? states.error };

  const rows = useMemo(() => {
    if (!base.data) return [];
    const now = Date.now();
    const safeOf = new Map(base.data.safes.filter((s) => s.machine_id).map((s) => [s.machine_id!, s]));
    const customerOf = new Map(base.data.customers.map((c) => [c.id, c]));
    return base.data.machines.map((machine): FleetRow => ({
      machine, safe: safeOf.get(machine.id), customer: customerOf.get(machine.customer_id), state: states.byMachine.get(machine.id) ?? machineState([], now, machine.last_backup_at), nextRun: null,
    }));
  }, [base.data, states.byMachine]);

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
      && (!q || r.machine.name.toLowerCase().includes(q) || (r.customer?.name.toLowerCase().includes(q) ?? false)))
      .sort((a, b) => a.machine.name.localeCompare(b.machine.name));
  }, [rows, query, statusFilter]);
  const failures = useMemo(() => rows.flatMap((r) => r.state.failures24h.map((job) => ({ job, row: r })))
    .sort((a, b) => Date.parse(b.job.finished_at!) - Date.parse(a.job.finished_at!)), [rows]);

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
        {states.read < rows.length ? <span className="muted" role="status">reading their jobs (running, failed): {states.read} of {rows.length}</span> : null}
      </div>
      {fleet.data && rows.length === 0 ? <p className="notice">No machines yet. {provider || user.role === 'customer-admin' ? <Link to="/admin/enrol">Enrol a machine</Link> : null}</p> : null}
      <MachineList rows={shown} provider={provider} />
      {failures.length > 0 ? (
        <>
          <h2>Failures in the last 24 hours</h2>
          <table className="list">
            <thead><tr><th>Machine</th><th>Job</th><th>State</th><th className="wide">Ended</th><th>Why</th></tr></thead>
            <tbody>
              {failures.map(({ job, row }) => (
                <tr key={job.id}>
                  <td><Link to={`/machines/${row.machine.id}`}>{row.machine.name}</Link></td>
                  <td><Link to={`/machines/${row.machine.id}?job=${job.id}`}>{job.kind}</Link></td>
                  <td><JobStateBadge state={job.state} /></td>
                  <td className="wide">{formatTime(job.finished_at)}</td>
                  <td className="why">{job.error ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
    </section>
  );
}

/**
 * Each machine's state with its jobs: read a few machines at a time after
 * the list is shown (with the states its newest snapshot gives), published
 * as they come: whether a backup runs or the last one failed is only in a
 * machine's jobs, and the API has no call that gives them for every machine.
 */
function useMachineStates(machines: MachineBody[] | undefined): { byMachine: Map<string, MachineState<JobBody>>; read: number; error: string | null } {
  const { api } = useSession();
  const [byMachine, setByMachine] = useState(() => new Map<string, MachineState<JobBody>>());
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!machines) return;
    let stopped = false;
    const found = new Map<string, MachineState<JobBody>>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Publishing every answer would lay the list out a thousand times: at most every 100 ms.
    const publish = (): void => {
      timer = undefined;
      if (!stopped) setByMachine(new Map(found));
    };
    const now = Date.now();
    setByMachine(new Map());
    setError(null);
    void mapLimited(machines, 8, async (m) => {
      if (stopped) return;
      found.set(m.id, machineState(await api.machineJobs(m.id), now, m.last_backup_at));
      timer ??= setTimeout(publish, 100);
    }).then(publish, (e: unknown) => { if (!stopped) setError(describeError(e)); });
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [api, machines]);
  return { byMachine, read: byMachine.size, error };
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
      </div>
      <div className="fleet-body" ref={scroller}>
        <div style={{ height: virtual.getTotalSize() }} className="fleet-space">
          {virtual.getVirtualItems().map((v) => {
            const r = rows[v.index]!;
            const quota = r.safe?.quota_hard ?? r.customer?.quota_hard ?? null;
            const full = quota && r.safe ? r.safe.stored_bytes / quota : 0;
            return (
              <div key={r.machine.id} role="row" className="fleet-row" style={{ transform: `translateY(${v.start}px)` }}>
                <span role="cell"><Link to={`/machines/${r.machine.id}`}>{r.machine.name}</Link></span>
                {provider ? <span role="cell" className="wide">{r.customer?.name ?? r.machine.customer_id}</span> : null}
                <span role="cell"><StatusBadge status={r.state.status} /></span>
                <span role="cell" title={formatTime(r.state.lastSuccessAt)}>{formatAge(r.state.lastSuccessAt)}</span>
                <span role="cell" className="wide">{r.nextRun ? formatAge(r.nextRun) : '—'}</span>
                <span role="cell" className="num wide">{formatBytes(r.safe?.stored_bytes)}</span>
                <span role="cell" className={`num wide ${full >= 0.9 ? 'warn' : ''}`}>{quota ? `${formatBytes(quota)} (${Math.round(full * 100)}%)` : '—'}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}

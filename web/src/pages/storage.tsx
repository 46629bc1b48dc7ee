/**
 * Storage: the space each customer (provider staff) and each disk safe uses
 * now, against its quotas, largest first; one of them over the last 30
 * days as a chart, with its growth per day and when its hard quota fills
 * (the largest customer's, or safe's, until another is picked).
 */
import { useState } from 'react';
import { Link } from 'react-router';
import { ErrorBox } from '../components/error-box.js';
import { formatBytes } from '../format.js';
import { useLoad } from '../load.js';
import { isProviderRole, useSession, useUser } from '../session.js';
import { UsageHistory, type UsageSubject } from '../storage/usage-history.js';

function Fill({ used, quota }: { used: number; quota: number | null }) {
  if (!quota) return <span className="muted">no quota</span>;
  const share = used / quota;
  return (
    <span className="fill" title={`${Math.round(share * 100)}% of ${formatBytes(quota)}`}>
      <meter min={0} max={1} low={0.75} high={0.9} optimum={0} value={Math.min(share, 1)} />
      <span>{Math.round(share * 100)}% of {formatBytes(quota)}</span>
    </span>
  );
}

export function StoragePage() {
  const { api } = useSession();
  const user = useUser();
  const provider = isProviderRole(user);
  const data = useLoad(async () => {
    const [safes, machines, customers] = await Promise.all([api.safes(), api.machines(), provider ? api.customers() : Promise.resolve([])]);
    return { safes: [...safes].sort((a, b) => b.stored_bytes - a.stored_bytes), machines: new Map(machines.map((m) => [m.id, m])), customers };
  }, [api, provider]);
  const total = data.data?.safes.reduce((s, x) => s + x.stored_bytes, 0) ?? 0;
  const customerName = new Map(data.data?.customers.map((c) => [c.id, c.name]));
  const [picked, setPicked] = useState<UsageSubject | null>(null);
  const largestCustomer = data.data && [...data.data.customers].sort((a, b) => b.stored_bytes - a.stored_bytes)[0];
  const largestSafe = data.data?.safes[0];
  const shown: UsageSubject | null = picked
    ?? (largestCustomer ? { of: 'customers', id: largestCustomer.id, name: largestCustomer.name } : largestSafe ? { of: 'safes', id: largestSafe.id, name: largestSafe.name } : null);
  const historyButton = (subject: UsageSubject) => (
    <button type="button" className="link" aria-label={`History of ${subject.name}`} aria-pressed={shown?.of === subject.of && shown.id === subject.id} onClick={() => setPicked(subject)}>History</button>
  );
  return (
    <section className="page">
      <h1>Storage</h1>
      <ErrorBox error={data.error} retry={data.reload} />
      {data.data ? <p><strong>{formatBytes(total)}</strong> stored in {data.data.safes.length} disk safes.</p> : null}
      {shown ? <UsageHistory subject={shown} /> : null}
      {provider && data.data ? (
        <>
          <h2>Customers</h2>
          <table className="list" aria-label="customers' storage">
            <thead><tr><th>Customer</th><th className="num">Stored</th><th>Hard quota</th><th className="wide">Soft quota</th></tr></thead>
            <tbody>
              {[...data.data.customers].sort((a, b) => b.stored_bytes - a.stored_bytes).map((c) => (
                <tr key={c.id}>
                  <td>{c.name} {historyButton({ of: 'customers', id: c.id, name: c.name })}</td>
                  <td className="num">{formatBytes(c.stored_bytes)}</td>
                  <td><Fill used={c.stored_bytes} quota={c.quota_hard} /></td>
                  <td className="wide">{formatBytes(c.quota_soft)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
      {data.data ? (
        <>
          <h2>Disk safes</h2>
          <table className="list" aria-label="disk safes' storage">
            <thead><tr><th>Disk safe</th><th className="wide">Machine</th>{provider ? <th className="wide">Customer</th> : null}<th className="num">Stored</th><th>Hard quota</th></tr></thead>
            <tbody>
              {data.data.safes.map((s) => {
                const m = s.machine_id ? data.data!.machines.get(s.machine_id) : undefined;
                return (
                  <tr key={s.id}>
                    <td><code>{s.name}</code> {historyButton({ of: 'safes', id: s.id, name: s.name })}</td>
                    <td className="wide">{m ? <Link to={`/machines/${m.id}`}>{m.name}</Link> : <span className="muted">none</span>}</td>
                    {provider ? <td className="wide">{customerName.get(s.customer_id) ?? s.customer_id}</td> : null}
                    <td className="num">{formatBytes(s.stored_bytes)}</td>
                    <td><Fill used={s.stored_bytes} quota={s.quota_hard} /></td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      ) : null}
    </section>
  );
}

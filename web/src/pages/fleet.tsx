/** The fleet dashboard: every machine the person may see, with its disk safe's size and quota. */
import { Link } from 'react-router';
import { ErrorBox } from '../components/error-box.js';
import { formatAge, formatBytes } from '../format.js';
import { useLoad } from '../load.js';
import { useSession } from '../session.js';

export function FleetPage() {
  const { api } = useSession();
  const fleet = useLoad(async () => {
    const [machines, safes] = await Promise.all([api.machines(), api.safes()]);
    return { machines, safes };
  }, [api]);
  const safeOf = new Map(fleet.data?.safes.filter((s) => s.machine_id).map((s) => [s.machine_id!, s]));
  return (
    <section className="page">
      <h1>Fleet</h1>
      <ErrorBox error={fleet.error} retry={fleet.reload} />
      <table className="list">
        <thead><tr><th>Machine</th><th>Last seen</th><th>Stored</th><th>Quota</th></tr></thead>
        <tbody>
          {fleet.data?.machines.map((m) => {
            const safe = safeOf.get(m.id);
            return (
              <tr key={m.id}>
                <td><Link to={`/machines/${m.id}`}>{m.name}</Link></td>
                <td>{formatAge(m.last_seen_at)}</td>
                <td>{formatBytes(safe?.stored_bytes)}</td>
                <td>{formatBytes(safe?.quota_hard)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

/** Customers (provider staff): the list with what each stores and its quotas, a new customer, quotas changed (provider admins). */
import { useState, type FormEvent } from 'react';
import type { CustomerBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { formatBytes, formatTime } from '../format.js';
import { parseSize } from '../lib/sizes.js';
import { useLoad } from '../load.js';
import { useSession, useUser } from '../session.js';

export function CustomersSection() {
  const { api } = useSession();
  const user = useUser();
  const list = useLoad(() => api.customers(), [api]);
  const [name, setName] = useState('');
  const [hard, setHard] = useState('');
  const [error, setError] = useState<string | null>(null);
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      const q = parseSize(hard);
      await api.createCustomer({ name: name.trim(), ...(q ? { quota_hard: q } : {}) });
      setName('');
      setHard('');
      list.reload();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <>
      <ErrorBox error={list.error} retry={list.reload} />
      <table className="list" aria-label="customers">
        <thead><tr><th>Customer</th><th className="num">Stored</th><th>Hard quota</th><th className="wide">Soft quota</th><th className="wide">Since</th></tr></thead>
        <tbody>
          {list.data?.map((c) => <CustomerRow key={c.id} c={c} editable={user.role === 'provider-admin'} onSaved={list.reload} />)}
        </tbody>
      </table>
      {user.role === 'provider-admin' ? (
        <form className="card inline-form" onSubmit={(e) => void create(e)} aria-label="new customer">
          <h2>New customer</h2>
          <label>Name<input name="customer-name" value={name} onChange={(e) => setName(e.target.value)} required /></label>
          <label>Hard quota (optional)<input name="customer-quota" placeholder="e.g. 500 GiB" value={hard} onChange={(e) => setHard(e.target.value)} /></label>
          {error ? <p className="error" role="alert">{error}</p> : null}
          <div className="actions"><button type="submit">Create customer</button></div>
        </form>
      ) : null}
    </>
  );
}

function CustomerRow({ c, editable, onSaved }: { c: CustomerBody; editable: boolean; onSaved: () => void }) {
  const { api } = useSession();
  const [editing, setEditing] = useState(false);
  const [hard, setHard] = useState(c.quota_hard ? formatBytes(c.quota_hard) : '');
  const [soft, setSoft] = useState(c.quota_soft ? formatBytes(c.quota_soft) : '');
  const [error, setError] = useState<string | null>(null);
  const save = async (): Promise<void> => {
    setError(null);
    try {
      await api.updateCustomerQuotas(c.id, { quota_hard: parseSize(hard), quota_soft: parseSize(soft) });
      setEditing(false);
      onSaved();
    } catch (err) {
      setError(describeError(err));
    }
  };
  if (editing) {
    return (
      <tr>
        <td>{c.name}</td>
        <td className="num">{formatBytes(c.stored_bytes)}</td>
        <td><input aria-label={`hard quota of ${c.name}`} placeholder="none" value={hard} onChange={(e) => setHard(e.target.value)} /></td>
        <td className="wide"><input aria-label={`soft quota of ${c.name}`} placeholder="none" value={soft} onChange={(e) => setSoft(e.target.value)} /></td>
        <td className="wide">
          <div className="actions"><button type="button" onClick={() => void save()}>Save</button><button type="button" className="link" onClick={() => setEditing(false)}>Cancel</button></div>
          {error ? <p className="error" role="alert">{error}</p> : null}
        </td>
      </tr>
    );
  }
  return (
    <tr>
      <td>{c.name}</td>
      <td className="num">{formatBytes(c.stored_bytes)}</td>
      <td>{formatBytes(c.quota_hard)} {editable ? <button type="button" className="link" aria-label={`change the quotas of ${c.name}`} onClick={() => setEditing(true)}>change</button> : null}</td>
      <td className="wide">{formatBytes(c.quota_soft)}</td>
      <td className="wide">{formatTime(c.created_at)}</td>
    </tr>
  );
}

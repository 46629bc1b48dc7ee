/** API tokens: the list, a new token (its secret shown once), revoking one. */
import { useState, type FormEvent } from 'react';
import { CREATABLE_RIGHT_NAMES, type CreatedTokenBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { SecretOnce } from '../components/secret-once.js';
import { formatTime } from '../format.js';
import { mayManage, useSession, useUser } from '../session.js';
import { CustomerSelect, customerFor, useListWithCustomers } from './customer-select.js';

type Right = (typeof CREATABLE_RIGHT_NAMES)[number];

export function TokensSection() {
  const { api } = useSession();
  const user = useUser();
  const { data, customerName, provider } = useListWithCustomers((a) => a.tokens());
  const [name, setName] = useState('');
  const [customer, setCustomer] = useState('');
  const [rights, setRights] = useState<Right[]>(['read']);
  const [days, setDays] = useState('30');
  const [created, setCreated] = useState<CreatedTokenBody | null>(null);
  const [error, setError] = useState<string | null>(null);
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      const c = customerFor(user, customer);
      if (!c) throw new Error('Choose the customer the token acts for.');
      if (rights.length === 0) throw new Error('Give the token at least one right.');
      const d = days.trim() ? Number(days) : null;
      if (d !== null && !(d > 0)) throw new Error(`"${days}" is not a number of days.`);
      setCreated(await api.createToken({ name: name.trim(), customer_id: c, rights, ...(d ? { expires_at: new Date(Date.now() + d * 86_400_000).toISOString() } : {}) }));
      setName('');
      data.reload();
    } catch (err) {
      setError(describeError(err));
    }
  };
  const revoke = async (id: string): Promise<void> => {
    try {
      await api.revokeToken(id);
      data.reload();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <>
      <ErrorBox error={data.error} retry={data.reload} />
      <table className="list" aria-label="tokens">
        <thead><tr><th>Token</th><th>Rights</th>{provider ? <th className="wide">Customer</th> : null}<th className="wide">Expires</th><th></th></tr></thead>
        <tbody>
          {data.data?.items.map((t) => (
            <tr key={t.id} className={t.revoked_at ? 'remove' : ''}>
              <td>{t.name}{t.machine_id ? <span className="muted"> (a machine's)</span> : null}</td>
              <td>{t.rights.join(', ')}</td>
              {provider ? <td className="wide">{customerName.get(t.customer_id) ?? t.customer_id}</td> : null}
              <td className="wide">{t.revoked_at ? `revoked ${formatTime(t.revoked_at)}` : t.expires_at ? formatTime(t.expires_at) : 'never'}</td>
              <td>{!t.revoked_at && mayManage(user) ? <button type="button" className="link" onClick={() => void revoke(t.id)} aria-label={`revoke ${t.name}`}>Revoke</button> : null}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {created ? <SecretOnce what={`The secret of the token ${created.token.name}`} secret={created.secret} onDone={() => setCreated(null)} /> : null}
      {mayManage(user) ? (
        <form className="card inline-form" onSubmit={(e) => void create(e)} aria-label="new token">
          <h2>New token</h2>
          <label>Name<input name="token-name" value={name} onChange={(e) => setName(e.target.value)} required /></label>
          <CustomerSelect user={user} customers={data.data?.customers} value={customer} onChange={setCustomer} />
          <fieldset className="rights">
            <legend>Rights</legend>
            {CREATABLE_RIGHT_NAMES.map((r) => (
              <label key={r} className="inline"><input type="checkbox" checked={rights.includes(r)} onChange={(e) => setRights(e.target.checked ? [...rights, r] : rights.filter((x) => x !== r))} /> {r}</label>
            ))}
          </fieldset>
          <label>Expires after (days; empty: never)<input name="days" inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} /></label>
          {error ? <p className="error" role="alert">{error}</p> : null}
          <div className="actions"><button type="submit">Create token</button></div>
        </form>
      ) : null}
    </>
  );
}

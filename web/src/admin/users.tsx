/** Users: the list, and a new user with its role (and customer), whose one-time password is shown once. */
import { useState, type FormEvent } from 'react';
import { ROLE_NAMES, type CreatedUserBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { SecretOnce } from '../components/secret-once.js';
import { formatTime } from '../format.js';
import { mayManage, useSession, useUser } from '../session.js';
import { CustomerSelect, customerFor, useListWithCustomers } from './customer-select.js';

type Role = (typeof ROLE_NAMES)[number];

export function UsersSection() {
  const { api } = useSession();
  const user = useUser();
  const { data, customerName, provider } = useListWithCustomers((a) => a.users());
  const roles: readonly Role[] = user.role === 'provider-admin' ? ROLE_NAMES : ['customer-admin', 'customer-viewer'];
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>(roles[roles.length - 1]!);
  const [customer, setCustomer] = useState('');
  const [created, setCreated] = useState<CreatedUserBody | null>(null);
  const [error, setError] = useState<string | null>(null);
  const customerRole = role.startsWith('customer-');
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      const c = customerFor(user, customer);
      if (customerRole && !c) throw new Error('Choose the customer this user belongs to.');
      setCreated(await api.createUser({ name: name.trim(), role, ...(customerRole ? { customer_id: c } : {}) }));
      setName('');
      data.reload();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <>
      <ErrorBox error={data.error} retry={data.reload} />
      <table className="list" aria-label="users">
        <thead><tr><th>User</th><th>Role</th>{provider ? <th className="wide">Customer</th> : null}<th className="wide">Since</th></tr></thead>
        <tbody>
          {data.data?.items.map((u) => (
            <tr key={u.id}>
              <td>{u.name}{u.must_change_password ? <span className="muted"> (has not logged in yet)</span> : null}</td>
              <td>{u.role}</td>
              {provider ? <td className="wide">{u.customer_id ? customerName.get(u.customer_id) ?? u.customer_id : '—'}</td> : null}
              <td className="wide">{formatTime(u.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {created ? <SecretOnce what={`The one-time password of ${created.user.name} (to be changed at the first login)`} secret={created.password} onDone={() => setCreated(null)} /> : null}
      {mayManage(user) && (user.role === 'provider-admin' || user.role === 'customer-admin') ? (
        <form className="card inline-form" onSubmit={(e) => void create(e)} aria-label="new user">
          <h2>New user</h2>
          <label>Name<input name="user-name" value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9._@\-]{0,99}" title="letters, digits and . _ @ -" /></label>
          <label>Role<select name="role" aria-label="Role" value={role} onChange={(e) => setRole(e.target.value as Role)}>{roles.map((r) => <option key={r} value={r}>{r}</option>)}</select></label>
          {customerRole ? <CustomerSelect user={user} customers={data.data?.customers} value={customer} onChange={setCustomer} /> : null}
          {error ? <p className="error" role="alert">{error}</p> : null}
          <div className="actions"><button type="submit">Create user</button></div>
        </form>
      ) : null}
    </>
  );
}

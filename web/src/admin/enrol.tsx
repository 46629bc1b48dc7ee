/**
 * Enrol a machine: an enrolment token of the customer (`enroll`, for a
 * few days) and the one command to run on the machine, which makes its
 * machine and disk safe on the server and starts nothing else.
 */
import { useState, type FormEvent } from 'react';
import type { CreatedTokenBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { Command, FingerprintField, fingerprintArg, useFingerprint } from '../components/fingerprint.js';
import { formatTime } from '../format.js';
import { useLoad } from '../load.js';
import { isProviderRole, useSession, useUser } from '../session.js';
import { CustomerSelect, customerFor } from './customer-select.js';

/** The shell command that enrols machine `name` with the enrolment token's secret. */
export function enrolCommand(origin: string, secret: string, fingerprint: string, name: string): string {
  const machine = name.trim() ? ` --name ${name.trim()}` : '';
  return `holdfast agent enroll --server ${origin} --token ${secret} ${fingerprintArg(fingerprint)}${machine} && holdfast agent run`;
}

export function EnrolSection() {
  const { api } = useSession();
  const user = useUser();
  const customers = useLoad(() => (isProviderRole(user) ? api.customers() : Promise.resolve([])), [api, user]);
  const [customer, setCustomer] = useState('');
  const [name, setName] = useState('');
  const [days, setDays] = useState('7');
  const [fingerprint, setFingerprint] = useFingerprint();
  const [token, setToken] = useState<CreatedTokenBody | null>(null);
  const [error, setError] = useState<string | null>(null);
  const make = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      const c = customerFor(user, customer);
      if (!c) throw new Error('Choose the customer the machine belongs to.');
      const d = Number(days);
      if (!(d > 0 && d <= 365)) throw new Error('The token lives between 1 and 365 days.');
      setToken(await api.createToken({
        name: `enrol ${name.trim() || 'a machine'}`, customer_id: c, rights: ['enroll'], expires_at: new Date(Date.now() + d * 86_400_000).toISOString(),
      }));
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <form className="card" onSubmit={(e) => void make(e)} aria-label="enrol a machine">
      <p>Enrolment makes the machine and its disk safe on this server; the machine makes its own password, which the server never sees.</p>
      <CustomerSelect user={user} customers={customers.data} value={customer} onChange={setCustomer} />
      <label>The machine's name (optional: its host name)<input name="machine-name" placeholder="web1" value={name} onChange={(e) => setName(e.target.value)} /></label>
      <label>The token may be used for (days)<input name="days" inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} /></label>
      <FingerprintField value={fingerprint} onChange={setFingerprint} />
      {error ? <p className="error" role="alert">{error}</p> : null}
      {!token ? <div className="actions"><button type="submit">Make the enrolment command</button></div> : (
        <>
          <p className="notice">Run this as root on the machine (the token enrols machines of this customer until {formatTime(token.token.expires_at)}; its secret is shown this once):</p>
          <Command label="enrol command" text={enrolCommand(location.origin, token.secret, fingerprint, name)} />
          <div className="actions"><button type="button" className="secondary" onClick={() => setToken(null)}>Another machine</button></div>
        </>
      )}
    </form>
  );
}

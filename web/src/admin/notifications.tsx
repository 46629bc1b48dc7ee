/**
 * Notification channels: where a customer's (or, for provider staff, every
 * customer's) events go — a webhook or e-mail —, which events, "send a
 * test" with what the receiver answered, the last deliveries, turning a
 * channel off and removing it.
 */
import { useState, type FormEvent } from 'react';
import { CHANNEL_KIND_NAMES, EVENT_KIND_NAMES, SMTP_SECURITY_NAMES, type ChannelBody, type CreateChannelRequest, type CustomerBody, type DeliveryBody, type EventKindName } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { SecretOnce } from '../components/secret-once.js';
import { formatTime } from '../format.js';
import { isProviderRole, mayManage, useSession, useUser } from '../session.js';
import { CustomerSelect, useListWithCustomers } from './customer-select.js';

/** The events in words. */
export const EVENT_WORDS: Record<EventKindName, string> = {
  'job.failed': 'a job failed', 'verify.damage': 'a verification found damage', 'restore-test.failed': 'a restore test failed',
  'quota.warn': 'a quota is 90% used', 'quota.exceeded': 'a quota is exceeded', 'machine.stale': 'a machine is stale', 'machine.recovered': 'a stale machine backed up again',
};

type Kind = (typeof CHANNEL_KIND_NAMES)[number];
type Security = (typeof SMTP_SECURITY_NAMES)[number];

export function NotificationsSection() {
  const user = useUser();
  const { data, customerName, provider } = useListWithCustomers((a) => a.channels());
  return (
    <>
      <ErrorBox error={data.error} retry={data.reload} />
      <table className="list" aria-label="notification channels">
        <thead><tr><th>Channel</th><th>Sends to</th>{provider ? <th className="wide">Customer</th> : null}<th className="wide">Events</th><th></th></tr></thead>
        <tbody>
          {data.data?.items.map((c) => <ChannelRow key={c.id} c={c} customer={c.customer_id ? customerName.get(c.customer_id) ?? c.customer_id : 'every customer'} provider={provider} onChanged={data.reload} />)}
          {data.data?.items.length === 0 ? <tr><td colSpan={5} className="muted">No channel yet: nobody is told when a backup fails.</td></tr> : null}
        </tbody>
      </table>
      {mayManage(user) ? <NewChannel customers={data.data?.customers} onCreated={data.reload} /> : null}
    </>
  );
}

function ChannelRow({ c, customer, provider, onChanged }: { c: ChannelBody; customer: string; provider: boolean; onChanged: () => void }) {
  const { api } = useSession();
  const user = useUser();
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [deliveries, setDeliveries] = useState<DeliveryBody[] | null>(null);
  const act = async (fn: () => Promise<unknown>): Promise<void> => {
    setBusy(true);
    try {
      await fn();
    } catch (e) {
      setResult({ ok: false, text: describeError(e) });
    } finally {
      setBusy(false);
    }
  };
  const test = (): Promise<void> => act(async () => {
    setResult(null);
    const r = await api.testChannel(c.id);
    setResult(r.delivered ? { ok: true, text: 'The test arrived.' } : { ok: false, text: `The test did not arrive: ${r.error ?? 'no reason given'}` });
  });
  return (
    <>
      <tr className={c.enabled ? '' : 'remove'}>
        <td>{c.name}{c.enabled ? null : <span className="muted"> (off)</span>}</td>
        <td className="why">{c.kind === 'webhook' ? <code>{c.webhook?.url}</code> : <span>e-mail to {c.email?.to.join(', ')}</span>}</td>
        {provider ? <td className="wide">{customer}</td> : null}
        <td className="wide">{c.events.map((e) => EVENT_WORDS[e]).join('; ')}</td>
        <td>
          <div className="actions">
            {mayManage(user) ? <button type="button" className="secondary" disabled={busy} onClick={() => void test()} aria-label={`send a test to ${c.name}`}>Send a test</button> : null}
            <button type="button" className="link" onClick={() => void act(async () => setDeliveries(deliveries ? null : await api.deliveries(c.id)))}>Deliveries</button>
            {mayManage(user) ? <button type="button" className="link" onClick={() => void act(async () => { await api.updateChannel(c.id, { enabled: !c.enabled }); onChanged(); })}>{c.enabled ? 'Turn off' : 'Turn on'}</button> : null}
            {mayManage(user) ? <button type="button" className="link" aria-label={`remove ${c.name}`} onClick={() => void act(async () => { await api.deleteChannel(c.id); onChanged(); })}>Remove</button> : null}
          </div>
          {result ? <p className={result.ok ? 'notice' : 'error'} role={result.ok ? 'status' : 'alert'}>{result.text}</p> : null}
        </td>
      </tr>
      {deliveries ? (
        <tr><td colSpan={5}>
          {deliveries.length === 0 ? <span className="muted">Nothing sent yet.</span> : (
            <table className="list" aria-label={`deliveries of ${c.name}`}>
              <tbody>
                {deliveries.map((d) => (
                  <tr key={d.id}><td>{formatTime(d.created_at)}</td><td>{d.summary}</td><td><span className={`badge ${d.state === 'sent' ? 'ok' : d.state === 'failed' ? 'failed' : 'running'}`}>{d.state}</span></td><td className="why">{d.last_error ?? ''}</td></tr>
                ))}
              </tbody>
            </table>
          )}
        </td></tr>
      ) : null}
    </>
  );
}

function NewChannel({ customers, onCreated }: { customers: CustomerBody[] | undefined; onCreated: () => void }) {
  const { api } = useSession();
  const user = useUser();
  const [name, setName] = useState('');
  const [kind, setKind] = useState<Kind>('webhook');
  const [customer, setCustomer] = useState('');
  const [events, setEvents] = useState<EventKindName[]>(['job.failed', 'machine.stale', 'quota.exceeded']);
  const [url, setUrl] = useState('');
  const [mail, setMail] = useState({ host: '', port: '', security: 'starttls' as Security, username: '', password: '', from: '', to: '' });
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      if (events.length === 0) throw new Error('Choose at least one event to send.');
      const body: CreateChannelRequest = { name: name.trim(), kind, events, ...(isProviderRole(user) && customer ? { customer_id: customer } : {}) };
      if (kind === 'webhook') body.webhook = { url: url.trim() };
      else {
        const to = mail.to.split(/[\s,]+/).filter(Boolean);
        if (to.length === 0) throw new Error('Give at least one address to send to.');
        body.email = {
          host: mail.host.trim(), from: mail.from.trim(), to, security: mail.security,
          ...(mail.port.trim() ? { port: Number(mail.port) } : {}), ...(mail.username ? { username: mail.username } : {}), ...(mail.password ? { password: mail.password } : {}),
        };
      }
      const created = await api.createChannel(body);
      setSecret(created.secret);
      setName('');
      onCreated();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <>
      {secret ? <SecretOnce what="The webhook's signing secret (each request carries holdfast-signature, an HMAC-SHA256 with it)" secret={secret} onDone={() => setSecret(null)} /> : null}
      <form className="card inline-form" onSubmit={(e) => void create(e)} aria-label="new channel">
        <h2>New channel</h2>
        <label>Name<input name="channel-name" value={name} onChange={(e) => setName(e.target.value)} required /></label>
        {isProviderRole(user) ? (
          <CustomerSelect user={user} customers={customers} value={customer} onChange={setCustomer} optional="every customer (the provider's own)" />
        ) : null}
        <fieldset className="rights">
          <legend>Send</legend>
          {CHANNEL_KIND_NAMES.map((k) => <label key={k} className="inline"><input type="radio" name="kind" checked={kind === k} onChange={() => setKind(k)} /> {k === 'webhook' ? 'a webhook' : 'e-mail'}</label>)}
        </fieldset>
        {kind === 'webhook' ? (
          <label>URL<input name="url" type="url" placeholder="https://hooks.example.net/holdfast" value={url} onChange={(e) => setUrl(e.target.value)} required /></label>
        ) : (
          <div className="rules">
            <label>SMTP server<input name="smtp-host" value={mail.host} onChange={(e) => setMail({ ...mail, host: e.target.value })} required /></label>
            <label>Port<input name="smtp-port" inputMode="numeric" placeholder="587" value={mail.port} onChange={(e) => setMail({ ...mail, port: e.target.value })} /></label>
            <label>Security<select name="smtp-security" value={mail.security} onChange={(e) => setMail({ ...mail, security: e.target.value as Security })}>{SMTP_SECURITY_NAMES.map((x) => <option key={x}>{x}</option>)}</select></label>
            <label>User<input name="smtp-user" value={mail.username} onChange={(e) => setMail({ ...mail, username: e.target.value })} /></label>
            <label>Password<input name="smtp-password" type="password" value={mail.password} onChange={(e) => setMail({ ...mail, password: e.target.value })} /></label>
            <label>From<input name="from" type="email" value={mail.from} onChange={(e) => setMail({ ...mail, from: e.target.value })} required /></label>
            <label>To (addresses)<input name="to" value={mail.to} onChange={(e) => setMail({ ...mail, to: e.target.value })} required /></label>
          </div>
        )}
        <fieldset>
          <legend>Events</legend>
          {EVENT_KIND_NAMES.map((ev) => (
            <label key={ev} className="inline"><input type="checkbox" checked={events.includes(ev)} onChange={(e) => setEvents(e.target.checked ? [...events, ev] : events.filter((x) => x !== ev))} /> {EVENT_WORDS[ev]}</label>
          ))}
        </fieldset>
        {error ? <p className="error" role="alert">{error}</p> : null}
        <div className="actions"><button type="submit">Create channel</button></div>
      </form>
    </>
  );
}

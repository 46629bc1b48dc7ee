/**
 * Notifications over real HTTPS, to receivers on loopback: a webhook
 * receiver that checks each delivery's signature and body, and a real SMTP
 * server that receives the e-mails. With the server's clock injected (no
 * test waits for real hours): a failed job is told to its customer's
 * channels and the provider's, never to another customer's; a receiver
 * that fails is tried again with backoff, and given up after the last
 * attempt with a record; the stale-machine alert fires once when the
 * machine's last backup is older than its threshold and once when it
 * recovers; "send a test" reports what came of it; a customer's token
 * cannot see or change another customer's channels (404), and never sees a
 * secret. From the attacker's side: a customer whose webhooks and SMTP
 * server answer a byte at a time holds up no other customer's alerts, and
 * is cut off at the deadline; a customer cannot make more than 20
 * channels; a name that resolves to the server's loopback when a delivery
 * is sent is refused then, unless the provider allows it.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli, Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { startDrippingSmtpServer, startSmtpServer, startWebhookReceiver, verifySignature, type TestSmtpServer, type WebhookReceiver } from '../helpers/notify-receivers.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

const HOUR = 3600_000;

databaseSuites('notifications: webhooks, e-mail, the stale-machine alert', (fx) => {
  let t: TestServer;
  let now = Date.parse('2030-01-01T00:00:00.000Z');
  let acme = '';
  let other = '';
  let machine = '';
  let agent = '';
  let otherAgent = '';
  let manage = '';
  let otherManage = '';
  let otherMachine = '';
  let otherSafe = '';
  const receivers: Record<string, WebhookReceiver> = {};
  let smtp: TestSmtpServer;
  const secret = 'the acme webhook secret, 32 chars';
  let acmeHook = '';
  let otherHook = '';
  let providerHook = '';
  let providerSecret = '';

  before(async () => {
    t = await setUp(await fx.newUrl(), undefined, {
      clock: () => new Date(now), staleAfterMs: 3 * HOUR, alertTickMs: 3600_000,
      delivery: { attempts: 3, firstDelayMs: 1000, maxDelayMs: 60_000, pollMs: 3600_000, timeoutMs: 5000, concurrency: 3, perCustomer: 2 },
    });
    for (const name of ['acme', 'other', 'provider', 'flaky']) receivers[name] = await startWebhookReceiver(`/${name}`);
    smtp = await startSmtpServer({ user: 'alerts', password: 'smtp password' });
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    other = (await t.create('/api/v1/customers', { name: 'Other' })).id;
    machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
    await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web1' });
    agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'web1 agent', rights: ['backup'] })).secret;
    manage = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] })).secret;
    otherManage = (await t.create('/api/v1/tokens', { customer_id: other, name: 'ops', rights: ['read', 'manage'] })).secret;
    otherMachine = (await t.create('/api/v1/machines', { customer_id: other, name: 'web1' })).id;
    otherSafe = (await t.create('/api/v1/safes', { customer_id: other, machine_id: otherMachine, name: 'other-web1' })).id;
    otherAgent = (await t.create('/api/v1/tokens', { customer_id: other, machine_id: otherMachine, name: 'other web1 agent', rights: ['backup'] })).secret;

    acmeHook = (await t.create('/api/v1/notifications', {
      name: 'ops hook', customer_id: acme, kind: 'webhook', events: ['job.failed', 'machine.stale', 'machine.recovered'], webhook: { url: receivers['acme']!.url, secret },
    }, manage)).channel.id;
    otherHook = (await t.create('/api/v1/notifications', {
      name: 'ops hook', customer_id: other, kind: 'webhook', events: ['job.failed', 'machine.stale', 'machine.recovered', 'quota.warn', 'quota.exceeded'], webhook: { url: receivers['other']!.url },
    }, otherManage)).channel.id;
    const provider = await t.create('/api/v1/notifications', { name: 'noc', kind: 'webhook', events: ['job.failed'], webhook: { url: receivers['provider']!.url } });
    providerHook = provider.channel.id;
    providerSecret = provider.secret;
    await t.create('/api/v1/notifications', {
      name: 'mail', customer_id: acme, kind: 'email', events: ['job.failed', 'machine.stale'],
      email: { host: '127.0.0.1', port: smtp.port, security: 'none', username: 'alerts', password: 'smtp password', from: 'holdfast@example.net', to: ['ops@acme.example'] },
    }, manage);
  });
  after(async () => {
    await t.stop();
    for (const r of Object.values(receivers)) await r.close();
    await smtp.close();
  });

  /** Runs a job of the machine (Acme's web1 unless `on` says) through its agent to the end `state` (`error` for a failure). */
  const runJob = async (state: 'succeeded' | 'failed', error?: string, on = { machine, agent }): Promise<string> => {
    const queued = await t.call('POST', `/api/v1/machines/${on.machine}/jobs`, { token: t.adminToken, body: { kind: 'backup', spec: { paths: ['/srv'] } } });
    assert.equal(queued.status, 201, queued.text);
    const taken = await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: on.agent });
    assert.equal(taken.body.id, queued.body.id);
    const end = await t.call('POST', `/api/v1/agent/jobs/${queued.body.id}/result`, { token: on.agent, body: { state, ...(error ? { error } : {}) } });
    assert.equal(end.status, 200, end.text);
    return queued.body.id as string;
  };
  const events = (r: WebhookReceiver, kind: string) => r.hits.filter((h) => h.json?.event === kind);

  it('tells a failed job to the customer\'s webhook (signed) and e-mail and to the provider\'s, never to another customer\'s', async () => {
    const job = await runJob('failed', 'cannot read /srv: permission denied');
    await t.server.checkAlerts();
    const [hit, ...more] = receivers['acme']!.hits;
    assert.ok(hit, 'the customer\'s webhook got the event');
    assert.equal(more.length, 0);
    assert.equal(verifySignature(hit.headers['holdfast-signature'], hit.body, secret), Math.floor(now / 1000), 'signed with the channel\'s secret at the server\'s time');
    assert.throws(() => verifySignature(hit.headers['holdfast-signature'], hit.body.replace('permission', 'permisson'), secret), /does not match/);
    assert.equal(hit.headers['holdfast-event'], 'job.failed');
    const body = hit.json;
    assert.equal(body.event, 'job.failed');
    assert.deepEqual(body.customer, { id: acme, name: 'Acme' });
    assert.deepEqual(body.machine, { id: machine, name: 'web1' });
    assert.equal(body.safe.name, 'acme-web1');
    assert.deepEqual(body.job, { id: job, kind: 'backup' });
    assert.equal(body.summary, 'machine web1 of Acme: the backup job failed: cannot read /srv: permission denied');
    assert.equal(body.at, new Date(now).toISOString());

    const [toProvider] = receivers['provider']!.hits;
    assert.ok(toProvider, 'the provider\'s channel gets every customer\'s events');
    verifySignature(toProvider.headers['holdfast-signature'], toProvider.body, providerSecret);
    assert.equal(toProvider.json.id, body.id, 'one event, one id, whichever channel');
    assert.equal(receivers['other']!.hits.length, 0, 'another customer\'s channel is told nothing');

    assert.equal(smtp.mails.length, 1);
    const mail = smtp.mails[0]!;
    assert.equal(mail.user, 'alerts', 'logged in with the stored password');
    assert.deepEqual(mail.to, ['ops@acme.example']);
    assert.equal(mail.from, 'holdfast@example.net');
    assert.equal(mail.subject, '[holdfast] machine web1 of Acme: the backup job failed: cannot read /srv: permission denied');
    assert.match(mail.raw, /Machine: web1 \(/);

    const deliveries = (await t.call('GET', `/api/v1/notifications/${acmeHook}/deliveries`, { token: manage })).body;
    assert.deepEqual(deliveries.map((d: { event: string; state: string; attempts: number }) => [d.event, d.state, d.attempts]), [['job.failed', 'sent', 1]]);
  });

  it('tells of a job its agent left unfinished (it restarted) as interrupted', async () => {
    const before = events(receivers['acme']!, 'job.failed').length;
    const queued = await t.call('POST', `/api/v1/machines/${machine}/jobs`, { token: manage, body: { kind: 'backup', spec: { paths: ['/srv'] } } });
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, queued.body.id);
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).status, 204, 'polls again without reporting');
    await t.server.checkAlerts();
    const told = events(receivers['acme']!, 'job.failed').slice(before);
    assert.equal(told.length, 1);
    assert.equal(told[0]!.json.summary, 'machine web1 of Acme: the backup job was interrupted: the agent asked for another job without reporting the end of this one (it was restarted or killed)');
    assert.deepEqual(told[0]!.json.job, { id: queued.body.id, kind: 'backup' });
    assert.equal(told[0]!.json.details.state, 'interrupted');
  });

  it('puts an agent\'s error into an alert without control characters and cut to 500 characters; refuses a machine name with control characters', async () => {
    const queued = await t.call('POST', `/api/v1/machines/${machine}/jobs`, { token: manage, body: { kind: 'check', spec: {} } });
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, queued.body.id);
    const nul = await t.call('POST', `/api/v1/agent/jobs/${queued.body.id}/result`, { token: agent, body: { state: 'failed', error: 'a\u0000b' } });
    assert.equal(nul.status, 400, `a NUL (PostgreSQL stores none) is bad input, not a 500: ${nul.text}`);
    await t.call('POST', `/api/v1/agent/jobs/${queued.body.id}/result`, { token: agent, body: { state: 'failed', error: 'ended' } });
    await runJob('failed', `disk full\r\nBcc: victim@example.net\u0007\u001b[2J${'x'.repeat(5000)}`);
    await t.server.checkAlerts();
    const told = events(receivers['acme']!, 'job.failed').at(-1);
    const error = told!.json.details.error as string;
    assert.equal(error.length, 500);
    assert.ok(error.startsWith('disk full  Bcc: victim@example.net  [2Jxxx'), error.slice(0, 60));
    // eslint-disable-next-line no-control-regex -- control characters are what it looks for
    assert.doesNotMatch(told!.json.summary, /[\u0000-\u001f\u007f]/);
    assert.ok(told!.json.summary.length < 600);
    for (const name of ['web\n2', 'web\r2', 'web\u00002', 'web\u007f']) {
      const r = await t.call('POST', '/api/v1/machines', { token: manage, body: { customer_id: acme, name } });
      assert.equal(r.status, 400, `${JSON.stringify(name)}: ${r.text}`);
    }
  });

  it('tries a failing receiver again with backoff, and gives up after the last attempt with a record', async () => {
    const flaky = receivers['flaky']!;
    const id = (await t.create('/api/v1/notifications', { name: 'flaky', customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url: flaky.url } }, manage)).channel.id;
    const deliveries = async () => (await t.call('GET', `/api/v1/notifications/${id}/deliveries`, { token: manage })).body as { state: string; attempts: number; last_error: string | null; next_attempt_at: string }[];
    flaky.answers = [503, 500];
    await runJob('failed', 'first');
    await t.server.checkAlerts();
    assert.equal(flaky.hits.length, 1);
    let [d] = await deliveries();
    assert.equal(d!.state, 'pending');
    assert.match(d!.last_error!, /^the webhook http:\/\/127\.0\.0\.1:\d+\/… answered 503$/, 'the status only: not the receiver\'s answer, not the URL\'s path');
    assert.equal(d!.next_attempt_at, new Date(now + 1000).toISOString(), 'the first retry after firstDelayMs');
    await t.server.checkAlerts();
    assert.equal(flaky.hits.length, 1, 'not tried again before its time');
    now += 1000;
    await t.server.checkAlerts();
    [d] = await deliveries();
    assert.equal(d!.next_attempt_at, new Date(now + 2000).toISOString(), 'the wait doubles');
    now += 2000;
    await t.server.checkAlerts();
    assert.deepEqual(flaky.hits.map((h) => h.status), [503, 500, 200]);
    assert.equal(new Set(flaky.hits.map((h) => h.json.id)).size, 1, 'the same event each time');
    [d] = await deliveries();
    assert.deepEqual([d!.state, d!.attempts], ['sent', 3]);

    flaky.answers = [500, 502, 503, 500];
    await runJob('failed', 'second');
    for (let i = 0; i < 4; i++) {
      await t.server.checkAlerts();
      now += 10_000;
    }
    assert.deepEqual(flaky.hits.slice(3).map((h) => h.status), [500, 502, 503], 'three attempts, then no more');
    [d] = await deliveries();
    assert.equal(d!.state, 'failed');
    assert.match(d!.last_error!, /^gave up after 3 attempts: the webhook http:\/\/127\.0\.0\.1:\d+\/… answered 503$/);
    await t.call('DELETE', `/api/v1/notifications/${id}`, { token: manage });
  });

  it('alerts once when a machine goes stale and once when it recovers, stale from when it crossed its threshold', async () => {
    await runJob('succeeded');
    const lastSuccess = now;
    const acmeHits = receivers['acme']!;
    const mailsBefore = smtp.mails.length;
    now += 2 * HOUR;
    await t.server.checkAlerts();
    assert.equal(events(acmeHits, 'machine.stale').length, 0, 'within its threshold');
    now += 2 * HOUR;
    await t.server.checkAlerts();
    await t.server.checkAlerts();
    now += HOUR;
    await t.server.checkAlerts();
    const stale = events(acmeHits, 'machine.stale');
    assert.equal(stale.length, 1, 'once, however often it is checked');
    assert.match(stale[0]!.json.summary, /^machine web1 of Acme: no successful backup for 4 h, since 2030-01-01T\d\d:\d\d:\d\d\.\d+Z \(its threshold is 3 h\)$/);
    assert.equal(stale[0]!.json.details.threshold_seconds, 3 * 3600);
    assert.equal(stale[0]!.json.details.stale_since, new Date(lastSuccess + 3 * HOUR).toISOString(), 'the crossing, not the check that saw it an hour later');
    assert.equal(smtp.mails.length, mailsBefore + 1);
    assert.match(smtp.mails.at(-1)!.subject, /^\[holdfast\] machine web1 of Acme: no successful backup for 4 h/);
    assert.equal(events(receivers['other']!, 'machine.stale').length, 1, 'the other customer\'s machine (never backed up) is its own');
    assert.equal(events(receivers['other']!, 'machine.stale')[0]!.json.customer.name, 'Other');

    await runJob('failed', 'still broken');
    await t.server.checkAlerts();
    assert.equal(events(acmeHits, 'machine.recovered').length, 0, 'a failed backup does not recover it');
    await runJob('succeeded');
    await t.server.checkAlerts();
    now += HOUR;
    await t.server.checkAlerts();
    const recovered = events(acmeHits, 'machine.recovered');
    assert.equal(recovered.length, 1);
    assert.match(recovered[0]!.json.summary, /^machine web1 of Acme: backed up again at \S+, after 2 h stale$/, 'stale from 3 h after the last success to 5 h after it');
    assert.deepEqual([recovered[0]!.json.details.stale_since, recovered[0]!.json.details.stale_seconds], [new Date(lastSuccess + 3 * HOUR).toISOString(), 2 * 3600]);
    assert.equal(events(acmeHits, 'machine.stale').length, 1);
  });

  it('sends a test on request and says what came of it', async () => {
    const before = receivers['acme']!.hits.length;
    const ok = await t.call('POST', `/api/v1/notifications/${acmeHook}/test`, { token: manage });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.body, { delivered: true, error: null });
    const hit = receivers['acme']!.hits[before]!;
    assert.equal(hit.json.event, 'test');
    verifySignature(hit.headers['holdfast-signature'], hit.body, secret);
    receivers['acme']!.answers = [404];
    const bad = await t.call('POST', `/api/v1/notifications/${acmeHook}/test`, { token: manage });
    assert.equal(bad.body.delivered, false);
    assert.match(bad.body.error, /answered 404/);
    const mail = (await t.create('/api/v1/notifications', {
      name: 'wrong password', customer_id: acme, kind: 'email', events: ['job.failed'],
      email: { host: '127.0.0.1', port: smtp.port, security: 'none', username: 'alerts', password: 'wrong', from: 'holdfast@example.net', to: ['ops@acme.example'] },
    }, manage)).channel.id;
    const refused = await t.call('POST', `/api/v1/notifications/${mail}/test`, { token: manage });
    assert.equal(refused.body.delivered, false);
    assert.match(refused.body.error, /SMTP server 127\.0\.0\.1:\d+ did not take the e-mail: .*invalid user or password/i);
  });

  it('alerts once when a disk safe passes 90 % of its quota and once when the quota refuses an upload', { timeout: 60_000 }, async () => {
    const s = await Sandbox.create('holdfast-notify-');
    try {
      const token = (await t.create('/api/v1/tokens', { customer_id: other, machine_id: otherMachine, name: 'other agent', rights: ['backup'] })).secret as string;
      await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.port}/safes/other-web1`, HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint } });
      const used = (await t.call('GET', `/api/v1/safes/${otherSafe}`, { token: t.adminToken })).body.stored_bytes as number;
      assert.equal((await t.call('PATCH', `/api/v1/safes/${otherSafe}`, { token: t.adminToken, body: { quota_hard: used + 10_000 } })).status, 200);
      const put = async (bytes: number): Promise<number> => {
        const body = randomBytes(bytes / 2).toString('hex');
        return (await httpsJson(t.port, t.cert, 'PUT', `/safes/other-web1/data/${createHash('sha256').update(body).digest('hex')}`, { token, rawBody: body })).status;
      };
      const quota = () => receivers['other']!.hits.filter((h) => String(h.json?.event).startsWith('quota.')).map((h) => h.json);
      assert.deepEqual([await put(5000)], [201]);
      await t.server.checkAlerts();
      assert.deepEqual(quota(), [], 'at half its quota');
      assert.deepEqual([await put(4500), await put(200)], [201, 201]);
      await t.server.checkAlerts();
      assert.deepEqual(quota().map((e) => e.event), ['quota.warn'], 'once, at the upload that crossed 90 %');
      assert.match(quota()[0].summary, /^machine web1 of Other: disk safe other-web1: [\d.]+ KiB stored or being uploaded, past 90 % of its hard quota of [\d.]+ KiB$/);
      assert.equal(quota()[0].safe.name, 'other-web1');
      assert.deepEqual([await put(1000), await put(1000)], [413, 413]);
      await t.server.checkAlerts();
      assert.deepEqual(quota().map((e) => e.event), ['quota.warn', 'quota.exceeded'], 'once, however many uploads it refuses');
      assert.match(quota()[1].summary, /disk safe other-web1: the hard quota refuses uploads \(this upload of/);
      assert.equal(receivers['acme']!.hits.filter((h) => String(h.json?.event).startsWith('quota.')).length, 0, 'nothing to another customer');
    } finally {
      await s.remove();
    }
  });

  it('keeps a customer\'s channels from another customer (404) and never shows a secret', async () => {
    const listed = await t.call('GET', '/api/v1/notifications', { token: manage });
    assert.deepEqual(listed.body.map((c: { name: string }) => c.name).sort(), ['mail', 'ops hook', 'wrong password']);
    assert.ok(!listed.text.includes(secret) && !listed.text.includes('smtp password'), 'no secret in a listing');
    const one = (await t.call('GET', `/api/v1/notifications/${acmeHook}`, { token: manage })).body;
    assert.equal(one.has_secret, true);
    assert.equal(one.webhook.url, receivers['acme']!.url);
    assert.ok(!('secret' in one.webhook));
    for (const id of [otherHook, providerHook]) {
      for (const [method, path, body] of [
        ['GET', `/api/v1/notifications/${id}`, undefined], ['PATCH', `/api/v1/notifications/${id}`, { enabled: false }], ['DELETE', `/api/v1/notifications/${id}`, undefined],
        ['POST', `/api/v1/notifications/${id}/test`, undefined], ['GET', `/api/v1/notifications/${id}/deliveries`, undefined],
      ] as const) {
        const r = await t.call(method, path, { token: manage, ...(body ? { body } : {}) });
        assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
        assert.equal(r.body.code, 'NOT_FOUND');
      }
    }
    const foreign = await t.call('POST', '/api/v1/notifications', { token: manage, body: { name: 'x', customer_id: other, kind: 'webhook', events: ['job.failed'], webhook: { url: receivers['acme']!.url } } });
    assert.equal(foreign.status, 404, foreign.text);
    const providerWide = await t.call('POST', '/api/v1/notifications', { token: manage, body: { name: 'x', kind: 'webhook', events: ['job.failed'], webhook: { url: receivers['acme']!.url } } });
    assert.equal(providerWide.status, 403, providerWide.text);
    assert.equal((await t.call('GET', `/api/v1/notifications/${otherHook}`, { token: otherManage })).body.enabled, true, 'nothing changed');
    const viewer = await t.call('GET', '/api/v1/notifications', { token: agent });
    assert.equal(viewer.status, 403, 'an agent token reads nothing');
  });

  it('refuses a webhook or SMTP host on an internal network the server does not allow, and shows a read token the URL\'s host only', async () => {
    const hook = (url: string) => ({ name: 'internal', customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url } });
    // The server allows 127.0.0.1 alone (as tests send to loopback only): every other internal address is refused, by name too.
    for (const url of ['http://10.0.0.1/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]:8080/', 'http://127.0.0.2/', 'http://[::ffff:192.168.1.1]/',
      'http://[fd00::1]/', 'http://[fe80::1]/', 'http://0.0.0.0/', 'http://172.16.5.5/', 'http://127.1.2.3:9/']) {
      const r = await t.call('POST', '/api/v1/notifications', { token: manage, body: hook(url) });
      assert.equal(r.status, 400, `${url}: ${r.text}`);
      assert.match(r.body.message, /is on an internal network .*--notifications-allow|does not resolve/, url);
    }
    const mail = await t.call('POST', '/api/v1/notifications', { token: manage, body: {
      name: 'internal', customer_id: acme, kind: 'email', events: ['job.failed'], email: { host: '192.168.0.10', from: 'a@example.net', to: ['b@example.net'] },
    } });
    assert.equal(mail.status, 400, mail.text);
    const provider = await t.call('POST', '/api/v1/notifications', { token: t.adminToken, body: { ...hook('http://10.1.2.3/'), customer_id: undefined } });
    assert.equal(provider.status, 400, 'the provider\'s own channels too');
    const changed = await t.call('PATCH', `/api/v1/notifications/${acmeHook}`, { token: manage, body: { webhook: { url: 'http://169.254.169.254/' } } });
    assert.equal(changed.status, 400, changed.text);
    const reader = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'reader', rights: ['read'] })).secret;
    const seen = await t.call('GET', `/api/v1/notifications/${acmeHook}`, { token: reader });
    assert.equal(seen.headers['cache-control'], 'no-store', 'no cache keeps an API answer');
    assert.equal((await t.call('GET', '/api/v1/no-such-route', { token: reader })).headers['cache-control'], 'no-store');
    assert.equal(seen.body.webhook.url, `${new URL(receivers['acme']!.url).origin}/…`, 'unchanged, and redacted for a read token');
    assert.ok(!(await t.call('GET', '/api/v1/notifications', { token: reader })).text.includes('/acme'), 'no path in a listing');
  });

  it('is managed by the admin commands (holdfast server notification …, metrics-token), with --json', { timeout: 60_000 }, async () => {
    const env = { HOLDFAST_SERVER: `https://127.0.0.1:${t.port}`, HOLDFAST_SERVER_TOKEN: t.adminToken, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: '/nonexistent' };
    const cli = (args: string[]) => runCli(['server', 'notification', ...args], { env });
    const made = await cli(['create', 'cli-hook', '--customer', 'Acme', '--webhook', receivers['acme']!.url, '--events', 'job.failed,machine.stale', '--json']);
    assert.equal(made.code, 0, made.stderr);
    const body = JSON.parse(made.stdout);
    assert.deepEqual([body.channel.name, body.channel.customer_id, body.channel.events], ['cli-hook', acme, ['job.failed', 'machine.stale']]);
    assert.match(body.secret, /^[A-Za-z0-9_-]{43}$/, 'the secret the server made, printed once');
    const before = receivers['acme']!.hits.length;
    const tested = await cli(['test', 'cli-hook']);
    assert.equal(tested.code, 0, tested.stderr);
    verifySignature(receivers['acme']!.hits[before]!.headers['holdfast-signature'], receivers['acme']!.hits[before]!.body, body.secret);
    receivers['acme']!.answers = [500];
    const failed = await cli(['test', 'cli-hook']);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /the test did not reach cli-hook: the webhook http:\/\/127\.0\.0\.1:\d+\/… answered 500\n$/);
    const listed = await cli(['list']);
    assert.match(listed.stdout, /cli-hook +Acme +webhook +http:\/\/127\.0\.0\.1:\d+\/acme +job\.failed,machine\.stale +yes/);
    assert.match(listed.stdout, /noc +\(provider\) +webhook/);
    const disabled = await cli(['update', 'cli-hook', '--disable', '--json']);
    assert.equal(JSON.parse(disabled.stdout).enabled, false);
    assert.equal((await cli(['delete', 'cli-hook'])).code, 0);
    assert.equal((await cli(['show', 'cli-hook'])).code, 1, 'gone');
    const token = await runCli(['server', 'metrics-token'], { env });
    assert.match(token.stdout, /^metrics token: hfm_/);
    assert.equal((await t.call('GET', '/metrics', { token: /hfm_\S+/.exec(token.stdout)![0] })).status, 200);
  });
  it('sends every other customer\'s alerts while one customer\'s receivers drip their answers, and cuts those off at the deadline', { timeout: 60_000 }, async () => {
    // Slowpoke's webhook answers 200 and then its body a byte at a time; its SMTP server greets and then drips its answer: neither ever ends.
    const slow = (await t.create('/api/v1/customers', { name: 'Slowpoke' })).id;
    const slowMachine = (await t.create('/api/v1/machines', { customer_id: slow, name: 'db9' })).id;
    await t.create('/api/v1/safes', { customer_id: slow, machine_id: slowMachine, name: 'slowpoke-db9' });
    const slowAgent = (await t.create('/api/v1/tokens', { customer_id: slow, machine_id: slowMachine, name: 'db9 agent', rights: ['backup'] })).secret;
    const dripHook = await startWebhookReceiver('/drip');
    dripHook.stall = 'drip';
    const hangHook = await startWebhookReceiver('/hang');
    hangHook.stall = 'hang';
    const dripMail = await startDrippingSmtpServer();
    const channels: string[] = [];
    const channel = async (name: string, settings: object) => channels.push((await t.create('/api/v1/notifications', { name, customer_id: slow, events: ['job.failed'], ...settings })).channel.id);
    const slowDeliveries = async () => (await Promise.all(channels.map(async (id) => (await t.call('GET', `/api/v1/notifications/${id}/deliveries`, { token: t.adminToken })).body as { state: string; attempts: number; last_error: string | null }[]))).flat();
    try {
      await channel('drip hook', { kind: 'webhook', webhook: { url: dripHook.url } });
      await channel('drip mail', { kind: 'email', email: { host: '127.0.0.1', port: dripMail.port, security: 'none', from: 'holdfast@example.net', to: ['ops@slowpoke.example'] } });
      await runJob('failed', 'one', { machine: slowMachine, agent: slowAgent });
      await dripHook.received(1);
      await dripMail.connected(1);
      await channel('hang hook', { kind: 'webhook', webhook: { url: hangHook.url } });
      await runJob('failed', 'two', { machine: slowMachine, agent: slowAgent });

      const otherBefore = receivers['other']!.hits.length;
      await runJob('failed', 'the other customer\'s alert', { machine: otherMachine, agent: otherAgent });
      await receivers['other']!.received(otherBefore + 1);
      const otherDelivery = async () => ((await t.call('GET', `/api/v1/notifications/${otherHook}/deliveries`, { token: otherManage })).body as { summary: string; state: string }[])
        .find((d) => d.summary.endsWith('the other customer\'s alert'));
      while ((await otherDelivery())?.state !== 'sent') await sleep(20);
      assert.deepEqual((await slowDeliveries()).map((d) => [d.state, d.attempts]), Array(5).fill(['pending', 0]),
        'the other customer\'s alert recorded sent while each of Slowpoke\'s five deliveries is in flight or waiting');
      assert.deepEqual([dripHook.stalledOpen, dripMail.open, hangHook.stalled], [1, 1, 0],
        'one delivery at a time to a channel (the drip hook\'s second waits), two slots at most for one customer (the hang hook waits)');
      assert.equal(dripHook.stalled, 1);

      // The five end: the two in flight at the deadline, the three waiting at once once their channels are disabled.
      for (const id of channels) await t.call('PATCH', `/api/v1/notifications/${id}`, { token: t.adminToken, body: { enabled: false } });
      await t.server.checkAlerts();
      const ended = (await slowDeliveries()).map((d) => [d.state, d.attempts, d.last_error]).sort();
      assert.equal(ended.length, 5);
      assert.deepEqual(ended.filter(([state]) => state === 'failed').map(([, , error]) => error), Array(3).fill('the channel was disabled before the notification was sent'));
      const [mail, hook] = ended.filter(([state]) => state === 'pending');
      assert.deepEqual([mail![1], hook![1]], [1, 1], 'one attempt each, to be tried again');
      assert.match(String(mail![2]), /^the SMTP server 127\.0\.0\.1:\d+ did not take the e-mail: not done within its deadline of 5 s$/);
      assert.match(String(hook![2]), /^the webhook http:\/\/127\.0\.0\.1:\d+\/… could not be reached: not done within its deadline of 5 s$/);
      assert.deepEqual([dripHook.stalledOpen, dripMail.open], [0, 0], 'the connections closed');
    } finally {
      for (const id of channels) await t.call('DELETE', `/api/v1/notifications/${id}`, { token: t.adminToken });
      await dripHook.close();
      await hangHook.close();
      await dripMail.close();
    }
  });

  it('lets a customer have 20 notification channels and no more (409); another customer\'s are its own', async () => {
    const many = (await t.create('/api/v1/customers', { name: 'Many' })).id;
    const admin = (await t.create('/api/v1/tokens', { customer_id: many, name: 'ops', rights: ['read', 'manage'] })).secret;
    const hook = (name: string, customer = many) => ({ name, customer_id: customer, kind: 'webhook', events: ['job.failed'], webhook: { url: receivers['acme']!.url } });
    for (let i = 1; i <= 20; i++) await t.create('/api/v1/notifications', hook(`hook ${i}`), admin);
    const refused = await t.call('POST', '/api/v1/notifications', { token: admin, body: hook('hook 21') });
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.message, 'the customer has 20 notification channels, the most a customer may have (20): remove one (holdfast server notification delete NAME) or add events to one that exists');
    const listed = (await t.call('GET', '/api/v1/notifications', { token: t.adminToken })).body as { id: string; customer_id: string | null; name: string }[];
    assert.equal(listed.filter((c) => c.customer_id === many).length, 20, 'nothing made');
    const other = (await t.create('/api/v1/customers', { name: 'Few' })).id;
    await t.create('/api/v1/notifications', hook('hook 1', other));
    const first = listed.find((c) => c.customer_id === many && c.name === 'hook 1')!;
    assert.equal((await t.call('DELETE', `/api/v1/notifications/${first.id}`, { token: admin })).status, 204, 'one removed, one may be made');
    await t.create('/api/v1/notifications', hook('hook 21'), admin);
  });
});

databaseSuites('notifications: the target checked again when it is sent', (fx) => {
  it('refuses a delivery to a name that resolves to loopback by then (webhook and e-mail), and sends one the provider allows by name', { timeout: 60_000 }, async () => {
    // The server's resolver, injected: what each name resolves to now (no system file edited, no real DNS).
    const names = new Map([['hooks.rebind.example', '192.0.2.10'], ['mail.rebind.example', '192.0.2.11'], ['relay.internal', '127.0.0.1']]);
    const resolver = async (host: string) => {
      const address = names.get(host);
      if (address === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return [{ address, family: 4 }];
    };
    const receiver = await startWebhookReceiver();
    const smtp = await startSmtpServer();
    const t = await setUp(await fx.newUrl(), undefined, { delivery: { allowInternal: ['relay.internal'], resolver, pollMs: 3600_000 } });
    try {
      const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
      const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
      await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web1' });
      const agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
      const port = new URL(receiver.url).port;
      const made = async (name: string, settings: object) => (await t.create('/api/v1/notifications', { name, customer_id: acme, events: ['job.failed'], ...settings })).channel.id as string;
      const mail = (host: string) => ({ kind: 'email', email: { host, port: smtp.port, security: 'none', from: 'holdfast@example.net', to: ['ops@acme.example'] } });
      const rebound = await made('rebound hook', { kind: 'webhook', webhook: { url: `http://hooks.rebind.example:${port}/hook` } });
      const reboundMail = await made('rebound mail', mail('mail.rebind.example'));
      const allowed = await made('relay hook', { kind: 'webhook', webhook: { url: `http://relay.internal:${port}/hook` } });
      const allowedMail = await made('relay mail', mail('relay.internal'));
      const direct = await t.call('POST', '/api/v1/notifications', { token: t.adminToken, body: { name: 'direct', customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url: receiver.url } } });
      assert.equal(direct.status, 400, 'the allowed name does not allow its address');

      // Both rebind.example names answer loopback now, as a rebinding DNS server would after the channel was checked.
      names.set('hooks.rebind.example', '127.0.0.1');
      names.set('mail.rebind.example', '127.0.0.1');
      const job = (await t.create(`/api/v1/machines/${machine}/jobs`, { kind: 'check', spec: {} })).id;
      assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, job);
      assert.equal((await t.call('POST', `/api/v1/agent/jobs/${job}/result`, { token: agent, body: { state: 'failed', error: 'disk full' } })).status, 200);
      await t.server.checkAlerts();

      const delivery = async (id: string) => ((await t.call('GET', `/api/v1/notifications/${id}/deliveries`, { token: t.adminToken })).body as { state: string; last_error: string | null }[])[0]!;
      const [hook, mailed] = [await delivery(rebound), await delivery(reboundMail)];
      assert.deepEqual([hook.state, mailed.state], ['failed', 'failed'], 'refused at once: no retry reaches it either');
      assert.equal(hook.last_error, `the webhook http://hooks.rebind.example:${port}/… was not sent: the host hooks.rebind.example is on an internal network (127.0.0.1): `
        + 'notifications are not sent there unless the server allows it (holdfast server --notifications-allow)');
      assert.match(mailed.last_error!, /^the e-mail was not sent: the host mail\.rebind\.example is on an internal network \(127\.0\.0\.1\)/);
      assert.deepEqual([(await delivery(allowed)).state, (await delivery(allowedMail)).state], ['sent', 'sent'], 'relay.internal is allowed by name');
      assert.deepEqual(receiver.hits.map((h) => h.headers.host), [`relay.internal:${port}`], 'one request, the allowed one, to the name over the checked address');
      assert.equal(smtp.mails.length, 1);
    } finally {
      await t.stop();
      await receiver.close();
      await smtp.close();
    }
  });
});

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
 * secret.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, it } from 'node:test';
import { runCli, Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { startSmtpServer, startWebhookReceiver, verifySignature, type TestSmtpServer, type WebhookReceiver } from '../helpers/notify-receivers.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

const HOUR = 3600_000;

databaseSuites('notifications: webhooks, e-mail, the stale-machine alert', (fx) => {
  let t: TestServer;
  let now = Date.parse('2030-01-01T00:00:00.000Z');
  let acme = '';
  let other = '';
  let machine = '';
  let agent = '';
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
      delivery: { attempts: 3, firstDelayMs: 1000, maxDelayMs: 60_000, pollMs: 3600_000 },
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

  /** Runs a job of the machine through its agent to the end `state` (`error` for a failure). */
  const runJob = async (state: 'succeeded' | 'failed', error?: string): Promise<string> => {
    const queued = await t.call('POST', `/api/v1/machines/${machine}/jobs`, { token: manage, body: { kind: 'backup', spec: { paths: ['/srv'] } } });
    assert.equal(queued.status, 201, queued.text);
    const taken = await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent });
    assert.equal(taken.body.id, queued.body.id);
    const end = await t.call('POST', `/api/v1/agent/jobs/${queued.body.id}/result`, { token: agent, body: { state, ...(error ? { error } : {}) } });
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

  it('alerts once when a machine goes stale and once when it recovers', async () => {
    await runJob('succeeded');
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
    assert.match(recovered[0]!.json.summary, /^machine web1 of Acme: backed up again at /);
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
});

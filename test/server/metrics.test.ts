/**
 * GET /metrics over real HTTPS: read with the metrics token or a provider
 * person's session, refused to anyone else (a customer's session, its
 * tokens, a replaced metrics token), which reads nothing else of the API;
 * the exposition is parsed and its values checked against a known state
 * made with the server's clock injected: a machine's last successful
 * backup, its staleness, jobs' durations and bytes, the queue, stored
 * bytes per disk safe and customer, the outbox, the database's health; no
 * series names a job.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

/** The samples of an exposition: `name{a="x",b="y"}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return out;
}

databaseSuites('Prometheus /metrics', (fx) => {
  let t: TestServer;
  let now = Date.parse('2030-06-01T12:00:00.000Z');
  let metricsToken = '';
  let customerSession = '';
  let manage = '';
  let agent = '';
  let machine = '';
  let safe = '';
  const jobIds: string[] = [];

  before(async () => {
    t = await setUp(await fx.newUrl(), undefined, { clock: () => new Date(now), staleAfterMs: 3600_000, alertTickMs: 3600_000 });
    const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    await t.create('/api/v1/customers', { name: 'Empty Co' });
    machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web1' })).id;
    safe = (await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web1' })).id;
    agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
    manage = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'ops', rights: ['read', 'manage'] })).secret;
    const u = await t.create('/api/v1/users', { name: 'acme-admin', role: 'customer-admin', customer_id: acme });
    customerSession = await t.login('acme-admin', u.password, 'a long enough password');

    // A backup that ran 90 s and succeeded, one that failed after 10 s, and one queued.
    const run = async (seconds: number, end: Record<string, unknown>) => {
      const id = (await t.create(`/api/v1/machines/${machine}/jobs`, { kind: 'backup', spec: { paths: ['/srv'] } }, manage)).id as string;
      jobIds.push(id);
      assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, id);
      now += seconds * 1000;
      assert.equal((await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: end })).status, 200);
    };
    await run(90, { state: 'succeeded', result: { snapshot_id: 'ab'.repeat(32), total_bytes_processed: 1_000_000, data_added: 4096 } });
    await run(10, { state: 'failed', error: 'disk full' });
    jobIds.push((await t.create(`/api/v1/machines/${machine}/jobs`, { kind: 'check', spec: {} }, manage)).id);
  });
  after(() => t.stop());

  const scrape = (token?: string) => t.call('GET', '/metrics', token === undefined ? {} : { token });

  it('is read with the metrics token or a provider session, and by nobody else', async () => {
    const made = await t.call('POST', '/api/v1/metrics-token', { token: t.adminToken });
    assert.equal(made.status, 201, made.text);
    metricsToken = made.body.token;
    assert.match(metricsToken, /^hfm_/);
    const scraped = await scrape(metricsToken);
    assert.equal(scraped.status, 200);
    assert.equal(scraped.headers['cache-control'], 'no-store', 'no cache keeps the metrics');
    assert.equal((await scrape()).headers['cache-control'], 'no-store');
    assert.equal((await scrape(t.adminToken)).status, 200, 'a provider admin\'s session');
    for (const [who, token] of [['nobody', undefined], ['a customer\'s admin', customerSession], ['a customer\'s manage token', manage], ['an agent', agent]] as const) {
      const r = await scrape(token);
      assert.equal(r.status, 401, `${who}: ${r.text}`);
      assert.ok(!r.text.includes('holdfast_'), `${who} sees no metric`);
    }
    assert.equal((await t.call('POST', '/api/v1/metrics-token', { token: customerSession })).status, 403, 'only a provider admin makes it');
    assert.equal((await t.call('GET', '/api/v1/customers', { token: metricsToken })).status, 401, 'the metrics token reads nothing of the API');
    const again = (await t.create('/api/v1/metrics-token', {})).token as string;
    assert.equal((await scrape(metricsToken)).status, 401, 'the replaced token is refused');
    metricsToken = again;
    assert.equal((await scrape(metricsToken)).status, 200);
  });

  it('times each scheduler tick of the node', async () => {
    const before = parse((await scrape(metricsToken)).text).get('holdfast_scheduler_tick_seconds_count') ?? 0;
    await t.server.tickScheduler();
    await t.server.tickScheduler();
    const m = parse((await scrape(metricsToken)).text);
    assert.ok(m.get('holdfast_scheduler_tick_seconds_count')! >= before + 2, String(m.get('holdfast_scheduler_tick_seconds_count')));
    assert.ok(m.get('holdfast_scheduler_tick_seconds_sum')! > 0);
    assert.ok(m.get('holdfast_scheduler_tick_seconds_bucket{le="+Inf"}')! >= before + 2);
  });

  it('shows the known state: last backup, staleness, jobs, queue, stored bytes, outbox, health; no series per job', async () => {
    const r = await scrape(metricsToken);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const m = parse(r.text);
    const at = (name: string) => {
      assert.ok(m.has(name), `${name} is not in:\n${r.text.split('\n').filter((l) => l.startsWith('holdfast_')).join('\n')}`);
      return m.get(name);
    };
    const succeededAt = Date.parse('2030-06-01T12:01:30.000Z') / 1000;
    assert.equal(at('holdfast_machine_last_backup_success_timestamp_seconds{customer="Acme",machine="web1"}'), succeededAt);
    assert.equal(at('holdfast_machine_last_seen_timestamp_seconds{customer="Acme",machine="web1"}'), Date.parse('2030-06-01T12:01:40.000Z') / 1000);
    assert.equal(at('holdfast_machine_stale{customer="Acme",machine="web1"}'), 0);
    assert.equal(at('holdfast_job_duration_seconds_count{kind="backup",state="succeeded"}'), 1);
    assert.equal(at('holdfast_job_duration_seconds_sum{kind="backup",state="succeeded"}'), 90);
    assert.equal(at('holdfast_job_duration_seconds_bucket{le="60",kind="backup",state="succeeded"}'), 0);
    assert.equal(at('holdfast_job_duration_seconds_bucket{le="120",kind="backup",state="succeeded"}'), 1);
    assert.equal(at('holdfast_job_duration_seconds_sum{kind="backup",state="failed"}'), 10);
    assert.equal(at('holdfast_job_bytes_total{kind="backup",measure="processed"}'), 1_000_000);
    assert.equal(at('holdfast_job_bytes_total{kind="backup",measure="added"}'), 4096);
    assert.equal(at('holdfast_jobs{runner="agent",state="queued"}'), 1);
    assert.equal(at('holdfast_jobs{runner="agent",state="running"}'), 0);
    const stored = (await t.call('GET', `/api/v1/safes/${safe}`, { token: t.adminToken })).body.stored_bytes as number;
    assert.equal(at('holdfast_safe_stored_bytes{customer="Acme",safe="acme-web1"}'), stored);
    assert.equal(at('holdfast_customer_stored_bytes{customer="Acme"}'), stored);
    assert.equal(at('holdfast_customer_stored_bytes{customer="Empty Co"}'), 0);
    assert.equal(at('holdfast_notifications{state="pending"}'), 0);
    assert.equal(at('holdfast_database_up'), 1);
    assert.ok([...m.keys()].some((k) => k.startsWith('process_resident_memory_bytes')), 'the process\'s own health');
    for (const id of jobIds) assert.ok(!r.text.includes(id), 'no series names a job');

    // Two hours without a backup: the machine is stale once the check has run.
    now += 2 * 3600_000;
    await t.server.checkAlerts();
    const later = parse((await scrape(metricsToken)).text);
    assert.equal(later.get('holdfast_machine_stale{customer="Acme",machine="web1"}'), 1);
    assert.equal(later.get('holdfast_machine_last_backup_success_timestamp_seconds{customer="Acme",machine="web1"}'), succeededAt);
  });

  it('takes no result figure a double cannot count exactly: the totals stay finite', async () => {
    // The review's poison: two backups that "processed" 1.7e308 bytes each made the total +Inf for everyone.
    assert.equal((await t.call('POST', `/api/v1/jobs/${jobIds[2]!}/cancel`, { token: manage })).status, 200);
    const id = (await t.create(`/api/v1/machines/${machine}/jobs`, { kind: 'backup', spec: { paths: ['/srv'] } }, manage)).id as string;
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, id);
    const poisons = [
      { total_bytes_processed: 1.7e308 }, { data_added: -4096 }, { data_added: 2 ** 53 }, { total_bytes_processed: 0.5 },
      { snapshots: [{ total_bytes_processed: 1, data_added: 1.7e308 }] },
    ];
    for (const result of poisons) {
      const r = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result } });
      assert.equal(r.status, 400, `${JSON.stringify(result)}: ${r.text}`);
    }
    const r = await t.call('POST', `/api/v1/agent/jobs/${id}/result`, { token: agent, body: { state: 'succeeded', result: { total_bytes_processed: 5000, data_added: 1 } } });
    assert.equal(r.status, 200, r.text);
    const m = parse((await scrape(metricsToken)).text);
    assert.equal(m.get('holdfast_job_bytes_total{kind="backup",measure="processed"}'), 1_005_000);
    assert.equal(m.get('holdfast_job_bytes_total{kind="backup",measure="added"}'), 4096 + 1);
  });
});

/**
 * Policies through the API and the admin CLI: a customer's policy and a
 * machine's resolve setting by setting into the machine's effective policy
 * (each setting named with the policy it came from), with the backup
 * interval and the next run (splay and window applied, by the server's
 * clock); bad settings are 400 with the reason; quotas are the provider's
 * (403 for a customer admin, who may still change the rest); one policy per
 * customer, machine or safe (409); a viewer reads but does not change (403);
 * another customer's policies are 404. `holdfast server policy set` makes
 * and changes one, `effective` shows where each setting comes from.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { setUp, type TestServer } from '../helpers/server.js';

const NOW = Date.parse('2026-05-04T12:00:00Z');

databaseSuites('policies', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  const who: Record<string, string> = {};
  let acme = '';
  let web = '';
  let safe = '';
  let customerPolicy = '';

  before(async () => {
    t = await setUp(await fx.newUrl(), undefined, { clock: () => new Date(NOW) });
    s = await Sandbox.create('holdfast-policies-');
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await t.create('/api/v1/customers', { name: 'Other' })).id;
    web = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    safe = (await t.create('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' })).id;
    for (const [key, name, role, customer] of [['admin', 'alice', 'customer-admin', acme], ['viewer', 'vic', 'customer-viewer', acme], ['other', 'olga', 'customer-admin', other]] as const) {
      const made = await t.create('/api/v1/users', { name, role, customer_id: customer });
      who[key] = await t.login(name, made.password, `${name} has a long password`);
    }
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('resolves a machine\'s policy over its customer\'s setting by setting, with the interval and the next run', async () => {
    const c = await t.create('/api/v1/policies', {
      customer_id: acme, schedule: 'every 15 minutes', backup: { paths: ['/srv'] }, retention: { keep_daily: 7, keep_weekly: 4 }, prune: { every: '7d' },
    }, who['admin']);
    customerPolicy = c.id;
    assert.equal(c.attached_to, 'customer');
    const m = await t.create('/api/v1/policies', { customer_id: acme, machine_id: web, schedule: '0 2 * * *', time_zone: 'Europe/Berlin', retention: { keep_last: 3 } }, who['admin']);
    assert.equal(m.attached_to, 'machine');

    const e = (await t.call('GET', `/api/v1/machines/${web}/policy`, { token: who['viewer']! })).body;
    assert.equal(e.safe_id, safe);
    assert.deepEqual(e.settings, { schedule: '0 2 * * *', time_zone: 'Europe/Berlin', backup: { paths: ['/srv'] }, retention: { keep_last: 3 }, prune: { every: '7d' } });
    assert.deepEqual(e.from, { schedule: m.id, time_zone: m.id, backup: c.id, retention: m.id, prune: c.id });
    assert.equal(e.interval_seconds, 86400);
    // 02:00 in Berlin (summer time) is 00:00 UTC; the machine's splay is within the hour after it.
    const next = Date.parse(e.next_run);
    assert.ok(next >= Date.parse('2026-05-05T00:00:00Z') && next < Date.parse('2026-05-05T01:00:00Z'), e.next_run);
    assert.deepEqual((await t.call('GET', `/api/v1/safes/${safe}/policy`, { token: who['admin']! })).body, e);

    // The machine's policy goes: the customer's schedule applies again, every 15 minutes from the machine's own offset.
    assert.equal((await t.call('DELETE', `/api/v1/policies/${m.id}`, { token: who['admin']! })).status, 204);
    const after15 = (await t.call('GET', `/api/v1/machines/${web}/policy`, { token: who['admin']! })).body;
    assert.equal(after15.interval_seconds, 900);
    const n = Date.parse(after15.next_run);
    assert.ok(n > NOW && n <= NOW + 900_000, after15.next_run);
  });

  it('puts the next run inside the window, across midnight', async () => {
    const p = await t.create('/api/v1/policies', { customer_id: acme, safe_id: safe, window: '22:00-06:00' }, who['admin']);
    const e = (await t.call('GET', `/api/v1/machines/${web}/policy`, { token: who['admin']! })).body;
    assert.equal(e.from.window, p.id);
    const next = new Date(e.next_run);
    assert.ok(next.getUTCHours() === 22 && next.getTime() - NOW < 11 * 3_600_000, e.next_run);
    assert.equal((await t.call('DELETE', `/api/v1/policies/${p.id}`, { token: who['admin']! })).status, 204);
  });

  it('refuses bad settings with the reason (400) and keeps the policy as it was', async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ schedule: 'every 15 fortnights' }, /schedule "every 15 fortnights": write every N minutes/],
      [{ schedule: '61 * * * *' }, /not a cron expression of five fields/],
      [{ schedule: '0 2 * * * *' }, /requires exactly 5 parts/],
      [{ schedule: 'every 10s' }, /at most once a minute/],
      [{ schedule: 'every 99999999999999999999h' }, /at least once a year/],
      [{ prune: { every: '99999999999999999999h' } }, /prune.every "99999999999999999999h": at most 366d/],
      [{ timeout: '999999999999d' }, /timeout "999999999999d": at most 366d/],
      [{ window: '22:00-25:00' }, /window "22:00-25:00": write HH:MM-HH:MM/],
      [{ window: '06:00-06:00' }, /it starts when it ends/],
      [{ time_zone: 'Mars/Olympus' }, /time_zone "Mars\/Olympus": not a time zone/],
      [{ retention: { every: '1d' } }, /no retention rule was given/],
      [{ retention: { keep_daily: 7, every: '5m' } }, /retention.every "5m": at least 1h/],
      [{ retention: { keep_within: '2x' } }, /must match pattern/],
      [{ prune: { every: '7d', grace_seconds: 1 } }, /prune.grace_seconds 1: shorter than the server's minimum/],
      [{ prune: {} }, /must have required property 'every'/],
      [{ timeout: 'soon' }, /must match pattern/],
      [{ backup: { paths: ['relative'] } }, /must match pattern/],
    ];
    for (const [body, why] of bad) {
      const r = await t.call('PUT', `/api/v1/policies/${customerPolicy}`, { token: who['admin']!, body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.body.message, why);
    }
    const now = (await t.call('GET', `/api/v1/policies/${customerPolicy}`, { token: who['admin']! })).body;
    assert.equal(now.schedule, 'every 15 minutes');
    assert.deepEqual(now.retention, { keep_daily: 7, keep_weekly: 4 });
  });

  it('leaves quotas to the provider, one policy per target, changes to managers, and another customer\'s policies unseen', async () => {
    const quota = await t.call('PUT', `/api/v1/policies/${customerPolicy}`, { token: who['admin']!, body: { schedule: 'every 1h', quota: { hard: 1e9 } } });
    assert.equal(quota.status, 403, quota.text);
    const byProvider = await t.call('PUT', `/api/v1/policies/${customerPolicy}`, { token: t.adminToken, body: { schedule: 'every 1h', backup: { paths: ['/srv'] }, quota: { hard: 2e9, soft: 1e9 } } });
    assert.equal(byProvider.status, 200, byProvider.text);
    // The customer admin changes the rest, the provider's quota kept as it is.
    const rest = await t.call('PUT', `/api/v1/policies/${customerPolicy}`, { token: who['admin']!, body: { schedule: 'every 30m', backup: { paths: ['/srv'] }, quota: { hard: 2e9, soft: 1e9 } } });
    assert.equal(rest.status, 200, rest.text);
    assert.equal((await t.call('DELETE', `/api/v1/policies/${customerPolicy}`, { token: who['admin']! })).status, 403);

    const twice = await t.call('POST', '/api/v1/policies', { token: who['admin']!, body: { customer_id: acme, schedule: 'every 1h' } });
    assert.equal(twice.status, 409, twice.text);
    assert.match(twice.body.message, /the customer has a policy already/);
    const both = await t.call('POST', '/api/v1/policies', { token: who['admin']!, body: { customer_id: acme, machine_id: web, safe_id: safe } });
    assert.equal(both.status, 400, both.text);

    const viewer = await t.call('PUT', `/api/v1/policies/${customerPolicy}`, { token: who['viewer']!, body: { schedule: 'every 1h' } });
    assert.equal(viewer.status, 403, viewer.text);
    assert.equal((await t.call('GET', '/api/v1/policies', { token: who['viewer']! })).body.length, 1);

    for (const [method, path, body] of [
      ['GET', `/api/v1/policies/${customerPolicy}`, undefined], ['PUT', `/api/v1/policies/${customerPolicy}`, { schedule: 'every 1h' }],
      ['DELETE', `/api/v1/policies/${customerPolicy}`, undefined], ['POST', '/api/v1/policies', { customer_id: acme, schedule: 'every 1h' }],
      ['POST', '/api/v1/policies', { customer_id: acme, machine_id: web }], ['GET', `/api/v1/machines/${web}/policy`, undefined],
      ['GET', `/api/v1/safes/${safe}/policy`, undefined], ['POST', `/api/v1/safes/${safe}/retention-preview`, {}],
    ] as const) {
      const r = await t.call(method, path, { token: who['other']!, ...(body ? { body } : {}) });
      assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
      assert.doesNotMatch(r.text, /acme|srv/i);
    }
    assert.deepEqual((await t.call('GET', '/api/v1/policies', { token: who['other']! })).body, []);
    assert.equal((await t.call('GET', `/api/v1/policies/${customerPolicy}`, { token: who['admin']! })).body.schedule, 'every 30m');
  });

  it('holdfast server policy set makes and changes a machine\'s policy; effective says where each setting comes from', async () => {
    const env = { HOLDFAST_SERVER: `https://127.0.0.1:${t.server.port}`, HOLDFAST_SERVER_TOKEN: who['admin']!, HOLDFAST_FINGERPRINT: t.server.fingerprint };
    const made = JSON.parse((await s.ok(['server', 'policy', 'set', 'Acme', '--machine', 'web', '--schedule', '*/20 * * * *', '--window', '22:00-06:00', '--keep-last', '5', '--json'], { env })).stdout);
    assert.equal(made.machine_id, web);
    assert.deepEqual(made.retention, { keep_last: 5 });
    const changed = JSON.parse((await s.ok(['server', 'policy', 'set', 'Acme', '--machine', 'web', '--prune-every', '3d', '--unset', 'window', '--json'], { env })).stdout);
    assert.equal(changed.id, made.id);
    assert.deepEqual({ schedule: changed.schedule, window: changed.window, retention: changed.retention, prune: changed.prune }, { schedule: '*/20 * * * *', window: undefined, retention: { keep_last: 5 }, prune: { every: '3d' } });
    const shown = await s.ok(['server', 'policy', 'effective', 'web'], { env });
    assert.match(shown.stdout, new RegExp(`schedule: +\\*/20 \\* \\* \\* \\*  \\(policy ${made.id}\\)`));
    assert.match(shown.stdout, new RegExp(`backup: +\\{"paths":\\["/srv"\\]\\}  \\(policy ${customerPolicy}\\)`));
    assert.match(shown.stdout, /next run: +2026-05-04/);
    const listed = await s.ok(['server', 'policy', 'list'], { env });
    assert.match(listed.stdout, new RegExp(`\\bmachine web \\(${web}\\)`), 'a policy is listed with the name of what it is attached to');
    const again = await s.ok(['server', 'policy', 'set', 'Acme', '--machine', 'web', '--prune-every', '4d'], { env });
    assert.match(again.stdout, new RegExp(`^changed policy ${made.id} of machine web \\(${web}\\)`));
    const bad = await s.run(['server', 'policy', 'set', 'Acme', '--machine', 'web', '--schedule', 'sometimes'], { env });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /schedule "sometimes": not a cron expression/);
  });
});

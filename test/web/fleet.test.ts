/**
 * The fleet in Chromium, against a real server and a real agent (a child
 * process): the provider admin sees every machine with its status, a
 * machine never backed up, "back up now" followed live to its end, the
 * snapshot on the machine's timeline, a machine whose last success is
 * older than its threshold shown stale, a retention policy's preview with
 * the server's reasons; a customer's user sees only its customer's
 * machines, and another customer's machine by its address is "not found"
 * (the API answered 404); a fleet of 1,000 machines (made in the database)
 * loads with one call per page, and its load time is printed. Screenshots
 * of each screen at both sizes.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase, type ControlPlaneDatabase } from '../../src/server/db/open-database.js';
import type { DiskSafe, Job, Machine, NewJob } from '../../src/server/db/schema.js';

let s: Sandbox;
let t: TestServer;
let h: ServerHandle;
let b: TestBrowser;
let web1: EnrolledMachine;
let db1: EnrolledMachine;
let agent: Started;
let db: ControlPlaneDatabase;
const src = (): string => s.path('src');

before(async () => {
  s = await Sandbox.create('holdfast-web-fleet-');
  t = await setUp(`sqlite:${s.path('control.db')}`);
  db = await openDatabase(`sqlite:${s.path('control.db')}`, '');
  h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  web1 = await enrolMachine(h, s, 'web1');
  db1 = await enrolMachine(h, s, 'db1');
  await mkdir(join(src(), 'etc'), { recursive: true });
  await writeFile(join(src(), 'etc', 'app.conf'), 'listen = 8080\n');
  await writeFile(join(src(), 'data.bin'), Buffer.alloc(300_000, 9));
  agent = startAgent(s, web1);
  b = await launchBrowser(t.port);
});
after(async () => {
  await b?.close();
  await db?.close();
  agent?.child.kill('SIGTERM');
  await agent?.done;
  await t?.stop();
  await s?.remove();
});

it('shows the provider admin every machine, never backed up, with the counts', async () => {
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'web1' }).waitFor();
  await page.getByRole('link', { name: 'db1' }).waitFor();
  await page.getByTestId('count-never').getByText('2', { exact: true }).waitFor();
  assert.equal(await page.getByTestId('count-ok').textContent(), '0');
  await page.getByLabel('search').fill('web');
  await page.getByRole('link', { name: 'db1' }).waitFor({ state: 'detached' });
  await page.getByRole('link', { name: 'web1' }).waitFor();
  await page.getByLabel('search').fill('');
  await screenshots(page, 'fleet', () => page.getByRole('link', { name: 'db1' }).waitFor());
  assert.deepEqual(consoleErrors, []);
  await page.context().close();
});

it('backs a machine up now and follows the job live to its end; the snapshot is on the timeline and the machine is OK', async () => {
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'web1' }).click();
  await page.getByRole('heading', { name: /web1/ }).getByText('Never', { exact: true }).waitFor();
  await page.getByLabel('Folders to back up').fill(src());
  await page.getByRole('button', { name: 'Back up now' }).click();
  const log = page.getByLabel('job log');
  await log.getByText('succeeded', { exact: true }).waitFor({ timeout: 25_000 });
  await log.getByLabel('log').getByText(/snapshot [0-9a-f]{8} saved/).waitFor();
  await page.getByRole('heading', { name: /web1/ }).getByText('OK').waitFor();
  const jobs = await (await t.call('GET', `/api/v1/machines/${web1.id}/jobs`, { token: t.adminToken })).body as { kind: string; state: string; spec: { paths: string[] }; result: { snapshot_id: string } }[];
  assert.equal(jobs.length, 1);
  assert.deepEqual([jobs[0]!.kind, jobs[0]!.state, jobs[0]!.spec.paths], ['backup', 'succeeded', [src()]]);
  await page.getByRole('table', { name: 'snapshots' }).getByText(jobs[0]!.result.snapshot_id.slice(0, 8)).waitFor();
  await page.getByRole('img', { name: /1 snapshots/ }).waitFor();
  await screenshots(page, 'machine');
  await page.getByRole('link', { name: 'Fleet' }).click();
  await page.getByTestId('count-ok').getByText('1').waitFor();
  assert.deepEqual(consoleErrors, []);
  await page.context().close();
});

it('shows a machine whose last success is older than its threshold as stale', async () => {
  // old1's only backup ended four days ago: older than the three days of a machine without a schedule.
  const customer = (await t.call('GET', `/api/v1/machines/${web1.id}`, { token: t.adminToken })).body.customer_id as string;
  const old1 = (await t.create('/api/v1/machines', { customer_id: customer, name: 'old1' })).id as string;
  const safe = (await t.create('/api/v1/safes', { customer_id: customer, machine_id: old1, name: 'old1' })).id as string;
  await db.db.insertInto('jobs').values(jobRow(customer, old1, safe, 'succeeded', Date.now() - 4 * DAY)).execute();
  const { page } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByTestId('count-stale').getByText('1').waitFor();
  await page.getByRole('button', { name: /Stale/ }).click();
  await page.getByRole('link', { name: 'db1' }).waitFor({ state: 'detached' });
  await page.getByRole('link', { name: 'web1' }).waitFor({ state: 'detached' });
  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: 'old1' }) });
  await row.getByText('Stale').waitFor();
  await row.getByText('4 days ago').waitFor();
  await screenshots(page, 'fleet-stale');
  await page.context().close();
});

it('changes a machine\'s retention policy: the preview says which snapshots each rule keeps or removes, and why; saving removes nothing', async () => {
  const second = await waitJob(h, await runNow(h, web1, 'backup', { paths: [src()] }));
  assert.equal(second.state, 'succeeded', second.error ?? '');
  const { page } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.goto(`/machines/${web1.id}`);
  const policy = page.getByLabel('policy');
  await policy.getByText('No retention policy: every snapshot is kept.').waitFor();
  await page.getByLabel('Keep last').fill('x');
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByRole('alert').getByText('"x" is not a number of snapshots').waitFor();
  await page.getByLabel('Keep last').fill('1');
  await page.getByRole('button', { name: 'Preview' }).click();
  const preview = page.getByRole('table', { name: 'retention preview' });
  await preview.waitFor();
  assert.equal(await preview.locator('tbody tr').count(), 2);
  await preview.locator('tr.keep').getByText(String(second.result!['snapshot_id']).slice(0, 8)).waitFor();
  assert.match(await preview.locator('tr.keep').textContent() ?? '', /last snapshot/);
  assert.equal(await preview.locator('tr.remove').count(), 1);
  await page.getByRole('status').getByText('1 kept, 1 removed').waitFor();
  await page.getByRole('button', { name: 'Save as this machine\'s retention' }).click();
  await policy.getByText(/^Saved/).waitFor();
  const effective = await t.call('GET', `/api/v1/machines/${web1.id}/policy`, { token: t.adminToken });
  assert.equal(effective.body.settings.retention.keep_last, 1, effective.text);
  await page.reload();
  await policy.getByText('Retention (this machine\'s)').waitFor();
  assert.equal(await page.getByLabel('Keep last').inputValue(), '1');
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByRole('status').getByText('1 kept, 1 removed').waitFor();
  await screenshots(page, 'retention');
  // Saved and previewed, nothing forgotten: both snapshots are still in the index.
  const snaps = await t.call('GET', `/api/v1/machines/${web1.id}/snapshots`, { token: t.adminToken });
  assert.equal(snaps.body.length, 2);
  await page.context().close();
});

it('a customer\'s user sees only its machines; another customer\'s machine by its address is not found, and the API answered 404', async () => {
  const customer = (await t.call('GET', `/api/v1/machines/${db1.id}`, { token: t.adminToken })).body.customer_id as string;
  const created = await t.create('/api/v1/users', { name: 'carol', role: 'customer-admin', customer_id: customer });
  await t.login('carol', created.password as string, 'carol\'s long password');
  const { page, answers } = await b.newPage();
  await logIn(page, 'carol', 'carol\'s long password');
  await page.getByRole('link', { name: 'db1' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'web1' }).count(), 0);
  await page.getByTestId('count-never').getByText('1', { exact: true }).waitFor();
  await page.goto(`/machines/${web1.id}`);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
  assert.ok(answers.some((a) => a.method === 'GET' && a.path === `/api/v1/machines/${web1.id}` && a.status === 404), JSON.stringify(answers));
  await page.goto(`/machines/${web1.id}/restore`);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
  await screenshots(page, 'not-found');
  await page.goto('/');
  await screenshots(page, 'fleet-customer', () => page.getByRole('link', { name: 'db1' }).waitFor());
  await page.context().close();
});

it('loads a fleet of 1,000 machines with one call: its counts and first rows', async () => {
  // Made in the database at once: a customer's 1,000 machines, each with a disk safe of 5 MiB as the server recorded it (as after a restart: the listing does
  // not count them again; their folders do not exist, so a count would say 0); 6 of 10 backed up an hour ago, one failed since, one running, one never backed up, one four days ago.
  const big = (await t.create('/api/v1/customers', { name: 'Big' })).id as string;
  const now = Date.now();
  const machines: Machine[] = [];
  const safes: DiskSafe[] = [];
  const jobs: NewJob[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = `big-${i}`;
    const name = `big-${String(i).padStart(4, '0')}`;
    const at = new Date(now - DAY).toISOString();
    machines.push({ id, customer_id: big, name, created_at: at, last_seen_at: null, retired_at: null, safe_deleted_at: null, stale_since: null, proven_restorable_at: null, proven_restorable_snapshot: null });
    safes.push({ id: `${id}-safe`, customer_id: big, machine_id: id, name, location: `safes/${id}-safe`, quota_hard: null, quota_soft: null, created_at: at, deleting_at: null, quota_alert: null, snapshots_indexed_at: at, census_at: null, policy_removed_at: null });
    const kind = i % 10;
    if (kind <= 6) jobs.push(jobRow(big, id, `${id}-safe`, 'succeeded', now - (kind === 6 ? 5 : 1) * 3600_000));
    if (kind === 6) jobs.push(jobRow(big, id, `${id}-safe`, 'failed', now - 2 * 3600_000));
    if (kind === 7) jobs.push(jobRow(big, id, `${id}-safe`, 'running', null));
    if (kind === 9) jobs.push(jobRow(big, id, `${id}-safe`, 'succeeded', now - 4 * DAY));
  }
  await db.db.transaction().execute(async (trx) => {
    for (let i = 0; i < 1000; i += 100) {
      await trx.insertInto('machines').values(machines.slice(i, i + 100)).execute();
      await trx.insertInto('disk_safes').values(safes.slice(i, i + 100)).execute();
      await trx.insertInto('safe_usage').values(safes.slice(i, i + 100).map((x) => ({ location: x.location, stored_bytes: 5 * 1024 * 1024, counted_at: x.created_at }))).execute();
    }
    for (let i = 0; i < jobs.length; i += 100) await trx.insertInto('jobs').values(jobs.slice(i, i + 100)).execute();
  });
  const made = await t.create('/api/v1/users', { name: 'bigadmin', role: 'customer-admin', customer_id: big });
  await t.login('bigadmin', made.password as string, 'big admin\'s long password');
  const { page, consoleErrors } = await b.newPage();
  const calls: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/v1/machines')) calls.push(`${u.pathname}${u.search}`);
  });
  await page.goto('/');
  await page.getByLabel('Name').fill('bigadmin');
  await page.getByLabel('Password').fill('big admin\'s long password');
  const expected = { ok: '600', failed: '100', running: '100', never: '100', stale: '100' };
  const loads: number[] = [];
  for (let round = 0; round < 2; round++) {
    // The first load from the click on "Log in" (the fleet page is the first after it), then a reload.
    const start = Date.now();
    if (round === 0) await page.getByRole('button', { name: 'Log in' }).click();
    else await page.reload();
    await page.getByTestId('count-ok').getByText(expected.ok, { exact: true }).waitFor({ timeout: 60_000 });
    await page.getByRole('link', { name: 'big-0000' }).waitFor();
    loads.push(Date.now() - start);
  }
  for (const [status, n] of Object.entries(expected)) assert.equal(await page.getByTestId(`count-${status}`).textContent(), n, status);
  await page.getByRole('row').filter({ has: page.getByRole('link', { name: 'big-0001' }) }).getByText('5.0 MiB').waitFor();
  await page.getByRole('table', { name: 'failures' }).getByRole('link', { name: 'big-0006' }).waitFor();
  assert.deepEqual(calls, [0, 1].flatMap(() => ['/api/v1/machines?status=true&limit=1000&offset=0', '/api/v1/machines?status=true&limit=1000&offset=1000']),
    'two pages (1,000 and none) per load, no call per machine');
  process.stdout.write(`# fleet page, 1,000 machines in Chromium: logged in and loaded in ${loads[0]} ms, a reload ${loads[1]} ms\n`);
  await screenshots(page, 'fleet-1000');
  assert.deepEqual(consoleErrors, []);
  await page.context().close();
});

const DAY = 24 * 3600_000;

/** A backup job of `machine` planted in the database, `state` and ended at `finishedAt` (null: not ended). */
function jobRow(customer: string, machine: string, safe: string, state: Job['state'], finishedAt: number | null): NewJob {
  const at = new Date(finishedAt ?? Date.now()).toISOString();
  return {
    id: `${machine}-${state}-${finishedAt ?? 'now'}`, customer_id: customer, machine_id: machine, safe_id: safe, runner: 'agent', runner_node: null, kind: 'backup', spec: '{"paths":["/srv"]}', state,
    created_by: 'test', created_at: at, started_at: at, last_report_at: null, finished_at: finishedAt === null ? null : at, result: null, error: state === 'failed' ? 'disk full' : null,
    expires_at: null, cancelled_by: null, lease_until: null, slot_at: null, admitted_at: at, timeout_seconds: null,
  };
}

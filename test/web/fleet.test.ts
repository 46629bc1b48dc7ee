/**
 * The fleet in Chromium, against a real server and a real agent (a child
 * process): the provider admin sees every machine with its status, a
 * machine never backed up, "back up now" followed live to its end, the
 * snapshot on the machine's timeline, a machine whose last success is
 * older than its threshold shown stale, a retention policy's preview with
 * the server's reasons; a customer's user sees only its customer's
 * machines, and another customer's machine by its address is "not found"
 * (the API answered 404). Screenshots of each screen at both sizes.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';

let s: Sandbox;
let t: TestServer;
let h: ServerHandle;
let b: TestBrowser;
let web1: EnrolledMachine;
let db1: EnrolledMachine;
let agent: Started;
const src = (): string => s.path('src');

before(async () => {
  s = await Sandbox.create('holdfast-web-fleet-');
  t = await setUp(`sqlite:${s.path('control.db')}`);
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
  // The statuses come after the list, as each machine's jobs are read.
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
  const { page } = await b.newPage();
  // The browser's clock four days on: web1's only backup is older than the three days of a machine without a schedule.
  await page.clock.setFixedTime(Date.now() + 4 * 24 * 3600_000);
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByTestId('count-stale').getByText('1').waitFor();
  await page.getByRole('button', { name: /Stale/ }).click();
  await page.getByRole('link', { name: 'db1' }).waitFor({ state: 'detached' });
  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: 'web1' }) });
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



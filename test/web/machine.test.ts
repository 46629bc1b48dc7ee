/**
 * The machine page in a real browser, against a real server and a real
 * agent: after a backup and a restore test that passed, the page says when
 * the machine was last proven restorable and by which snapshot; its
 * schedule, window, time zone, verification and restore test are edited as
 * the machine's own policy, the server's effective policy then says so, and
 * the retention preview starts from the policy the machine inherits. A
 * value the server would refuse is refused in words before anything is sent.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';

let t: TestServer;
let h: ServerHandle;
let b: TestBrowser;
let s: Sandbox;
let web1: EnrolledMachine;
let agent: Started;
let proven = '';

before(async () => {
  s = await Sandbox.create('holdfast-web-machine-');
  t = await setUp(`sqlite:${s.path('control.db')}`);
  h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  web1 = await enrolMachine(h, s, 'web1');
  await mkdir(s.path('src', 'etc'), { recursive: true });
  await writeFile(s.path('src', 'etc', 'app.conf'), 'listen = 8080\n');
  await writeFile(s.path('src', 'data.bin'), Buffer.alloc(100_000, 7));
  agent = startAgent(s, web1);
  const backup = await waitJob(h, await runNow(h, web1, 'backup', { paths: [s.path('src')] }));
  assert.equal(backup.state, 'succeeded', backup.error ?? '');
  const test = await waitJob(h, await runNow(h, web1, 'verify-restore', {}));
  assert.equal(test.state, 'succeeded', test.error ?? '');
  proven = (await t.call('GET', `/api/v1/machines/${web1.id}`, { token: t.adminToken })).body.proven_restorable_snapshot as string;
  assert.equal(proven, backup.result!['snapshot_id']);
  // The customer's policy, which the machine inherits until it has its own.
  const customer = (await t.call('GET', `/api/v1/machines/${web1.id}`, { token: t.adminToken })).body.customer_id as string;
  await t.create('/api/v1/policies', { customer_id: customer, schedule: 'every 1d', verify: { every: '7d', read_data_subset_days: 90 }, retention: { keep_daily: 7, keep_weekly: 4 } });
  b = await launchBrowser(t.port);
});
after(async () => {
  await b?.close();
  agent?.child.kill('SIGTERM');
  await agent?.done;
  await t?.stop();
  await s?.remove();
});

it('says when a restore test last proved the machine restorable, and with which snapshot', async () => {
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.goto(`/machines/${web1.id}`);
  const fact = page.locator('dt', { hasText: 'Last proven restorable' }).locator('xpath=following-sibling::dd[1]');
  await fact.getByRole('link', { name: proven.slice(0, 8) }).waitFor();
  assert.match((await fact.textContent())!, /^(just now|\d+ (s|min) ago), snapshot [0-9a-f]{8}$/);
  assert.deepEqual(consoleErrors, []);
});

it('edits the schedule and checks as the machine\'s own policy; the server applies them; the retention starts from the inherited rules', async () => {
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.goto(`/machines/${web1.id}`);
  const form = page.getByRole('form', { name: 'schedule and checks' });
  await form.waitFor();
  // The inherited values show as placeholders; the retention form holds the inherited rules, and its preview runs on them.
  assert.equal(await form.getByLabel('Schedule').getAttribute('placeholder'), 'inherited: every 1d');
  assert.equal(await page.locator('input[name=keep_daily]').inputValue(), '7');
  assert.equal(await page.locator('input[name=keep_weekly]').inputValue(), '4');
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByRole('table', { name: 'retention preview' }).getByText('keep', { exact: true }).waitFor();

  await form.getByLabel('Window').fill('22-06');
  await form.getByRole('button', { name: 'Save as this machine\'s schedule' }).click();
  await form.getByRole('alert').getByText(/Window: "22-06" is not HH:MM-HH:MM/).waitFor();

  await form.getByLabel('Schedule').fill('every 6h');
  await form.getByLabel('Window').fill('22:00-06:00');
  await form.getByLabel('Time zone').fill('Europe/Berlin');
  await form.getByLabel('Restore test every').fill('7d');
  await form.getByLabel('Restore test share (%)').fill('5');
  await form.getByRole('button', { name: 'Save as this machine\'s schedule' }).click();
  await form.getByRole('status').getByText(/^Saved/).waitFor();
  const effective = (await t.call('GET', `/api/v1/machines/${web1.id}/policy`, { token: t.adminToken })).body as { settings: Record<string, unknown>; from: Record<string, string> };
  assert.equal(effective.settings['schedule'], 'every 6h');
  assert.equal(effective.settings['window'], '22:00-06:00');
  assert.equal(effective.settings['time_zone'], 'Europe/Berlin');
  assert.deepEqual(effective.settings['restore_test'], { every: '7d', share: 5 });
  assert.deepEqual(effective.settings['verify'], { every: '7d', read_data_subset_days: 90 }, 'left empty: still the customer\'s');
  assert.notEqual(effective.from['schedule'], effective.from['verify'], 'the schedule is the machine\'s own, the verification the customer\'s');
  const facts = page.locator('[aria-label=policy] dl');
  await facts.getByText('every 6h (this machine\'s)').waitFor();
  await facts.getByText('22:00-06:00 Europe/Berlin').waitFor();
  await facts.getByText('every 7d, 5% of the files').waitFor();
  await screenshots(page, 'machine-policy', () => form.waitFor());
  assert.deepEqual(consoleErrors, []);
});

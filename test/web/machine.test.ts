/**
 * The machine page in a real browser, against a real server and a real
 * agent: after a backup and a restore test that passed, the page says when
 * the machine was last proven restorable and by which snapshot; its
 * schedule, window, time zone, verification and restore test are edited as
 * the machine's own policy, the server's effective policy then says so, and
 * the retention preview starts from the policy the machine inherits. A
 * value the server would refuse is refused in words before anything is sent.
 * A snapshot the server flags unauthentic (its agent's census found it
 * failing its MAC) is marked, with why, in the machine's snapshot list, its
 * timeline and the snapshot browser, is no link to browse, and is never the
 * restore wizard's first choice; chosen, it is warned about.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase } from '../../src/server/db/open-database.js';

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

it('marks a snapshot the agent found unauthentic wherever it is listed, and never offers it as a restore source without a warning', async () => {
  await writeFile(s.path('src', 'etc', 'app.conf'), 'listen = 8081\n');
  const second = await waitJob(h, await runNow(h, web1, 'backup', { paths: [s.path('src')] }));
  assert.equal(second.state, 'succeeded', second.error ?? '');
  const planted = second.result!['snapshot_id'] as string;
  // The census's verdict as the server records it (server/census tests how it comes to be), on the newest snapshot: a forgery is dated late.
  const db = await openDatabase(`sqlite:${s.path('control.db')}`, '');
  try {
    await db.db.updateTable('snapshot_index').set({ unauthentic: 1 }).where('id', '=', planted).execute();
  } finally {
    await db.close();
  }
  const safeId = ((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as { id: string; name: string }[]).find((x) => x.name === web1.config['safe'])!.id;
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);

  // The machine page: the row marked, with why, and no link to browse it; the genuine one as before.
  await page.goto(`/machines/${web1.id}`);
  const rows = page.getByRole('table', { name: 'snapshots' }).getByRole('row');
  const mark = rows.filter({ hasText: planted.slice(0, 8) }).getByText('unauthentic', { exact: true });
  await mark.waitFor();
  assert.match((await mark.getAttribute('title'))!, /failing its MAC: someone without the disk safe's key planted it/);
  assert.equal(await rows.filter({ hasText: planted.slice(0, 8) }).getByRole('link').count(), 0);
  await rows.filter({ hasText: proven.slice(0, 8) }).getByRole('link', { name: proven.slice(0, 8) }).waitFor();
  assert.equal(await rows.filter({ hasText: proven.slice(0, 8) }).getByText('unauthentic').count(), 0);
  assert.match((await page.locator('.timeline g.unauthentic title').textContent())!, new RegExp(`^${planted.slice(0, 8)} .* UNAUTHENTIC: `));
  await screenshots(page, 'machine-unauthentic');

  // The restore wizard: the genuine snapshot is chosen first; the flagged one is marked, and warned about once chosen.
  await page.goto(`/machines/${web1.id}/restore`);
  const source = page.locator('select[name=snapshot]');
  await source.waitFor();
  assert.equal(await source.inputValue(), proven);
  assert.equal(await page.getByRole('alert').count(), 0);
  assert.match((await source.locator(`option[value="${planted}"]`).textContent())!, /^⚠ UNAUTHENTIC · [0-9a-f]{8}/);
  await source.selectOption(planted);
  await page.getByRole('alert').getByText(`Snapshot ${planted.slice(0, 8)} is unauthentic. The machine's agent found this snapshot failing its MAC`, { exact: false }).waitFor();
  await source.selectOption(proven);
  assert.equal(await page.getByRole('alert').count(), 0);

  // The snapshot browser: the flagged one is listed, marked, and no link; the genuine one opens.
  await page.goto(`/safes/${safeId}/browse/`);
  await page.getByLabel('Disk safe password').fill(web1.config['password'] as string);
  await page.getByRole('button', { name: 'Open' }).click();
  const listed = page.getByRole('table', { name: 'snapshots' }).getByRole('row');
  const flagged = listed.filter({ hasText: planted.slice(0, 8) });
  await flagged.getByText('unauthentic', { exact: true }).waitFor();
  assert.match((await flagged.getByText('unauthentic', { exact: true }).getAttribute('title'))!, /do not restore from it/);
  assert.equal(await flagged.getByRole('link').count(), 0);
  assert.equal(await listed.filter({ hasText: proven.slice(0, 8) }).getByRole('link').count(), 1);
  assert.equal(await listed.filter({ hasText: proven.slice(0, 8) }).getByText('unauthentic').count(), 0);
  await screenshots(page, 'browse-unauthentic');
  assert.deepEqual(consoleErrors, []);
});

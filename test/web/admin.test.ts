/**
 * Administration, enrolment, restore and storage in Chromium, against a
 * real server and a real agent: customers with quotas, users (the
 * one-time password shown once, and it works), tokens (the secret shown
 * once, and revoked); a machine enrolled by running the command the
 * enrolment page shows, its agent started, and a folder of its backup
 * restored through the restore wizard into another folder, byte for byte;
 * a disk image's restore token and the command for the rescue system; the
 * storage page; a webhook channel and "send a test", that arrives, or is
 * said in words not to. Screenshots of each screen at both sizes.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { enrolledAt, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { startWebhookReceiver } from '../helpers/notify-receivers.js';
import { launchBrowser, logIn, screenshots, type TestBrowser, type TestPage } from '../helpers/browser.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';

let s: Sandbox;
let t: TestServer;
let h: ServerHandle;
let b: TestBrowser;
let tp: TestPage;
let agent: Started | undefined;
let app1: EnrolledMachine;
const src = (): string => s.path('src');

before(async () => {
  s = await Sandbox.create('holdfast-web-admin-');
  t = await setUp(`sqlite:${s.path('control.db')}`);
  h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  await mkdir(join(src(), 'www', 'img'), { recursive: true });
  await writeFile(join(src(), 'www', 'index.html'), '<h1>hello</h1>\n');
  await writeFile(join(src(), 'www', 'img', 'logo.bin'), Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7) % 251)));
  b = await launchBrowser(t.port);
  tp = await b.newPage();
  await logIn(tp.page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
});
after(async () => {
  await b?.close();
  agent?.child.kill('SIGTERM');
  await agent?.done;
  await t?.stop();
  await s?.remove();
});

it('creates a customer with a quota and changes it', async () => {
  const { page } = tp;
  await page.getByRole('link', { name: 'Administration' }).click();
  await page.getByRole('table', { name: 'customers' }).waitFor();
  await page.getByLabel('Name').fill('Initech');
  await page.getByLabel('Hard quota (optional)').fill('2 gigs');
  await page.getByRole('button', { name: 'Create customer' }).click();
  await page.getByRole('alert').getByText('"2 gigs" is not a size').waitFor();
  await page.getByLabel('Hard quota (optional)').fill('2 GiB');
  await page.getByRole('button', { name: 'Create customer' }).click();
  const row = page.getByRole('row').filter({ hasText: 'Initech' });
  await row.getByText('2.0 GiB').waitFor();
  await row.getByRole('button', { name: 'change the quotas of Initech' }).click();
  await page.getByLabel('soft quota of Initech').fill('1 GiB');
  await page.getByRole('button', { name: 'Save' }).click();
  await row.getByText('1.0 GiB').waitFor();
  const listed = (await t.call('GET', '/api/v1/customers', { token: t.adminToken })).body as { name: string; quota_hard: number; quota_soft: number }[];
  const initech = listed.find((c) => c.name === 'Initech')!;
  assert.deepEqual([initech.quota_hard, initech.quota_soft], [2 * 1024 ** 3, 1024 ** 3]);
  await screenshots(page, 'admin-customers');
});

it('creates a user whose one-time password is shown once, and a token whose secret is shown once and works until revoked', async () => {
  const { page } = tp;
  await page.getByRole('navigation', { name: 'administration' }).getByRole('link', { name: 'Users' }).click();
  await page.getByLabel('Name').fill('dave');
  await page.getByLabel('Role', { exact: true }).selectOption('customer-viewer');
  await page.getByLabel('Customer', { exact: true }).selectOption({ label: 'Initech' });
  await page.getByRole('button', { name: 'Create user' }).click();
  const password = (await page.getByRole('region', { name: 'secret' }).getByLabel('secret').textContent())!;
  const login = await t.call('POST', '/api/v1/login', { body: { name: 'dave', password } });
  assert.equal(login.status, 200, login.text);
  assert.equal(login.body.user.must_change_password, true);
  await screenshots(page, 'admin-users');
  await page.getByRole('button', { name: 'I have copied it' }).click();
  assert.equal(await page.getByRole('region', { name: 'secret' }).count(), 0, 'shown once');

  await page.getByRole('navigation', { name: 'administration' }).getByRole('link', { name: 'Tokens' }).click();
  await page.getByLabel('Name').fill('monitoring');
  await page.getByLabel('Customer', { exact: true }).selectOption({ label: 'Initech' });
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.getByRole('region', { name: 'secret' }).getByLabel('secret').textContent())!;
  const me = await t.call('GET', '/api/v1/me', { token: secret });
  assert.equal(me.status, 200, me.text);
  assert.deepEqual([me.body.kind, me.body.token.name, me.body.token.rights], ['token', 'monitoring', ['read']]);
  await screenshots(page, 'admin-tokens');
  await page.getByRole('button', { name: 'I have copied it' }).click();
  await page.getByRole('button', { name: 'revoke monitoring' }).click();
  await page.getByRole('row').filter({ hasText: 'monitoring' }).getByText(/revoked/).waitFor();
  assert.equal((await t.call('GET', '/api/v1/me', { token: secret })).status, 401);
});

it('enrols a machine with the command the enrolment page shows; its first backup comes back through the restore wizard', async () => {
  const { page } = tp;
  await page.getByRole('navigation', { name: 'administration' }).getByRole('link', { name: 'Enrol a machine' }).click();
  await page.getByLabel('Customer', { exact: true }).selectOption({ label: 'Initech' });
  await page.getByLabel('The machine\'s name').fill('app1');
  // The node says its certificate's fingerprint (GET /api/v1/server): the page fills it in.
  const fingerprint = page.getByLabel('fingerprint');
  for (let i = 0; (await fingerprint.inputValue()) !== t.server.fingerprint; i++) {
    assert.ok(i < 100, `the fingerprint field holds "${await fingerprint.inputValue()}"`);
    await sleep(100);
  }
  await page.getByRole('button', { name: 'Make the enrolment command' }).click();
  const command = (await page.getByLabel('enrol command').textContent())!;
  await screenshots(page, 'admin-enrol');
  const m = /^holdfast (agent enroll .*) && holdfast agent run$/.exec(command);
  assert.ok(m, command);
  assert.match(command, new RegExp(`--server ${b.base} --token hft_\\S+ --fingerprint ${t.server.fingerprint} --name app1 `));
  const configPath = s.path('app1-etc', 'agent.json');
  await s.ok([...m[1]!.split(' '), '--config', configPath]);
  app1 = await enrolledAt(h, configPath);
  agent = startAgent(s, app1);
  const backup = await waitJob(h, await runNow(h, app1, 'backup', { paths: [src()] }));
  assert.equal(backup.state, 'succeeded', backup.error ?? '');

  await page.getByRole('link', { name: 'Fleet' }).click();
  await page.getByRole('link', { name: 'app1' }).click();
  await page.getByRole('link', { name: 'Restore…' }).click();
  await page.getByRole('heading', { name: /Restore from/ }).waitFor();
  await page.getByLabel('Files or folders to restore').fill(join(src(), 'www'));
  await page.getByLabel('target folder').fill(s.path('restored'));
  await screenshots(page, 'restore');
  await page.getByRole('button', { name: 'Restore', exact: true }).click();
  await page.getByLabel('job log').getByText('succeeded', { exact: true }).waitFor({ timeout: 25_000 });
  for (const f of ['www/index.html', 'www/img/logo.bin']) {
    assert.deepEqual(await readFile(join(s.path('restored'), src(), f)), await readFile(join(src(), f)), f);
  }
  await screenshots(page, 'restore-done');
});

it('makes a restore token for a disk image and shows the one command for the rescue system', async () => {
  const { page } = tp;
  await page.getByRole('radio', { name: /A disk image/ }).check();
  await page.getByLabel('The disk to write').fill('/dev/vdb');
  await page.getByRole('button', { name: 'Make a restore token' }).click();
  const command = (await page.getByLabel('restore command').textContent())!;
  const safe = app1.config['safe'] as string;
  const m = new RegExp(`^HOLDFAST_TOKEN=(hft_\\S+) holdfast restore-image -r ${b.base}/safes/${safe} --fingerprint ${t.server.fingerprint} --password-file ${safe}\\.password latest --to /dev/vdb$`).exec(command);
  assert.ok(m, command);
  const me = await t.call('GET', '/api/v1/me', { token: m[1]! });
  assert.deepEqual(me.body.token.rights, ['restore']);
  await screenshots(page, 'restore-image');
});

it('shows the storage each customer and disk safe uses, against its quota', async () => {
  const { page } = tp;
  await page.getByRole('link', { name: 'Storage' }).click();
  const safes = page.getByRole('table', { name: 'disk safes\' storage' });
  await safes.getByRole('row').filter({ hasText: app1.config['safe'] as string }).getByText('Initech').waitFor();
  await page.getByRole('table', { name: 'customers\' storage' }).getByRole('row').filter({ hasText: 'Initech' }).getByText(/% of 2\.0 GiB/).waitFor();
  await screenshots(page, 'storage');
  assert.deepEqual(tp.consoleErrors, []);
});

it('makes a webhook channel and sends a test that arrives, and says in words why a test to nowhere did not', async () => {
  const receiver = await startWebhookReceiver();
  try {
    const { page } = tp;
    await page.getByRole('link', { name: 'Administration' }).click();
    await page.getByRole('navigation', { name: 'administration' }).getByRole('link', { name: 'Notifications' }).click();
    await page.getByText('No channel yet').waitFor();
    await page.getByLabel('Name').fill('ops hook');
    await page.getByLabel('Customer', { exact: true }).selectOption({ label: 'Initech' });
    await page.getByLabel('URL').fill(receiver.url);
    await page.getByRole('button', { name: 'Create channel' }).click();
    await page.getByRole('region', { name: 'secret' }).waitFor();
    await page.getByRole('button', { name: 'I have copied it' }).click();
    await page.getByRole('button', { name: 'send a test to ops hook' }).click();
    await page.getByRole('status').getByText('The test arrived.').waitFor();
    assert.equal(receiver.hits.length, 1);
    assert.equal(receiver.hits[0]!.json.event, 'test');
    await screenshots(page, 'admin-notifications');

    await page.getByLabel('Name').fill('nowhere');
    await page.getByLabel('URL').fill(`${receiver.url.replace(/:\d+\//, ':1/')}`);
    await page.getByRole('button', { name: 'Create channel' }).click();
    await page.getByRole('button', { name: 'send a test to nowhere' }).click();
    await page.getByRole('row').filter({ hasText: 'nowhere' }).getByRole('alert').getByText(/^The test did not arrive: \S/).waitFor();
  } finally {
    await receiver.close();
  }
});

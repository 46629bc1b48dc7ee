/**
 * The snapshot browser in a real browser against a real server: a customer's
 * user opens an encrypted disk safe with its password in the page, browses a
 * snapshot, downloads a file and a folder (tar) and gets the original bytes;
 * a wrong password is refused in words. What the server could have seen is
 * captured on both sides (every request the page sends, with its body, and
 * the server's log): neither holds the safe's password nor a known string
 * from the files.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, it } from 'node:test';
import { customerWithSafe, launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox } from '../helpers/cli.js';
import { setUp, type TestServer } from '../helpers/server.js';

const SAFE_PASSWORD = 'the safe password Zq7-browser';
const MARKER = 'PLAINTEXT-MARKER-4d1f';

let t: TestServer;
let b: TestBrowser;
let s: Sandbox;
let safeId = '';
let userPassword = '';
const serverLog: Buffer[] = [];

before(async () => {
  s = await Sandbox.create('holdfast-browse-');
  const log = new PassThrough();
  log.on('data', (d: Buffer) => serverLog.push(d));
  t = await setUp(`sqlite:${':memory:'}`, undefined, { logStream: log });
  let token: string;
  ({ safeId, backupToken: token, userPassword } = await customerWithSafe(t));
  await fs.mkdir(s.path('src', 'docs'), { recursive: true });
  await fs.writeFile(s.path('src', 'docs', 'note.txt'), `${MARKER}: a note the server must never read\n`);
  await fs.chmod(s.path('src', 'docs'), 0o1777);
  await fs.writeFile(s.path('src', 'big.log'), Array.from({ length: 60_000 }, (_, i) => `${MARKER} line ${i}\n`).join(''));
  const env = { HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: SAFE_PASSWORD };
  const repo = `https://127.0.0.1:${t.port}/safes/web1`;
  await s.ok(['-r', repo, 'init'], { env });
  await s.ok(['-r', repo, 'backup', s.path('src')], { env });
  b = await launchBrowser(t.port, { trustServiceWorkers: true });
});
after(async () => {
  await b?.close();
  await t?.stop();
  await s?.remove();
});

it('opens the safe with its password in the page, browses, downloads a file and a folder; the server sees neither password nor plaintext', async () => {
  const { page, context, consoleErrors } = await b.newPage();
  const sent: string[] = [];
  context.on('request', (r) => sent.push(`${r.method()} ${r.url()} ${JSON.stringify(r.headers())} ${r.postData() ?? ''}`));
  await logIn(page, 'alice', userPassword);
  await page.goto(`/safes/${safeId}/browse/`);

  await page.getByLabel('Disk safe password').fill('not the password');
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByText(/Wrong password/).waitFor();
  await page.getByLabel('Disk safe password').fill(SAFE_PASSWORD);
  await page.getByRole('button', { name: 'Open' }).click();
  const snapshots = page.getByRole('table', { name: 'snapshots' });
  await snapshots.waitFor();
  await screenshots(page, 'browse-snapshots', () => snapshots.waitFor());
  await snapshots.getByRole('link').first().click();

  for (const part of s.path('src').split('/').filter((p) => p !== '')) await page.getByRole('link', { name: `${part}/`, exact: true }).click();
  const entries = page.getByRole('table', { name: 'entries' });
  await entries.getByText('big.log').waitFor();
  // Modes as ls -l shows them, the sticky bit too.
  assert.match((await entries.getByRole('row').filter({ hasText: 'docs/' }).textContent())!, /drwxrwxrwt/);
  await screenshots(page, 'browse-folder', () => entries.waitFor());

  const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download big.log' }).click()]);
  const fileCopy = s.path('downloaded.log');
  await file.saveAs(fileCopy);
  assert.deepEqual(await fs.readFile(fileCopy), await fs.readFile(s.path('src', 'big.log')));
  assert.equal(file.suggestedFilename(), 'big.log');

  const [tar] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download folder (tar)' }).click()]);
  const tarCopy = s.path('src.tar');
  await tar.saveAs(tarCopy);
  const listed = spawnSync('tar', ['-tf', tarCopy]).stdout.toString().trim().split('\n').sort();
  assert.deepEqual(listed, ['src/', 'src/big.log', 'src/docs/', 'src/docs/note.txt']);
  const out = s.path('untarred');
  await fs.mkdir(out);
  assert.equal(spawnSync('tar', ['-xf', tarCopy, '-C', out]).status, 0);
  for (const f of ['big.log', 'docs/note.txt']) assert.deepEqual(await fs.readFile(join(out, 'src', f)), await fs.readFile(s.path('src', f)), f);
  await page.getByRole('status').getByText(/Downloaded src\.tar/).waitFor();
  const streamed = !(await page.getByRole('status').textContent())!.includes('held in memory');

  assert.ok(sent.length > 10, 'the page made its requests');
  for (const r of sent) {
    assert.ok(!r.includes(SAFE_PASSWORD), `a request holds the safe's password: ${r.slice(0, 200)}`);
    assert.ok(!r.includes(MARKER), `a request holds plaintext: ${r.slice(0, 200)}`);
  }
  const logText = Buffer.concat(serverLog).toString();
  assert.ok(logText.length > 0, 'the server logged');
  assert.ok(!logText.includes(SAFE_PASSWORD) && !logText.includes(MARKER), 'the server log holds neither the password nor plaintext');
  assert.deepEqual(consoleErrors, []);
  assert.ok(streamed, 'the downloads went through the service worker, streamed');
});

/**
 * The snapshot browser's tools in a real browser against a real server, on
 * an encrypted disk safe two real backups wrote: the comparison with the
 * previous snapshot lists exactly the file added, the one removed and the
 * one rewritten; a folder downloaded as a zip (streamed through the service
 * worker) extracts with `unzip` to the original bytes; a search by name
 * (in a Web Worker) finds a file deep in the tree with its folder and
 * nothing for a name that is not there; a folder of 10,000
 * files is listed with a small number of rows in the page and its last name
 * reached by scrolling.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { Page } from 'playwright-core';
import { customerWithSafe, launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox } from '../helpers/cli.js';
import { setUp, type TestServer } from '../helpers/server.js';

const SAFE_PASSWORD = 'the safe password Zq7-tools';
const MANY = 10_000;

let t: TestServer;
let b: TestBrowser;
let s: Sandbox;
let safeId = '';
let userPassword = '';

before(async () => {
  s = await Sandbox.create('holdfast-browse-tools-');
  t = await setUp(`sqlite:${s.path('control.db')}`);
  let token: string;
  ({ safeId, backupToken: token, userPassword } = await customerWithSafe(t));
  await fs.mkdir(s.path('src', 'docs'), { recursive: true });
  await fs.mkdir(s.path('src', 'many'), { recursive: true });
  await fs.mkdir(s.path('src', 'deep', 'er', 'est'), { recursive: true });
  await fs.writeFile(s.path('src', 'docs', 'changed.txt'), 'first version\n');
  await fs.writeFile(s.path('src', 'docs', 'kept.txt'), 'kept as it is\n');
  await fs.writeFile(s.path('src', 'gone.txt'), 'removed before the second backup\n');
  await fs.writeFile(s.path('src', 'deep', 'er', 'est', 'needle-7q.txt'), 'found by name\n');
  await fs.writeFile(s.path('src', 'data.bin'), Buffer.from(Array.from({ length: 200_000 }, (_, i) => `${i * 7}\n`).join('')));
  for (let i = 0; i < MANY; i++) await fs.writeFile(s.path('src', 'many', `f${String(i).padStart(5, '0')}.txt`), `${i}\n`);
  const env = { HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: SAFE_PASSWORD };
  const repo = `https://127.0.0.1:${t.port}/safes/web1`;
  await s.ok(['-r', repo, 'init'], { env });
  await s.ok(['-r', repo, 'backup', s.path('src')], { env });
  await fs.writeFile(s.path('src', 'docs', 'changed.txt'), 'second version\n');
  await fs.rm(s.path('src', 'gone.txt'));
  await fs.writeFile(s.path('src', 'added.txt'), 'new in the second backup\n');
  await s.ok(['-r', repo, 'backup', s.path('src')], { env });
  b = await launchBrowser(t.port, { trustServiceWorkers: true });
});
after(async () => {
  await b?.close();
  await t?.stop();
  await s?.remove();
});

/** Opens the safe and the newest snapshot's copy of the backed-up folder. */
async function openSource(page: Page): Promise<void> {
  await logIn(page, 'alice', userPassword);
  await page.goto(`/safes/${safeId}/browse/`);
  await page.getByLabel('Disk safe password').fill(SAFE_PASSWORD);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('table', { name: 'snapshots' }).getByRole('link').first().click();
  for (const part of s.path('src').split('/').filter((p) => p !== '')) await page.getByRole('link', { name: `${part}/`, exact: true }).click();
  await page.getByRole('table', { name: 'entries' }).getByText('added.txt').waitFor();
}

it('compares the folder with the previous snapshot: exactly the file added, the one removed and the one rewritten', async () => {
  const { page, consoleErrors } = await b.newPage();
  await openSource(page);
  await page.getByRole('button', { name: 'Compare with previous snapshot' }).click();
  const view = page.getByRole('region', { name: 'changes since the previous snapshot' });
  await view.getByText(/1 added, 1 removed, 1 changed$/).waitFor();
  const rows = await view.getByRole('table', { name: 'changes' }).locator('tbody tr').allInnerTexts();
  assert.deepEqual(rows.map((r) => r.split('\t').slice(0, 2).join(' ')), ['added added.txt', 'changed docs/changed.txt', 'removed gone.txt']);
  await screenshots(page, 'browse-compare', () => view.waitFor());

  // Inside the folder that did not change, nothing did.
  await page.getByRole('link', { name: 'many/', exact: true }).click();
  await page.getByRole('button', { name: 'Compare with previous snapshot' }).click();
  await page.getByText('Nothing changed in this folder.').waitFor();
  assert.deepEqual(consoleErrors, []);
});

it('downloads a folder as a zip, streamed, that unzip extracts to the original bytes', async () => {
  const { page, consoleErrors } = await b.newPage();
  await openSource(page);
  await page.getByRole('link', { name: 'docs/', exact: true }).click();
  await page.getByRole('table', { name: 'entries' }).getByText('kept.txt').waitFor();
  const [zip] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download folder (zip)' }).click()]);
  const copy = s.path('docs.zip');
  await zip.saveAs(copy);
  assert.equal(zip.suggestedFilename(), 'docs.zip');
  const test = spawnSync('unzip', ['-t', copy]);
  assert.equal(test.status, 0, test.stdout.toString());
  const out = s.path('unzipped');
  assert.equal(spawnSync('unzip', ['-q', copy, '-d', out]).status, 0);
  assert.deepEqual((await fs.readdir(join(out, 'docs'))).sort(), ['changed.txt', 'kept.txt']);
  for (const f of ['changed.txt', 'kept.txt']) assert.deepEqual(await fs.readFile(join(out, 'docs', f)), await fs.readFile(s.path('src', 'docs', f)), f);
  await page.getByRole('status').getByText(/Downloaded docs\.zip/).waitFor();
  assert.ok(!(await page.getByRole('status').textContent())!.includes('held in memory'), 'streamed through the service worker');

  // The whole source folder too: a file of several blobs among the entries.
  await page.getByRole('link', { name: 'src', exact: true }).click();
  await page.getByRole('table', { name: 'entries' }).getByText('data.bin').waitFor();
  const [whole] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download folder (zip)' }).click()]);
  const wholeCopy = s.path('src.zip');
  await whole.saveAs(wholeCopy);
  const out2 = s.path('unzipped2');
  const x = spawnSync('unzip', ['-q', wholeCopy, '-d', out2]);
  assert.equal(x.status, 0, x.stderr.toString());
  for (const f of ['data.bin', 'added.txt', 'deep/er/est/needle-7q.txt', 'many/f09999.txt']) assert.deepEqual(await fs.readFile(join(out2, 'src', f)), await fs.readFile(s.path('src', f)), f);
  assert.equal((await fs.readdir(join(out2, 'src', 'many'))).length, MANY);
  assert.deepEqual(consoleErrors, []);
});

it('searches the snapshot by name in a worker: a name deep in the tree is found with its folder, a non-match finds nothing', async () => {
  const { page, consoleErrors } = await b.newPage();
  const workers: string[] = [];
  page.on('worker', (w) => workers.push(w.url()));
  await openSource(page);
  const search = page.getByLabel('Search this snapshot by name');
  await search.fill('NEEDLE-7');
  const results = page.getByRole('table', { name: 'search results' });
  await page.getByRole('status').getByText('1 found.').waitFor();
  const rows = await results.locator('tbody tr').allInnerTexts();
  assert.deepEqual(rows.map((r) => r.split('\t').slice(0, 2).join(' ')), [`needle-7q.txt ${s.path('src', 'deep', 'er', 'est')}`]);
  assert.ok(workers.some((u) => u.includes('search-worker')), `the search ran in a worker (${workers.join(', ')})`);
  await screenshots(page, 'browse-search', () => results.waitFor());
  await results.getByRole('link').click();
  await page.getByRole('table', { name: 'entries' }).getByText('needle-7q.txt').waitFor();

  // A query changed while the one before runs: only the new one's answer is shown.
  await search.fill('f0999');
  await search.fill('no-such-name-x');
  await page.getByRole('status').getByText('Nothing in this snapshot is named like “no-such-name-x”.').waitFor();
  assert.equal(await results.count(), 0);
  await search.fill('f0999');
  await page.getByRole('status').getByText('10 found.').waitFor();
  assert.deepEqual(consoleErrors, []);
});

it('lists a folder of 10,000 files with few rows in the page, and scrolls to the last', async () => {
  const { page, consoleErrors } = await b.newPage();
  await openSource(page);
  await page.getByRole('link', { name: 'many/', exact: true }).click();
  const entries = page.getByRole('table', { name: 'entries' });
  await entries.getByText('f00000.txt').waitFor();
  assert.equal(await entries.getAttribute('aria-rowcount'), String(MANY));
  const rows = async (): Promise<number> => entries.locator('.entries-body [role=row]').count();
  assert.ok(await rows() < 200, `only the visible rows are in the page (${await rows()})`);
  await screenshots(page, 'browse-many', () => entries.getByText('f00000.txt').waitFor());
  await entries.locator('.entries-body').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await entries.getByText('f09999.txt').waitFor();
  assert.ok(await rows() < 200, `still only the visible rows after scrolling (${await rows()})`);
  assert.equal(await entries.getByText('f00000.txt').count(), 0, 'the first rows left the page');
  assert.deepEqual(consoleErrors, []);
});

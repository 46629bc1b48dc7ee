/**
 * The storage page in a real browser against a real server: a customer's
 * stored bytes over the last days drawn as a chart, its growth per day and
 * the day its hard quota fills at that rate, as the server's usage history
 * says; another safe's history picked from its row. The history is ten days
 * of the hourly samples the usage ledger writes, put into the server's
 * database (a test cannot wait ten days).
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { Sandbox } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';
import { openDatabase } from '../../src/server/db/open-database.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const DAY = 86_400_000;

let t: TestServer;
let b: TestBrowser;
let s: Sandbox;
let customer = '';
let idle = '';

before(async () => {
  s = await Sandbox.create('holdfast-storage-');
  const dbUrl = `sqlite:${s.path('control.db')}`;
  t = await setUp(dbUrl);
  customer = (await t.create('/api/v1/customers', { name: 'Acme', quota_hard: 3 * GiB })).id as string;
  const m = (await t.create('/api/v1/machines', { customer_id: customer, name: 'web1' })).id as string;
  const growing = (await t.create('/api/v1/safes', { customer_id: customer, machine_id: m, name: 'web1' })).id as string;
  idle = (await t.create('/api/v1/safes', { customer_id: customer, name: 'archive', quota_hard: 1 * GiB })).id as string;
  assert.equal((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).status, 200);
  const db = await openDatabase(dbUrl, '');
  try {
    const where = async (id: string): Promise<string> => (await db.db.selectFrom('disk_safes').select('location').where('id', '=', id).executeTakeFirstOrThrow()).location;
    const now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    // web1 grows by 100 MiB a day from 1 GiB; archive stays at 200 MiB. A sample at noon of each of the nine days before today, and
    // today's in this hour, over the one the ledger wrote when the listing above counted the new safes (0 bytes).
    for (let k = 0; k < 10; k++) {
      const hour = k === 9 ? `${now.toISOString().slice(0, 13)}:00:00.000Z` : new Date(today - (9 - k) * DAY + 12 * 3600_000).toISOString();
      for (const [id, bytes] of [[growing, GiB + k * 100 * MiB], [idle, 200 * MiB]] as const) {
        await db.db.insertInto('usage_samples').values({ location: await where(id), hour, stored_bytes: bytes })
          .onConflict((oc) => oc.columns(['location', 'hour']).doUpdateSet({ stored_bytes: bytes })).execute();
      }
    }
  } finally {
    await db.close();
  }
  b = await launchBrowser(t.port);
});
after(async () => {
  await b?.close();
  await t?.stop();
  await s?.remove();
});

it('draws a customer\'s stored bytes per day, its growth per day and when its hard quota fills; another safe\'s from its row', async () => {
  const history = (await t.call('GET', `/api/v1/customers/${customer}/usage-history`, { token: t.adminToken })).body as { days: unknown[]; growth_per_day: number; fills_at: string };
  assert.equal(history.days.length, 10);
  assert.equal(history.growth_per_day, 100 * MiB);
  const { page, consoleErrors } = await b.newPage();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Storage' }).click();
  const card = page.getByRole('region', { name: 'storage over time' });
  await card.getByRole('heading', { name: 'Storage of customer Acme, last 30 days' }).waitFor();
  const chart = card.getByRole('img');
  const days = history.days as { day: string }[];
  assert.equal(await chart.getAttribute('aria-label'), `Stored bytes of customer Acme: 1.2 GiB on ${days[0]!.day}, 2.1 GiB on ${days[9]!.day}`);
  assert.equal(await chart.locator('line.point').count(), 10);
  assert.equal(await chart.locator('line.quota').count(), 1, 'the 3 GiB quota is within the chart\'s reach');
  const facts = card.locator('dl');
  await facts.getByText('+100 MiB').waitFor();
  const left = Math.floor((Date.parse(history.fills_at) - Date.now()) / DAY);
  assert.ok(left >= 8 && left <= 9, `(3 GiB − 2.1 GiB) at 100 MiB a day: ${left}`);
  await facts.getByText(new RegExp(`\\(in ${left} days\\)$`)).waitFor();
  await screenshots(page, 'storage-history', () => chart.waitFor());

  await page.getByRole('button', { name: 'History of archive' }).click();
  await card.getByRole('heading', { name: 'Storage of disk safe archive, last 30 days' }).waitFor();
  await facts.getByText('not at this rate (not growing)').waitFor();
  assert.equal(await page.getByRole('button', { name: 'History of archive' }).getAttribute('aria-pressed'), 'true');
  assert.deepEqual(consoleErrors, []);
});

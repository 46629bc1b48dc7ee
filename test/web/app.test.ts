/**
 * The web interface as served by `holdfast server`, in Chromium: the app at
 * `/` with its security headers, index.html for the app's own addresses but
 * never for the API, the agents' channel or the repository protocol; the
 * login, a wrong password said in words, the first login's one-time
 * password that must be changed before anything else, and logging out.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { launchBrowser, logIn, screenshots, type TestBrowser } from '../helpers/browser.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';

let t: TestServer;
let b: TestBrowser;

before(async () => {
  t = await setUp(`sqlite:${':memory:'}`);
  b = await launchBrowser(t.port);
});
after(async () => {
  await b?.close();
  await t?.stop();
});

it('serves the app at / and at its own addresses, with a CSP without inline scripts and no framing', async () => {
  for (const path of ['/', '/machines/m-1', '/admin/users']) {
    const r = await t.call('GET', path);
    assert.equal(r.status, 200, path);
    assert.match(r.text, /<div id="root"><\/div>/);
    assert.doesNotMatch(r.text, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /'unsafe-(inline|eval)'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  }
  const script = /<script[^>]*src="([^"]+)"/.exec((await t.call('GET', '/')).text)![1]!;
  const js = await t.call('GET', script);
  assert.equal(js.status, 200);
  assert.match(String(js.headers['content-type']), /javascript/);
});

it('never answers index.html under /api, /agent or /safes, nor for a missing file', async () => {
  for (const path of ['/api/v1/no-such-thing', '/api', '/agent/nothing', '/safes/x/y/z/w', '/assets/missing.js']) {
    const r = await t.call('GET', path, { token: t.adminToken });
    assert.equal(r.status, 404, path);
    assert.doesNotMatch(r.text, /<div id="root">/, path);
    assert.equal(typeof r.body?.code, 'string', path);
  }
});

it('logs in, refuses a wrong password in words, and logs out', async () => {
  const { page, consoleErrors } = await b.newPage();
  await page.goto('/');
  await page.getByLabel('Name').fill(t.server.firstAdmin!.name);
  await page.getByLabel('Password').fill('not the password');
  await screenshots(page, 'login');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: /password/i }).waitFor();
  await logIn(page, t.server.firstAdmin!.name, ADMIN_PASSWORD);
  await page.getByRole('heading', { name: 'Fleet' }).waitFor();
  // The session lives in this tab's sessionStorage, never in a cookie.
  assert.deepEqual(await page.context().cookies(), []);
  await page.reload();
  await page.getByRole('heading', { name: 'Fleet' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  assert.deepEqual(consoleErrors.filter((e) => !/401|Unauthorized/.test(e)), []);
  await page.context().close();
});

it('a new user logs in with the one-time password and must choose a password before anything else', async () => {
  const created = await t.create('/api/v1/users', { name: 'newop', role: 'provider-operator' });
  const { page } = await b.newPage();
  await page.goto('/storage');
  await page.getByLabel('Name').fill('newop');
  await page.getByLabel('Password').fill(created.password as string);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Choose your password' }).waitFor();
  await page.getByLabel('Current password').fill(created.password as string);
  await page.getByLabel('New password', { exact: true }).fill('a new long password');
  await page.getByLabel('New password again').fill('a new long password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('navigation', { name: 'main' }).waitFor();
  assert.equal((await t.call('POST', '/api/v1/login', { body: { name: 'newop', password: 'a new long password' } })).status, 200);
  await page.context().close();
});

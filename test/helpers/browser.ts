/**
 * The browser tests' helper: Debian's Chromium driven by playwright-core
 * (headless, no sandbox, no network of its own), pages that trust the test
 * server's self-signed certificate, logging in through the login page, and
 * screenshots of a screen at the two sizes the interface is made for
 * (1280×800 and 390×844), written to artifacts/screenshots/ (gitignored;
 * HOLDFAST_SCREENSHOTS names another folder). One browser per test file.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { ApiClient } from './server.js';

/** Where Debian installs Chromium (.ci/run installs it); HOLDFAST_CHROMIUM overrides it. */
export const CHROMIUM = process.env['HOLDFAST_CHROMIUM'] ?? '/usr/bin/chromium';

export const SCREENSHOT_DIR = process.env['HOLDFAST_SCREENSHOTS'] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'artifacts', 'screenshots');

export const DESKTOP = { width: 1280, height: 800 } as const;
export const PHONE = { width: 390, height: 844 } as const;

/** A browser for one test file, and the app's address on the test server. */
export interface TestBrowser {
  readonly browser: Browser;
  /** https://127.0.0.1:PORT */
  readonly base: string;
  /** A new private window (its own sessionStorage), desktop-sized; what the app logs to the console is collected in `consoleErrors`. */
  newPage(): Promise<TestPage>;
  close(): Promise<void>;
}

export interface TestPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Console errors and uncaught exceptions of the page (a test asserts there are none). */
  readonly consoleErrors: string[];
  /** Every API answer the page received: method, path and status (a test asserts what the API said). */
  readonly answers: { method: string; path: string; status: number }[];
}

/**
 * `trustServiceWorkers`: Chromium refuses to register a service worker from
 * a server whose certificate it does not trust, whatever the page accepts;
 * this also accepts the test server's certificate for them
 * (`--ignore-certificate-errors`: the snapshot browser's streamed downloads).
 */
export async function launchBrowser(port: number, opts: { trustServiceWorkers?: boolean } = {}): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run',
      ...(opts.trustServiceWorkers ? ['--ignore-certificate-errors'] : [])],
  });
  const base = `https://127.0.0.1:${port}`;
  return {
    browser, base,
    async newPage() {
      // The test server's certificate is self-signed for this run; the browser cannot be told to pin it, so it accepts it.
      const context = await browser.newContext({ viewport: DESKTOP, ignoreHTTPSErrors: true, baseURL: base });
      const page = await context.newPage();
      const consoleErrors: string[] = [];
      const answers: TestPage['answers'] = [];
      page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
      page.on('pageerror', (e) => consoleErrors.push(e.message));
      page.on('response', (r) => {
        const u = new URL(r.url());
        if (u.pathname.startsWith('/api/')) answers.push({ method: r.request().method(), path: u.pathname, status: r.status() });
      });
      return { page, context, consoleErrors, answers };
    },
    close: () => browser.close(),
  };
}

/** Logs in through the login page as `name`; resolves once the app shows its navigation. */
export async function logIn(page: Page, name: string, password: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'main' }).waitFor();
}

/**
 * Screenshots of what `page` shows now, as NAME-desktop.png (1280×800) and
 * NAME-phone.png (390×844); the page is left at the desktop size. `ready`
 * is awaited after each resize (something the screen shows when laid out).
 */
export async function screenshots(page: Page, name: string, ready?: () => Promise<unknown>): Promise<void> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  for (const [size, viewport] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
    await page.setViewportSize(viewport);
    await ready?.();
    await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}-${size}.png`) });
  }
}

/** What `customerWithSafe` made: the safe, its machine's backup token, and the customer admin's password. */
export interface CustomerWithSafe {
  readonly safeId: string;
  readonly backupToken: string;
  /** Customer admin `alice`'s password, changed from the one-time one. */
  readonly userPassword: string;
}

/** Customer Acme with machine web1, its disk safe web1 and that machine's backup token, and customer admin `alice`, logged in once (her one-time password changed). */
export async function customerWithSafe(t: ApiClient): Promise<CustomerWithSafe> {
  const c = (await t.create('/api/v1/customers', { name: 'Acme' })).id as string;
  const m = (await t.create('/api/v1/machines', { customer_id: c, name: 'web1' })).id as string;
  const safeId = (await t.create('/api/v1/safes', { customer_id: c, machine_id: m, name: 'web1' })).id as string;
  const backupToken = (await t.create('/api/v1/tokens', { customer_id: c, name: 'backup', rights: ['backup'], machine_id: m })).secret as string;
  const u = await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: c });
  const userPassword = 'alice has a long password';
  await t.login('alice', u.password as string, userPassword);
  return { safeId, backupToken, userPassword };
}

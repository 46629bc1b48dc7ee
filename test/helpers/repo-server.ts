/**
 * A holdfast repository server for tests, in a process of its own
 * (repo-server-main.ts) on 127.0.0.1 over HTTPS with a fresh self-signed
 * certificate, serving safes from a temporary folder with a fixed table of
 * tokens. It can be killed (SIGKILL too) and started again on the same port
 * and folder.
 *
 *   const srv = await startRepoServer({ tokens: { t1: { safe: 'a', rights: 'full' } } });
 *   … holdfast -r srv.location('a') with srv.env('t1') …
 *   await srv.close();
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { formatFingerprint } from '../../src/storage/http-backend.js';
import type { TestToken } from './repo-server-app.js';
import type { RepoServerMainOptions } from './repo-server-main.js';
import { startListening, type ListeningChild } from './listening-child.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'repo-server-main.js');

/** A self-signed certificate for 127.0.0.1, in files, with its fingerprint. */
export interface TestCert {
  readonly keyFile: string;
  readonly certFile: string;
  readonly key: string;
  readonly cert: string;
  /** `SHA256:aa:bb:…`. */
  readonly fingerprint: string;
}

/** Makes a key and a self-signed certificate for IP 127.0.0.1 in `dir` (openssl). */
export async function makeTestCert(dir: string, name = 'server'): Promise<TestCert> {
  const keyFile = join(dir, `${name}-key.pem`);
  const certFile = join(dir, `${name}-cert.pem`);
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', keyFile, '-out', certFile, '-subj', '/CN=holdfast test server', '-addext', 'subjectAltName=IP:127.0.0.1',
  ]);
  const cert = await readFile(certFile, 'utf8');
  return { keyFile, certFile, key: await readFile(keyFile, 'utf8'), cert, fingerprint: formatFingerprint(new X509Certificate(cert).fingerprint256) };
}

/** A running (or stopped) test server. */
export interface TestRepoServer {
  /** `https://127.0.0.1:PORT`. */
  readonly origin: string;
  /** The folder holding one folder per safe. */
  readonly dir: string;
  readonly cert: TestCert;
  /** `https://127.0.0.1:PORT/safes/SAFE`. */
  location(safe: string): string;
  /** The environment the CLI needs for `token`: HOLDFAST_TOKEN and the pinned fingerprint. */
  env(token: string): Record<string, string>;
  /** Ends the process (SIGTERM, or `signal`) and waits for it. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same port and folder. */
  start(): Promise<void>;
  /** Stops it and removes its folder. */
  close(): Promise<void>;
}

/** Starts the test server; see the module comment. */
export async function startRepoServer(opts: { tokens: Record<string, TestToken> }): Promise<TestRepoServer> {
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-repo-server-'));
  const cert = await makeTestCert(dir);
  let port = 0;
  let server: ListeningChild | undefined;
  const start = async (): Promise<void> => {
    const options: RepoServerMainOptions = { port, dir, keyFile: cert.keyFile, certFile: cert.certFile, tokens: opts.tokens };
    server = await startListening([MAIN, JSON.stringify(options)], 'the repository server');
    port = server.port;
  };
  await start();
  const origin = `https://127.0.0.1:${port}`;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const s = server;
    server = undefined;
    await s?.stop(signal);
  };
  return {
    origin,
    dir,
    cert,
    location: (safe) => `${origin}/safes/${safe}`,
    env: (token) => ({ HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: cert.fingerprint }),
    stop,
    start,
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A real S3 endpoint for tests: s3rver on 127.0.0.1 (a port the system
 * picks), storing in a temporary folder, over HTTPS with a self-signed
 * certificate made by `openssl req` (or plain HTTP), with one bucket made.
 * It can be stopped and started again on the same port and folder, as an
 * endpoint that goes away and comes back.
 *
 *   const s3 = await startS3rver();
 *   const backend = new S3Backend(parseS3Location(s3.locationRest('repo')), s3.settings);
 *   … holdfast -r s3.location('repo') with s3.env …
 *   await s3.close();
 *
 * `startFaultProxy` puts a loopback HTTP proxy in front of an HTTP endpoint
 * that answers chosen requests with a 500 or 503, or holds them, instead of
 * passing them on.
 *
 * s3rver runs in a process of its own (s3rver-main.ts says why).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import type { S3Settings } from '../../src/storage/s3-backend-config.js';
import type { S3rverMainOptions } from './s3rver-main.js';
import { startListening, type ListeningChild } from './listening-child.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), 's3rver-main.js');

/** The access key s3rver accepts (its built-in account). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** The bucket every endpoint the helper starts holds from the start. */
export const TEST_BUCKET = 'holdfast-test';

/** A running (or stopped) s3rver. */
export interface TestS3 {
  /** `https://127.0.0.1:PORT` (or http://). */
  readonly endpoint: string;
  /** The certificate's PEM (it is its own CA); '' over plain HTTP. */
  readonly ca: string;
  /** A file holding `ca`, for --cacert; '' over plain HTTP. */
  readonly caFile: string;
  /** Where s3rver keeps its buckets. */
  readonly dir: string;
  /** The credentials and CA a backend needs to reach this endpoint. */
  readonly settings: S3Settings;
  /** The environment the CLI needs: the access key. */
  readonly env: Record<string, string>;
  /** What follows `s3:` for `prefix` in the test bucket. */
  locationRest(prefix: string): string;
  /** `s3:ENDPOINT/holdfast-test/PREFIX`, a repository location. */
  location(prefix: string): string;
  /**
   * Stops it: requests in flight are answered, then the connections close
   * (`abrupt`: killed, requests in flight cut off; s3rver writes objects in
   * place, so a PUT cut off leaves a partial object, which S3 never shows).
   */
  stop(opts?: { abrupt?: boolean }): Promise<void>;
  /** Starts again on the same port and folder. */
  start(): Promise<void>;
  /** Stops it and removes its folder. */
  close(): Promise<void>;
  /** The process id of the running endpoint (the bench reads its CPU time); undefined while stopped. */
  pid(): number | undefined;
}

/** Starts s3rver on 127.0.0.1; over HTTPS with a fresh self-signed certificate unless `tls: false`. */
export async function startS3rver(opts: { tls?: boolean } = {}): Promise<TestS3> {
  const tls = opts.tls ?? true;
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-s3rver-'));
  const store = join(dir, 'store');
  const caFile = tls ? join(dir, 'cert.pem') : '';
  const keyFile = join(dir, 'key.pem');
  if (tls) {
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-keyout', keyFile, '-out', caFile, '-subj', '/CN=holdfast test endpoint', '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
  }
  let port = 0;
  let server: ListeningChild | undefined;
  const run = async (): Promise<void> => {
    const options: S3rverMainOptions = { port, directory: store, bucket: TEST_BUCKET, ...(tls ? { keyFile, certFile: caFile } : {}) };
    server = await startListening(['--openssl-legacy-provider', MAIN, JSON.stringify(options)], 's3rver');
    port = server.port;
  };
  await run();
  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const ca = tls ? await readFile(caFile, 'utf8') : '';
  const stop = async (o: { abrupt?: boolean } = {}): Promise<void> => {
    const s = server;
    server = undefined;
    await s?.stop(o.abrupt ? 'SIGKILL' : 'SIGTERM');
  };
  return {
    endpoint,
    ca,
    caFile,
    dir,
    settings: { credentials: S3RVER_CREDENTIALS, ...(tls ? { ca } : {}) },
    env: { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey },
    locationRest: (prefix) => `${endpoint}/${TEST_BUCKET}/${prefix}`,
    location: (prefix) => `s3:${endpoint}/${TEST_BUCKET}/${prefix}`,
    stop,
    start: run,
    close: async () => {
      await stop({ abrupt: true });
      await rm(dir, { recursive: true, force: true });
    },
    pid: () => server?.pid,
  };
}

/** What the proxy does with one request. */
export type FaultAction = 'pass' | 500 | 503 | 'hold' | 'html';

/** A loopback proxy in front of an endpoint; see `startFaultProxy`. */
export interface FaultProxy {
  /** `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** How many requests it has answered with a fault or held. */
  readonly faults: number;
  /** Replaces the rule that picks each request's fate. */
  setRule(rule: (req: http.IncomingMessage) => FaultAction): void;
  /** Cuts off the requests it holds (their clients see the connection reset). */
  releaseHeld(): void;
  close(): Promise<void>;
}

/**
 * A plain-HTTP proxy on 127.0.0.1 in front of `upstream` (an http:// origin).
 * `rule` decides per request: pass it on, answer it with that status and an
 * S3 error body, answer it 200 with an HTML maintenance page (as a broken
 * gateway does), or hold it (no answer until the client gives up or the proxy
 * closes). Headers go through unchanged, so the signature still matches.
 */
export async function startFaultProxy(upstream: string, rule: (req: http.IncomingMessage) => FaultAction = () => 'pass'): Promise<FaultProxy> {
  const up = new URL(upstream);
  let current = rule;
  let faults = 0;
  const held = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const action = current(req);
    if (action === 'pass') {
      const fwd = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
      return;
    }
    faults++;
    if (action === 'hold') {
      held.add(res);
      res.on('close', () => held.delete(res));
      req.resume();
      return;
    }
    if (action === 'html') {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><body><h1>Down for maintenance</h1></body></html>');
      });
      return;
    }
    const [code, text] = action === 503 ? ['SlowDown', 'Please reduce your request rate.'] : ['InternalError', 'We encountered an internal error. Please try again.'];
    req.resume();
    req.on('end', () => {
      res.writeHead(action, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${text}</Message></Error>`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get faults() {
      return faults;
    },
    setRule(r) {
      current = r;
    },
    releaseHeld() {
      for (const res of held) res.destroy();
    },
    close: async () => {
      for (const res of held) res.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * A backup server for tests, in this process, on 127.0.0.1 with its own
 * self-signed certificate, and a client that speaks to it over real HTTPS,
 * trusting that certificate only and checking its fingerprint. `setUp`
 * also changes the first admin's one-time password, as a newcomer would.
 * `startServerProcess` runs the real `holdfast server` command instead, in a
 * process of its own (the bench's server scenario), and `adminClient` logs
 * in to either.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './cli.js';
import { startChild, type ListeningChild, type StderrTo } from './listening-child.js';
import { startServer, type BackupServerOptions, type RunningServer } from '../../src/server/backup-server.js';
import type { LoginLimits } from '../../src/server/services/login-limiter.js';
import { fingerprintOf } from '../../src/server/tls-certificate.js';

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (undefined when empty). */
  readonly body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  readonly text: string;
}

/** One HTTPS request to `port` on 127.0.0.1 that trusts only `certPem` and checks that the server shows it. */
export function httpsJson(port: number, certPem: string, method: string, path: string, opts: { token?: string; body?: unknown; rawBody?: string } = {}): Promise<Answer> {
  const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  const want = fingerprintOf(certPem);
  const o: RequestOptions = {
    host: '127.0.0.1', port, method, path, ca: certPem, servername: 'localhost', agent: false,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
    },
    checkServerIdentity: (_host, cert) => (`SHA256:${cert.fingerprint256.toLowerCase()}` === want ? undefined : new Error(`fingerprint ${cert.fingerprint256} is not the pinned ${want}`)),
  };
  return new Promise((resolve, reject) => {
    const req = request(o, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A client of a server's API, logged in as its first admin. */
export interface ApiClient {
  readonly port: number;
  /** The server's certificate (PEM), the only one the client trusts. */
  readonly cert: string;
  /** The first admin's session (its password already changed). */
  readonly adminToken: string;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; rawBody?: string }): Promise<Answer>;
  /** POSTs `body` to `path` as `token` (default: the admin), asserts 201 Created and returns the answer's body. */
  create(path: string, body: unknown, token?: string): Promise<Answer['body']>;
  /** Logs in and returns the session token; changes a one-time password first when `newPassword` is given. */
  login(name: string, password: string, newPassword?: string): Promise<string>;
}

/** A running test server and a client for it. */
export interface TestServer extends ApiClient {
  readonly server: RunningServer;
  readonly dataDir: string;
  stop(): Promise<void>;
}

export const ADMIN_PASSWORD = 'a long admin password';

/** Logs in to the server on `port` as its first admin, changing the one-time password to ADMIN_PASSWORD. */
export async function adminClient(port: number, cert: string, firstAdmin: { readonly name: string; readonly password: string }): Promise<ApiClient> {
  const call = (method: string, path: string, opts = {}): Promise<Answer> => httpsJson(port, cert, method, path, opts);
  const login = async (name: string, password: string, newPassword?: string): Promise<string> => {
    const r = await call('POST', '/api/v1/login', { body: { name, password } });
    assert.equal(r.status, 200, r.text);
    const token = r.body.token as string;
    if (newPassword !== undefined) {
      const c = await call('POST', '/api/v1/me/password', { token, body: { current_password: password, new_password: newPassword } });
      assert.equal(c.status, 204, c.text);
    }
    return token;
  };
  const adminToken = await login(firstAdmin.name, firstAdmin.password, ADMIN_PASSWORD);
  const create = async (path: string, body: unknown, token = adminToken): Promise<Answer['body']> => {
    const r = await call('POST', path, { token, body });
    assert.equal(r.status, 201, `${path}: ${r.text}`);
    return r.body;
  };
  return { port, cert, adminToken, call, create, login };
}

export async function setUp(dbUrl: string, limits?: LoginLimits, options: Pick<BackupServerOptions, 'jobSilenceLimitMs' | 'minGraceMs' | 'clock' | 'logStream' | 'uploadLimits' | 'wrapSafeBackend' | 'delivery' | 'alertTickMs' | 'staleAfterMs' | 'scheduler'> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'holdfast-server-'));
  // Tests send notifications to receivers on loopback only, which the server allows only when told so.
  const delivery = { allowInternal: ['127.0.0.1'], ...options.delivery };
  const server = await startServer({ dataDir: join(dataDir, 'data'), listen: '127.0.0.1:0', db: dbUrl, ...(limits ? { loginLimits: limits } : {}), ...options, delivery });
  const cert = await readFile(join(dataDir, 'data', 'tls', 'cert.pem'), 'utf8');
  assert.ok(server.firstAdmin);
  return {
    ...(await adminClient(server.port, cert, server.firstAdmin)), server, dataDir,
    async stop() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** `holdfast server` running in a process of its own. */
export interface ServerProcess extends ListeningChild {
  readonly dataDir: string;
  /** The certificate's PEM. */
  readonly cert: string;
  /** `SHA256:…`, as the command printed it. */
  readonly fingerprint: string;
  /** The first admin's name and one-time password, printed by a first start. */
  readonly firstAdmin: { readonly name: string; readonly password: string } | undefined;
  /** Its log (JSON lines) so far, when started with `log: 'keep'`; else ''. */
  logText(): string;
}

/** How to start `holdfast server`. */
export interface ServerProcessOptions {
  /** The port on 127.0.0.1 (default 0: any; a fixed one lets a restart come back where agents look for it). */
  readonly port?: number;
  /** `--db` (default: the data directory's SQLite). */
  readonly db?: string;
  /** Where its log goes (default: our stderr). */
  readonly log?: StderrTo;
  /** Added to its environment (e.g. HOLDFAST_MIN_GRACE). */
  readonly env?: Record<string, string>;
  /** A node joining a database that has its first admin already (`db`): its first start prints none. */
  readonly joins?: boolean;
}

/**
 * Runs the real CLI's `holdfast server --data DATADIR --listen 127.0.0.1:PORT`
 * and waits until it printed its address, fingerprint and (on a first start)
 * its first admin.
 */
export async function startServerProcess(dataDir: string, opts: ServerProcessOptions = {}): Promise<ServerProcess> {
  const first = !existsSync(join(dataDir, 'server.json')) && !opts.joins;
  const args = [CLI, 'server', '--data', dataDir, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.db ? ['--db', opts.db] : [])];
  const child = await startChild(args, 'holdfast server', (out) => {
    const port = /^holdfast server listening on https:\/\/127\.0\.0\.1:(\d+)$/m.exec(out)?.[1];
    const fingerprint = /^certificate fingerprint: (\S+)/m.exec(out)?.[1];
    const admin = /^first admin account: (\S+)\none-time password: (\S+)\n/m.exec(out);
    if (port === undefined || fingerprint === undefined || !/^disk safes: /m.test(out) || (first && admin === null)) return undefined;
    return { port: Number(port), fingerprint, firstAdmin: admin ? { name: admin[1]!, password: admin[2]! } : undefined };
  }, opts.log, { ...process.env, ...opts.env });
  return {
    ...child, dataDir, cert: await readFile(join(dataDir, 'tls', 'cert.pem'), 'utf8'), fingerprint: child.ready.fingerprint, firstAdmin: child.ready.firstAdmin,
    logText: child.stderrText,
  };
}

/** Every file under `dir`, recursively (what a server keeps on disk, searched for a secret). */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

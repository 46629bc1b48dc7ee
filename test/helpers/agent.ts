/**
 * An enrolled machine for tests of `holdfast agent run`: a customer on a
 * test server, the machine enrolled through the real CLI (its configuration
 * in a sandbox), its agent started as a child process, and "run now" with a
 * wait for the job's end; and `holdfast server` itself as a child process,
 * for tests that kill it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, type Sandbox, type Started } from './cli.js';
import { ADMIN_PASSWORD, httpsJson, type Answer } from './server.js';

/** What the tests need of a server: its address, fingerprint and an API client. */
export interface ServerHandle {
  readonly port: number;
  readonly fingerprint: string;
  readonly adminToken: string;
  call(method: string, path: string, opts?: { token?: string; body?: unknown }): Promise<Answer>;
  create(path: string, body: unknown, token?: string): Promise<Answer['body']>;
}

export interface JobView {
  id: string;
  state: string;
  error: string | null;
  result: Record<string, any> | null; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface EnrolledMachine {
  readonly id: string;
  readonly configPath: string;
  /** The configuration as enrolment wrote it. */
  readonly config: Record<string, unknown>;
  /** The environment that reaches the machine's disk safe with the CLI. */
  readonly repoEnv: Record<string, string>;
}

/** Enrols machine `name` through `holdfast agent enroll` into `s`, for `customerId` (default: a new customer `name`). */
export async function enrolMachine(t: ServerHandle, s: Sandbox, name: string, customerId?: string): Promise<EnrolledMachine> {
  const customer = customerId ?? (await t.create('/api/v1/customers', { name })).id as string;
  const token = (await t.create('/api/v1/tokens', { customer_id: customer, name: 'installer', rights: ['enroll'] })).secret as string;
  const configPath = s.path(`${name}-etc`, 'agent.json');
  await s.ok(['agent', 'enroll', '--server', `https://127.0.0.1:${t.port}`, '--token', token, '--fingerprint', t.fingerprint, '--name', name, '--config', configPath]);
  const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  return {
    id: config['machine_id'] as string, configPath, config,
    repoEnv: {
      HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.port}/safes/${config['safe'] as string}`, HOLDFAST_TOKEN: config['token'] as string,
      HOLDFAST_FINGERPRINT: t.fingerprint, HOLDFAST_PASSWORD: config['password'] as string,
    },
  };
}

/** Changes fields of the machine's configuration file. */
export async function configure(m: EnrolledMachine, fields: Record<string, unknown>): Promise<void> {
  const c = JSON.parse(await readFile(m.configPath, 'utf8')) as Record<string, unknown>;
  await writeFile(m.configPath, JSON.stringify({ ...c, ...fields }), { mode: 0o600 });
}

/** Starts `holdfast agent run` for the machine (two worker threads). */
export function startAgent(s: Sandbox, m: EnrolledMachine): Started {
  return s.start(['agent', 'run', '--config', m.configPath], { env: { HOLDFAST_WORKERS: '2' } });
}

/** "Run now": queues a job on the machine as the admin; returns its id. */
export async function runNow(t: ServerHandle, m: EnrolledMachine, kind: string, spec: unknown): Promise<string> {
  return (await t.create(`/api/v1/machines/${m.id}/jobs`, { kind, spec })).id as string;
}

/** The job as the API shows it now. */
export async function jobOf(t: ServerHandle, id: string): Promise<JobView> {
  const r = await t.call('GET', `/api/v1/jobs/${id}`, { token: t.adminToken });
  assert.equal(r.status, 200, r.text);
  return r.body as JobView;
}

/** Waits until job `id` is in one of `states` (default: any end); returns it. */
export async function waitJob(t: ServerHandle, id: string, states: readonly string[] = ['succeeded', 'failed', 'interrupted']): Promise<JobView> {
  for (;;) {
    const j = await jobOf(t, id);
    if (states.includes(j.state)) return j;
    await sleep(100);
  }
}

/** The job's events, oldest first. */
export async function eventsOf(t: ServerHandle, id: string): Promise<{ kind: string; message: string; data: Record<string, unknown> | null }[]> {
  const r = await t.call('GET', `/api/v1/jobs/${id}/events`, { token: t.adminToken });
  assert.equal(r.status, 200, r.text);
  return r.body as never;
}

/** `holdfast server` in a child process on 127.0.0.1:`port` (a fixed port, so that it can be restarted where its agents look for it). */
export interface ServerProcess {
  readonly fingerprint: string;
  /** The first admin and its one-time password, on the first start only. */
  readonly firstAdmin: { name: string; password: string } | undefined;
  /** Stops it with `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `holdfast server --data DIR --listen 127.0.0.1:PORT` and waits for its address line. */
export async function startServerProcess(dataDir: string, port: number, db?: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'server', '--data', dataDir, '--listen', `127.0.0.1:${port}`, ...(db ? ['--db', db] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.resume();
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (/certificate fingerprint: .*\n/.test(out) && (!/first admin account/.test(out) || /one-time password: .*\n/.test(out))) resolve();
    });
    child.once('exit', (code) => reject(new Error(`holdfast server exited (${code}) before listening: ${out}`)));
  });
  return {
    fingerprint: /certificate fingerprint: (\S+)/.exec(out)![1]!,
    firstAdmin: /first admin account/.test(out) ? { name: /first admin account: (\S+)/.exec(out)![1]!, password: /one-time password: (\S+)/.exec(out)![1]! } : undefined,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A port on 127.0.0.1 that nothing listens on now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Resolves when `child`'s stderr has printed a line matching `pattern`. */
export function stderrLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const on = (b: Buffer): void => {
      text += b.toString();
      const line = text.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) {
        child.stderr!.off('data', on);
        resolve(line);
      }
    };
    child.stderr!.on('data', on);
  });
}

/** A client of a server process: the first admin logs in and changes its one-time password. */
export async function handleOf(dataDir: string, port: number, sp: ServerProcess): Promise<ServerHandle> {
  const cert = await readFile(join(dataDir, 'tls', 'cert.pem'), 'utf8');
  const call = (method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Answer> => httpsJson(port, cert, method, path, opts);
  const admin = sp.firstAdmin!;
  const login = await call('POST', '/api/v1/login', { body: { name: admin.name, password: admin.password } });
  assert.equal(login.status, 200, login.text);
  const adminToken = login.body.token as string;
  const changed = await call('POST', '/api/v1/me/password', { token: adminToken, body: { current_password: admin.password, new_password: ADMIN_PASSWORD } });
  assert.equal(changed.status, 204, changed.text);
  return {
    port, fingerprint: sp.fingerprint, adminToken, call,
    create: async (path, body, token = adminToken) => {
      const r = await call('POST', path, { token, body });
      assert.equal(r.status, 201, `${path}: ${r.text}`);
      return r.body;
    },
  };
}

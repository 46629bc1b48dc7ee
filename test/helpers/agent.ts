/**
 * An enrolled machine for tests of `holdfast agent run`: a customer on a
 * test server, the machine enrolled through the real CLI (its configuration
 * in a sandbox), its agent started as a child process, and "run now" with a
 * wait for the job's end; `handleOf` gives the same client for `holdfast
 * server` run as a process of its own (server.ts), for tests that kill it.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sandbox, Started } from './cli.js';
import { adminClient, type Answer, type ServerProcess } from './server.js';

/** What the tests need of a server: its address, fingerprint and an API client. */
export interface ServerHandle {
  readonly port: number;
  readonly fingerprint: string;
  readonly adminToken: string;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; rawBody?: string }): Promise<Answer>;
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
  return enrolledAt(t, configPath);
}

/** The machine whose agent configuration enrolment wrote at `configPath`. */
export async function enrolledAt(t: ServerHandle, configPath: string): Promise<EnrolledMachine> {
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
export async function waitJob(t: ServerHandle, id: string, states: readonly string[] = ['succeeded', 'failed', 'interrupted', 'cancelled', 'expired']): Promise<JobView> {
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

/** A client of a server process, its first admin logged in (the one-time password changed). */
export async function handleOf(sp: ServerProcess): Promise<ServerHandle> {
  return { ...(await adminClient(sp.port, sp.cert, sp.firstAdmin!)), fingerprint: sp.fingerprint };
}

/**
 * `holdfast agent run`: the daemon of an enrolled machine. It lowers its
 * own CPU and I/O priority, opens the machine's disk safe once, and then
 * takes jobs from the server one at a time over its own outbound connection
 * (job-channel.ts), runs them (job-runner.ts) and reports how they ended,
 * until it is told to stop.
 *
 *   lower priority (nice 19, ionice idle) before any worker thread starts
 *   open the disk safe (again with backoff while the server cannot be reached;
 *     a safe that holds no repository stops the agent: enrolment unfinished;
 *     so does a machine whose safe was deleted, there or at a poll)
 *   loop: next job → check its spec → run it, events every second → its end
 *   stop (SIGTERM): the running job is aborted (the disk safe stays valid:
 *     what was uploaded is reused by the next backup), reported failed, and
 *     the agent returns
 *   cancel (the server's answer to a report says so): the running job is
 *     aborted the same way and reported cancelled; the agent takes the next
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { checkJobSpec } from '../api/spec-check.js';
import type { JobBody } from '../api/v1.js';
import { NotARepositoryError } from '../repo/errors.js';
import { NoDiskSafeError } from '../storage/http-backend.js';
import type { AgentConfig } from './agent-config.js';
import { Backoff, pause } from './backoff.js';
import { escrowPassword } from './escrow.js';
import { JobCancelledError, JobChannel, JobGoneError } from './job-channel.js';
import { AgentSession, JobFailedError } from './job-runner.js';
import { ServerApi, ServerApiError } from './server-api.js';

/** The agent was told to stop (SIGTERM): the reason its running job is aborted with. */
export class AgentStoppedError extends Error {
  constructor(message = 'the agent was stopped (SIGTERM) during the job; the disk safe is intact, and the next backup reuses what was uploaded') {
    super(message);
    this.name = 'AgentStoppedError';
  }
}

/**
 * The machine's disk safe holds no repository: its enrolment was interrupted
 * after the server registered the machine. Trying again would not change
 * that, so the agent stops and says how to finish it.
 */
export class EnrolmentUnfinishedError extends Error {
  constructor(config: AgentConfig) {
    super(`disk safe ${config.safe} on ${config.server} holds no repository yet: the enrolment of ${config.machine_name} did not finish (its disk safe was not initialised); `
      + 'run "holdfast agent enroll" again with the same --server and --config to finish it (it uses the password in the configuration)');
    this.name = 'EnrolmentUnfinishedError';
  }
}

/**
 * The server refuses the machine's token (401): it was revoked (the machine
 * retired, or the token revoked by hand) or it expired. No retry can change
 * that, so the agent stops rather than asking again forever.
 */
export class MachineTokenRefusedError extends Error {
  constructor(config: AgentConfig, why: string) {
    super(`the server ${config.server} refuses the token of machine ${config.machine_name} (${why}): the machine was retired, or its token revoked or expired; `
      + 'enrol the machine again (holdfast agent enroll) if it is to go on being backed up');
    this.name = 'MachineTokenRefusedError';
  }
}

/**
 * The machine has no disk safe any more: someone deleted it while the
 * machine was live (`holdfast server safe delete --live-machine`). The
 * agent stops (its backups cannot go anywhere) and says what to do.
 */
export class MachineWithoutSafeError extends Error {
  /** `reason`: the server's message, which names the machine and the way back. */
  constructor(config: AgentConfig, reason: string) {
    super(`disk safe ${config.safe} of machine ${config.machine_name} is gone from ${config.server}, so no backup of this machine can run: ${reason}`);
    this.name = 'MachineWithoutSafeError';
  }
}

/** A 401 of the agent's API: the machine's token is over. */
function refusedToken(config: AgentConfig, e: unknown): MachineTokenRefusedError | undefined {
  return e instanceof ServerApiError && e.status === 401 ? new MachineTokenRefusedError(config, e.reason) : undefined;
}

export interface AgentRunOptions {
  readonly config: AgentConfig;
  /** Aborts with the reason the running job ends with (an `AgentStoppedError`); the agent then returns. */
  readonly signal: AbortSignal;
  /** The agent's log lines (the CLI writes them to stderr). */
  readonly onLog: (line: string) => void;
  /** Worker threads (default: one per core). */
  readonly workers?: number;
  /** How long a storage call that keeps failing is tried again before the job fails (default 2 minutes). */
  readonly retryForMs?: number;
  /** Where the agent remembers its unfinished restores between runs (unfinished-restores.ts). */
  readonly unfinishedRestores?: string;
  /** Downloads from the disk safe at most this many bytes a second (`holdfast --limit-download`; default: no limit). */
  readonly downloadBytesPerSecond?: number;
}

/**
 * Sets every thread of this process to nice 19 and, when `ionice` is
 * installed, the idle I/O class (threads started later inherit both: call it
 * before the worker threads start). Returns what was done, for the log.
 */
export function lowerPriority(): string {
  const threads = readdirSync('/proc/self/task').map(Number).filter((n) => Number.isInteger(n));
  const done: string[] = [];
  try {
    for (const t of threads) setPriority(t, 19);
    done.push('CPU priority nice 19');
  } catch (e) {
    done.push(`CPU priority unchanged (${(e as Error).message})`);
  }
  const io = spawnSync('ionice', ['-c3', '-p', ...threads.map(String)], { stdio: 'ignore' });
  if (io.error === undefined && io.status === 0) done.push('I/O class idle');
  return done.join(', ');
}

/** Runs the agent until `signal` aborts; see the module comment. */
export async function runAgent(o: AgentRunOptions): Promise<void> {
  const { config, signal, onLog } = o;
  o.signal.throwIfAborted();
  const api = new ServerApi({ server: config.server, token: config.token, ...(config.fingerprint ? { fingerprint: config.fingerprint } : {}) });
  const channel = new JobChannel(api, onLog, undefined, async () => {
    const e = await escrowPassword(api, config);
    if (e.state === 'escrowed' && e.wrapped) onLog(`the disk safe's password is escrowed for the customer's recovery key ${e.recoveryKey}`);
  });
  let session: AgentSession | undefined;
  try {
    session = await openSession(o, api);
    if (!session) return;
    onLog(`agent of ${config.machine_name} waiting for jobs from ${config.server}`);
    for (;;) {
      const job = await channel.next(signal).catch((e: unknown) => {
        if (e instanceof ServerApiError && e.code === 'NO_DISK_SAFE') throw new MachineWithoutSafeError(config, e.reason);
        throw refusedToken(config, e) ?? e;
      });
      if (!job) return;
      await runJob(job, session, channel, o);
      if (signal.aborted) return;
    }
  } finally {
    await session?.close();
    api.close();
  }
}

/**
 * Opens the disk safe, trying again with backoff while it fails, but not
 * when it holds no repository (EnrolmentUnfinishedError); undefined when the
 * agent is stopped first.
 */
async function openSession(o: AgentRunOptions, api: ServerApi): Promise<AgentSession | undefined> {
  const backoff = new Backoff();
  for (;;) {
    try {
      return await AgentSession.open(o.config, {
        onLog: o.onLog, signal: o.signal, ...(o.workers ? { workers: o.workers } : {}), ...(o.retryForMs === undefined ? {} : { retryForMs: o.retryForMs }),
        ...(o.unfinishedRestores === undefined ? {} : { unfinishedRestores: o.unfinishedRestores }),
        ...(o.downloadBytesPerSecond === undefined ? {} : { downloadBytesPerSecond: o.downloadBytesPerSecond }),
      });
    } catch (e) {
      if (o.signal.aborted) return undefined;
      if (e instanceof NotARepositoryError) throw new EnrolmentUnfinishedError(o.config);
      if (e instanceof NoDiskSafeError) throw new MachineWithoutSafeError(o.config, e.message);
      // The disk safe answers a token it does not take as if there were no safe (404): the API says whether the token itself is over.
      const refused = await api.call('GET', '/api/v1/agent/escrow', undefined, o.signal).then(() => undefined, (f: unknown) => refusedToken(o.config, f));
      if (refused) throw refused;
      const wait = backoff.next();
      o.onLog(`cannot open disk safe ${o.config.safe}: ${(e as Error).message}; trying again in ${(wait / 1000).toFixed(1)} s`);
      await pause(wait, o.signal);
      if (o.signal.aborted) return undefined;
    }
  }
}

/** How long the end of a job the agent was stopped during may take to report before the agent exits anyway. */
const REPORT_ON_STOP_MS = 20_000;

/** Runs one job and reports its end. */
async function runJob(job: JobBody, session: AgentSession, channel: JobChannel, o: AgentRunOptions): Promise<void> {
  const abort = new AbortController();
  const stop = (): void => abort.abort(o.signal.reason);
  o.signal.addEventListener('abort', stop, { once: true });
  const reporter = channel.reporter(job.id, (why) => abort.abort(why));
  o.onLog(`job ${job.id}: ${job.kind} ${JSON.stringify(job.spec)}`);
  let end: { state: 'succeeded'; result: Record<string, unknown> } | { state: 'failed' | 'cancelled'; error: string; result?: Record<string, unknown> };
  try {
    const kind = checkJobSpec(job.kind, job.spec);
    end = { state: 'succeeded', result: await session.run(job, kind, reporter, abort.signal) };
  } catch (e) {
    const reason = abort.signal.aborted ? abort.signal.reason as unknown : e;
    end = { state: reason instanceof JobCancelledError ? 'cancelled' : 'failed', error: (reason instanceof Error ? reason.message : String(reason)).slice(0, 8192) || 'failed' };
    // A job that ran to its end and failed on what it found (a restore test) reports what it found as well.
    if (reason instanceof JobFailedError && reason.result !== undefined) end.result = reason.result;
  } finally {
    o.signal.removeEventListener('abort', stop);
  }
  if (end.state !== 'succeeded') reporter.log(end.error);
  await reporter.close();
  o.onLog(`job ${job.id}: ${end.state}${end.state !== 'succeeded' ? `: ${end.error}` : ''}`);
  if (abort.signal.reason instanceof JobGoneError) return; // the server ended it already
  // Once stopped, the end gets a short while; otherwise it waits for the server as long as it takes (or until a stop).
  await channel.finish(job.id, end, o.signal.aborted ? AbortSignal.timeout(REPORT_ON_STOP_MS) : o.signal);
}

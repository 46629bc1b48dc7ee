/**
 * The agent's side of the job channel (docs/format.md §2.6): the long poll
 * for the machine's next job, the events of the running job sent in
 * batches, and its end. The server may be restarting or out of reach at any
 * of these: the poll waits with backoff and tries again; events wait in
 * memory (bounded) for the next batch; the end of a job is sent until the
 * server takes it, so that a job that failed while the server was away is
 * reported, with its reason, once it is back.
 *
 *   loop: GET /agent/jobs/next?wait=25 → 200 job | 204 nothing | failure → back off
 *         (Holdfast-Escrow: wanted in the answer → escrow the password first)
 *   while a job runs: every second POST /agent/jobs/ID/events (logs in order, the last progress;
 *         an empty batch after HEARTBEAT_MS without one)
 *         (Holdfast-Cancel: requested in the answer → the job was cancelled: stop it, report it cancelled)
 *   end: POST /agent/jobs/ID/result, again after each failure until it is taken
 *   409 from either: the server no longer counts the job as running → stop it
 */
import { CANCEL_HEADER, ESCROW_WANTED_HEADER, type JobBody, type ReportEventsRequest, type ReportResultRequest } from '../api/v1.js';
import { Backoff, pause } from './backoff.js';
import type { JobProgress } from './job-runner.js';
import { ServerApiError, type ServerApi } from './server-api.js';

/** How long a poll is held open by the server (seconds; the API allows 30). */
export const POLL_WAIT_SECONDS = 25;
/** How often a running job's events are sent. */
export const EVENT_BATCH_MS = 1000;
/** The longest a running job goes without a report, events or none: how soon the agent learns that it was cancelled. */
export const HEARTBEAT_MS = 5000;
/** Log lines kept while the server cannot be reached; older ones beyond are dropped, and the drop is said. */
const MAX_BUFFERED_LOGS = 1000;
/** Events a request carries (the API's bound). */
const MAX_EVENTS_PER_REQUEST = 1000;
/** A request that takes longer than this (beyond the poll's own wait) is given up: a connection can hang without closing. */
const REQUEST_TIMEOUT_MS = 30_000;

/** The server no longer counts the job as running (it was marked interrupted): the agent stops working on it. */
export class JobGoneError extends Error {
  constructor(readonly jobId: string, message: string) {
    super(message);
    this.name = 'JobGoneError';
  }
}

/** The job was cancelled on the server: the reason the agent aborts it with, and reports it cancelled. */
export class JobCancelledError extends Error {
  constructor(readonly jobId: string) {
    super('the agent stopped it: a backup stores no snapshot (the next one reuses what it uploaded), a restore leaves what it wrote, and the disk safe stays intact');
    this.name = 'JobCancelledError';
  }
}

type Event = ReportEventsRequest['events'][number];

/** The machine's connection to its jobs. */
export class JobChannel {
  constructor(
    private readonly api: ServerApi,
    /** Told of each failure to reach the server, and of what the agent does about it. */
    private readonly onLog: (line: string) => void,
    private readonly backoff = new Backoff(),
    /** Called when a poll's answer asks for the password's escrow (`Holdfast-Escrow: wanted`, docs/format.md §2.8); a failure is logged, and the next poll asks again. */
    private readonly onEscrowWanted?: () => Promise<void>,
  ) {}

  /** The machine's next job (the server marks it running), waiting for one as long as it takes; undefined once `signal` aborts. Throws the server's 401 (the machine's token is over) and 409 NO_DISK_SAFE (its safe was deleted). */
  async next(signal: AbortSignal): Promise<JobBody | undefined> {
    while (!signal.aborted) {
      try {
        const limit = AbortSignal.any([signal, AbortSignal.timeout(POLL_WAIT_SECONDS * 1000 + REQUEST_TIMEOUT_MS)]);
        const r = await this.api.call<JobBody | undefined>('GET', `/api/v1/agent/jobs/next?wait=${POLL_WAIT_SECONDS}`, undefined, limit);
        if (this.backoffUsed) this.onLog('the server answers again');
        this.backoff.reset();
        this.backoffUsed = false;
        if (r.headers[ESCROW_WANTED_HEADER] === 'wanted' && this.onEscrowWanted) {
          await this.onEscrowWanted().catch((e: unknown) => this.onLog(`cannot escrow the disk safe's password: ${(e as Error).message}; the next poll tries again`));
        }
        if (r.status === 200 && r.body) return r.body;
      } catch (e) {
        if (signal.aborted) break;
        // The machine's token is over, or its disk safe deleted: no retry changes that.
        if (e instanceof ServerApiError && (e.status === 401 || e.code === 'NO_DISK_SAFE')) throw e;
        const wait = this.backoff.next();
        this.backoffUsed = true;
        this.onLog(`cannot ask the server for a job: ${(e as Error).message}; trying again in ${(wait / 1000).toFixed(1)} s`);
        await pause(wait, signal);
      }
    }
    return undefined;
  }

  private backoffUsed = false;

  /**
   * The reporter of running job `jobId`'s events; `onStop` is told, once,
   * when the server no longer counts it as running (JobGoneError) or says
   * that it was cancelled (JobCancelledError).
   */
  reporter(jobId: string, onStop: (e: JobGoneError | JobCancelledError) => void): JobReporter {
    return new JobReporter(this.api, jobId, onStop, this.onLog);
  }

  /**
   * Ends job `jobId` as `end` says, trying again with backoff until the
   * server takes it, the server says the job is not running any more (409:
   * logged, nothing to do), or `signal` aborts (logged: the server will
   * count the job as interrupted).
   */
  async finish(jobId: string, end: ReportResultRequest, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    for (;;) {
      try {
        await this.api.call('POST', `/api/v1/agent/jobs/${encodeURIComponent(jobId)}/result`, end, AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]));
        return;
      } catch (e) {
        if (e instanceof ServerApiError && e.status === 409) {
          this.onLog(`job ${jobId} ended (${end.state}) but the server no longer counts it as running: ${e.message}`);
          return;
        }
        if (signal.aborted) {
          this.onLog(`job ${jobId} ended (${end.state}${end.error ? `: ${end.error}` : ''}) and could not be reported; the server will count it as interrupted`);
          return;
        }
        const wait = backoff.next();
        this.onLog(`cannot report the end of job ${jobId}: ${(e as Error).message}; trying again in ${(wait / 1000).toFixed(1)} s`);
        await pause(wait, signal);
      }
    }
  }
}

/**
 * A running job's events, sent about once a second: log lines in the order
 * they happened, and only the last progress of each second (progress is a
 * state, not a history); an empty batch when there was nothing to send for
 * HEARTBEAT_MS, so that a cancel is learnt in a quiet phase too. While the
 * server is away they wait; the oldest log lines beyond a bound are
 * dropped, and the next batch says how many.
 */
export class JobReporter {
  private logs: Event[] = [];
  /** The latest progress not sent yet, described (and dated) only when its batch is sent; a count of reports to tell a newer one. */
  private progressOf: (() => JobProgress) | undefined;
  private progressCount = 0;
  private dropped = 0;
  private readonly timer: NodeJS.Timeout;
  private sending: Promise<void> | undefined;
  private gone = false;
  private cancelled = false;
  private lastSent = Date.now();

  constructor(
    private readonly api: ServerApi,
    private readonly jobId: string,
    private readonly onStop: (e: JobGoneError | JobCancelledError) => void,
    private readonly onLog: (line: string) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), EVENT_BATCH_MS);
  }

  /** A log line of the job. */
  log(message: string, data?: Record<string, unknown>): void {
    this.logs.push({ at: new Date().toISOString(), kind: 'log', message: message.slice(0, 8192), ...(data ? { data } : {}) });
    if (this.logs.length > MAX_BUFFERED_LOGS) {
      this.dropped += this.logs.length - MAX_BUFFERED_LOGS;
      this.logs = this.logs.slice(-MAX_BUFFERED_LOGS);
    }
  }

  /**
   * The job's progress now (replaces any not sent yet). `describe` is called
   * only when the batch is sent, so that a job may report progress for every
   * entry at the cost of a function call: an event formatted per entry cost
   * an incremental of the Linux tree 0.15 s of CPU, for one sent a second.
   * The event is dated when it is described (jobs describe their live
   * figures), so no clock is read per report.
   */
  progress(describe: () => JobProgress): void {
    this.progressOf = describe;
    this.progressCount++;
  }

  /** Sends what is waiting (one request at a time; a failure keeps it for the next). */
  flush(): Promise<void> {
    this.sending ??= this.send().finally(() => {
      this.sending = undefined;
    });
    return this.sending;
  }

  private async send(): Promise<void> {
    if (this.gone) return;
    const head: Event[] = this.dropped > 0 ? [{ at: new Date().toISOString(), kind: 'log', message: `${this.dropped} log line(s) were dropped while the server could not be reached` }] : [];
    const logs = this.logs.slice(0, MAX_EVENTS_PER_REQUEST - head.length - 1);
    const progress: Event | undefined = this.progressOf && { at: new Date().toISOString(), kind: 'progress', ...this.progressOf() };
    const events = [...head, ...logs, ...(progress ? [progress] : [])];
    if (events.length === 0 && Date.now() - this.lastSent < HEARTBEAT_MS) return;
    const count = this.progressCount;
    const dropped = this.dropped;
    try {
      const r = await this.api.call('POST', `/api/v1/agent/jobs/${encodeURIComponent(this.jobId)}/events`, { events }, AbortSignal.timeout(REQUEST_TIMEOUT_MS));
      this.lastSent = Date.now();
      this.logs = this.logs.slice(logs.length);
      if (this.progressCount === count) this.progressOf = undefined;
      this.dropped -= dropped;
      if (r.headers[CANCEL_HEADER] === 'requested' && !this.cancelled) {
        this.cancelled = true;
        this.onStop(new JobCancelledError(this.jobId));
      }
    } catch (e) {
      if (e instanceof ServerApiError && e.status === 409) {
        this.gone = true;
        this.onStop(new JobGoneError(this.jobId, e.message));
        return;
      }
      this.onLog(`cannot send the events of job ${this.jobId}: ${(e as Error).message}; they wait for the next batch`);
    }
  }

  /** Stops the batches and sends what is left, once (what cannot be sent now is dropped: the job's end says how it went). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.sending;
    await this.flush();
  }
}

/**
 * The worker threads of a process, one per core by default, and the sessions
 * jobs run on them. A pool is the process's budget: its threads are started
 * once, and every job that is given the pool (`JobPoolOptions.pool`) opens a
 * session on it instead of starting threads of its own, so that a backup and
 * a restore test running at once in an agent share the cores. A job given no
 * pool starts a private one for its own run.
 *
 * A session names a task script (the blob workers of file backups and
 * restores, `BLOB_WORKER`; the image jobs' block workers) and its init (keys,
 * codecs); each thread keeps one handler per open session (pool-worker.ts).
 * `run` sends a task to the least busy thread (counting every session's
 * tasks) and resolves with its result; `whenBelow` lets a producer wait until
 * few enough of its session's tasks are in flight (back-pressure). A thread
 * that dies fails every task it held and the pool refuses further work. The
 * threads start with the first task, not with the pool.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { CompressionMode } from '../../core/compress.js';
import type { Repository } from '../../repo/repository.js';
import type { InitMessage, Task } from './protocol.js';
import type { PoolMessage } from './pool-worker.js';
import { rebuildError, type WireError } from './wire-error.js';

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  session: PoolSession<unknown>;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
}

const THREAD_URL = new URL('./pool-worker.js', import.meta.url);

/** The blob worker script (file backups and restores), for `WorkerPool.session`. */
export const BLOB_WORKER = new URL('./blob-worker.js', import.meta.url);

/** Worker count unless the caller chooses: one per core. */
export function defaultPoolSize(): number {
  return availableParallelism();
}

/** What a job takes to run its per-byte work on worker threads. */
export interface JobPoolOptions {
  /** The process's pool, shared with other jobs; its budget, not the job's. */
  readonly pool?: WorkerPool;
  /** Without `pool`: the threads of the job's own pool (default: one per core). */
  readonly workers?: number;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private nextSession = 1;
  private failure: Error | undefined;
  private waiters: (() => void)[] = [];
  private closed = false;
  /** The open sessions' messages, sent again to threads started after them. */
  private readonly opened = new Map<number, PoolMessage>();

  /**
   * A pool of `size` threads, started when the first task is run: a backup
   * that finds nothing to read (an unchanged tree) starts none, and pays
   * neither their start nor their loading of the codecs.
   */
  constructor(private readonly threads = defaultPoolSize()) {}

  /** Starts the threads and opens in each the sessions opened so far. */
  private start(): void {
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(THREAD_URL);
      const slot: Slot = { worker, pending: new Map() };
      worker.on('message', (msg: { id: number; result?: unknown; error?: WireError }) => {
        const p = slot.pending.get(msg.id);
        if (!p) return;
        slot.pending.delete(msg.id);
        p.session.inFlight--;
        if (msg.error !== undefined) p.reject(rebuildError(msg.error)); // as it was thrown: its class, code and stack
        else p.resolve(msg.result);
        this.wake();
      });
      const die = (e: Error): void => {
        if (this.closed) return;
        this.failure ??= new Error(`a worker thread failed: ${e.message}`);
        for (const p of slot.pending.values()) {
          p.session.inFlight--;
          p.reject(this.failure);
        }
        slot.pending.clear();
        this.wake();
      };
      worker.on('error', die);
      worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
      for (const open of this.opened.values()) worker.postMessage(open);
      this.slots.push(slot);
    }
  }

  /**
   * Starts the threads now, if they have not started, and has each import
   * `script`: a job sure to need them (an image backup) boots them while the
   * key is derived instead of after its first read.
   */
  warm(script: URL): void {
    if (this.closed || this.failure) return;
    if (this.slots.length === 0) this.start();
    this.post({ load: script.href });
  }

  /** Number of threads: the budget every session shares. */
  get size(): number {
    return this.threads;
  }

  /**
   * Opens a session of the task script at `script` on every thread, each
   * handler made from `init`; `owned`: the pool was started for this session
   * and closes with it.
   */
  session<TTask>(script: URL, init: unknown, owned = false): PoolSession<TTask> {
    if (this.closed) throw new Error('worker pool is closed');
    const id = this.nextSession++;
    const open: PoolMessage = { open: { session: id, script: script.href, init } };
    this.opened.set(id, open);
    this.post(open);
    return new PoolSession<TTask>(this, id, owned);
  }

  /** Sends `msg` to every thread. */
  private post(msg: PoolMessage): void {
    for (const s of this.slots) s.worker.postMessage(msg);
  }

  /** `PoolSession.close`: drops its handlers (and keys) in every thread. */
  drop(session: number): void {
    this.opened.delete(session);
    if (!this.closed) this.post({ close: session });
  }

  /** `PoolSession.run`. */
  run<T>(session: PoolSession<unknown>, task: unknown, transfer: ArrayBuffer[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    if (this.slots.length === 0) this.start();
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.nextId++;
    session.inFlight++;
    return new Promise<T>((resolve, reject) => {
      slot.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, session });
      slot.worker.postMessage({ session: session.id, id, task }, transfer);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** `PoolSession.whenBelow`. */
  async whenBelow(session: PoolSession<unknown>, limit: number): Promise<void> {
    while (session.inFlight >= limit) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure) throw this.failure;
  }

  /** Stops the threads. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** One job's use of a pool: its tasks, handled by its script with its keys. */
export class PoolSession<TTask> {
  /** This session's tasks sent and not yet answered (kept by the pool). */
  inFlight = 0;
  private closed = false;

  constructor(
    private readonly pool: WorkerPool,
    /** The session's number in the pool's threads. */
    readonly id: number,
    /** A pool started for this session alone, closed with it. */
    private readonly owned: boolean,
  ) {}

  /**
   * A session of `script` on the caller's pool when `opts.pool` is given,
   * else on a pool of `opts.workers` threads started for it alone.
   */
  static open<TTask>(opts: JobPoolOptions, script: URL, init: unknown): PoolSession<TTask> {
    return opts.pool ? opts.pool.session<TTask>(script, init) : new WorkerPool(opts.workers).session<TTask>(script, init, true);
  }

  /** A session of the blob workers holding the repository's secrets and settings, sealing with `compression` (default the repository's). */
  static blobs(repo: Repository, opts: JobPoolOptions, compression: CompressionMode = repo.config.compression): PoolSession<Task> {
    const s = repo.workerSecrets();
    const init: InitMessage = {
      encryption: s.encryption,
      id: s.id,
      chunkerSeed: s.chunker,
      chunker: repo.config.chunker,
      compression,
    };
    return PoolSession.open<Task>(opts, BLOB_WORKER, init);
  }

  /** Threads of the pool (shared with other sessions). */
  get size(): number {
    return this.pool.size;
  }

  /** Runs a task on the least busy thread; `transfer` buffers are moved, not copied. */
  run<T>(task: TTask, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.closed) return Promise.reject(new Error('worker pool session is closed'));
    return this.pool.run<T>(this as PoolSession<unknown>, task, transfer);
  }

  /** Resolves once fewer than `limit` of this session's tasks are in flight. */
  whenBelow(limit: number): Promise<void> {
    return this.pool.whenBelow(this as PoolSession<unknown>, limit);
  }

  /** Ends the session (and its own pool, if it has one). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) await this.pool.close();
    else this.pool.drop(this.id);
  }
}

/** A buffer that can be transferred: its own whole ArrayBuffer (copied if it is a view into a shared one). */
export function transferable(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length && !(b.buffer instanceof SharedArrayBuffer)) return b;
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return copy;
}

/**
 * Counts units of memory (about a megabyte each) held by work in flight:
 * its input from hand-off until a worker answers, then its output until it
 * is consumed, so that results waiting for the repository cannot pile up in
 * memory. `acquire` waits while the limit is reached. A heavy piece of work may take
 * the count past the limit by its own weight, rather than wait for the pool
 * to drain (which would leave the workers idle).
 */
export class Gate {
  private out = 0;
  private waiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async acquire(units = 1): Promise<void> {
    while (this.out >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.out += units;
  }

  release(units = 1): void {
    this.out -= units;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

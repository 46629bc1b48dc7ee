/**
 * A pool of worker threads, one per core by default: the blob workers of
 * file backups and restores (`WorkerPool.start`), or any other worker script
 * that speaks the same `{ init }` / `{ id, task }` → `{ id, result | error }`
 * messages (the image jobs' block workers). `run` sends a task to the least
 * busy worker and resolves with its result; `whenBelow` lets a producer wait
 * until few enough tasks are in flight (back-pressure). A worker that dies
 * fails every task it held and the pool refuses further work.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { Repository } from '../../repo/repository.js';
import type { InitMessage, Task } from './protocol.js';

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
}

const WORKER_URL = new URL('./blob-worker.js', import.meta.url);

/** Worker count unless the caller chooses: one per core. */
export function defaultPoolSize(): number {
  return availableParallelism();
}

export class WorkerPool<TTask = Task> {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private failure: Error | undefined;
  private waiters: (() => void)[] = [];
  private closed = false;

  /** Starts `size` workers running the script at `url`, each sent `{ init }` first. */
  constructor(url: URL, init: unknown, size = defaultPoolSize()) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(url);
      const slot: Slot = { worker, pending: new Map() };
      worker.on('message', (msg: { id: number; result?: unknown; error?: string }) => {
        const p = slot.pending.get(msg.id);
        if (!p) return;
        slot.pending.delete(msg.id);
        if (msg.error !== undefined) p.reject(new Error(msg.error));
        else p.resolve(msg.result);
        this.wake();
      });
      const die = (e: Error): void => {
        if (this.closed) return;
        this.failure ??= new Error(`a worker thread failed: ${e.message}`);
        for (const p of slot.pending.values()) p.reject(this.failure);
        slot.pending.clear();
        this.wake();
      };
      worker.on('error', die);
      worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
      worker.postMessage({ init });
      this.slots.push(slot);
    }
  }

  /** Starts workers holding the repository's secrets and settings. */
  static start(repo: Repository, size = defaultPoolSize()): WorkerPool {
    const s = repo.workerSecrets();
    const init: InitMessage = {
      encryption: s.encryption,
      id: s.id,
      chunkerSeed: s.chunker,
      chunker: repo.config.chunker,
      compression: repo.compression,
    };
    return new WorkerPool(WORKER_URL, init, size);
  }

  /** Number of workers. */
  get size(): number {
    return this.slots.length;
  }

  /** Tasks sent and not yet answered. */
  get inFlight(): number {
    let n = 0;
    for (const s of this.slots) n += s.pending.size;
    return n;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once fewer than `limit` tasks are in flight. */
  async whenBelow(limit: number): Promise<void> {
    while (this.inFlight >= limit) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure) throw this.failure;
  }

  /** Runs a task on the least busy worker; `transfer` buffers are moved, not copied. */
  run<T>(task: TTask, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      slot.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      slot.worker.postMessage({ id, task }, transfer);
    });
  }

  /** Stops the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
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

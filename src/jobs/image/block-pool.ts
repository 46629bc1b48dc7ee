/**
 * A small pool of block workers (`block-worker.ts`) for one image backup:
 * `run` hands a task to the least busy worker. A worker that dies fails what
 * it held and the pool refuses further work.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { BlockInit, BlockTask } from './block-protocol.js';

const WORKER_URL = new URL('./block-worker.js', import.meta.url);

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>;
}

/** Worker count: HOLDFAST_WORKERS, else one per core. */
export function blockWorkerCount(): number {
  const env = Number(process.env['HOLDFAST_WORKERS']);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

export class BlockPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private failure: Error | undefined;
  private closed = false;

  constructor(init: BlockInit, size = blockWorkerCount()) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_URL);
      const slot: Slot = { worker, pending: new Map() };
      worker.on('message', (msg: { id: number; result?: unknown; error?: string }) => {
        const p = slot.pending.get(msg.id);
        if (!p) return;
        slot.pending.delete(msg.id);
        if (msg.error !== undefined) p.reject(new Error(msg.error));
        else p.resolve(msg.result);
      });
      const die = (e: Error): void => {
        if (this.closed) return;
        this.failure ??= new Error(`a block worker failed: ${e.message}`);
        for (const p of slot.pending.values()) p.reject(this.failure);
        slot.pending.clear();
      };
      worker.on('error', die);
      worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
      worker.postMessage({ init });
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs a task on the least busy worker. */
  run<T>(task: BlockTask, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('block pool is closed'));
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

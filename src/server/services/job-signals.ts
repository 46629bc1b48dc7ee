/**
 * The agents' long polls waiting in this server process: a poll for a job
 * waits here until a job is queued for its machine, its time is up, or the
 * server closes. One per server; the queue itself is the database. With
 * several nodes on one database, a node that queues a job says so on the
 * cluster bus (db/cluster-bus.ts) and every node wakes its polls of that
 * machine; when the bus may have lost words, every waiting poll looks again.
 */
import type { ClusterBus } from '../db/cluster-bus.js';

/** The bus channel of queued agent jobs; the payload is the machine's id. */
const CHANNEL = 'holdfast_agent_jobs';

export class JobSignals {
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly versions = new Map<string, number>();
  private closed = false;

  /** `bus`: where this node hears of jobs queued on other nodes, and tells them of its own (`listen` starts hearing). */
  constructor(private readonly bus?: ClusterBus) {}

  /** Starts hearing the other nodes' jobs. */
  async listen(): Promise<void> {
    await this.bus?.subscribe(CHANNEL, (machineId) => this.wake(machineId), () => {
      for (const id of [...this.waiting.keys()]) this.wake(id);
    });
  }

  /** How many times `machineId` was notified; read it before looking at the queue, give it to `wait`. */
  version(machineId: string): number {
    return this.versions.get(machineId) ?? 0;
  }

  /**
   * Resolves when `machineId` is notified after `since` (its `version` when
   * the caller last looked at the queue: a job queued between that look and
   * this call is not missed), when the server closes, after `ms`, or when
   * `signal` aborts (the poll's client went away).
   */
  wait(machineId: string, since: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || ms <= 0 || this.version(machineId) !== since || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const set = this.waiting.get(machineId) ?? new Set();
      this.waiting.set(machineId, set);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.waiting.get(machineId) === set) this.waiting.delete(machineId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Wakes the polls of `machineId`'s agent, on every node (a job was queued for it). */
  notify(machineId: string): void {
    this.wake(machineId);
    // A lost word costs the agent of another node at most its poll's wait.
    void this.bus?.publish(CHANNEL, machineId).catch(() => undefined);
  }

  /** Wakes this node's polls of `machineId`'s agent. */
  private wake(machineId: string): void {
    this.versions.set(machineId, this.version(machineId) + 1);
    for (const done of [...(this.waiting.get(machineId) ?? [])]) done();
  }

  /** True once the server is closing (a woken poll answers at once). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Wakes every poll, now and later: the server is closing. */
  close(): void {
    this.closed = true;
    for (const set of [...this.waiting.values()]) for (const done of [...set]) done();
  }
}

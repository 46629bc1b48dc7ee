/**
 * Folder listings made ahead of the walk by a worker thread (scan-worker.ts):
 * the names of a folder and the lstat of each, so that the main thread only
 * compares entries with the parent snapshot and makes no metadata calls.
 *
 * Asked for a folder, the worker walks the tree below it depth-first, in the
 * walk's own order (names sorted bytewise), and posts each folder's listing.
 * It enters a subfolder by the walk's rules: not excluded (excludes.ts), not
 * on another file system when those are not crossed, with a path short
 * enough for system calls. Should it list more than the walk takes, `list`
 * drops listings that come before the one it wants. A folder the worker's stream does not hold starts a new walk there
 * (each selected path is one). The worker starts no listing while it is
 * HELD_ENTRIES entries ahead of what the walk has taken, so memory stays
 * bounded in any tree.
 *
 * Listings are taken from the worker's port synchronously
 * (`receiveMessageOnPort`), not as events: the walk runs in long stretches
 * of microtasks, during which events would wait. When the next listing is
 * not there yet, the walk blocks on a counter the worker bumps after each
 * one (Atomics.wait). Every EVENTS_EVERY_MS the walk lets events in, so that
 * what the backup does beside it (its lock, the orphan packs, the uploads)
 * goes on while it walks instead of after.
 *
 * A long-running process (the agent) keeps one scanner between its backups
 * (`forBackup`): the worker's start (a thread, an isolate, its modules loaded
 * and compiled) is paid once, and the listing code stays compiled. Each
 * backup then gives its own exclude rules with each walk, and its end stops
 * the walk it left unfinished and drops what the worker listed ahead. Such a
 * backup's walk may start before the backup does (`prefetch`: the agent,
 * while it takes its lock and finds the parent snapshot).
 */
import { performance } from 'node:perf_hooks';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { FolderEntries, listDirStats, type DirListing, type ReadError } from '../../sources/file-tree.js';
import type { ExcludeOptions } from './excludes.js';

/** What the scan worker is started with. */
export interface ScanWorkerData {
  readonly port: MessagePort;
  /** Int32 counters shared with the walk (`Counter`). */
  readonly counters: SharedArrayBuffer;
  /** How far, in entries, the worker may list ahead of the walk. */
  readonly held: number;
}

/** A walk to make: the folder, the devices it may enter (undefined: any), the rules by which it enters no folder the backup leaves out. */
export interface ScanRequest {
  readonly dir: Uint8Array;
  readonly devices?: readonly bigint[];
  readonly excludes: ExcludeOptions;
}

/** What the worker posts: a folder's listing, or the end of a walk (finished, or stopped by `Counter.Stop`). */
export type ScanMessage = { readonly dir: string; readonly listing: DirListing | { error: ReadError } } | { readonly done: true };

/** Indexes into the shared counters. */
export const enum Counter {
  /** Listings posted by the worker. */
  Posted = 0,
  /** Entries in listings the walk has taken (modulo 2^32). */
  Taken = 1,
  /** Set to 1 when the walk stops (the backup ended, or the scanner closes): the worker must not wait any longer. */
  Stop = 2,
}

const HELD_ENTRIES = 65_536;
/** Names longer than this are reached through PathShortener, so the worker does not enter folders whose entries' paths may be. */
export const SCAN_PATH_LIMIT = 4000 - 256;

const WORKER_URL = new URL('./scan-worker.js', import.meta.url);
/** How long the walk blocks before it lets events in (a worker that died says so through one). */
const WAIT_MS = 50;
/** How long the walk runs before it lets events in (docs/decisions.md, "the job's network beside the walk"). */
const EVENTS_EVERY_MS = 10;

/** What lists the walk's folders: the scan worker (`DirScanner`), or the main thread for a small tree (`InlineLister`). */
export interface FolderLister {
  /** The entries of a folder sorted by name bytes, or why it could not be listed; `devices` as `DirScanner.list`. */
  list(dir: Buffer, devices: ReadonlySet<bigint> | undefined): Promise<FolderEntries | { error: ReadError }>;
  /** Ends its use; idempotent. */
  close(): Promise<void>;
}

/** One backup's use of a scanner kept between backups (`DirScanner.forBackup`). */
export interface BackupLister extends FolderLister {
  /**
   * Starts the walk of `dir`, a folder the backup will list first, before
   * the backup asks for it; a walk under way is left as it is. `dir` as the
   * walk names it: absolute, without "." or ".." or a final "/".
   */
  prefetch(dir: Buffer): void;
}

/**
 * Folders listed on the main thread, when they are asked for: a tree of a
 * few thousand entries is listed in a few milliseconds, less than the scan
 * worker takes to start (docs/decisions.md, "Fixed costs per run").
 */
export class InlineLister implements FolderLister {
  list(dir: Buffer): Promise<FolderEntries | { error: ReadError }> {
    const listing = listDirStats(dir);
    return Promise.resolve('error' in listing ? listing : new FolderEntries(listing));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export class DirScanner implements FolderLister {
  /** The worker and the port it posts to, once the first walk started them. */
  private thread: { readonly worker: Worker; readonly port: MessagePort } | undefined;
  private readonly counters = new Int32Array(new SharedArrayBuffer(3 * 4));
  private failure: Error | undefined;
  /** Messages taken from the port and not yet used, from `head` on. */
  private queue: ScanMessage[] = [];
  private head = 0;
  private walking = false;
  /** When the walk lets events in next (performance.now()). */
  private eventsAt = 0;

  /** `excludes`: the rules by which the worker enters no folder the walk leaves out (until `forBackup` gives others); `held`: how far, in entries, it may list ahead. */
  constructor(private excludes: ExcludeOptions = {}, private readonly held = HELD_ENTRIES) {}

  /** The worker, started by the first walk (a scanner kept for backups that list on the main thread never starts one). */
  private started(): { readonly worker: Worker; readonly port: MessagePort } {
    if (this.thread) return this.thread;
    const { port1, port2 } = new MessageChannel();
    const workerData: ScanWorkerData = { port: port2, counters: this.counters.buffer as SharedArrayBuffer, held: this.held };
    const worker = new Worker(WORKER_URL, { workerData, transferList: [port2] });
    const die = (e: Error): void => {
      this.failure ??= new Error(`the folder-scan worker failed: ${e.message}`);
    };
    worker.on('error', die);
    worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
    this.thread = { worker, port: port1 };
    return this.thread;
  }

  /**
   * The entries of a folder sorted by name bytes, or why it could not be
   * listed. `devices`: the devices a new walk may enter (undefined: any).
   */
  async list(dir: Buffer, devices: ReadonlySet<bigint> | undefined): Promise<FolderEntries | { error: ReadError }> {
    const key = dir.toString('latin1');
    if (performance.now() >= this.eventsAt) await this.letEventsIn();
    for (;;) {
      for (let m = this.next(); m; m = this.next()) {
        if ('done' in m) {
          this.walking = false;
          continue;
        }
        if (!('error' in m.listing)) {
          Atomics.add(this.counters, Counter.Taken, m.listing.ends.length);
          Atomics.notify(this.counters, Counter.Taken);
        }
        if (m.dir === key) return 'error' in m.listing ? m.listing : new FolderEntries(m.listing);
      }
      if (this.failure) throw this.failure;
      if (!this.walking) {
        this.walk(dir, devices);
        continue;
      }
      await this.waitForMessage();
    }
  }

  /** Sends the worker a walk to make. */
  private walk(dir: Buffer, devices: ReadonlySet<bigint> | undefined): void {
    const request: ScanRequest = devices ? { dir, devices: [...devices], excludes: this.excludes } : { dir, excludes: this.excludes };
    this.started().port.postMessage(request);
    this.walking = true;
  }

  /** Blocks until the worker posts again, letting events in now and then (a worker that died says so through one). */
  private async waitForMessage(): Promise<void> {
    const posted = Atomics.load(this.counters, Counter.Posted);
    if (this.head < this.queue.length || this.receive()) return;
    if (Atomics.wait(this.counters, Counter.Posted, posted, WAIT_MS) === 'timed-out') await this.letEventsIn();
  }

  /** Lets the events that waited run (network answers, timers), then goes on. */
  private async letEventsIn(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    this.eventsAt = performance.now() + EVENTS_EVERY_MS;
  }

  /** Whether the worker died: a scanner kept between backups is then replaced. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * This scanner as the lister of one backup whose folders the worker enters
   * by `excludes`; closing that lister ends the backup's walk (`endWalk`) and
   * leaves the worker running for the next backup. One backup at a time.
   */
  forBackup(excludes: ExcludeOptions = {}): BackupLister {
    this.excludes = excludes;
    return {
      list: (dir, devices) => this.list(dir, devices),
      prefetch: (dir) => {
        if (!this.walking && !this.failure) this.walk(dir, undefined);
      },
      close: () => this.endWalk(),
    };
  }

  /**
   * Stops the walk under way, if any, and drops the listings it made ahead,
   * counted as taken, so that the next backup's walk starts from nothing and
   * the worker's lead is measured from zero again.
   */
  private async endWalk(): Promise<void> {
    if (this.walking) Atomics.store(this.counters, Counter.Stop, 1);
    Atomics.notify(this.counters, Counter.Taken);
    while (this.walking && !this.failure) {
      for (let m = this.next(); m; m = this.next()) {
        if ('done' in m) this.walking = false;
        else if (!('error' in m.listing)) Atomics.add(this.counters, Counter.Taken, m.listing.ends.length);
      }
      if (this.walking) await this.waitForMessage();
    }
    this.queue = [];
    this.head = 0;
    Atomics.store(this.counters, Counter.Stop, 0);
  }

  /** The next message, from the queue or the port. */
  private next(): ScanMessage | undefined {
    if (this.head === this.queue.length && !this.receive()) return undefined;
    return this.queue[this.head++];
  }

  /** Moves every message waiting on the port to the queue; false when there was none. */
  private receive(): boolean {
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    const before = this.queue.length;
    const port = this.thread?.port;
    if (!port) return false;
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) this.queue.push(m.message as ScanMessage);
    return this.queue.length > before;
  }

  /** Stops the worker (one waiting for the walk to catch up included). */
  async close(): Promise<void> {
    const t = this.thread;
    if (!t) return;
    Atomics.store(this.counters, Counter.Stop, 1);
    Atomics.notify(this.counters, Counter.Taken);
    t.port.close();
    await t.worker.terminate();
  }
}

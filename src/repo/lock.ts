/**
 * Repository locks (`locks/<sha256>`): who is working on the repository, so
 * that an exclusive job (repair) and the shared ones (backup, forget, prune,
 * check) do not run at once, with a heartbeat so that the lock of a dead
 * process goes away. docs/format.md, "Locks", is the specification.
 *
 * For jobs (prune, check, repair, backup):
 *
 *   const me = processIdentity();            // once, by the process (the CLI); a server
 *                                            // locking for an agent gives the agent's
 *   const lock = await acquireLock(backend, { exclusive: false, operation: 'prune', holder: me, machine: me, onLost });
 *   try {
 *     … phase 1 …
 *     await lock.refresh();   // before a step that must not run without the lock:
 *                             // rewrites the heartbeat now, throws LockLostError if the lock is gone
 *     … deletions …
 *   } finally {
 *     await lock.release();   // idempotent
 *   }
 *
 *   `onLost(err)` is called once, from the heartbeat timer, when the lock was
 *   removed by someone else (`unlock`, or a client that found it stale) or could
 *   not be refreshed for so long that others may consider it stale. The job
 *   must then stop (abort its AbortController). Locks never make prune safe on
 *   their own; the grace period and the snapshot fence do (docs/format.md,
 *   "Locks" and "Garbage collection").
 *
 * Protocol:
 *
 *   acquire
 *     read every lock; a stale one (heartbeat older than STALE_AFTER_MS, or
 *       written on this machine by a process that no longer runs) never
 *       blocks, and is removed (best effort)
 *     a live conflicting lock (any other, for exclusive; an exclusive one, for
 *       shared) → LockedError (after waiting up to `waitMs` for it to go); a
 *       heartbeat from beyond CLOCK_SKEW_MS in the future still counts as live,
 *       but the error says the lock is suspect and plain `unlock` removes it
 *     write our lock; list again; a conflicting live lock that appeared
 *       meanwhile → remove ours, LockedError (two racers both back off)
 *   hold: every HEARTBEAT_MS write a new lock object (new heartbeat, so a new
 *     name: objects are immutable) and then remove the previous one
 *   release: stop the heartbeat, remove our lock object
 *
 * "This machine" means the same hostname, boot id and pid namespace as the
 * `machine` identity the caller gives (without one, no lock is judged by its
 * pid), so that containers sharing a hostname never judge each other's pids;
 * a pid is alive only if /proc/<pid>/stat exists with the start time the lock
 * recorded, so a reused pid does not keep a dead lock alive. Nothing here
 * looks at the running process on its own: the identities come in as options.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { sha256 } from '../core/crypto.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { localIso } from '../core/local-time.js';
import { AlreadyExistsError, NotFoundError, ObjectTooLargeError, type Backend, type Handle, type OperationOptions } from '../storage/backend.js';
import type { ErrorCode } from '../core/errors.js';

/** How often a held lock is rewritten (docs/decisions.md, "Locks"). */
export const HEARTBEAT_MS = 60_000;
/** A lock whose heartbeat is older than this is stale, whoever holds it. */
export const STALE_AFTER_MS = 10 * 60_000;
/**
 * A heartbeat further ahead of the reader's clock than this makes a lock
 * suspect. The same tolerance as a clock running behind gets (STALE_AFTER_MS):
 * a holder's clock that is off by more, either way, is wrong.
 */
export const CLOCK_SKEW_MS = STALE_AFTER_MS;

export const LOCK_VERSION = 1;

/** Who this process is, as a lock records it. */
export interface ProcessIdentity {
  readonly hostname: string;
  readonly username: string;
  readonly uid?: number;
  readonly pid: number;
  /** Start time of the process (field 22 of /proc/<pid>/stat, clock ticks since boot), against pid reuse. */
  readonly processStart?: string;
  /** /proc/sys/kernel/random/boot_id: a pid from another boot is certainly gone. */
  readonly bootId?: string;
  /** /proc/self/ns/pid: pids are only comparable inside one pid namespace. */
  readonly pidNamespace?: string;
}

/** The content of a lock object (plain JSON): the holder's identity and the lock's own fields. */
export interface LockInfo extends ProcessIdentity {
  readonly version: number;
  /** Random id of this lock, the same across heartbeats (the object name changes with each). */
  readonly id: string;
  /** What holds it: "backup", "prune", … */
  readonly operation: string;
  readonly exclusive: boolean;
  /** When the lock was first taken, ISO time. */
  readonly created: string;
  /** When the lock was last rewritten, ISO time. */
  readonly heartbeat: string;
}

/** A lock object as listed: its content, or why it could not be read. */
export interface LockEntry {
  readonly name: string;
  readonly lock?: LockInfo;
  readonly error?: string;
}

/** Thrown when a conflicting lock is held. */
export class LockedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'LOCKED';
  constructor(readonly holders: readonly LockEntry[], wantExclusive: boolean, now = Date.now()) {
    const first = holders[0];
    const who = first?.lock ? describeLock(first.lock, now) : `an unreadable lock ${first?.name.slice(0, 8) ?? '?'} (${first?.error ?? ''})`;
    // Plain `unlock` removes suspect and unreadable locks: --remove-all is only for live ones.
    const suspect = first?.lock ? suspectReason(first.lock, now) : 'it cannot be read';
    super(`the repository is locked${first?.lock?.exclusive ? ' exclusively' : ''} by ${who}`
      + `${holders.length > 1 ? ` and ${holders.length - 1} other lock(s)` : ''}; cannot take ${wantExclusive ? 'an exclusive' : 'a shared'} lock. `
      + (suspect
        ? `That lock is suspect: ${suspect}; "holdfast unlock" removes it`
        : `A lock of a dead process is cleared automatically (at once on the same machine, after ${STALE_AFTER_MS / 60_000} minutes without heartbeat elsewhere); `
          + 'if you know its holder is gone, run "holdfast unlock --remove-all"'));
    this.name = 'LockedError';
  }
}

/** The lock was removed by someone else, or could not be refreshed in time. */
export class LockLostError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'LOCK_LOST';
  constructor(detail: string) {
    super(`lost the repository lock: ${detail}`);
    this.name = 'LockLostError';
  }
}

export interface LockOptions {
  readonly exclusive: boolean;
  /**
   * Who holds the lock, as the lock object records it for others to see:
   * the caller's own process (`processIdentity()`), or the agent a server
   * takes the lock for.
   */
  readonly holder: ProcessIdentity;
  /**
   * The machine this code runs on (`processIdentity()`): a lock written there
   * whose process has ended is stale at once. Without it, locks go stale by
   * their heartbeat only.
   */
  readonly machine?: ProcessIdentity;
  /** Shown to others who find the lock ("backup", "prune"). */
  readonly operation?: string;
  /** Called once when the lock is lost; the holder must stop. */
  readonly onLost?: (err: LockLostError) => void;
  /** Wait up to this long for conflicting locks to go (polling). Default 0: fail at once. */
  readonly waitMs?: number;
  /** Tests only: heartbeat interval. */
  readonly heartbeatMs?: number;
  /** Tests only: staleness timeout. */
  readonly staleAfterMs?: number;
  /**
   * Ends the taking of the lock (its reads, its write, the wait for others'
   * locks) with the signal's reason. The lock once held is not tied to it:
   * its heartbeats and its release go on until `release`.
   */
  readonly signal?: AbortSignal;
}

/** A held lock. */
export interface RepositoryLock {
  /** The lock's random id (stable across heartbeats). */
  readonly id: string;
  readonly exclusive: boolean;
  /** Rewrites the heartbeat now. Throws `LockLostError` when the lock is gone or overdue. */
  refresh(): Promise<void>;
  /** Stops the heartbeat and removes the lock. Idempotent; never throws for a lost lock. */
  release(): Promise<void>;
}

// ---- this process ----


const tryRead = (f: () => string): string | undefined => {
  try {
    return f();
  } catch {
    return undefined;
  }
};

/** Field 22 (starttime) of /proc/<pid>/stat and whether the process is a zombie; undefined if there is no such process. */
function procStat(pid: number | 'self'): { start: string; zombie: boolean } | undefined {
  const stat = tryRead(() => readFileSync(`/proc/${pid}/stat`, 'latin1'));
  if (stat === undefined) return undefined;
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { start: fields[19] ?? '', zombie: fields[0] === 'Z' || fields[0] === 'X' };
}

/**
 * The identity of the running process (hostname, user, pid, its start time,
 * boot id, pid namespace), for the caller to pass as `holder` and `machine`.
 */
export function processIdentity(): ProcessIdentity {
  const uid = process.getuid?.();
  const processStart = procStat('self')?.start;
  const bootId = tryRead(() => readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim());
  const pidNamespace = tryRead(() => readlinkSync('/proc/self/ns/pid'));
  return {
    hostname: hostname(),
    username: tryRead(() => userInfo().username) ?? 'unknown',
    ...(uid === undefined ? {} : { uid }),
    pid: process.pid,
    ...(processStart ? { processStart } : {}),
    ...(bootId ? { bootId } : {}),
    ...(pidNamespace ? { pidNamespace } : {}),
  };
}

/** True when `lock` was written on `machine`, in its pid namespace, in its boot. */
export function onThisMachine(lock: LockInfo, machine: ProcessIdentity | undefined): boolean {
  return machine !== undefined && lock.hostname === machine.hostname && lock.bootId === machine.bootId && lock.pidNamespace === machine.pidNamespace;
}

/** True when the process that wrote `lock` (on this machine) still runs. */
export function processAlive(pid: number, processStart: string | undefined): boolean {
  if (procStat('self') !== undefined) {
    const st = procStat(pid);
    if (st === undefined || st.zombie) return false;
    return processStart === undefined || st.start === processStart;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why `lock` is stale, or undefined when it is live; `machine` is where this runs (see `LockOptions.machine`). */
export function staleReason(lock: LockInfo, machine: ProcessIdentity | undefined, now = Date.now(), staleAfterMs = STALE_AFTER_MS): string | undefined {
  const age = now - Date.parse(lock.heartbeat);
  if (age > staleAfterMs) return `no heartbeat for ${formatAge(age)}`;
  if (onThisMachine(lock, machine) && !processAlive(lock.pid, lock.processStart)) return `process ${lock.pid} on this machine has ended`;
  return undefined;
}

/**
 * Why a live-looking `lock` is suspect, or undefined: a heartbeat from the
 * future (beyond CLOCK_SKEW_MS) would never grow old enough to be stale, so
 * it would block until someone removed it by hand. It still blocks (its
 * holder may be alive, on a machine with a wrong clock), but plain `unlock`
 * removes it and the message that it blocks says why.
 */
export function suspectReason(lock: LockInfo, now = Date.now()): string | undefined {
  const ahead = Date.parse(lock.heartbeat) - now;
  if (ahead > CLOCK_SKEW_MS) {
    return `heartbeat ${formatAge(ahead)} in the future (more than the ${CLOCK_SKEW_MS / 60_000} minutes of clock skew allowed): its holder's clock is wrong or the lock was planted`;
  }
  return undefined;
}

function formatAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}

/** "backup (pid 12 on vm, user root), heartbeat 8 s ago, lock 1a2b3c4d" (or "heartbeat 3 days in the future") */
export function describeLock(l: LockInfo, now = Date.now()): string {
  const age = now - Date.parse(l.heartbeat);
  const beat = age >= 0 ? `${formatAge(age)} ago` : `${formatAge(-age)} in the future`;
  // Local time for people; a time that does not parse (whoever writes to the storage chooses it) as it is.
  const taken = Number.isNaN(Date.parse(l.created)) ? clip(l.created) : localIso(l.created);
  return `${clip(l.operation)} (pid ${l.pid} on ${clip(l.hostname)}, user ${clip(l.username)}), taken ${taken}, heartbeat ${beat}, lock ${clip(l.id.slice(0, 8))}`;
}

/** The longest field of a lock printed whole; whoever can write to the storage chooses them. */
const FIELD_SHOWN = 64;

function clip(field: string): string {
  return field.length <= FIELD_SHOWN ? field : `${field.slice(0, FIELD_SHOWN)}… (${field.length} characters)`;
}

// ---- lock objects ----

const lockHandle = (name: string): Handle => ({ type: 'lock', name });

export function encodeLock(l: LockInfo): Buffer {
  return Buffer.from(JSON.stringify(l), 'utf8');
}

/**
 * The largest lock object read (format §17). A lock holds a few short
 * fields (a hostname is at most 64 bytes on Linux); a bigger one was planted
 * and is not read, only reported as unreadable, which plain `unlock` removes.
 */
export const MAX_LOCK_BYTES = 4096;

/**
 * The fields a lock object written here holds (`HeldLock.write`: the lock's
 * own and the holder's `ProcessIdentity`), and nothing else: a server lets
 * no token add a lock with other fields (src/server/services/lock-owners.ts).
 */
export const LOCK_FIELDS: readonly string[] = [
  'version', 'id', 'operation', 'exclusive', 'hostname', 'username', 'uid', 'pid', 'processStart', 'bootId', 'pidNamespace', 'created', 'heartbeat',
];

/** Parses and checks a lock object; throws with a reason when it is not a valid lock. */
export function decodeLock(bytes: Buffer, name: string): LockInfo {
  if (bytes.length > MAX_LOCK_BYTES) throw new Error(tooBig(bytes.length));
  if (sha256(bytes).toString('hex') !== name) throw new Error('checksum of stored bytes does not match its name');
  let o: unknown;
  try {
    o = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error('not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('not a JSON object');
  const r = o as Record<string, unknown>;
  if (r['version'] !== LOCK_VERSION) throw new Error(`lock version ${String(r['version'])}, this holdfast reads version ${LOCK_VERSION}`);
  for (const f of ['id', 'operation', 'hostname', 'username', 'created', 'heartbeat']) if (typeof r[f] !== 'string') throw new Error(`bad ${f}`);
  if (typeof r['exclusive'] !== 'boolean') throw new Error('bad exclusive');
  if (!Number.isSafeInteger(r['pid'])) throw new Error('bad pid');
  for (const f of ['processStart', 'bootId', 'pidNamespace']) if (r[f] !== undefined && typeof r[f] !== 'string') throw new Error(`bad ${f}`);
  if (r['uid'] !== undefined && !Number.isSafeInteger(r['uid'])) throw new Error('bad uid');
  if (Number.isNaN(Date.parse(r['heartbeat'] as string))) throw new Error('bad heartbeat');
  return r as unknown as LockInfo;
}

/** The options of a storage call that passes on the caller's signal (objects.ts has the same `io`; it imports this module). */
function io(opts: OperationOptions): OperationOptions {
  return opts.signal ? { signal: opts.signal } : {};
}

const tooBig = (size: number): string => `${size} bytes, more than a lock may hold (${MAX_LOCK_BYTES}): not read`;

/** Every lock object, read and checked. Locks removed while listing are left out. */
export async function listLocks(backend: Backend, opts: OperationOptions = {}): Promise<LockEntry[]> {
  const out: LockEntry[] = [];
  for await (const info of backend.list('lock', io(opts))) {
    if (info.size > MAX_LOCK_BYTES) {
      out.push({ name: info.name, error: tooBig(info.size) });
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = await backend.load(lockHandle(info.name), { ...io(opts), maxBytes: MAX_LOCK_BYTES });
    } catch (e) {
      if (e instanceof NotFoundError) continue; // released or refreshed meanwhile
      if (e instanceof ObjectTooLargeError) { // larger than its listing said
        out.push({ name: info.name, error: tooBig(e.size) });
        continue;
      }
      throw e;
    }
    try {
      out.push({ name: info.name, lock: decodeLock(bytes, info.name) });
    } catch (e) {
      out.push({ name: info.name, error: (e as Error).message });
    }
  }
  return out;
}

async function removeQuietly(backend: Backend, name: string, opts: OperationOptions = {}): Promise<boolean> {
  try {
    await backend.remove(lockHandle(name), io(opts));
    return true;
  } catch {
    opts.signal?.throwIfAborted();
    return false; // gone already, or the storage refuses (append-only): a stale lock does not block anyway
  }
}

/**
 * The locks that stop a lock of the wanted kind, among `entries` (ours left
 * out by name). Stale ones never block; they are removed when `clear` is set.
 */
async function conflicts(backend: Backend, entries: readonly LockEntry[], opts: LockOptions, ours: ReadonlySet<string>, staleAfterMs: number, clear: boolean): Promise<LockEntry[]> {
  const now = Date.now();
  const blocking: LockEntry[] = [];
  for (const e of entries) {
    if (ours.has(e.name)) continue;
    if (!e.lock) {
      // Whose and what it is cannot be told: it blocks an exclusive lock until "unlock" removes it, and
      // blocks no shared one, as a stale lock does not (else one planted object would stop every backup).
      if (opts.exclusive) blocking.push(e);
      continue;
    }
    if (staleReason(e.lock, opts.machine, now, staleAfterMs) !== undefined) {
      if (clear) await removeQuietly(backend, e.name, io(opts));
      continue;
    }
    if (opts.exclusive || e.lock.exclusive) blocking.push(e);
  }
  return blocking;
}

/** Takes a lock; see the module comment. Throws `LockedError` when a conflicting live lock is held. */
export async function acquireLock(backend: Backend, opts: LockOptions): Promise<RepositoryLock> {
  const heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_MS;
  const staleAfterMs = opts.staleAfterMs ?? STALE_AFTER_MS;
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (let pause = 100; ; pause = Math.min(pause * 2, 5000)) {
    const blocking = await conflicts(backend, await listLocks(backend, io(opts)), opts, new Set(), staleAfterMs, true);
    if (blocking.length === 0) break;
    if (Date.now() >= deadline) throw new LockedError(blocking, opts.exclusive);
    await sleep(Math.min(pause, Math.max(10, deadline - Date.now())), undefined, io(opts)).catch((e: unknown) => {
      throw opts.signal?.aborted ? opts.signal.reason : e;
    });
  }
  const lock = new HeldLock(backend, opts, heartbeatMs, staleAfterMs);
  let raced: LockEntry[];
  try {
    await lock.write(io(opts));
    raced = await conflicts(backend, await listLocks(backend, io(opts)), opts, new Set([lock.name]), staleAfterMs, false);
  } catch (e) {
    await lock.release(); // a failed or aborted write may still have reached the storage
    throw e;
  }
  if (raced.length > 0) {
    await lock.release();
    throw new LockedError(raced, opts.exclusive);
  }
  lock.start();
  return lock;
}

class HeldLock implements RepositoryLock {
  readonly id = randomBytes(16).toString('hex');
  readonly exclusive: boolean;
  name = '';
  private readonly created = new Date().toISOString();
  private lastBeat = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;
  private lost: LockLostError | undefined;
  private released = false;

  constructor(
    private readonly backend: Backend,
    private readonly opts: LockOptions,
    private readonly heartbeatMs: number,
    private readonly staleAfterMs: number,
  ) {
    this.exclusive = opts.exclusive;
  }

  /** Writes a lock object with a fresh heartbeat; returns the name of the one it replaces. */
  async write(opts: OperationOptions = {}): Promise<string> {
    const now = Date.now();
    const info: LockInfo = {
      version: LOCK_VERSION,
      id: this.id,
      operation: this.opts.operation ?? (this.exclusive ? 'exclusive' : 'shared'),
      exclusive: this.exclusive,
      ...this.opts.holder,
      created: this.created,
      heartbeat: new Date(now).toISOString(),
    };
    const bytes = encodeLock(info);
    const name = sha256(bytes).toString('hex');
    const previous = this.name;
    if (name !== previous) {
      try {
        await this.backend.save(lockHandle(name), bytes, io(opts));
      } catch (e) {
        if (!(e instanceof AlreadyExistsError)) {
          if (!previous) this.name = name; // the first write: a release after it failed or was aborted removes what may have reached the storage
          throw e;
        }
      }
    }
    this.name = name;
    this.lastBeat = now;
    return previous;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.refresh().catch(() => undefined); // a failure is retried next tick; loss is reported through onLost
    }, this.heartbeatMs);
    this.timer.unref();
  }

  private markLost(detail: string): LockLostError {
    if (!this.lost) {
      this.lost = new LockLostError(detail);
      if (this.timer) clearInterval(this.timer);
      this.opts.onLost?.(this.lost);
    }
    return this.lost;
  }

  async refresh(): Promise<void> {
    if (this.released) throw new LockLostError('the lock was released');
    if (this.lost) throw this.lost;
    while (this.busy) await this.busy;
    const run = this.beat();
    this.busy = run.then(() => undefined, () => undefined).finally(() => {
      this.busy = undefined;
    });
    return run;
  }

  private async beat(): Promise<void> {
    const overdue = Date.now() - this.lastBeat;
    // Others may already have found it stale and acted on that.
    if (overdue > this.staleAfterMs - this.heartbeatMs) throw this.markLost(`no heartbeat could be written for ${formatAge(overdue)}`);
    if ((await this.backend.stat(lockHandle(this.name))) === undefined) throw this.markLost(`lock ${this.id.slice(0, 8)} was removed by someone else`);
    const previous = await this.write();
    if (previous && previous !== this.name) {
      try {
        await this.backend.remove(lockHandle(previous));
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        // Removed between our check and now: someone cleared it. Ours is not wanted any more.
        await removeQuietly(this.backend, this.name);
        throw this.markLost(`lock ${this.id.slice(0, 8)} was removed by someone else`);
      }
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await this.busy;
    if (this.name) await removeQuietly(this.backend, this.name);
  }
}

/** True when plain `holdfast unlock` removes the lock: unreadable, stale or suspect; `machine` as for `staleReason`. */
export function unlockRemoves(e: LockEntry, machine: ProcessIdentity | undefined, now = Date.now(), staleAfterMs = STALE_AFTER_MS): boolean {
  return !e.lock || staleReason(e.lock, machine, now, staleAfterMs) !== undefined || suspectReason(e.lock, now) !== undefined;
}

/**
 * `holdfast unlock`: removes stale, suspect and unreadable locks, or every
 * lock with `all`. Returns what it removed and what it left.
 */
export async function removeLocks(backend: Backend, opts: OperationOptions & { all?: boolean; machine?: ProcessIdentity; staleAfterMs?: number } = {}): Promise<{ removed: LockEntry[]; kept: LockEntry[] }> {
  const now = Date.now();
  const removed: LockEntry[] = [];
  const kept: LockEntry[] = [];
  for (const e of await listLocks(backend, io(opts))) {
    const remove = opts.all || unlockRemoves(e, opts.machine, now, opts.staleAfterMs);
    if (!remove) {
      kept.push(e);
      continue;
    }
    try {
      await backend.remove(lockHandle(e.name), io(opts));
      removed.push(e);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  return { removed, kept };
}

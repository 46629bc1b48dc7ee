/**
 * The lock a maintenance job (prune, forget, check, repair, copy) holds
 * while it works, for the CLI and the server alike: taken with the
 * caller's identity (the CLI's process, the server's own), a signal that
 * aborts when the lock is lost, the live locks of others (prune's sweep
 * waits for markers younger than them), and the refusal to run beside a
 * twin (two prunes at once would only duplicate work).
 *
 *   const held = await holdMaintenanceLock(store.backend, { identity, operation: 'prune', alone: true });
 *   try {
 *     … work with held.signal, held.otherLocks, held.lock.refresh …
 *   } finally {
 *     await held.release();
 *   }
 */
import type { ErrorCode } from '../../core/errors.js';
import { acquireLock, describeLock, listLocks, staleReason, type LockLostError, type ProcessIdentity, type RepositoryLock } from '../../repo/lock.js';
import type { Backend } from '../../storage/backend.js';
import type { OtherLock } from '../prune/pruner.js';

/** Another holder of the same operation is at work (`alone`): this one backs off. */
export class OperationRunningError extends Error {
  /** Stable code for callers (src/core/errors.ts): a conflicting lock is held. */
  readonly code: ErrorCode = 'LOCKED';
  constructor(readonly operation: string, readonly holder: string) {
    super(`another ${operation} is running: ${holder}`);
    this.name = 'OperationRunningError';
  }
}

export interface MaintenanceLockOptions {
  /** Who holds the lock and where it runs (`LockOptions.holder` and `machine`). */
  readonly identity: ProcessIdentity;
  /** "prune", "forget", … as others see it. */
  readonly operation: string;
  /** An exclusive lock (repair); shared otherwise. */
  readonly exclusive?: boolean;
  /** Back off (`OperationRunningError`) when another live lock of the same operation is held. */
  readonly alone?: boolean;
  /** Aborted when the lock is lost (give the one the storage's own waits listen to); a new one otherwise. */
  readonly stop?: AbortController;
  /** The reason `stop` aborts with when the lock is lost; default the `LockLostError` itself. */
  readonly lostReason?: (e: LockLostError) => unknown;
  /** Ends the taking of the lock (not the lock once held). */
  readonly signal?: AbortSignal;
}

/** A held maintenance lock. */
export interface HeldLock {
  readonly lock: RepositoryLock;
  /** Aborts when the lock is lost (and with `stop`, whatever else aborts it). */
  readonly signal: AbortSignal;
  /** Live locks of others (stale ones left out), for prune's sweep. */
  otherLocks(): Promise<OtherLock[]>;
  /** Removes the lock; idempotent. */
  release(): Promise<void>;
}

/** Takes the lock; see the module comment. */
export async function holdMaintenanceLock(backend: Backend, opts: MaintenanceLockOptions): Promise<HeldLock> {
  const abort = opts.stop ?? new AbortController();
  const lock = await acquireLock(backend, {
    holder: opts.identity,
    machine: opts.identity,
    exclusive: opts.exclusive === true,
    operation: opts.operation,
    onLost: (e) => abort.abort(opts.lostReason ? opts.lostReason(e) : e),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const others = async (): Promise<OtherLock[]> => {
    const now = Date.now();
    const out: OtherLock[] = [];
    for (const e of await listLocks(backend)) {
      if (!e.lock || e.lock.id === lock.id || staleReason(e.lock, opts.identity, now) !== undefined) continue;
      out.push({ created: Date.parse(e.lock.created), description: describeLock(e.lock, now), operation: e.lock.operation });
    }
    return out;
  };
  const held: HeldLock = { lock, signal: abort.signal, otherLocks: others, release: () => lock.release() };
  if (opts.alone) {
    let twin: OtherLock | undefined;
    try {
      twin = (await others()).find((l) => l.operation === opts.operation);
    } catch (e) {
      await lock.release();
      throw e;
    }
    if (twin) {
      await lock.release();
      throw new OperationRunningError(opts.operation, twin.description);
    }
  }
  return held;
}

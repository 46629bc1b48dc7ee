/**
 * The backup session: what a backup of files, a stream or an image runs
 * inside, for the CLI, the agent and the server alike.
 *
 *   lock      a shared lock (a prune may run beside it; an exclusive lock,
 *             such as a repair's, refuses it); losing it aborts the session
 *             with the `LockLostError`, and no snapshot is written
 *   orphans   packs left by an interrupted backup are indexed first, so the
 *             work reuses what was uploaded
 *   work      runs with a signal that aborts on a lost lock or when the
 *             caller's `signal` aborts (with the caller's reason)
 *   release   the lock, however the work ended
 *
 * With `early`, the work starts at once, beside the lock and the orphans,
 * and gets `ready`, which resolves once they are done: it reads (the
 * parent, the files) meanwhile and writes nothing before it (its writers'
 * `WriterOptions.ready`). A lock refused aborts the work with the lock's
 * error. A blob the work met before the orphans were indexed may be stored
 * again beside its orphan copy (two copies are harmless; orphans are rare).
 *
 * A dry run takes no lock and indexes nothing (its repository drops every
 * write). Prints nothing: warnings go to `onWarning`.
 */
import { acquireLock, type LockLostError, type RepositoryLock } from '../../repo/lock.js';
import type { ProcessIdentity } from '../../repo/lock.js';
import type { Repository } from '../../repo/repository.js';

export interface BackupSessionOptions {
  /** Who holds the lock, as others see it (`LockOptions.holder`). */
  readonly holder: ProcessIdentity;
  /** The machine this runs on (`LockOptions.machine`). */
  readonly machine?: ProcessIdentity;
  /** Take no lock and index no orphan packs. */
  readonly dryRun?: boolean;
  /** Aborts the session (Ctrl-C, a cancelled job): the work's signal aborts with this signal's reason. */
  readonly signal?: AbortSignal;
  /** Told of a pack left by an interrupted backup that cannot be read (it is left alone). */
  readonly onWarning?: (message: string) => void;
  /** Told how many packs left by an interrupted backup were indexed, when there were any. */
  readonly onOrphansIndexed?: (count: number) => void;
  /** Start the work beside taking the lock and indexing orphans; see the module comment. */
  readonly early?: boolean;
}

/**
 * Runs `work` in a backup session on `repo` (its index loaded); see the
 * module comment. Returns what `work` returns.
 */
export async function backupSession<T>(repo: Repository, opts: BackupSessionOptions, work: (signal: AbortSignal, ready: Promise<void>) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const outer = opts.signal;
  outer?.throwIfAborted();
  const forward = (): void => abort.abort(outer!.reason);
  outer?.addEventListener('abort', forward, { once: true });
  let lock: RepositoryLock | undefined;
  const ready = (async () => {
    if (opts.dryRun === true) return;
    lock = await acquireLock(repo.backend, {
      holder: opts.holder,
      ...(opts.machine ? { machine: opts.machine } : {}),
      exclusive: false,
      operation: 'backup',
      onLost: (e: LockLostError) => abort.abort(e),
      signal: abort.signal,
    });
    const found = await repo.newWriter({ signal: abort.signal }).indexOrphanPacks((m) => opts.onWarning?.(m));
    if (found > 0) opts.onOrphansIndexed?.(found);
  })();
  // What refused the lock or failed the orphans ends the work, and is what the session throws.
  ready.catch((e: unknown) => abort.abort(e));
  try {
    if (opts.early !== true) await ready;
    const result = await work(abort.signal, ready);
    await ready;
    return result;
  } catch (e) {
    const refused = await ready.then(() => undefined, (r: unknown) => r);
    throw refused ?? e;
  } finally {
    await ready.catch(() => undefined);
    await lock?.release();
    outer?.removeEventListener('abort', forward);
  }
}

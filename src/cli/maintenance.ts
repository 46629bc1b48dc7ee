/**
 * What prune, check and repair share on the command line: opening the
 * repository with or without the key, and holding a lock while they work.
 *
 * Keyless by design: these commands never prompt for a password. They use
 * one only when it is given (--password-file, --password-command or the
 * HOLDFAST_PASSWORD* variables); without one they work from the plain
 * objects alone, as the server does for customers whose keys it never sees.
 * prune and repair index never use the key at all.
 */
import { RepoState } from '../repo/repo-state.js';
import type { Store } from '../repo/store.js';
import type { Repository } from '../repo/repository.js';
import { holdMaintenanceLock, OperationRunningError, type HeldLock } from '../jobs/sessions/maintenance-lock.js';
import { openKeyless, openRepo, thisProcess, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';

/** True when a password is given without asking for one. */
export function passwordGiven(g: GlobalOptions): boolean {
  const env = process.env;
  return Boolean(g.passwordFile || g.passwordCommand || env['HOLDFAST_PASSWORD_FILE'] || env['HOLDFAST_PASSWORD_COMMAND'] || env['HOLDFAST_PASSWORD'] !== undefined);
}

/**
 * The repository, plain always, and with the key when `useKey` and a
 * password is given. `stop` aborts the storage's own waits (--limit-upload,
 * retries): give it to `holdLock`, so that Ctrl-C and a lost lock end them.
 */
export async function openMaintenance(g: GlobalOptions, useKey: boolean): Promise<{ plain: Store; keyed?: Repository; stop: AbortController }> {
  const stop = new AbortController();
  if (useKey && passwordGiven(g)) {
    const keyed = await openRepo(g, { index: false, signal: stop.signal });
    (await RepoState.load(keyed.store)).fill(keyed.index); // tolerates damaged index files, which check must report, not trip over
    return { plain: keyed.store, keyed, stop };
  }
  return { plain: await openKeyless(g, stop.signal), stop };
}

/** A held lock, and the abort signal that fires when it is lost or on Ctrl-C. */
export type Held = HeldLock;

/**
 * Takes a lock for `operation` (shared unless `exclusive`) as this process
 * (src/jobs/sessions/maintenance-lock.ts). With `alone`, a second live lock
 * of the same operation makes it back off (two prunes at once would only
 * duplicate work). Ctrl-C and a lost lock abort `stop` (`openMaintenance`'s,
 * which the storage's waits listen to) or a signal of its own.
 */
export async function holdLock(plain: Store, operation: string, opts: { exclusive?: boolean; alone?: boolean; stop?: AbortController } = {}): Promise<Held> {
  const abort = opts.stop ?? new AbortController();
  let held: HeldLock;
  try {
    held = await holdMaintenanceLock(plain.backend, {
      identity: thisProcess(),
      operation,
      exclusive: opts.exclusive === true,
      alone: opts.alone === true,
      stop: abort,
      lostReason: (e) => new ExitError(`${e.message}; stopped (what was done so far is consistent)`, EXIT.locked),
    });
  } catch (e) {
    if (e instanceof OperationRunningError) throw new ExitError(e.message, EXIT.locked);
    throw e;
  }
  const onSigint = (): void => abort.abort(new ExitError(`interrupted; the repository is consistent, run ${operation} again`, EXIT.interrupted));
  const offInterrupt = onInterrupt(onSigint);
  return {
    ...held,
    release: async () => {
      offInterrupt();
      await held.release();
    },
  };
}

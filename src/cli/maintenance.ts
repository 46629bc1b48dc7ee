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
import { acquireLock, describeLock, listLocks, staleReason, type RepositoryLock } from '../repo/lock.js';
import { RepoState } from '../repo/repo-state.js';
import type { Store } from '../repo/store.js';
import type { Repository } from '../repo/repository.js';
import type { OtherLock } from '../jobs/prune/pruner.js';
import { lockedByMe, openKeyless, openRepo, thisProcess, type GlobalOptions } from './context.js';
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
export interface Held {
  readonly lock: RepositoryLock;
  readonly signal: AbortSignal;
  /** Live locks of others (for prune's sweep). */
  otherLocks(): Promise<OtherLock[]>;
  release(): Promise<void>;
}

/**
 * Takes a lock for `operation` (shared unless `exclusive`). With `alone`, a
 * second live lock of the same operation makes it back off (two prunes at
 * once would only duplicate work). Ctrl-C and a lost lock abort `stop`
 * (`openMaintenance`'s, which the storage's waits listen to) or a signal of
 * its own.
 */
export async function holdLock(plain: Store, operation: string, opts: { exclusive?: boolean; alone?: boolean; stop?: AbortController } = {}): Promise<Held> {
  const abort = opts.stop ?? new AbortController();
  const lock = await acquireLock(plain.backend, {
    ...lockedByMe(),
    exclusive: opts.exclusive === true,
    operation,
    onLost: (e) => abort.abort(new ExitError(`${e.message}; stopped (what was done so far is consistent)`, EXIT.locked)),
  });
  const onSigint = (): void => abort.abort(new ExitError(`interrupted; the repository is consistent, run ${operation} again`, EXIT.interrupted));
  const offInterrupt = onInterrupt(onSigint);
  const release = async (): Promise<void> => {
    offInterrupt();
    await lock.release();
  };
  const others = async (): Promise<OtherLock[]> => {
    const now = Date.now();
    const out: OtherLock[] = [];
    for (const e of await listLocks(plain.backend)) {
      if (!e.lock || e.lock.id === lock.id || staleReason(e.lock, thisProcess(), now) !== undefined) continue;
      out.push({ created: Date.parse(e.lock.created), description: describeLock(e.lock, now), operation: e.lock.operation });
    }
    return out;
  };
  if (opts.alone) {
    const twin = (await others()).find((l) => l.operation === operation);
    if (twin) {
      await release();
      throw new ExitError(`another ${operation} is running: ${twin.description}`, EXIT.locked);
    }
  }
  return { lock, signal: abort.signal, otherLocks: others, release };
}

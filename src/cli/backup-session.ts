/**
 * What `backup` of files, streams and images shares on the command line: the
 * repository opened for the backup session (src/jobs/sessions), Ctrl-C
 * turned into an abort, the session's outcomes turned into messages and exit
 * codes; and the parsing of --time and --tag. A dry run takes no lock and
 * writes nothing (its writes are dropped: `DryRunBackend`).
 */
import { LockLostError } from '../repo/lock.js';
import type { Repository } from '../repo/repository.js';
import { backupSession as runSession } from '../jobs/sessions/backup-session.js';
import { lockedByMe, openRepo, warn, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';

/** Runs `work` in a backup session; everything is released however it ends. */
export async function backupSession(g: GlobalOptions, work: (repo: Repository, signal: AbortSignal) => Promise<void>, opts: { dryRun?: boolean } = {}): Promise<void> {
  const dryRun = opts.dryRun === true;
  const abort = new AbortController();
  // The signal reaches the rate limiter too: a wait for --limit-upload can last minutes.
  const repo = await openRepo(g, { dryRun, signal: abort.signal });
  const onSigint = (): void => abort.abort(new ExitError('interrupted; the repository is intact and the next backup reuses what was uploaded', EXIT.interrupted));
  const offInterrupt = onInterrupt(onSigint);
  try {
    await runSession(repo, {
      ...lockedByMe(),
      dryRun,
      signal: abort.signal,
      onWarning: warn,
      onOrphansIndexed: (n) => {
        if (!g.quiet) warn(`indexed ${n} pack(s) left by an interrupted backup`);
      },
    }, (signal) => work(repo, signal));
  } catch (e) {
    if (e instanceof LockLostError) throw new ExitError(`${e.message}; no snapshot was written`, EXIT.locked);
    throw e;
  } finally {
    offInterrupt();
  }
}

/** Parses "YYYY-MM-DD HH:MM:SS" as local time. */
export function parseTime(s: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(s.trim());
  if (!m) throw new ExitError(`bad --time "${s}": use "YYYY-MM-DD HH:MM:SS"`, EXIT.usage);
  const [y, mo, d, h, mi, se] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number, number, number];
  const t = new Date(y, mo - 1, d, h, mi, se);
  if (t.getFullYear() !== y || t.getMonth() !== mo - 1 || t.getDate() !== d || h > 23 || mi > 59 || se > 59) {
    throw new ExitError(`bad --time "${s}": no such date or time`, EXIT.usage);
  }
  return t;
}

/** The tags of repeated --tag A,B options. */
export const splitTags = (tags: string[] | undefined): string[] => (tags ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');

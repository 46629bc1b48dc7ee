/**
 * What `backup` of files, streams and images shares: the repository opened
 * with the chosen compression, a shared lock whose loss aborts the backup,
 * Ctrl-C turned into an abort, packs left by an interrupted backup indexed
 * first; and the parsing of --time and --tag. A dry run takes no lock and
 * writes nothing (its writes are dropped: `DryRunBackend`).
 */
import { parseCompressionMode } from '../core/compress.js';
import { acquireLock } from '../repo/lock.js';
import type { Repository } from '../repo/repository.js';
import { lockedByMe, openRepo, warn, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';

/** Runs `work` in a backup session; everything is released however it ends. */
export async function backupSession(g: GlobalOptions, compression: string | undefined, work: (repo: Repository, signal: AbortSignal) => Promise<void>, opts: { dryRun?: boolean } = {}): Promise<void> {
  const dryRun = opts.dryRun === true;
  const abort = new AbortController();
  // The signal reaches the rate limiter too: a wait for --limit-upload can last minutes.
  const repo = await openRepo(g, { dryRun, signal: abort.signal });
  if (compression) repo.setCompression(parseCompressionMode(compression));
  const lock = dryRun ? undefined : await acquireLock(repo.backend, { ...lockedByMe(), exclusive: false, operation: 'backup', onLost: (e) => abort.abort(new ExitError(`${e.message}; no snapshot was written`, EXIT.locked)) });
  const onSigint = (): void => abort.abort(new ExitError('interrupted; the repository is intact and the next backup reuses what was uploaded', EXIT.interrupted));
  const offInterrupt = onInterrupt(onSigint);
  try {
    const found = dryRun ? 0 : await repo.indexOrphanPacks(warn);
    if (found > 0 && !g.quiet) warn(`indexed ${found} pack(s) left by an interrupted backup`);
    await work(repo, abort.signal);
  } finally {
    offInterrupt();
    await lock?.release();
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

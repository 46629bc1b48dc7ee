/**
 * `holdfast unlock [--remove-all]`: removes stale, suspect (heartbeat from the
 * future) and unreadable locks, or every lock. Needs no password: locks are plain. Stale locks never block
 * anyone (src/repo/lock.ts), so this is housekeeping, or, with --remove-all,
 * the way out when a holder on another machine is known to be gone before its
 * heartbeat runs out.
 */
import type { Command } from 'commander';
import { describeLock, listLocks, removeLocks, staleReason, suspectReason, unlockRemoves, type LockEntry } from '../repo/lock.js';
import { globals, openKeyless, plural, say, thisProcess } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';

export function register(program: Command): void {
  program
    .command('unlock')
    .description('remove stale locks (of processes that ended, or without heartbeat) and suspect ones (heartbeat from the future); needs no password')
    .option('--remove-all', 'remove every lock, also live ones: only when you know their holders are gone')
    .action(async (opts: { removeAll?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openKeyless(g);
      if (repo.appendOnly) {
        const now = Date.now();
        const wouldRemove = (await listLocks(repo.backend)).filter((e) => opts.removeAll || unlockRemoves(e, thisProcess(), now));
        if (wouldRemove.length > 0) {
          throw new ExitError(`the repository is append-only: this client cannot remove the ${wouldRemove.length} lock(s) of others. `
            + 'Stale locks do not block anyone; the storage owner (HOLDFAST_STORAGE_OWNER=1) can remove them', EXIT.appendOnly);
        }
      }
      const { removed, kept } = await removeLocks(repo.backend, { all: opts.removeAll === true, machine: thisProcess() });
      if (g.json) {
        process.stdout.write(`${JSON.stringify({ removed: removed.map(entryJson), kept: kept.map(entryJson) })}\n`);
        return;
      }
      for (const e of removed) say(g, `removed lock ${e.name.slice(0, 8)}: ${describe(e)}`);
      say(g, `${plural(removed.length, 'lock')} removed`);
      if (kept.length > 0) say(g, `${plural(kept.length, 'live lock')} left (use --remove-all only if their holders are gone): ${kept.map(describe).join('; ')}`);
    });
}

function describe(e: LockEntry): string {
  if (!e.lock) return `unreadable (${e.error ?? '?'})`;
  const stale = staleReason(e.lock, thisProcess());
  const suspect = suspectReason(e.lock);
  return `${describeLock(e.lock)}${stale ? `; stale: ${stale}` : ''}${suspect ? `; suspect: ${suspect}` : ''}`;
}

function entryJson(e: LockEntry): Record<string, unknown> {
  return { name: e.name, ...(e.lock ? { lock: e.lock, stale: staleReason(e.lock, thisProcess()) ?? null, suspect: suspectReason(e.lock) ?? null } : { error: e.error }) };
}

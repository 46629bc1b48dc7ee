/**
 * A short freeze of a mounted file system (`fsfreeze -f`) while a snapshot
 * of its device is taken, so that the snapshot holds a clean file system
 * (its journal flushed, no write half done) rather than a crash-consistent
 * one. Writers block meanwhile, so the freeze is bounded: past `boundMs` the
 * file system is thawed whatever the snapshot is doing (a snapshot stuck on
 * the frozen file system then goes on), and always thawed at the end, also
 * when the snapshot fails.
 */
import { runTool } from './tools.js';

/** How long a freeze may last by default. */
export const DEFAULT_FREEZE_BOUND_MS = 10_000;

/**
 * Runs `action` with the file system mounted at `mountPoint` frozen, and
 * returns what it returns; `onWarning` hears of a freeze ended by its bound
 * (the snapshot is then only crash-consistent) or a thaw that failed.
 */
export async function whileFrozen<T>(mountPoint: string, boundMs: number, action: () => Promise<T>, onWarning: (message: string) => void): Promise<T> {
  await runTool(['fsfreeze', '--freeze', mountPoint]);
  let thawing: Promise<void> | undefined;
  const thaw = (): Promise<void> => {
    thawing ??= runTool(['fsfreeze', '--unfreeze', mountPoint]).then(() => undefined, (e: unknown) => {
      onWarning(`could not thaw ${mountPoint}: ${(e as Error).message}; run "fsfreeze --unfreeze ${mountPoint}"`);
    });
    return thawing;
  };
  let overdue = false;
  const timer = setTimeout(() => {
    overdue = true;
    void thaw();
  }, boundMs);
  try {
    return await action();
  } finally {
    clearTimeout(timer);
    await thaw();
    if (overdue) onWarning(`${mountPoint} was thawed after ${boundMs / 1000}s, before its snapshot was taken: the snapshot is only crash-consistent`);
  }
}

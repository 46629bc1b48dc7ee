/**
 * The paths a file backup starts from, as restic chooses them: the paths
 * given that exist. One that does not is skipped with a warning (the backup
 * goes on and ends with exit code 3); when none exists, nothing is written
 * and the command fails.
 */
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ExitError, EXIT } from './exit-codes.js';

/** The paths to back up (absolute, sorted, without duplicates) and how many given ones were skipped. */
export interface BackupTargets {
  readonly paths: string[];
  readonly skipped: number;
}

/** Keeps the `given` paths that exist; warns about each other one, and fails when none is left. */
export async function backupTargets(given: readonly string[], warn: (line: string) => void): Promise<BackupTargets> {
  if (given.length === 0) throw new ExitError('nothing to back up: give one or more paths, or --stdin', EXIT.usage);
  const paths: string[] = [];
  let skipped = 0;
  for (const p of new Set(given.map((g) => resolve(g)))) {
    try {
      await lstat(p);
      paths.push(p);
    } catch (e) {
      skipped++;
      warn(`${p} ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be accessed (${(e as Error).message})`}, skipping`);
    }
  }
  if (paths.length === 0) throw new ExitError(`nothing to back up: none of the paths given exists; no snapshot was written`, EXIT.failed);
  return { paths: paths.sort(), skipped };
}

/**
 * Which of the paths a file backup was given exist, as restic decides it: a
 * path that does not exist (or cannot be reached) is skipped with a
 * warning, and the backup goes on with the rest; when none is left, nothing
 * is written. Shared by the CLI (after its lists and globs) and the agent
 * (a job's paths).
 */
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ErrorCode } from '../../core/errors.js';

/** None of the paths given exists: no snapshot was written. */
export class NothingToBackUpError extends Error {
  readonly code: ErrorCode = 'NOTHING_TO_BACK_UP';
  constructor() {
    super('nothing to back up: none of the paths given exists; no snapshot was written');
    this.name = 'NothingToBackUpError';
  }
}

/** The paths to back up (absolute, sorted, without duplicates) and how many given ones were skipped. */
export interface ExistingPaths {
  readonly paths: string[];
  readonly skipped: number;
}

/** The paths of `given` that exist; warns about each other one, and throws `NothingToBackUpError` when none is left. */
export async function existingPaths(given: readonly string[], warn: (line: string) => void): Promise<ExistingPaths> {
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
  if (paths.length === 0) throw new NothingToBackUpError();
  return { paths: paths.sort(), skipped };
}

/**
 * The paths a file backup starts from, as restic chooses them: the lines of
 * each --files-from file (glob patterns; "#" starts a comment), of each
 * --files-from-verbatim file (paths as they are) and of each
 * --files-from-raw file (paths ended by a NUL byte), then the arguments;
 * "-" reads the list from stdin. A path that does not exist is skipped with
 * a warning (the backup goes on and ends with exit code 3); when none exists,
 * nothing is written and the command fails.
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { existingPaths, type ExistingPaths } from '../jobs/backup/existing-paths.js';
import { ExitError, EXIT } from './exit-codes.js';


/** The files that list paths to back up. */
export interface PathLists {
  readonly filesFrom?: readonly string[];
  readonly filesFromVerbatim?: readonly string[];
  readonly filesFromRaw?: readonly string[];
}

/** The paths of the lists and the arguments that exist; warns about each other one, and fails when none is left. */
export async function backupTargets(args: readonly string[], lists: PathLists, warn: (line: string) => void): Promise<ExistingPaths> {
  const given: string[] = [];
  for (const file of lists.filesFrom ?? []) {
    for (const raw of (await readList('--files-from', file)).split(/\r?\n/)) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const found = await glob(line);
      if (found.length === 0) warn(`pattern "${line}" does not match any files, skipping`);
      given.push(...found);
    }
  }
  for (const file of lists.filesFromVerbatim ?? []) given.push(...(await readList('--files-from-verbatim', file)).split(/\r?\n/).filter((l) => l !== ''));
  for (const file of lists.filesFromRaw ?? []) {
    const text = await readList('--files-from-raw', file);
    if (text === '') continue;
    if (!text.endsWith('\0')) throw new ExitError(`--files-from-raw ${file}: the last name is not ended by a NUL byte`, EXIT.usage);
    const names = text.slice(0, -1).split('\0');
    if (names.includes('')) throw new ExitError(`--files-from-raw ${file}: an empty name in the list`, EXIT.usage);
    given.push(...names);
  }
  given.push(...args);
  if (given.length === 0) throw new ExitError('nothing to back up: give one or more paths, --files-from, or --stdin', EXIT.usage);
  return existingPaths(given, warn);
}

/** The text of a list file, or of stdin for "-". */
async function readList(option: string, file: string): Promise<string> {
  try {
    return file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (e) {
    throw new ExitError(`cannot read ${option} ${file}: ${(e as Error).message}`, EXIT.usage);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const MAGIC = /[*?[\\]/;

/**
 * The existing paths a pattern matches, as Go's filepath.Glob finds them:
 * `*`, `?` and `[...]` within one path component, dot files included; a
 * pattern without them stands for itself when it exists.
 */
async function glob(pattern: string): Promise<string[]> {
  let found = [pattern.startsWith('/') ? '/' : '.'];
  for (const part of pattern.split('/').filter((c) => c !== '')) {
    if (!MAGIC.test(part)) {
      found = found.map((d) => join(d, part));
      continue;
    }
    const { minimatch } = await import('minimatch'); // loaded only for a pattern: most backups have none
    const next: string[] = [];
    for (const dir of found) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const n of names.sort()) if (minimatch(n, part, { dot: true })) next.push(join(dir, n));
    }
    found = next;
  }
  const exists = await Promise.all(found.map((p) => lstat(p).then(() => true, () => false)));
  return found.filter((_, i) => exists[i]);
}

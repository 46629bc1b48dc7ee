/**
 * Which key file opened a repository last time on this machine: a one-line
 * file `<cache>/<repository id>/key`, read before opening so that key is
 * tried first (docs/format.md §4.2). Local, so storage cannot choose it;
 * written only when it changes, so opening writes nothing as a rule. A lost
 * or stale hint only costs the order of the tries.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheRoot } from './environment.js';

const hintPath = (repositoryId: string): string => join(cacheRoot(), repositoryId, 'key');

/** The key file named by the hint, if there is a readable one. */
export function readKeyHint(repositoryId: string): string | undefined {
  try {
    const name = readFileSync(hintPath(repositoryId), 'latin1').trim();
    return /^[0-9a-f]{64}$/.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

/** Records `keyId` as the key that opened the repository, unless the hint says so already. */
export function saveKeyHint(repositoryId: string, keyId: string): void {
  if (readKeyHint(repositoryId) === keyId) return;
  try {
    mkdirSync(join(cacheRoot(), repositoryId), { recursive: true, mode: 0o700 });
    writeFileSync(hintPath(repositoryId), `${keyId}\n`, { mode: 0o600 });
  } catch {
    // A read-only or missing home: the next open tries the keys cheapest first instead.
  }
}

/**
 * What this machine remembers about opening a repository, so that the next
 * open goes faster. Local, so storage cannot choose it; written only when it
 * changes, so opening writes nothing as a rule; a lost or stale hint only
 * costs time.
 *
 * - `<cache>/<repository id>/key`: the key file that opened the repository
 *   last time, tried first (docs/format.md §4.2).
 * - `<cache>/locations/<SHA-256 of the location>`: the scrypt parameters and
 *   salt of that key file, for a repository reached over the network, so
 *   that its key derivation starts before the command has loaded the
 *   storage's client or fetched anything (early-key.ts). The salt is not
 *   secret and says nothing about the password without the sealed key.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyFile } from '../repo/key-file.js';
import { isNetworkLocation } from '../storage/location.js';
import { cacheRoot } from './cache-root.js';

const hintPath = (repositoryId: string): string => join(cacheRoot(), repositoryId, 'key');
const kdfPath = (location: string): string => join(cacheRoot(), 'locations', createHash('sha256').update(location).digest('hex'));

/** A hint is a line or a small JSON object. */
const MAX_HINT_BYTES = 4096;

/**
 * The bytes of the regular file `path` names, when it has at most `max`:
 * opened without following a symlink and without waiting (a FIFO would wait
 * for a writer, a device never end); undefined otherwise.
 */
export function smallFile(path: string, max: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > max) return undefined;
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += got;
    return n > max ? undefined : buf.subarray(0, n);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Writes a hint file (its folder private), unless it holds `text` already; a read-only or missing home is passed over. */
function saveHint(path: string, text: string): void {
  if (smallFile(path, MAX_HINT_BYTES)?.toString('utf8') === text) return;
  try {
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
    writeFileSync(path, text, { mode: 0o600 });
  } catch {
    // The next open then goes as it would without the hint.
  }
}

/** The key file named by the hint, if there is a readable one. */
export function readKeyHint(repositoryId: string): string | undefined {
  const name = smallFile(hintPath(repositoryId), MAX_HINT_BYTES)?.toString('latin1').trim();
  return name !== undefined && /^[0-9a-f]{64}$/.test(name) ? name : undefined;
}

/** Records `keyId` as the key that opened the repository, unless the hint says so already. */
export function saveKeyHint(repositoryId: string, keyId: string): void {
  saveHint(hintPath(repositoryId), `${keyId}\n`);
}

/** The scrypt parameters and salt of the key file that opened the repository at `location` last time, as recorded. */
export function readKdfHint(location: string): KeyFile['kdf'] | undefined {
  const bytes = smallFile(kdfPath(location), MAX_HINT_BYTES);
  if (bytes === undefined) return undefined;
  try {
    const o = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const { algorithm, salt, N, r, p } = o;
    if (algorithm !== 'scrypt' || typeof salt !== 'string' || typeof N !== 'number' || typeof r !== 'number' || typeof p !== 'number') return undefined;
    return { algorithm, salt, N, r, p };
  } catch {
    return undefined;
  }
}

/** Records the key derivation of the key file that opened the repository at `location` (one reached over the network), unless the hint says so already. */
export function saveKdfHint(location: string, kdf: KeyFile['kdf']): void {
  if (!isNetworkLocation(location)) return;
  saveHint(kdfPath(location), `${JSON.stringify({ algorithm: kdf.algorithm, salt: kdf.salt, N: kdf.N, r: kdf.r, p: kdf.p })}\n`);
}

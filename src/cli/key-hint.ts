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
 * - `<cache>/<repository id>/snapshots`: the headers of the snapshots this
 *   machine authenticated, under a MAC of a key from the master key
 *   (src/repo/snapshot-headers.ts), so that a backup choosing its parent
 *   reads only the snapshots added since.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { KeyFile } from '../repo/key-file.js';
import type { SnapshotHeaderStore } from '../repo/snapshot-headers.js';
import { isNetworkLocation } from '../storage/location.js';
import { cacheRoot } from './cache-root.js';

const hintPath = (repositoryId: string): string => join(cacheRoot(), repositoryId, 'key');
const kdfPath = (location: string): string => join(cacheRoot(), 'locations', createHash('sha256').update(location).digest('hex'));
const headersPath = (repositoryId: string): string => join(cacheRoot(), repositoryId, 'snapshots');

/** A hint is a line or a small JSON object. */
const MAX_HINT_BYTES = 4096;
/** Header records of a few kilobytes each: tens of thousands of snapshots. */
const MAX_HEADER_RECORDS_BYTES = 64 << 20;
/** A temporary file of a write killed before its rename is removed by a later write of the same name once it is this old. */
const STALE_TEMPORARY_MS = 10 * 60_000;

/** Removes the temporary files of `name` in `dir` that writes killed before their rename left (a write runs for milliseconds). */
function removeStaleTemporaries(dir: string, name: string): void {
  for (const entry of readdirSync(dir)) {
    if (!entry.startsWith(`.${name}.`) || !entry.endsWith('.tmp')) continue;
    const path = join(dir, entry);
    try {
      const st = lstatSync(path);
      if (st.isFile() && Date.now() - st.mtimeMs > STALE_TEMPORARY_MS) rmSync(path, { force: true });
    } catch {
      // Removed meanwhile.
    }
  }
}

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
    // One byte more than the size says: a file that grew while it was read is not taken.
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += got;
    return n > st.size ? undefined : buf.subarray(0, n);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a hint file (its folder private), unless it holds `data` already:
 * into a new temporary file renamed over the name, so that whatever is
 * there (a symlink planted to make the write land elsewhere, a FIFO that
 * would hold the command) is replaced, never followed or opened; a folder
 * that is not a folder of its own (a symlink) is left alone. A read-only or
 * missing home is passed over: the next open goes as it would without it.
 */
function saveHint(path: string, data: string | Buffer): void {
  const bytes = Buffer.from(data);
  if (smallFile(path, bytes.length)?.equals(bytes)) return;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!lstatSync(dir).isDirectory()) return;
    removeStaleTemporaries(dir, basename(path));
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Nothing was made.
    }
  }
}

/** The key file named by the hint, if there is a readable one. */
export function readKeyHint(repositoryId: string): string | undefined {
  const name = smallFile(hintPath(repositoryId), MAX_HINT_BYTES)?.toString('latin1').trim();
  return name !== undefined && /^[0-9a-f]{64}$/.test(name) ? name : undefined;
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

/** Records both hints for a repository just opened (or created) at `location` with key file `keyId`. */
export function saveHints(location: string, repo: { readonly config: { readonly id: string }; readonly keyId: string; readonly kdf: KeyFile['kdf'] }): void {
  saveHint(hintPath(repo.config.id), `${repo.keyId}\n`);
  saveKdfHint(location, repo.kdf);
}

/** This machine's snapshot header records (`OpenOptions.headerStore`), in its cache. */
export const headerRecordsFile: SnapshotHeaderStore = {
  load: async (repositoryId) => smallFile(headersPath(repositoryId), MAX_HEADER_RECORDS_BYTES),
  save: async (repositoryId, records) => saveHint(headersPath(repositoryId), records),
};

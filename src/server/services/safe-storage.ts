/**
 * Where the disk safes' repositories live, as the server's storage setting
 * says (`holdfast server --storage`, recorded in DATA/server.json): the data
 * directory's `safes/` folder by default, or a prefix in an S3 bucket
 * (`s3:https://host:port/bucket/prefix`), each safe below it at its
 * `location` (`safes/ID`). This is the one place that builds a safe's
 * `Backend`: the repository protocol, and every service that reads or
 * changes a safe on the server, get it here.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../../storage/backend.js';
import { LocalBackend } from '../../storage/local-backend.js';
import { RetryingBackend } from '../../storage/retrying-backend.js';
import { S3Backend } from '../../storage/s3-backend.js';
import { SAFES_DIR } from '../server-settings.js';
import { formatS3Location, parseS3Location, type S3Location, type S3Settings } from '../../storage/s3-backend-config.js';

/** The storage of every disk safe of one server. */
export interface SafeStorage {
  /** Where the safes are, for people: a folder, or an `s3:` location. */
  readonly shown: string;
  /**
   * The backend of the safe stored at `location` (a disk safe's `location`,
   * `safes/ID`): the same object for the same safe until `close`. Callers
   * do not close it.
   */
  backendOf(safe: { readonly location: string }): Backend;
  /**
   * Removes what is left of a deleted safe's place once its objects are
   * gone, and forgets its backend: in the data directory its folder, with
   * its empty object folders and whatever an interrupted save left there
   * (`.tmp-` files); on S3, where folders do not exist, nothing. Missing
   * already: fine.
   */
  removePlace(safe: { readonly location: string }): Promise<void>;
  /** Closes every backend it made; idempotent. */
  close(): Promise<void>;
}

/** A `--storage` value that is not a storage the server can keep safes in. */
export class StorageSettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageSettingError';
  }
}

/**
 * Checks a `--storage` value: `s3:https://host:port/bucket/prefix` (any
 * form `s3:` takes in a repository location); throws StorageSettingError
 * with the form when it is anything else.
 */
export function parseStorageSetting(setting: string): S3Location {
  if (!/^s3:/i.test(setting)) {
    throw new StorageSettingError(`--storage "${setting}": the server keeps its disk safes in its data directory, or in an S3 bucket: s3:https://HOST:PORT/BUCKET/PREFIX`);
  }
  try {
    return parseS3Location(setting.slice(3));
  } catch (e) {
    throw new StorageSettingError(`--storage: ${(e as Error).message}`);
  }
}

/**
 * The storage of a server: `setting` (an `s3:` location, reached with `s3`'s
 * credentials and CA), or the data directory `dataDir` when it is undefined;
 * `wrap`, when given, wraps each safe's backend (tests inject faults there).
 */
export function openSafeStorage(setting: string | undefined, dataDir: string, s3: S3Settings = {}, wrap: (b: Backend) => Backend = (b) => b): SafeStorage {
  const bucket = setting === undefined ? undefined : parseStorageSetting(setting);
  const made = new Map<string, Backend>();
  // A location (`safes/ID`) is relative to the data directory, or follows the bucket's prefix.
  const make = (location: string): Backend => wrap(bucket === undefined
    ? new LocalBackend(join(dataDir, location))
    : new S3Backend({ ...bucket, prefix: bucket.prefix === '' ? location : `${bucket.prefix}/${location}` }, s3));
  let closed = false;
  return {
    shown: bucket === undefined ? join(dataDir, SAFES_DIR) : formatS3Location(bucket),
    backendOf(safe) {
      if (closed) throw new Error('the server\'s storage is closed');
      let b = made.get(safe.location);
      if (b === undefined) {
        b = make(safe.location);
        made.set(safe.location, b);
      }
      return b;
    },
    async removePlace(safe) {
      const b = made.get(safe.location);
      made.delete(safe.location);
      await b?.close();
      if (bucket === undefined) await rm(join(dataDir, safe.location), { recursive: true, force: true });
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...made.values()].map((b) => b.close()));
      made.clear();
    },
  };
}

/**
 * A safe's backend for the server's own work on it (forget, prune, the
 * safe's deletion): transient storage errors (an S3 endpoint's 500 or 503,
 * a dropped connection) are tried again, as the CLI's and the agent's are.
 * The repository routes use `backendOf` itself: they answer such an error
 * to their client, which retries.
 */
export function workingBackendOf(storage: SafeStorage, safe: { readonly location: string }): Backend {
  return new RetryingBackend(storage.backendOf(safe));
}

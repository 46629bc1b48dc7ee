/**
 * Turns a repository location, as a user types it, into a `Backend`:
 *
 *   memory:            a fresh, empty in-memory repository
 *   memory:NAME        the in-memory repository called NAME in the caller's
 *                      `MemoryRegistry` (refused without one)
 *   local:/abs/path    a local folder (relative paths are resolved)
 *   /abs/path, ./rel   the same as local:
 *   s3:https://host:port/bucket/prefix, s3:s3.amazonaws.com/bucket/prefix, …
 *                      an S3 bucket (s3-backend-config.ts has the forms)
 *   https://host:port/safes/NAME
 *                      a disk safe on a holdfast server (http-backend.ts)
 *
 * Anything else that looks like `scheme:` (sftp://, ...) is refused with an
 * "unsupported repository location" error rather than taken for a path.
 */
import path from 'node:path';

import { BadLocationError, type Backend } from './backend.js';
import { LocalBackend } from './local-backend.js';
import { splitLocation } from './location.js';
import { MemoryBackend } from './memory-backend.js';
import { HttpBackend, parseHttpLocation, type HttpSettings } from './http-backend.js';
import { S3Backend } from './s3-backend.js';
import { parseS3Location, type S3Settings } from './s3-backend-config.js';

/**
 * Named in-memory repositories (`memory:NAME`), owned by whoever keeps them
 * alive (a test, a long-running process), so that two owners never share one
 * by accident.
 */
export class MemoryRegistry {
  private readonly byName = new Map<string, MemoryBackend>();

  /** The repository called `name`, made empty on first use. */
  get(name: string): MemoryBackend {
    let backend = this.byName.get(name);
    if (backend === undefined) {
      backend = new MemoryBackend({ name });
      this.byName.set(name, backend);
    }
    return backend;
  }
}

/** What a location alone does not say. */
export interface OpenBackendOptions {
  /** Where `memory:NAME` locations live; without it they are refused. */
  readonly memory?: MemoryRegistry;
  /** For `s3:` locations: credentials, region, a CA to trust (the CLI reads them from the environment and --cacert). */
  readonly s3?: S3Settings;
  /** For `https:` locations: the token, a pinned fingerprint or a CA to trust (the CLI reads them from the environment, --fingerprint and --cacert). */
  readonly http?: HttpSettings;
}

/** Opens the backend for `location`; see the module comment for the forms accepted. */
export function openBackend(location: string, opts: OpenBackendOptions = {}): Backend {
  if (location === '') throw new BadLocationError('unsupported repository location "": the location is empty');
  const { scheme, rest } = splitLocation(location);
  switch (scheme) {
    case undefined:
      return new LocalBackend(path.resolve(location));
    case 'local':
      if (rest === '') throw new BadLocationError(`unsupported repository location "${location}": local: needs a path`);
      return new LocalBackend(path.resolve(rest));
    case 'memory': {
      if (rest === '') return new MemoryBackend();
      if (!opts.memory) throw new BadLocationError(`unsupported repository location "${location}": a named in-memory repository lives only inside a process that keeps a registry of them`);
      return opts.memory.get(rest);
    }
    case 's3':
      return new S3Backend(parseS3Location(rest), opts.s3);
    case 'https':
      return new HttpBackend(parseHttpLocation(location), opts.http);
    case 'http':
      throw new BadLocationError(`unsupported repository location "${location}": a holdfast server speaks HTTPS only (https://HOST:PORT/safes/NAME)`);
    default:
      throw new BadLocationError(
        `unsupported repository location "${location}": unknown scheme "${scheme}:" (use local:/path, a plain path, s3:https://host/bucket or https://host:port/safes/NAME)`,
      );
  }
}

/**
 * Errors a caller of the repository layer must tell apart. Each names the
 * object it is about, so a message can say which file in storage is at fault.
 */
import type { ErrorCode } from '../core/errors.js';

/** A stored object is malformed, truncated or fails its checksum. */
export class CorruptObjectError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'CORRUPT';
  /** `object` names what is damaged ("pack 3fa0…"), `detail` how. */
  constructor(readonly object: string, readonly detail: string) {
    super(`${object} is damaged: ${detail}`);
    this.name = 'CorruptObjectError';
  }
}

/**
 * A plain object fails its MAC: its bytes match its name, so it is not
 * damage, but it was not written by a holder of the key. Someone with write
 * access to the storage changed or planted it (docs/format.md §11).
 */
export class ForgedObjectError extends CorruptObjectError {
  /** Stable code for callers (src/core/errors.ts). */
  override readonly code: ErrorCode = 'FORGED';
  /** `consequence` says what the reader does about it. */
  constructor(object: string, consequence: string) {
    super(object, 'fails its MAC');
    this.message = `${object} fails its MAC: it was changed or planted in storage by someone without the key (docs/format.md §11); ${consequence}`;
    this.name = 'ForgedObjectError';
  }
}

/** No key of the repository opens with the password given. */
export class WrongPasswordError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'WRONG_PASSWORD';
  /** `message`: says which repository and which password, where the default would not. */
  constructor(message = 'wrong password: no key in the repository opens with it') {
    super(message);
    this.name = 'WrongPasswordError';
  }
}

/** The location holds no holdfast repository. */
export class NotARepositoryError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NOT_A_REPOSITORY';
  /** `advice` ends the message: what to do about it where the repository was expected. */
  constructor(location: string, advice = 'create one with "holdfast init"') {
    super(`no holdfast repository at ${location} (no config object); ${advice}`);
    this.name = 'NotARepositoryError';
  }
}

/** The repository (or an object in it) uses a format version this build does not know. */
export class UnsupportedVersionError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'UNSUPPORTED_VERSION';
  constructor(object: string, version: unknown, supported: number) {
    // A parsed JSON object may have no usable toString: anything but a number is shown as JSON.
    super(`${object} has format version ${typeof version === 'number' ? version : JSON.stringify(version)}, this holdfast reads version ${supported}; upgrade holdfast to read it`);
    this.name = 'UnsupportedVersionError';
  }
}

/** The repository has a format version older than the one this build reads, which this build no longer reads. */
export class RetiredVersionError extends UnsupportedVersionError {
  /** Stable code for callers (src/core/errors.ts). */
  override readonly code: ErrorCode = 'RETIRED_VERSION';
  constructor(version: number, supported: number, why: string) {
    super('the repository', version, supported);
    this.message = `repository format version ${version} is not supported by this holdfast, which reads version ${supported}: ${why} (docs/format.md §10). `
      + `Restore what you need with the holdfast that wrote it, then back up again into a new repository made with this one ("holdfast init")`;
    this.name = 'RetiredVersionError';
  }
}

/**
 * A content-addressed object (its name is the SHA-256 of its bytes) could
 * not be saved: the name exists and holds other bytes. Nothing writes that
 * but a client planting objects under names it predicted, or damage in
 * storage; the object meant for the name was not written (docs/format.md §9).
 */
export class NameTakenError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NAME_TAKEN';
  constructor(readonly object: string) {
    super(`cannot save ${object}: the name exists already and holds other bytes than the name says (planted by a client that can add objects, or damaged in storage); nothing was written under it`);
    this.name = 'NameTakenError';
  }
}

/** A blob the caller asked for is not in any index. */
export class BlobNotFoundError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BLOB_NOT_FOUND';
  constructor(readonly id: string, what: string) {
    super(`${what} ${id} is not in the repository index`);
    this.name = 'BlobNotFoundError';
  }
}

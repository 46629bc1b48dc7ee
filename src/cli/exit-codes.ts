/**
 * Exit codes, documented in the README. They follow restic where restic has
 * one (0, 1, 3, 10, 12, 130). Errors of the engine reach them through their
 * stable code (src/core/errors.ts), in one table: `EXIT_BY_ERROR_CODE`;
 * refusals of a holdfast server's API (the `holdfast server …` admin
 * commands) through their HTTP status: `exitOfHttpStatus`.
 */
import { errorCode, type ErrorCode } from '../core/errors.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  /** The backup completed, but some files could not be read (or a stream producer failed). */
  incomplete: 3,
  /** The location holds no repository. */
  noRepository: 10,
  /** The repository is locked by another process, or the lock was lost (restic's 11). */
  locked: 11,
  /** No key opens with the password; or a server refused the login, session or token (HTTP 401). */
  wrongPassword: 12,
  /** The repository is append-only and the command would remove something. */
  appendOnly: 13,
  /** A holdfast server refused an upload: a hard quota of the disk safe or of its customer is reached. */
  quota: 14,
  /** A server knows the caller, whose role or token does not allow what was asked (HTTP 403). */
  forbidden: 15,
  /** The backup was skipped: its before-backup hook failed or ran past its timeout. */
  hookFailed: 16,
  /** `verify-restore`: the snapshot did not restore exactly (a sampled file, or a file system of an image, failed). */
  notRestorable: 17,
  /** The backup succeeded (its snapshot is saved) and its after-backup hook failed: not 16, so that a script tells a saved snapshot from a skipped backup. */
  afterHookFailed: 18,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

/**
 * The exit code of every error code: the one table (the README's "Exit
 * codes" says the same). A new error code does not compile until it has a row.
 */
export const EXIT_BY_ERROR_CODE: { readonly [C in ErrorCode]: number } = {
  AUTHENTICATION: EXIT.failed,
  DECOMPRESSION: EXIT.failed,
  ALREADY_EXISTS: EXIT.failed,
  NOT_FOUND: EXIT.failed,
  SHORT_READ: EXIT.failed,
  TOO_LARGE: EXIT.failed,
  TRANSIENT: EXIT.failed,
  RETRIES_EXHAUSTED: EXIT.failed,
  APPEND_ONLY: EXIT.appendOnly,
  BAD_LOCATION: EXIT.usage,
  QUOTA_EXCEEDED: EXIT.quota,
  NOT_A_REPOSITORY: EXIT.noRepository,
  WRONG_PASSWORD: EXIT.wrongPassword,
  UNSUPPORTED_VERSION: EXIT.failed,
  RETIRED_VERSION: EXIT.failed,
  CORRUPT: EXIT.failed,
  FORGED: EXIT.failed,
  BLOB_NOT_FOUND: EXIT.failed,
  LOCKED: EXIT.locked,
  LOCK_LOST: EXIT.locked,
  BLOBS_LOST: EXIT.failed,
  NAME_TAKEN: EXIT.failed,
  SNAPSHOT_NOT_FOUND: EXIT.failed,
  BAD_SNAPSHOT_NAME: EXIT.usage,
  COPY_REFUSED: EXIT.failed,
  PRUNE_REFUSED: EXIT.failed,
  BAD_TARGET: EXIT.failed,
  NOT_AN_IMAGE_SNAPSHOT: EXIT.failed,
  SOURCE_SHRANK: EXIT.failed,
  EMPTY_SOURCE: EXIT.failed,
  NOTHING_TO_BACK_UP: EXIT.failed,
  PRODUCER_FAILED: EXIT.failed,
  HOOK_FAILED: EXIT.hookFailed,
  SNAPSHOT_FAILED: EXIT.failed,
  BAD_DATABASE_URL: EXIT.usage,
  FILESYSTEM_NOT_SUPPORTED: EXIT.failed,
  FILESYSTEM_DAMAGED: EXIT.failed,
  FILESYSTEM_FEATURE_UNSUPPORTED: EXIT.failed,
  FUSE_UNAVAILABLE: EXIT.failed,
  BAD_MOUNT_POINT: EXIT.failed,
  NBD_REFUSED: EXIT.failed,
  NBD_PROTOCOL: EXIT.failed,
  NBD_IO: EXIT.failed,
  QEMU_FAILED: EXIT.failed,
};

/**
 * The exit code of an API error's HTTP status: values the server refused
 * (400) are a usage error, credentials it refused (401) a wrong password,
 * a refusal of what the caller may do (403) its own code; anything else
 * (404 no such record, 409 a name taken, 429 too many logins, 5xx) a failure.
 */
export function exitOfHttpStatus(status: number): number {
  switch (status) {
    case 400: return EXIT.usage;
    case 401: return EXIT.wrongPassword;
    case 403: return EXIT.forbidden;
    default: return EXIT.failed;
  }
}

/** An error that ends the command with a given exit code and a plain message. */
export class ExitError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = 'ExitError';
  }
}

/**
 * How a failure ends the command: its exit code, and whether it is expected
 * (`known`: its message says it all) or a fault whose stack trace may help
 * (printed with HOLDFAST_DEBUG).
 */
export function exitOf(e: unknown): { code: number; known: boolean } {
  if (e instanceof ExitError) return { code: e.exitCode, known: true };
  const code = errorCode(e);
  return code === undefined ? { code: EXIT.failed, known: false } : { code: EXIT_BY_ERROR_CODE[code], known: true };
}

/**
 * Exit codes, documented in the README. They follow restic where restic has
 * one (0, 1, 3, 10, 12, 130).
 */
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
  /** No key opens with the password. */
  wrongPassword: 12,
  /** The repository is append-only and the command would remove something. */
  appendOnly: 13,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

/** An error that ends the command with a given exit code and a plain message. */
export class ExitError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = 'ExitError';
  }
}

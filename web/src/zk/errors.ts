/**
 * The errors of the zero-knowledge reader, by what a person can do about
 * them: a wrong password (type it again), damage (the safe's data is not what
 * was written: nothing of it is shown), a refusal (a tree the reader will not
 * follow: a hostile name or a bound passed), an unsupported format (a newer
 * holdfast wrote it), and the server's own answers.
 */

/** The base of every error of web/src/zk: `message` is written for people. */
export class ZkError extends Error {
  override name = 'ZkError';
}

/** No key file of the safe opens with the password given. */
export class WrongPasswordError extends ZkError {
  override name = 'WrongPasswordError';
  constructor() {
    super('wrong password: it opens none of the disk safe\'s keys');
  }
}

/**
 * An object, a blob or a tree is not what its writer stored (it fails its
 * checksum, its authentication or its id, or does not parse): refused, and
 * nothing of it is shown or downloaded.
 */
export class DamagedError extends ZkError {
  override name = 'DamagedError';
  constructor(readonly what: string, readonly why: string) {
    super(`${what} is damaged: ${why}`);
  }
}

/**
 * A name in a tree the reader refuses (docs/format.md §6.4: empty, over
 * 255 bytes, holding `/` or NUL, `.` or `..`): the entry is not listed and
 * never becomes a path in a download.
 */
export class RefusedNameError extends ZkError {
  override name = 'RefusedNameError';
  constructor(readonly where: string, readonly why: string) {
    super(`${where}: an entry is refused: ${why}`);
  }
}

/** A structure of a version this reader does not know (docs/format.md §10). */
export class UnsupportedError extends ZkError {
  override name = 'UnsupportedError';
}

/** The server answered a request with an error (its status and wire code, docs/format.md §2.5). */
export class ServerError extends ZkError {
  override name = 'ServerError';
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

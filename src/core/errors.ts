/**
 * The stable codes of the errors a caller of the engine must tell apart.
 * Each named error class carries one as `code`; front ends map codes, not
 * classes or messages, to what they report: the CLI to exit codes
 * (src/cli/exit-codes.ts, one table), the server to HTTP statuses. A code
 * never changes meaning once released; a new kind of error gets a new code.
 */

export const ERROR_CODES = [
  // core
  /** Sealed bytes fail authentication (wrong key, or changed). */
  'AUTHENTICATION',
  /** Compressed bytes do not decompress to what they declare. */
  'DECOMPRESSION',
  // storage
  /** `save` of a name that exists: objects are never overwritten. */
  'ALREADY_EXISTS',
  /** An object that does not exist. */
  'NOT_FOUND',
  /** A range read past the end of an object. */
  'SHORT_READ',
  /** A failure that may not happen again (retried by `RetryingBackend`). */
  'TRANSIENT',
  /** An object larger than the caller accepts (`LoadOptions.maxBytes`): not read. */
  'TOO_LARGE',
  /** A transient failure that lasted through every retry the policy allows. */
  'RETRIES_EXHAUSTED',
  /** The storage (or this client) is append-only and the operation would remove or replace something. */
  'APPEND_ONLY',
  /** A repository location that names no storage this build reaches (unknown scheme, malformed URL, invalid bucket). */
  'BAD_LOCATION',
  /** A holdfast server refused an upload: it would pass a hard quota of the disk safe or of its customer. */
  'QUOTA_EXCEEDED',
  // repository
  /** No holdfast repository at the location. */
  'NOT_A_REPOSITORY',
  /** No key of the repository opens with the password. */
  'WRONG_PASSWORD',
  /** A format version (or feature) newer than this build reads. */
  'UNSUPPORTED_VERSION',
  /** A format version older than this build reads any more. */
  'RETIRED_VERSION',
  /** A stored object is malformed, truncated or fails its checksum. */
  'CORRUPT',
  /** A plain object fails its MAC: changed or planted by someone without the key. */
  'FORGED',
  /** A blob asked for is in no index. */
  'BLOB_NOT_FOUND',
  /** A conflicting repository lock is held. */
  'LOCKED',
  /** Our repository lock was removed by someone else, or could not be refreshed in time. */
  'LOCK_LOST',
  /** Blobs a snapshot lists were removed by a prune meanwhile: no snapshot was written. */
  'BLOBS_LOST',
  /** A content-addressed object could not be saved: its name holds other bytes (planted, or damaged in storage). */
  'NAME_TAKEN',
  // jobs and sources
  /** No snapshot is the one asked for (or an id prefix names several). */
  'SNAPSHOT_NOT_FOUND',
  /** A snapshot named in a way that cannot name one (not an id; a --parent that is not one snapshot of the right kind). */
  'BAD_SNAPSHOT_NAME',
  /** Two repositories that copy cannot copy between (keys or chunker parameters differ). */
  'COPY_REFUSED',
  /** Prune refuses to run on a repository it cannot read completely. */
  'PRUNE_REFUSED',
  /** A restore target that cannot take what is restored (too small, mounted, in the way). */
  'BAD_TARGET',
  /** A snapshot of files given where an image snapshot is needed. */
  'NOT_AN_IMAGE_SNAPSHOT',
  /** An image source that shrank while it was read. */
  'SOURCE_SHRANK',
  /** A stream source that gave no bytes. */
  'EMPTY_SOURCE',
  /** None of the paths a file backup was given exists: nothing was written. */
  'NOTHING_TO_BACK_UP',
  /** The command producing a stream source failed. */
  'PRODUCER_FAILED',
  /** A hook run before a backup failed or ran past its timeout: the backup was skipped. */
  'HOOK_FAILED',
  /** A file-system snapshot of a backed-up path could not be taken, or its file system has none of the kind asked for: nothing was backed up. */
  'SNAPSHOT_FAILED',
  /** A database server's URL (or PostgreSQL conninfo) that cannot be read: nothing was run. */
  'BAD_DATABASE_URL',
  /** A disk image holds no file system this build reads. */
  'FILESYSTEM_NOT_SUPPORTED',
  /** A file system in a disk image is damaged or truncated (its metadata, its journal, a read past its end). */
  'FILESYSTEM_DAMAGED',
  /** A file system in a disk image (or one file in it) uses a feature this build does not read. */
  'FILESYSTEM_FEATURE_UNSUPPORTED',
  /** FUSE is not available on this machine. */
  'FUSE_UNAVAILABLE',
  /** A mount point that cannot be mounted on. */
  'BAD_MOUNT_POINT',
  /** An NBD server refused the export (unknown, a policy, TLS required), or the NBD URI names none. */
  'NBD_REFUSED',
  /** An NBD server broke the protocol: a malformed or out-of-range reply, or a connection ended in the middle of one. */
  'NBD_PROTOCOL',
  /** An NBD server answered a read with an error. */
  'NBD_IO',
  /** A qemu tool (qemu-img, qemu-nbd) failed or is missing. */
  'QEMU_FAILED',
] as const;

/** One of `ERROR_CODES`. */
export type ErrorCode = (typeof ERROR_CODES)[number];

const known: ReadonlySet<string> = new Set(ERROR_CODES);

/** The engine's code of `e`, or undefined for an error without one (a system error's errno code is not one). */
export function errorCode(e: unknown): ErrorCode | undefined {
  const code = e instanceof Error ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' && known.has(code) ? code as ErrorCode : undefined;
}

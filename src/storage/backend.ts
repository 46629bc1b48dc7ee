/**
 * The storage seam. Everything above this file (the repository format, the
 * jobs, the front ends) talks to storage only through `Backend`; everything
 * below it (a local directory, memory, S3) implements it and passes the shared
 * conformance suite in `test/storage/conformance.ts`.
 *
 * Objects are addressed by a type (which decides the folder or key prefix) and
 * a name. Objects are immutable: a name is written once and never changes.
 *
 * Every operation takes an `AbortSignal` in its options; a backend declares
 * what it is (`capabilities`) as data that wrappers pass on or amend, so no
 * caller needs to know which class it holds. Errors a caller must tell apart
 * are the classes below: `NotFoundError`, `AlreadyExistsError`,
 * `ShortReadError`, `ObjectTooLargeError`, and `TransientError` for a failure worth trying again
 * (which `RetryingBackend` does).
 */
import type { ErrorCode } from '../core/errors.js';

/**
 * The kinds of object a repository stores, and the folder each lives in.
 * `deletion` objects are prune's pending-deletion markers (docs/format.md §15).
 */
export type ObjectType = 'config' | 'key' | 'data' | 'index' | 'snapshot' | 'lock' | 'deletion';

export const OBJECT_TYPES: readonly ObjectType[] = ['config', 'key', 'data', 'index', 'snapshot', 'lock', 'deletion'];

export interface Handle {
  readonly type: ObjectType;
  /**
   * The object's name: lowercase hex for content-addressed objects, `config`
   * for the single config object. Must match /^[0-9a-z][0-9a-z._-]*$/.
   */
  readonly name: string;
}

export interface ObjectInfo {
  readonly name: string;
  readonly size: number;
}

/** How messages name an object: "data/0a1b…", "snapshot/5f3e…", and the config object "config". */
export function objectLabel(h: Handle): string {
  return h.type === 'config' ? 'config' : `${h.type}/${h.name}`;
}

/** A repository location that cannot be opened as written: the message says which rule it breaks and shows the form. */
export class BadLocationError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BAD_LOCATION';
  constructor(message: string) {
    super(message);
    this.name = 'BadLocationError';
  }
}

/** Thrown by `save` when the name exists already. */
export class AlreadyExistsError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'ALREADY_EXISTS';
  constructor(readonly handle: Handle) {
    super(`${objectLabel(handle)} already exists`);
    this.name = 'AlreadyExistsError';
  }
}

/** Thrown by `load` (and by `remove` when `removeMissingIsError`) when the name does not exist. */
export class NotFoundError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NOT_FOUND';
  constructor(readonly handle: Handle) {
    super(`${objectLabel(handle)} does not exist`);
    this.name = 'NotFoundError';
  }
}

/** Thrown when a range read asks for bytes past the end of an object. */
export class ShortReadError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'SHORT_READ';
  constructor(readonly handle: Handle, readonly wanted: number, readonly got: number) {
    super(`${objectLabel(handle)}: wanted ${wanted} bytes, object holds only ${got}`);
    this.name = 'ShortReadError';
  }
}

/**
 * Thrown by `load` when what it would return is larger than `maxBytes`
 * (`LoadOptions`), before any of it is read.
 */
export class ObjectTooLargeError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'TOO_LARGE';
  /** `size`: the bytes the load would return (the object's, or its range's, as the storage declares it). */
  constructor(readonly handle: Handle, readonly size: number, readonly maxBytes: number) {
    super(`${objectLabel(handle)} holds ${size} bytes, more than the ${maxBytes} asked for at most`);
    this.name = 'ObjectTooLargeError';
  }
}

/**
 * A failure that may well not happen again: a dropped connection, a timeout,
 * an HTTP 500 or 503, throttling. Backends throw it (with the original error
 * as `cause`) only where repeating the same call is safe and may succeed;
 * `RetryingBackend` retries these and nothing else. Every other error is
 * permanent: trying again would fail the same way.
 */
export class TransientError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'TRANSIENT';
  /** `message` says what failed; `cause` is the error the transport gave. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/**
 * The options every operation takes (as kysely's `AbortableOperationOptions`).
 */
export interface OperationOptions {
  /**
   * Ends the operation early once aborted: it rejects with `signal.reason`.
   * An operation aborted before it starts does nothing. One aborted midway
   * leaves storage as if it had either not run or run to the end (an aborted
   * `save` leaves no object or the whole object, never a part of one).
   */
  readonly signal?: AbortSignal;
}

/** The options of `Backend.load`: a byte range, and the signal. */
export interface LoadOptions extends OperationOptions {
  /**
   * The first byte to read; a negative offset counts from the end of the
   * object (`-n` reads the last n bytes, and `length` is then ignored).
   * Default 0.
   */
  readonly offset?: number;
  /** How many bytes to read from `offset`; to the end of the object when absent. */
  readonly length?: number;
  /**
   * The most bytes the caller accepts (a non-negative integer). When what
   * the load would return is larger, by the size the storage declares (a
   * local file's size, an S3 answer's Content-Length), `load` rejects with
   * `ObjectTooLargeError` before reading any of it, so a planted or damaged
   * object cannot make a reader hold gigabytes. No limit when absent.
   */
  readonly maxBytes?: number;
}

/** The options of `Backend.list`. */
export interface ListOptions extends OperationOptions {
  /**
   * Lists only the names that start with this (any string of the characters
   * names may hold, /^[0-9a-z._-]*$/; empty lists everything).
   */
  readonly prefix?: string;
}

/**
 * What a backend is, as data. Callers read this instead of asking which class
 * they hold; a wrapper reports its inner backend's capabilities, amended by
 * what the wrapper itself changes.
 */
export interface BackendCapabilities {
  /**
   * How many operations the backend serves well at once (parallel uploads and
   * downloads, open connections). Jobs that fan out, such as check reading
   * packs, keep at most this many calls in flight. At least 1.
   */
  readonly connections: number;
  /** True when `remove` is refused (`AppendOnlyError`), except for the lock objects this client saved. */
  readonly appendOnly: boolean;
  /**
   * True when `remove` of a missing name rejects with `NotFoundError`; false
   * when it resolves (object stores such as S3, whose delete is idempotent and
   * cannot tell). Callers that must know whether they removed something call
   * `stat` first.
   */
  readonly removeMissingIsError: boolean;
  /**
   * The absolute path of the local folder that holds the repository, for
   * backends that store in one (local: its root); undefined otherwise.
   */
  readonly localPath?: string;
}

/** The storage every repository lives on; see the module comment. */
export interface Backend {
  /** A human-readable location, for messages ("local:/srv/safe"). */
  readonly location: string;

  /** What this backend is and how it wants to be used; constant for its lifetime. */
  readonly capabilities: BackendCapabilities;

  /**
   * Stores `data` under `h`, atomically: a reader sees either no object or the
   * whole object, never a prefix, also after a crash or power loss at any
   * point (local: temporary name, fsync, link, fsync of the folder), and also
   * when `signal` aborts it. Never overwrites: rejects with
   * `AlreadyExistsError` when the name exists. Resolves only once the object
   * is durable. Keeps no reference to `data` once settled: the caller may
   * fill it again.
   */
  save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void>;

  /**
   * Reads the whole object, or the range `opts.offset`/`opts.length` gives
   * (see `LoadOptions`). Rejects with `NotFoundError` when the object does not
   * exist, `ShortReadError` when the range goes past the end,
   * `ObjectTooLargeError` when it would return more than `opts.maxBytes`, and
   * `RangeError` when the range is not made of integers. Safe to call
   * concurrently and any number of times. The returned buffer is the
   * caller's: changing it changes nothing stored.
   */
  load(h: Handle, opts?: LoadOptions): Promise<Buffer>;

  /** Size of the object, or `undefined` when it does not exist. */
  stat(h: Handle, opts?: OperationOptions): Promise<ObjectInfo | undefined>;

  /**
   * Lists the objects of a type whose names start with `opts.prefix`, in no
   * particular order, fetching them a page at a time as the caller iterates:
   * the backend never holds the whole listing (the page size is a backend
   * option). Objects present from before the call until the iteration ends
   * are listed exactly once; ones saved or removed meanwhile may or may not
   * be. Temporary files are never listed. `signal` ends the iteration with
   * its reason at the next page or entry.
   */
  list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo>;

  /**
   * Removes an object. When it does not exist, rejects with `NotFoundError`
   * if `capabilities.removeMissingIsError`, else resolves.
   */
  remove(h: Handle, opts?: OperationOptions): Promise<void>;

  /** Creates the folders of a new repository. Idempotent. */
  create(opts?: OperationOptions): Promise<void>;

  /**
   * How many entries lie at the location's top level, holdfast's or anyone
   * else's (local: the folder's entries; S3: the keys and "folders" one
   * level under the prefix, the first 1000 counted); 0 when nothing is there
   * yet, or undefined when the backend cannot tell. For `init`, which warns
   * when it creates a repository beside other things. Optional.
   */
  entries?(opts?: OperationOptions): Promise<number | undefined>;

  /** Releases resources. Idempotent; the backend is not used afterwards. */
  close(): Promise<void>;
}

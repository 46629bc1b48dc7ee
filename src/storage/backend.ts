/**
 * The storage seam. Everything above this file (the repository format, the
 * jobs, the front ends) talks to storage only through `Backend`; everything
 * below it (a local directory, memory, S3) implements it and passes the shared
 * conformance suite in `test/storage/conformance.ts`.
 *
 * Objects are addressed by a type (which decides the folder or key prefix) and
 * a name. Objects are immutable: a name is written once and never changes.
 */

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

/** Thrown by `save` when the name exists already. */
export class AlreadyExistsError extends Error {
  constructor(readonly handle: Handle) {
    super(`${handle.type}/${handle.name} already exists`);
    this.name = 'AlreadyExistsError';
  }
}

/** Thrown by `load` and `remove` when the name does not exist. */
export class NotFoundError extends Error {
  constructor(readonly handle: Handle) {
    super(`${handle.type}/${handle.name} does not exist`);
    this.name = 'NotFoundError';
  }
}

/** Thrown when a range read asks for bytes past the end of an object. */
export class ShortReadError extends Error {
  constructor(readonly handle: Handle, readonly wanted: number, readonly got: number) {
    super(`${handle.type}/${handle.name}: wanted ${wanted} bytes, object holds only ${got}`);
    this.name = 'ShortReadError';
  }
}

export interface Backend {
  /** A human-readable location, for messages ("local:/srv/safe"). */
  readonly location: string;

  /**
   * Stores `data` under `h`, atomically: a reader sees either no object or the
   * whole object, never a prefix, also after a crash or power loss at any
   * point (local: temporary name, fsync, rename, fsync of the folder).
   * Never overwrites: rejects with `AlreadyExistsError` when the name exists.
   * Resolves only once the object is durable. Keeps no reference to `data`
   * once settled: the caller may fill it again.
   */
  save(h: Handle, data: Uint8Array): Promise<void>;

  /**
   * Reads the whole object, or `length` bytes from `offset` when given.
   * A negative `offset` counts from the end of the object (`-n` reads the
   * last n bytes; `length` is then ignored). Rejects with `NotFoundError` when
   * the object does not exist and `ShortReadError` when the range goes past
   * the end. Safe to call concurrently and any number of times.
   */
  load(h: Handle, offset?: number, length?: number): Promise<Buffer>;

  /** Size of the object, or `undefined` when it does not exist. */
  stat(h: Handle): Promise<ObjectInfo | undefined>;

  /**
   * Lists every object of a type, in no particular order. Objects saved
   * before the call began are listed; ones saved or removed during the
   * listing may or may not be. Temporary files are never listed.
   */
  list(type: ObjectType): AsyncIterable<ObjectInfo>;

  /** Removes an object. Rejects with `NotFoundError` when it does not exist. */
  remove(h: Handle): Promise<void>;

  /** Creates the folders of a new repository. Idempotent. */
  create(): Promise<void>;

  /** Releases resources. The backend is not used afterwards. */
  close(): Promise<void>;
}

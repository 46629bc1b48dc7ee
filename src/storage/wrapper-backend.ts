/**
 * The base of the `Backend` wrappers (append-only, dry run, rate limit,
 * retry): every call is passed to the wrapped backend unchanged, options and
 * signal included, and a wrapper overrides only the calls it changes. Its
 * capabilities are the inner backend's unless it overrides `capabilities`.
 */
import type {
  Backend,
  BackendCapabilities,
  Handle,
  ListOptions,
  LoadOptions,
  ObjectInfo,
  ObjectType,
  OperationOptions,
} from './backend.js';

/** Passes every call to `inner`. */
export class WrapperBackend implements Backend {
  constructor(readonly inner: Backend) {}

  /** The inner backend's location. */
  get location(): string {
    return this.inner.location;
  }

  /** The inner backend's capabilities. */
  get capabilities(): BackendCapabilities {
    return this.inner.capabilities;
  }

  /** See `Backend.save`. */
  save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    return this.inner.save(h, data, opts);
  }

  /** See `Backend.load`. */
  load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    return this.inner.load(h, opts);
  }

  /** See `Backend.stat`. */
  stat(h: Handle, opts?: OperationOptions): Promise<ObjectInfo | undefined> {
    return this.inner.stat(h, opts);
  }

  /** See `Backend.list`. */
  list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    return this.inner.list(type, opts);
  }

  /** See `Backend.remove`. */
  remove(h: Handle, opts?: OperationOptions): Promise<void> {
    return this.inner.remove(h, opts);
  }

  /** See `Backend.create`. */
  create(opts?: OperationOptions): Promise<void> {
    return this.inner.create(opts);
  }

  /** See `Backend.entries`: the inner backend's answer, undefined when it has none. */
  entries(opts?: OperationOptions): Promise<number | undefined> {
    return this.inner.entries ? this.inner.entries(opts) : Promise.resolve(undefined);
  }

  /** See `Backend.close`. */
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The signal that aborts when either does: a wrapper's own (the command's
 * Ctrl-C, given when it was made) and the call's.
 */
export function eitherSignal(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return AbortSignal.any([a, b]);
}

/**
 * The base of the `Backend` wrappers (append-only, dry run, rate limit): every
 * call is passed to the wrapped backend unchanged, and a wrapper overrides only
 * the calls it changes. `inner` stays public so that `isAppendOnly` can look
 * through a chain of wrappers.
 */
import type { Backend, Handle, ObjectInfo, ObjectType } from './backend.js';

/** Passes every call to `inner`. */
export class WrapperBackend implements Backend {
  constructor(readonly inner: Backend) {}

  /** The inner backend's location. */
  get location(): string {
    return this.inner.location;
  }

  /** See `Backend.save`. */
  save(h: Handle, data: Uint8Array): Promise<void> {
    return this.inner.save(h, data);
  }

  /** See `Backend.load`. */
  load(h: Handle, offset?: number, length?: number): Promise<Buffer> {
    return this.inner.load(h, offset, length);
  }

  /** See `Backend.stat`. */
  stat(h: Handle): Promise<ObjectInfo | undefined> {
    return this.inner.stat(h);
  }

  /** See `Backend.list`. */
  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    return this.inner.list(type);
  }

  /** See `Backend.remove`. */
  remove(h: Handle): Promise<void> {
    return this.inner.remove(h);
  }

  /** See `Backend.create`. */
  create(): Promise<void> {
    return this.inner.create();
  }

  /** See `Backend.close`. */
  close(): Promise<void> {
    return this.inner.close();
  }
}

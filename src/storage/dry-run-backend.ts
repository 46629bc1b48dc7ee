/**
 * A `Backend` wrapper for dry runs (`backup --dry-run`), as restic's: reads
 * pass through, every write is accepted and dropped.
 *
 *   save, remove, create   resolve at once; nothing reaches the inner backend
 *   load, stat, list       passed through: what was "saved" is not there
 *
 * So a job runs all the way (reads, chunks, compresses, encrypts, packs) and
 * its figures are those of a real run, while the repository stays as it was.
 * A job must not read back what it saved through this wrapper.
 */
import type { Backend, Handle, ObjectInfo, ObjectType } from './backend.js';

/** Wraps `inner` so that nothing is written to it. */
export class DryRunBackend implements Backend {
  constructor(readonly inner: Backend) {}

  /** The inner backend's location. */
  get location(): string {
    return this.inner.location;
  }

  /** Accepts the object and drops it. */
  async save(): Promise<void> {}

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

  /** Removes nothing. */
  async remove(): Promise<void> {}

  /** Creates nothing. */
  async create(): Promise<void> {}

  /** See `Backend.close`. */
  close(): Promise<void> {
    return this.inner.close();
  }
}

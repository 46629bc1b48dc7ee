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
import type { Handle, OperationOptions } from './backend.js';
import { WrapperBackend } from './wrapper-backend.js';

/** Wraps `inner` so that nothing is written to it. */
export class DryRunBackend extends WrapperBackend {
  /** Accepts the object and drops it (rejects with the reason once `signal` is aborted, as a save would). */
  override async save(_h: Handle, _data: Uint8Array, opts?: OperationOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
  }

  /** Removes nothing. */
  override async remove(_h: Handle, opts?: OperationOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
  }

  /** Creates nothing. */
  override async create(opts?: OperationOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
  }
}

/**
 * A `Backend` wrapper for append-only repositories: objects can be added and
 * read, nothing can be removed or overwritten, except the lock objects this
 * very wrapper saved (a client must be able to release its own locks).
 *
 *   save      passed through; the inner backend already refuses a name that
 *             exists (`AlreadyExistsError`), so nothing is ever overwritten
 *   remove    refused with `AppendOnlyError`, unless it is a lock this
 *             instance saved
 *   the rest  passed through
 *
 * This is the client-side half of append-only mode: it makes every code path
 * of an honest client (forget, prune, key remove, a bug) unable to delete. It
 * cannot stop a compromised client that simply does not use it; that
 * guarantee has to come from storage that enforces the same rule (a holdfast
 * server, an S3 bucket policy or object lock). docs/format.md, "Append-only
 * repositories", has the threat model.
 */
import { objectLabel, type BackendCapabilities, type Handle, type OperationOptions } from './backend.js';
import { WrapperBackend } from './wrapper-backend.js';
import type { ErrorCode } from '../core/errors.js';

/** Thrown when an append-only repository is asked to remove an object. */
export class AppendOnlyError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'APPEND_ONLY';
  constructor(readonly handle: Handle | undefined, what?: string) {
    super(handle
      ? `the repository is append-only: ${objectLabel(handle)} cannot be removed`
      : `the repository is append-only: ${what ?? 'this operation'} would remove data, which append-only mode forbids`);
    this.name = 'AppendOnlyError';
  }
}

/** Wraps `inner` so that nothing but this client's own locks can be removed. */
export class AppendOnlyBackend extends WrapperBackend {
  private readonly ownLocks = new Set<string>();

  /** The inner backend's, with `appendOnly` set. */
  override get capabilities(): BackendCapabilities {
    return { ...this.inner.capabilities, appendOnly: true };
  }

  /** See `Backend.save`. Remembers the names of lock objects so they may be removed later. */
  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await this.inner.save(h, data, opts);
    if (h.type === 'lock') this.ownLocks.add(h.name);
  }

  /** Refused with `AppendOnlyError`, except for a lock object this instance saved. */
  override async remove(h: Handle, opts?: OperationOptions): Promise<void> {
    if (h.type !== 'lock' || !this.ownLocks.has(h.name)) throw new AppendOnlyError(h);
    await this.inner.remove(h, opts);
    this.ownLocks.delete(h.name);
  }
}

/**
 * Buffers for upload bodies, kept for the next upload once a pack is
 * stored. repo-routes.ts holds each body whole until it is checked and
 * stored; a fresh 16 MiB buffer per pack costs the server its first touch of
 * every page (4,096 page faults a pack, more on a virtual machine whose host
 * takes freed memory back) and counts as new external memory, which makes
 * the collector run (docs/decisions.md, "Upload bodies in reused buffers").
 *
 * Only pack bodies come back (`give` after the pack is stored): the server
 * keeps no reference to a pack's bytes once its storage has them, while a
 * snapshot's, an index file's or a lock's bytes may be decoded into what
 * outlives the request. Small bodies are never pooled.
 */

/** Bodies smaller than this are allocated as they come and never kept. */
const POOLED_FROM = 1 << 20;
/** Pooled buffers are sized in steps of this, so that packs of nearly the same size share them. */
const SIZE_STEP = 1 << 20;

export class BodyBuffers {
  /** Buffers free for the next upload, their whole capacity. */
  private free: Buffer[] = [];
  private freeBytes = 0;

  /** `keepBytes`: the most bytes kept free between uploads. */
  constructor(private readonly keepBytes: number) {}

  /** A buffer of exactly `size` bytes (a view of a kept one when one fits), its contents undefined. */
  take(size: number): Buffer {
    if (size < POOLED_FROM) return Buffer.allocUnsafe(size);
    const capacity = Math.ceil(size / SIZE_STEP) * SIZE_STEP;
    const i = this.free.findIndex((b) => b.length === capacity);
    if (i < 0) return Buffer.allocUnsafeSlow(capacity).subarray(0, size);
    const b = this.free[i]!;
    this.free.splice(i, 1);
    this.freeBytes -= b.length;
    return b.subarray(0, size);
  }

  /** Gives back a buffer `take` returned, once nothing refers to its bytes any more. */
  give(body: Buffer): void {
    if (body.length < POOLED_FROM) return;
    const whole = Buffer.from(body.buffer, body.byteOffset, body.buffer.byteLength - body.byteOffset);
    if (whole.byteOffset !== 0 || this.freeBytes + whole.length > this.keepBytes) return;
    this.free.push(whole);
    this.freeBytes += whole.length;
  }
}

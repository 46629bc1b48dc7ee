/**
 * The seam between changed-block tracking (jobs/image/dirty-bitmaps.ts) and
 * the qcow2 disks whose persistent dirty bitmaps it rotates: a qcow2 file no
 * qemu holds (qemu-img, qemu-nbd: nbd-input.ts) and the disk of a running VM
 * (QMP: qmp-disk.ts).
 */
import type { ImageInput } from './image-input.js';

/** A persistent dirty bitmap of a disk. */
export interface DiskBitmap {
  readonly name: string;
  /** It records writes (qemu's `auto` flag, QMP's `recording`). */
  readonly recording: boolean;
  /** qemu ended without saving it (the file's `in-use` flag, QMP's `inconsistent`): it may have missed writes. */
  readonly inconsistent: boolean;
}

/** A disk whose dirty bitmaps a backup reads and rotates. */
export interface DirtyBitmapDisk {
  /** Names the disk in messages (the source as given). */
  readonly name: string;
  /** Its virtual size in bytes and its dirty bitmaps. */
  inspect(): Promise<{ readonly virtualSize: number; readonly bitmaps: readonly DiskBitmap[] }>;
  /** Removes a persistent dirty bitmap (an error when it cannot). */
  removeBitmap(name: string): Promise<void>;
  /**
   * Adds the enabled persistent bitmap `add` (unless undefined) and opens
   * the disk as it is at that instant: writes made after it are in the new
   * bitmap and never in what the input reads. With `since`, the input's
   * `dirtyRanges` are the clusters that bitmap marked at that instant.
   * Throws BitmapAddError, having changed nothing, when `add` cannot be
   * added; anything it set up is removed when it fails otherwise, and when
   * the input closes.
   */
  open(add: string | undefined, since: string | undefined, signal?: AbortSignal): Promise<ImageInput>;
}

/** `DirtyBitmapDisk.open` could not add the new bitmap; the disk is as it was. */
export class BitmapAddError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BitmapAddError';
  }
}

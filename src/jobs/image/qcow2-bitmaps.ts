/**
 * Changed-block tracking for qcow2 disks with qemu's persistent dirty
 * bitmaps: each backup adds a bitmap at the instant it reads the disk as
 * of, reads only what the parent's bitmap marks, and removes the parent's
 * bitmap once its own snapshot is saved. The disk is a qcow2 file no qemu
 * holds, or a running VM's disk through QMP (sources/image/dirty-bitmap-disk.ts).
 *
 *   start(disk, repository, parent):
 *     since = the parent's bitmap, if it is still on the disk, recording,
 *             consistent (qemu did not crash or get killed with the file
 *             open) and named for this repository, and the disk kept its
 *             size; else none (a warning says why: the backup reads every
 *             block, the changed-block cache saving the hashing)
 *     open  the disk, adding holdfast-<repository id>-<generation> at the
 *           instant it is read as of, so that every later write is marked
 *           (a generation above any the disk holds or a snapshot names)
 *   backup (image-backup.ts): reads the clusters `since` marks, takes every
 *     other block from the parent; the snapshot records the new bitmap
 *   commit(): remove every other bitmap of this repository from the disk
 *   abort():  remove the new bitmap (the parent's stays, for the next try)
 *
 * `withBitmapRotation` runs one backup through those steps, for the CLI and
 * the agent alike; the input is closed before the bitmaps change.
 *
 * A bitmap that cannot be added (a read-only file, a raw disk) gives a full
 * backup with a warning, never a wrong one.
 */
import type { ImageInfo } from '../../repo/image-info.js';
import type { SnapshotEntry } from '../../repo/store.js';
import type { ImageInput } from '../../sources/image/image-input.js';
import { BitmapAddError, type DirtyBitmapDisk, type DiskBitmap } from '../../sources/image/dirty-bitmap-disk.js';

/** The bitmaps snapshots record (the `image.bitmap` of their headers). */
export function bitmapsOf(snapshots: readonly SnapshotEntry[]): string[] {
  return snapshots.flatMap((e) => (e.snapshot.image?.bitmap !== undefined ? [e.snapshot.image.bitmap] : []));
}

/** The name prefix of one repository's bitmaps. */
export function bitmapPrefix(repositoryId: string): string {
  return `holdfast-${repositoryId.slice(0, 16)}-`;
}

/** Why the parent's bitmap cannot say what changed, or undefined when it can. */
function unusable(parent: ImageInfo, prefix: string, found: DiskBitmap | undefined, virtualSize: number): string | undefined {
  const name = parent.bitmap!;
  if (!name.startsWith(prefix)) return `the parent's dirty bitmap ${name} belongs to another repository`;
  if (!found) return `the parent's dirty bitmap ${name} is no longer in the file`;
  if (found.inconsistent) return `the parent's dirty bitmap ${name} is marked in-use (qemu ended without closing the file): it may have missed writes`;
  if (!found.recording) return `the parent's dirty bitmap ${name} is disabled: it did not record writes`;
  if (virtualSize !== parent.size) return `the disk was resized from ${parent.size} to ${virtualSize} bytes`;
  return undefined;
}

/** The bitmaps an image backup records and reads (ImageBackupOptions.qcow2). */
export interface BackupBitmaps {
  /** The bitmap added at the instant the disk is read as of. */
  readonly bitmap?: string;
  /** The parent's bitmap whose dirty clusters are read. */
  readonly since?: string;
}

/**
 * One backup of `disk` with its bitmaps rotated (see the module comment):
 * chooses the bitmaps, opens the disk adding the new one (without it, with
 * a warning, when it cannot be added), runs `work` on it, closes it, then
 * removes the older bitmaps when `work` succeeded, or the one added when it
 * failed. `parent`: the parent snapshot's image field, if any; `recorded`:
 * the bitmaps the repository's snapshots name (their headers' `image.bitmap`);
 * `openError` turns a failure to open into the caller's error. The bitmaps
 * are listed once, just before the disk is opened: those removed at the end
 * are the ones found then (one started meanwhile is not this backup's).
 *
 * A name is never given twice: the new bitmap's generation is above every
 * one the disk holds and every one a snapshot records. A bitmap of the same
 * name added later, after the first was removed, would say "written since"
 * from a later instant than the snapshot that names it, and the backup
 * whose parent that is would miss what was written between (two backups of
 * one disk at once, or one killed after adding its bitmap, did exactly that).
 */
export async function withBitmapRotation<T>(
  disk: DirtyBitmapDisk, repositoryId: string, parent: ImageInfo | undefined, recorded: Iterable<string>, onWarning: (m: string) => void,
  openError: (e: unknown) => Error, work: (input: ImageInput, bitmaps: BackupBitmaps) => Promise<T>,
): Promise<T> {
  const prefix = bitmapPrefix(repositoryId);
  const state = await disk.inspect().catch((e: unknown) => {
    throw openError(e);
  });
  let since: string | undefined;
  if (parent?.format === 'qcow2' && parent.bitmap !== undefined) {
    const why = unusable(parent, prefix, state.bitmaps.find((b) => b.name === parent.bitmap), state.virtualSize);
    if (why) onWarning(`${why}; reading every block of ${disk.name}`);
    else since = parent.bitmap;
  } else if (parent) {
    onWarning(`the parent snapshot of ${disk.name} has no dirty bitmap; reading every block`);
  }
  let top = 0;
  for (const name of [...recorded, ...(parent?.bitmap !== undefined ? [parent.bitmap] : []), ...state.bitmaps.map((b) => b.name)]) {
    const g = name.startsWith(prefix) ? Number(name.slice(prefix.length)) : 0;
    if (Number.isSafeInteger(g) && g > top) top = g;
  }
  let bitmap: string | undefined = `${prefix}${top + 1}`;
  let input: ImageInput;
  try {
    input = await disk.open(bitmap, since);
  } catch (e) {
    if (!(e instanceof BitmapAddError)) throw openError(e);
    onWarning(`cannot add the dirty bitmap ${bitmap} to ${disk.name} (${e.message}); this backup and the next read every block`);
    bitmap = undefined;
    since = undefined;
    input = await disk.open(undefined, undefined).catch((e2: unknown) => {
      throw openError(e2);
    });
  }
  const added = bitmap;
  let result: T;
  try {
    result = await work(input, { ...(added !== undefined ? { bitmap: added } : {}), ...(since !== undefined ? { since } : {}) });
  } catch (e) {
    // The backup's own error is the one to tell; what is left is removed by the next run.
    await input.close().catch(() => undefined);
    if (added !== undefined) await disk.removeBitmap(added).catch(() => undefined);
    throw e;
  }
  // The snapshot is saved: a source that cannot be closed cleanly leaves its leftovers to the next run, not a failure.
  await input.close().catch((e: unknown) => onWarning(`${disk.name}: ${(e as Error).message}; the next backup removes what this one left`));
  if (added === undefined) return result;
  for (const b of state.bitmaps) {
    if (!b.name.startsWith(prefix) || b.name === added) continue;
    await disk.removeBitmap(b.name).catch((e: unknown) => onWarning(`cannot remove the old dirty bitmap ${b.name} from ${disk.name}: ${(e as Error).message}`));
  }
  return result;
}

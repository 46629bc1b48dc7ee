/**
 * Changed-block tracking for qcow2 disks with qemu's persistent dirty
 * bitmaps: each backup adds a bitmap before it reads the disk, reads only
 * what the parent's bitmap marks, and removes the parent's bitmap once its
 * own snapshot is saved.
 *
 *   start(file, repository, parent):
 *     since = the parent's bitmap, if it is still in the file, enabled
 *             ("auto"), consistent (not "in-use": qemu did not crash or get
 *             killed with the file open) and named for this repository, and
 *             the disk kept its size; else none (a warning says why: the
 *             backup reads every block, the changed-block cache saving the
 *             hashing)
 *     add   holdfast-<repository id>-<generation+1>, enabled — BEFORE the
 *           read, so that writes during and after it are marked
 *   backup (image-backup.ts): reads the clusters `since` marks, takes every
 *     other block from the parent; the snapshot records the new bitmap
 *   commit(): remove every other bitmap of this repository from the file
 *   abort():  remove the new bitmap (the parent's stays, for the next try)
 *
 * `withBitmapRotation` runs one backup through those steps, for the CLI and
 * the agent alike; the input (a private qemu-nbd holding the file) is closed
 * before the bitmaps change.
 *
 * A bitmap that cannot be added (a read-only file, a VM holding it open)
 * gives a full backup with a warning, never a wrong one.
 */
import type { ImageInfo } from '../../repo/image-info.js';
import type { ImageInput } from '../../sources/image/image-input.js';
import { addBitmap, qcow2Info, removeBitmap } from '../../sources/image/qemu.js';

/** The name prefix of one repository's bitmaps. */
export function bitmapPrefix(repositoryId: string): string {
  return `holdfast-${repositoryId.slice(0, 16)}-`;
}

/** The bitmaps of one backup of a qcow2 file. */
interface BitmapRotation {
  /** The bitmap added before the read (to record in the snapshot); undefined when none could be added. */
  readonly bitmap?: string;
  /** The parent's bitmap to read the dirty clusters of; undefined: read every block. */
  readonly since?: string;
  /** The snapshot is saved: removes this repository's other bitmaps; returns what could not be removed. */
  commit(): Promise<string[]>;
  /** The backup failed: removes the bitmap added; idempotent. */
  abort(): Promise<void>;
}

/** Why the parent's bitmap cannot say what changed, or undefined when it can. */
function unusable(parent: ImageInfo, prefix: string, found: { flags: readonly string[] } | undefined, virtualSize: number): string | undefined {
  const name = parent.bitmap!;
  if (!name.startsWith(prefix)) return `the parent's dirty bitmap ${name} belongs to another repository`;
  if (!found) return `the parent's dirty bitmap ${name} is no longer in the file`;
  if (found.flags.includes('in-use')) return `the parent's dirty bitmap ${name} is marked in-use (qemu ended without closing the file): it may have missed writes`;
  if (!found.flags.includes('auto')) return `the parent's dirty bitmap ${name} is disabled: it did not record writes`;
  if (virtualSize !== parent.size) return `the disk was resized from ${parent.size} to ${virtualSize} bytes`;
  return undefined;
}

/**
 * Chooses the bitmap to read and adds the next one (see the module
 * comment). `parent` is the parent snapshot's image field, if any;
 * `onWarning` hears why a full read is needed.
 */
async function startBitmapRotation(file: string, repositoryId: string, parent: ImageInfo | undefined, onWarning: (m: string) => void): Promise<BitmapRotation> {
  const prefix = bitmapPrefix(repositoryId);
  const info = await qcow2Info(file);
  let since: string | undefined;
  if (parent?.format === 'qcow2' && parent.bitmap !== undefined) {
    const why = unusable(parent, prefix, info.bitmaps.find((b) => b.name === parent.bitmap), info.virtualSize);
    if (why) onWarning(`${why}; reading every block of ${file}`);
    else since = parent.bitmap;
  } else if (parent) {
    onWarning(`the parent snapshot of ${file} has no dirty bitmap; reading every block`);
  }
  // Generations count on from the parent's bitmap, usable or not.
  const generation = parent?.bitmap?.startsWith(prefix) ? Number(parent.bitmap.slice(prefix.length)) + 1 : 1;
  const bitmap = `${prefix}${Number.isSafeInteger(generation) && generation > 0 ? generation : 1}`;
  const noBitmap = (why: string): BitmapRotation => {
    onWarning(`cannot add the dirty bitmap ${bitmap} to ${file} (${why}); this backup and the next read every block`);
    return { commit: async () => [], abort: async () => undefined };
  };
  try {
    // A leftover of a backup that failed: ours, and not the parent's.
    if (info.bitmaps.some((b) => b.name === bitmap)) await removeBitmap(file, bitmap);
    await addBitmap(file, bitmap);
  } catch (e) {
    return noBitmap((e as Error).message);
  }
  let aborted = false;
  return {
    bitmap,
    ...(since !== undefined ? { since } : {}),
    commit: async () => {
      const failed: string[] = [];
      for (const b of (await qcow2Info(file)).bitmaps) {
        if (!b.name.startsWith(prefix) || b.name === bitmap) continue;
        await removeBitmap(file, b.name).catch((e: unknown) => failed.push(`cannot remove the old dirty bitmap ${b.name} from ${file}: ${(e as Error).message}`));
      }
      return failed;
    },
    abort: async () => {
      if (aborted) return;
      aborted = true;
      await removeBitmap(file, bitmap).catch(() => undefined);
    },
  };
}

/** The bitmaps an image backup records and reads (ImageBackupOptions.qcow2). */
export interface BackupBitmaps {
  /** The bitmap added before the read. */
  readonly bitmap?: string;
  /** The parent's bitmap whose dirty clusters are read. */
  readonly since?: string;
}

/**
 * One backup of the qcow2 file `file` with its bitmaps rotated (see the
 * module comment): chooses and adds the bitmaps, opens the file to read what
 * the parent's bitmap marks (`open(since)`), runs `work` on it, closes it
 * (qemu-nbd holds the file until then), then removes the older bitmaps when
 * `work` succeeded, or the one added when it failed. `parent`: the parent
 * snapshot's image field, if any.
 */
export async function withBitmapRotation<T>(
  file: string, repositoryId: string, parent: ImageInfo | undefined, onWarning: (m: string) => void,
  open: (since: string | undefined) => Promise<ImageInput>, work: (input: ImageInput, bitmaps: BackupBitmaps) => Promise<T>,
): Promise<T> {
  const rotation = await startBitmapRotation(file, repositoryId, parent, onWarning);
  let input: ImageInput | undefined;
  let result: T;
  try {
    input = await open(rotation.since);
    result = await work(input, { ...(rotation.bitmap !== undefined ? { bitmap: rotation.bitmap } : {}), ...(rotation.since !== undefined ? { since: rotation.since } : {}) });
  } catch (e) {
    await input?.close();
    await rotation.abort();
    throw e;
  }
  await input.close();
  for (const m of await rotation.commit()) onWarning(m);
  return result;
}

/**
 * `restore-image --format qcow2`: an image snapshot written as a qcow2 file.
 *
 *   restore the raw image, sparse, to a temporary file beside OUT
 *     (ImageRestore: only stored blocks are written)
 *   qemu-img convert -f raw -O qcow2 TMP OUT   (zero blocks stay unallocated)
 *   --verify: the raw file is checked block by block against the snapshot,
 *     then `qemu-img compare` checks OUT against it
 *   the temporary file is removed however this ends
 *
 * Converting was measured against writing into a new qcow2 through
 * qemu-nbd (docs/decisions.md, "qcow2 disks").
 */
import { randomBytes } from 'node:crypto';
import { stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { compareImages, convertRawToQcow2 } from '../../sources/image/qemu.js';
import { ImageRestore, RestoreTargetError, type ImageRestoreOptions, type ImageRestoreResult } from './image-restore.js';

/** Restores `snapshot` to the qcow2 file `opts.target`. */
export async function restoreQcow2(repo: Repository, snapshot: Snapshot, opts: ImageRestoreOptions): Promise<ImageRestoreResult> {
  const out = opts.target;
  if (out === '-') throw new RestoreTargetError('a qcow2 file cannot be written to stdout: give a file name with --to; nothing was written');
  const st = await stat(out).catch(() => undefined);
  if (st && !st.isFile()) throw new RestoreTargetError(`${out} is not a regular file: --format qcow2 writes a qcow2 file; nothing was written`);
  if (st && st.size > 0 && !opts.overwrite) throw new RestoreTargetError(`${out} exists and holds ${st.size} bytes; pass --force to overwrite it; nothing was written`);
  const tmp = join(dirname(out), `.${basename(out)}.holdfast-raw-${randomBytes(6).toString('hex')}`);
  try {
    const result = await new ImageRestore(repo, snapshot, { ...opts, target: tmp, overwrite: false }).run();
    opts.signal?.throwIfAborted();
    await convertRawToQcow2(tmp, out);
    if (opts.verify && result.verifyFailed?.length === 0) {
      const diff = await compareImages(tmp, 'raw', out, 'qcow2');
      if (diff) return { ...result, verifyFailed: [Math.floor(diff / snapshot.image!.blockSize)] };
    }
    return result;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

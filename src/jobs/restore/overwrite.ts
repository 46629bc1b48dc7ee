/**
 * What a restore does with something already at a node's place in the
 * target (restic's `--overwrite`), for the snapshot and the image restorers:
 *
 *   always      (default) replace it: remove it and create the node afresh
 *   if-changed  keep a file of the same size and mtime (and one name), a symlink with the
 *               same target, a FIFO, a device with the same number (their
 *               owner, mode and mtime are set again); replace anything else
 *   never       leave it as it is
 *
 * A folder is never replaced by anything but merged into: what a node needs
 * the place of a folder for is an error, and so is a non-folder where a
 * folder goes with `never`. Replacing removes (unlink) before creating, so
 * a restore never writes through a symlink, into a FIFO, or into a file
 * that has other names. Restoring twice into one target gives the same tree.
 */
import { lstatSync, readlinkSync, unlinkSync, type BigIntStats } from 'node:fs';
import { floorMicros } from '../../sources/posix.js';

export const OVERWRITE_CHOICES = ['always', 'if-changed', 'never'] as const;
export type Overwrite = (typeof OVERWRITE_CHOICES)[number];

/** The fields of a snapshot or image node that decide whether what is there is it. */
export interface NodeLike {
  readonly type: 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';
  readonly size: number;
  readonly mtime: bigint;
  readonly target?: Buffer;
  readonly rdev?: bigint;
  /** Its number of names (hard links) in the snapshot or image. */
  readonly links?: number;
}

/**
 * `create`: nothing is there (any more), create the node; `keep`: it is there
 * unchanged, only set its owner, mode and mtime; `skip`: leave it alone.
 */
export type Existing = 'create' | 'keep' | 'skip';

/** Looks at `dest` and, when `how` says so, removes what is there. */
export function prepareExisting(dest: Buffer, node: NodeLike, how: Overwrite): Existing {
  let st: BigIntStats;
  try {
    st = lstatSync(dest, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'create';
    throw e;
  }
  if (node.type === 'dir') {
    if (st.isDirectory()) return 'create'; // merged into
    if (how === 'never') throw new Error('a non-directory is in the way (--overwrite never)');
    unlinkSync(dest);
    return 'create';
  }
  if (st.isDirectory()) throw new Error('a directory is in the way');
  if (how === 'never') return 'skip';
  if (how === 'if-changed' && unchanged(dest, st, node)) return 'keep';
  unlinkSync(dest);
  return 'create';
}

function unchanged(dest: Buffer, st: BigIntStats, node: NodeLike): boolean {
  switch (node.type) {
    // A file with other names, in the target or in the snapshot, is replaced: its metadata would be set on
    // every name (one may be a hard link put there to a file elsewhere), and the snapshot's names are linked again.
    case 'file': return st.isFile() && st.nlink === 1n && (node.links ?? 1) === 1 && st.size === BigInt(node.size) && st.mtimeNs === floorMicros(node.mtime);
    case 'symlink': return st.isSymbolicLink() && node.target !== undefined && readlinkSync(dest, { encoding: 'buffer' }).equals(node.target);
    case 'fifo': return st.isFIFO();
    case 'chardev': return st.isCharacterDevice() && st.rdev === node.rdev;
    case 'blockdev': return st.isBlockDevice() && st.rdev === node.rdev;
    default: return false;
  }
}

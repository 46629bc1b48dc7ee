/**
 * btrfs read-only subvolume snapshots: `btrfs subvolume snapshot -r` of the
 * subvolume holding a path, made inside that subvolume's root folder as
 * `.holdfast-snapshot-HOST-PID-TIME` (a snapshot does not hold itself, nor
 * any subvolume below its own: those are empty folders in it). No freeze is
 * needed, and none may be made: the snapshot is atomic, and on a frozen
 * btrfs it would wait for the thaw.
 */
import { readdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { ownerOf, ownerRunning, runTool, SNAPSHOT_PREFIX } from './tools.js';

/** statfs(2)'s f_type of btrfs. */
const BTRFS_SUPER_MAGIC = 0x9123683e;
/** The inode number of every subvolume's root folder (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INODE = 256n;

/** Whether the file system holding the folder `dir` is btrfs. */
export async function onBtrfs(dir: string): Promise<boolean> {
  return (await statfs(dir)).type === BTRFS_SUPER_MAGIC;
}

/** The root folder of the subvolume holding the folder `dir` (a real path on btrfs): the nearest folder up that is one. */
export async function subvolumeOf(dir: string): Promise<string> {
  const dev = (await stat(dir, { bigint: true })).dev;
  for (let d = dir; ; d = join(d, '..')) {
    const st = await stat(d, { bigint: true });
    if (st.dev !== dev) break;
    if (st.ino === SUBVOLUME_ROOT_INODE) return d;
    if (d === '/') break;
  }
  throw new Error(`found no btrfs subvolume root above ${dir}`);
}

/** The snapshots this host's backups left in a subvolume's root folder whose owner is no longer running. */
export async function btrfsLeftovers(root: string, host: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(root)) {
    if (!name.startsWith(`.${SNAPSHOT_PREFIX}`)) continue;
    const owner = ownerOf(name, host);
    if (owner && !(await ownerRunning(owner))) out.push(join(root, name));
  }
  return out;
}

/** Makes a read-only snapshot of the subvolume at `root` named `name` inside it; returns its path. */
export async function createBtrfsSnapshot(root: string, name: string): Promise<string> {
  const at = join(root, `.${name}`);
  await runTool(['btrfs', 'subvolume', 'snapshot', '-r', root, at]);
  return at;
}

/** Deletes a snapshot subvolume. */
export async function deleteBtrfsSnapshot(path: string): Promise<void> {
  await runTool(['btrfs', 'subvolume', 'delete', path]);
}

/**
 * Point-in-time views of the paths a file backup reads (`backup --fs-snapshot
 * btrfs|lvm|auto [--freeze]`):
 *
 *   for each path: find its volume (the btrfs subvolume, or the LVM logical
 *                  volume, holding it); one snapshot per volume
 *   per volume:    remove the snapshots backups of this host left there when
 *                  killed (their owner, named in the snapshot's name, is not
 *                  running), then snapshot it (frozen around the moment, for
 *                  LVM with `freeze`)
 *   work:          runs with a `PathView` per path: where the path's content
 *                  is in the snapshot, and the snapshot's device number with
 *                  the original's, so that the backup reads the view and
 *                  records the original path and device (archiver.ts)
 *   release:       every snapshot removed, however the work ended (a failure,
 *                  SIGINT/SIGTERM through the caller's abort); one that cannot
 *                  be removed is a warning, and the next run removes it
 *
 * With `auto`, a path on neither is read in place with a warning; with
 * `btrfs` or `lvm` it is a `SnapshotFailedError` and nothing is read.
 */
import { lstat, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { readMounts } from '../image/block-devices.js';
import { btrfsLeftovers, createBtrfsSnapshot, deleteBtrfsSnapshot, onBtrfs, subvolumeOf } from './btrfs.js';
import { DEFAULT_FREEZE_BOUND_MS, whileFrozen } from './freeze.js';
import { logicalVolumeOf, lvmLeftovers, mountLvmSnapshot, removeLvmSnapshot, takeLvmSnapshot, type LogicalVolume } from './lvm.js';
import { snapshotName, SnapshotFailedError } from './tools.js';

/** Where LVM snapshots are mounted while a backup reads them, by the CLI and the agent alike (each finds the other's leftovers). */
export const FS_SNAPSHOT_DIR = '/run/holdfast/fs-snapshots';

/** Which snapshots to take: btrfs subvolume snapshots, LVM snapshots, or whichever fits each path. */
export type SnapshotKind = 'btrfs' | 'lvm' | 'auto';

/** Where a backed-up path is read from while its snapshot exists. */
export interface PathView {
  /** The path as the backup records it (absolute). */
  readonly path: string;
  /** The same file or folder in the snapshot. */
  readonly view: string;
  /** The snapshot's device number, and the original's that is recorded in its place. */
  readonly device: { readonly view: bigint; readonly original: bigint };
}

export interface FsSnapshotOptions {
  readonly kind: SnapshotKind;
  /** This host's name, in the snapshots' names (leftovers are only looked for among this host's). */
  readonly host: string;
  /** A private folder where LVM snapshots are mounted (e.g. /run/holdfast). */
  readonly stateDir: string;
  /** Freeze the file system while an LVM snapshot is taken (`fsfreeze`). */
  readonly freeze?: boolean;
  /** The longest a freeze lasts (default 10 s). */
  readonly freezeBoundMs?: number;
  /** An LVM snapshot's size: `lvcreate --size`, or `--extents` with a `%` (default 10%ORIGIN). */
  readonly lvmSize?: string;
  /** A path read in place, a snapshot left behind, a freeze cut short. */
  readonly onWarning: (message: string) => void;
  /** A leftover snapshot removed. */
  readonly onNote?: (message: string) => void;
}

/** One snapshot taken: its root in the view, the volume's root it stands for, and how to remove it. */
interface Taken {
  readonly root: string;
  readonly origin: string;
  readonly device: PathView['device'];
  readonly release: () => Promise<void>;
  readonly what: string;
}

/** Runs `work` with a view of each path (see the module comment); returns what it returns. */
export async function withFsSnapshots<T>(paths: readonly string[], opts: FsSnapshotOptions, work: (views: readonly PathView[]) => Promise<T>): Promise<T> {
  const taken = new Map<string, Taken>();
  try {
    const views: PathView[] = [];
    for (const path of paths) {
      const real = await realLocation(path);
      const t = await snapshotFor(real, path, opts, taken);
      if (t) views.push({ path, view: join(t.root, relative(t.origin, real.path)), device: t.device });
    }
    return await work(views);
  } finally {
    for (const t of [...taken.values()].reverse()) {
      try {
        await t.release();
      } catch (e) {
        opts.onWarning(`could not remove ${t.what}: ${(e as Error).message}; the next backup with --fs-snapshot removes it`);
      }
    }
  }
}

/** A path with its folders' symlinks resolved (not the last name's: a symlink is backed up as one), and the folder whose file system holds it. */
async function realLocation(path: string): Promise<{ path: string; dir: string }> {
  const real = path === '/' ? '/' : join(await realpath(dirname(path)), basename(path));
  return { path: real, dir: (await lstat(real)).isDirectory() ? real : dirname(real) };
}

/** The snapshot of the volume holding `real`, taken now unless `taken` has it; undefined for a path read in place (auto). */
async function snapshotFor(real: { path: string; dir: string }, path: string, opts: FsSnapshotOptions, taken: Map<string, Taken>): Promise<Taken | undefined> {
  const name = snapshotName(opts.host, process.pid, Date.now());
  if (opts.kind !== 'lvm' && await onBtrfs(real.dir)) {
    const root = await subvolumeOf(real.dir);
    const key = `btrfs:${root}`;
    const had = taken.get(key);
    if (had) return had;
    if (opts.freeze) opts.onWarning(`${path}: a btrfs snapshot is atomic and needs no freeze (one taken on a frozen btrfs waits for the thaw): not frozen`);
    for (const left of await btrfsLeftovers(root, opts.host)) await removeLeftover(left, () => deleteBtrfsSnapshot(left), opts);
    const at = await createBtrfsSnapshot(root, name).catch((e: unknown) => {
      throw new SnapshotFailedError(`cannot snapshot the btrfs subvolume ${root} of ${path}: ${(e as Error).message}; nothing was backed up`);
    });
    const t: Taken = { root: at, origin: root, device: await devices(at, root), release: () => deleteBtrfsSnapshot(at), what: `the btrfs snapshot ${at}` };
    taken.set(key, t);
    return t;
  }
  const vol = opts.kind === 'btrfs' ? undefined : await logicalVolumeOf(real.dir);
  if (vol) return lvmSnapshot(vol, name, path, opts, taken);
  const fs = await fsTypeOf(real.dir);
  if (opts.kind === 'auto') {
    opts.onWarning(`${path}: no snapshot (its file system, ${fs}, is neither btrfs nor on an LVM logical volume); read in place`);
    return undefined;
  }
  const where = opts.kind === 'btrfs' ? `on ${fs}, not btrfs` : `on ${fs}, not on an LVM logical volume`;
  throw new SnapshotFailedError(`${path} is ${where}: --fs-snapshot ${opts.kind} cannot snapshot it (--fs-snapshot auto reads such a path in place); nothing was backed up`);
}

async function lvmSnapshot(vol: LogicalVolume, name: string, path: string, opts: FsSnapshotOptions, taken: Map<string, Taken>): Promise<Taken> {
  const key = `lvm:${vol.vg}/${vol.lv}`;
  const had = taken.get(key);
  if (had) return had;
  for (const left of await lvmLeftovers(vol.vg, opts.host)) await removeLeftover(`${vol.vg}/${left}`, () => removeLvmSnapshot(vol, left, join(opts.stateDir, left)), opts);
  const take = (): Promise<void> => takeLvmSnapshot(vol, name, opts.lvmSize);
  try {
    await (opts.freeze ? whileFrozen(vol.mountPoint, opts.freezeBoundMs ?? DEFAULT_FREEZE_BOUND_MS, take, opts.onWarning) : take());
  } catch (e) {
    throw new SnapshotFailedError(`cannot snapshot the logical volume ${vol.vg}/${vol.lv} of ${path}: ${(e as Error).message}; nothing was backed up`);
  }
  const at = await mountLvmSnapshot(vol, name, opts.stateDir).catch((e: unknown) => {
    throw new SnapshotFailedError(`cannot mount the snapshot ${vol.vg}/${name} of ${path}: ${(e as Error).message}; nothing was backed up`);
  });
  const t: Taken = {
    root: at, origin: vol.mountPoint, device: await devices(at, vol.mountPoint),
    release: () => removeLvmSnapshot(vol, name, at), what: `the LVM snapshot ${vol.vg}/${name} (mounted at ${at})`,
  };
  taken.set(key, t);
  return t;
}

/** Removes a snapshot a killed backup left; one that cannot be removed is a warning (it must not stop the backups that follow). */
async function removeLeftover(what: string, remove: () => Promise<void>, opts: FsSnapshotOptions): Promise<void> {
  try {
    await remove();
    opts.onNote?.(`removed ${what}, a snapshot left by a backup that was killed`);
  } catch (e) {
    opts.onWarning(`could not remove ${what}, a snapshot left by a backup that was killed: ${(e as Error).message}`);
  }
}

async function devices(view: string, original: string): Promise<PathView['device']> {
  return { view: (await stat(view, { bigint: true })).dev, original: (await stat(original, { bigint: true })).dev };
}

/** The type of the file system holding `dir`, as /proc/self/mountinfo names it, for messages. */
async function fsTypeOf(dir: string): Promise<string> {
  let best = { mountPoint: '', fsType: 'unknown' };
  for (const m of await readMounts()) {
    const above = m.mountPoint === '/' || dir === m.mountPoint || dir.startsWith(`${m.mountPoint}/`);
    if (above && m.mountPoint.length >= best.mountPoint.length) best = m;
  }
  return best.fsType;
}

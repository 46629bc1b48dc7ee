/**
 * LVM snapshots: `lvcreate --snapshot` of the logical volume holding a
 * path, mounted read-only under a private folder (`stateDir/NAME`), then
 * unmounted and removed. The volume is found from the path's device: a
 * device-mapper device whose uuid starts with `LVM-`, named `VG-LV` with
 * each `-` of a name doubled. The snapshot is named
 * `holdfast-snapshot-HOST-PID-TIME` in the volume group, so the next run
 * finds one a killed backup left (`lvs`) and removes it. An ext2/3/4 or XFS
 * file system should be frozen while the snapshot is taken (`--freeze`).
 */
import { mkdir, readFile, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readMounts } from '../image/block-devices.js';
import { splitRdev } from '../posix.js';
import { ownerOf, ownerRunning, runTool, SNAPSHOT_PREFIX } from './tools.js';

/** A logical volume and where it is mounted. */
export interface LogicalVolume {
  readonly vg: string;
  readonly lv: string;
  /** Where the file system holding the path is mounted. */
  readonly mountPoint: string;
  readonly fsType: string;
}

/** How much of the origin's size a snapshot may take for the blocks written meanwhile, by default. */
export const DEFAULT_LVM_SNAPSHOT_SIZE = '10%ORIGIN';

/** Splits a device-mapper name of LVM ("VG-LV", a `-` within a name doubled) into its volume group and volume. */
export function splitDmName(name: string): { vg: string; lv: string } | undefined {
  for (let i = 0; i < name.length; i++) {
    if (name[i] !== '-') continue;
    if (name[i + 1] === '-') {
      i++;
      continue;
    }
    const vg = name.slice(0, i).replace(/--/g, '-');
    const lv = name.slice(i + 1).replace(/--/g, '-');
    return vg && lv ? { vg, lv } : undefined;
  }
  return undefined;
}

/**
 * The logical volume holding the folder `dir` (a real path), or undefined
 * when its device is not one (not device-mapper, or not LVM's).
 */
export async function logicalVolumeOf(dir: string): Promise<LogicalVolume | undefined> {
  const { major, minor } = splitRdev((await stat(dir, { bigint: true })).dev);
  const sys = `/sys/dev/block/${major}:${minor}/dm`;
  let uuid: string;
  let name: string;
  try {
    uuid = (await readFile(`${sys}/uuid`, 'utf8')).trim();
    name = (await readFile(`${sys}/name`, 'utf8')).trim();
  } catch {
    return undefined;
  }
  if (!uuid.startsWith('LVM-')) return undefined;
  const vl = splitDmName(name);
  const mount = mountHolding(await readMounts(), `${major}:${minor}`, dir);
  return vl && mount ? { ...vl, ...mount } : undefined;
}

/** The mount of device `dev` ("major:minor") whose mount point is the longest one above `dir`. */
export function mountHolding(mounts: readonly { dev: string; mountPoint: string; fsType: string }[], dev: string, dir: string): { mountPoint: string; fsType: string } | undefined {
  let best: { mountPoint: string; fsType: string } | undefined;
  for (const m of mounts) {
    if (m.dev !== dev) continue;
    const above = m.mountPoint === '/' || dir === m.mountPoint || dir.startsWith(`${m.mountPoint}/`);
    if (above && (!best || m.mountPoint.length > best.mountPoint.length)) best = { mountPoint: m.mountPoint, fsType: m.fsType };
  }
  return best;
}

/** The commands that make, mount, unmount and remove snapshot `name` of `vol` mounted at `at`. */
export function lvmCommands(vol: LogicalVolume, name: string, at: string, size = DEFAULT_LVM_SNAPSHOT_SIZE): { create: string[]; mount: string[]; unmount: string[]; remove: string[] } {
  const extents = size.includes('%');
  // XFS refuses a second mount of the same uuid; `nouuid` lets the snapshot mount beside its origin.
  const options = vol.fsType === 'xfs' ? 'ro,nouuid' : 'ro';
  return {
    create: ['lvcreate', '--snapshot', '--name', name, extents ? '--extents' : '--size', size, `${vol.vg}/${vol.lv}`],
    mount: ['mount', '-t', vol.fsType, '-o', options, `/dev/${vol.vg}/${name}`, at],
    unmount: ['umount', at],
    remove: ['lvremove', '--yes', `${vol.vg}/${name}`],
  };
}

/** Makes snapshot `name` of `vol` (`lvcreate --snapshot`: the moment a freeze must surround). */
export async function takeLvmSnapshot(vol: LogicalVolume, name: string, size?: string): Promise<void> {
  await runTool(lvmCommands(vol, name, '', size).create);
}

/** Mounts snapshot `name` of `vol` read-only at `stateDir/name` and returns where; removes the snapshot when it cannot. */
export async function mountLvmSnapshot(vol: LogicalVolume, name: string, stateDir: string): Promise<string> {
  const at = join(stateDir, name);
  const c = lvmCommands(vol, name, at);
  try {
    await mkdir(at, { recursive: true, mode: 0o700 });
    await runTool(c.mount);
  } catch (e) {
    await runTool(c.remove).catch(() => undefined);
    await rmdir(at).catch(() => undefined);
    throw e;
  }
  return at;
}

/** Unmounts and removes snapshot `name` of `vol` mounted at `at` (each step is tried). */
export async function removeLvmSnapshot(vol: Pick<LogicalVolume, 'vg'>, name: string, at: string): Promise<void> {
  const c = lvmCommands({ vg: vol.vg, lv: '', mountPoint: '', fsType: '' }, name, at);
  const unmounted = await runTool(c.unmount).then(() => undefined, (e: unknown) => e as Error);
  const removed = await runTool(c.remove).then(() => undefined, (e: unknown) => e as Error);
  await rmdir(at).catch(() => undefined);
  // A leftover's mount is usually gone (a reboot): only its removal must succeed.
  if (removed) throw unmounted ?? removed;
}

/** The snapshots of volume group `vg` this host's backups left, whose owner is no longer running. */
export async function lvmLeftovers(vg: string, host: string): Promise<string[]> {
  const out: string[] = [];
  const listed = await runTool(['lvs', '--noheadings', '-o', 'lv_name', vg]);
  for (const line of listed.split('\n')) {
    const name = line.trim();
    if (!name.startsWith(SNAPSHOT_PREFIX)) continue;
    const owner = ownerOf(name, host);
    if (owner && !(await ownerRunning(owner))) out.push(name);
  }
  return out;
}

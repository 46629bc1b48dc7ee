/**
 * What Linux says about block devices and mounts, read from /sys and
 * /proc/self/mountinfo (Node has no ioctl): the size of a device, its
 * partitions and holders, the loop devices backed by a file, and which of
 * them are mounted read-write. Used to size sources and targets and to refuse
 * a live (read-write mounted) source unless --allow-live.
 */
import { readFile, readdir, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** A device as "major:minor". */
export type DevNo = string;

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  /** st_dev of the mounted file system, "major:minor". */
  readonly dev: DevNo;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
  /** True when the mount and its super block are both read-write. */
  readonly readWrite: boolean;
}

/** Decodes the octal escapes mountinfo uses for spaces and the like. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Parses /proc/self/mountinfo (proc(5)). */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const f = left.split(' ');
    const r = right.split(' ');
    const dev = f[2];
    const mountPoint = f[4];
    const mountOpts = (f[5] ?? '').split(',');
    const superOpts = (r[2] ?? '').split(',');
    if (!dev || !mountPoint) continue;
    out.push({
      dev,
      mountPoint: unescape(mountPoint),
      fsType: r[0] ?? '',
      source: unescape(r[1] ?? ''),
      readWrite: mountOpts.includes('rw') && !superOpts.includes('ro'),
    });
  }
  return out;
}

export async function readMounts(): Promise<MountEntry[]> {
  try {
    return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
  } catch {
    return [];
  }
}

const sysDev = (dev: DevNo): string => `/sys/dev/block/${dev}`;

async function readTrim(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Size in bytes of a block device (sysfs counts 512-byte sectors whatever the logical block size). */
export async function blockDeviceSize(dev: DevNo): Promise<number | undefined> {
  const s = await readTrim(`${sysDev(dev)}/size`);
  if (s === undefined || !/^\d+$/.test(s)) return undefined;
  return Number(s) * 512;
}

/** Kernel name of a device ("sda1", "loop0p1"). */
export async function deviceName(dev: DevNo): Promise<string | undefined> {
  try {
    return basename(await realpath(sysDev(dev)));
  } catch {
    return undefined;
  }
}

/** The partitions of a whole-disk device, as devices. */
export async function partitionsOf(dev: DevNo): Promise<DevNo[]> {
  const base = sysDev(dev);
  const out: DevNo[] = [];
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch {
    return out;
  }
  for (const e of entries) {
    if ((await readTrim(join(base, e, 'partition'))) === undefined) continue;
    const d = await readTrim(join(base, e, 'dev'));
    if (d) out.push(d);
  }
  return out;
}

/** Devices stacked on this one (device-mapper, md, bcache). */
export async function holdersOf(dev: DevNo): Promise<DevNo[]> {
  const out: DevNo[] = [];
  let entries: string[];
  try {
    entries = await readdir(`${sysDev(dev)}/holders`);
  } catch {
    return out;
  }
  for (const e of entries) {
    const d = await readTrim(`/sys/class/block/${e}/dev`);
    if (d) out.push(d);
  }
  return out;
}

/** Loop devices whose backing file is `file` (by its real path). */
export async function loopDevicesBackedBy(file: string): Promise<DevNo[]> {
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    return [];
  }
  const out: DevNo[] = [];
  let entries: string[];
  try {
    entries = await readdir('/sys/block');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.startsWith('loop')) continue;
    const backing = await readTrim(`/sys/block/${e}/loop/backing_file`);
    if (backing === undefined) continue;
    const path = backing.replace(/ \(deleted\)$/, '');
    if (path !== real) continue;
    const d = await readTrim(`/sys/block/${e}/dev`);
    if (d) out.push(d);
  }
  return out;
}

/** A device, its partitions and its holders, recursively (bounded). */
async function family(dev: DevNo): Promise<DevNo[]> {
  const seen = new Set<DevNo>();
  const todo = [dev];
  while (todo.length > 0 && seen.size < 1024) {
    const d = todo.pop()!;
    if (seen.has(d)) continue;
    seen.add(d);
    todo.push(...(await partitionsOf(d)), ...(await holdersOf(d)));
  }
  return [...seen];
}

/** Where a device (or anything on it) is mounted. */
export interface LiveUse {
  readonly device: string;
  readonly mountPoint: string;
  readonly readWrite: boolean;
}

/**
 * Mounts of the devices that give access to a source: the device itself, its
 * partitions and holders, or, for an image file, the loop devices backed by
 * it and theirs.
 */
export async function mountsOf(source: { blockDevice?: DevNo; file?: string }): Promise<LiveUse[]> {
  const roots: DevNo[] = [];
  if (source.blockDevice) roots.push(source.blockDevice);
  if (source.file) roots.push(...(await loopDevicesBackedBy(source.file)));
  const devs = new Set<DevNo>();
  for (const r of roots) for (const d of await family(r)) devs.add(d);
  if (devs.size === 0) return [];
  const out: LiveUse[] = [];
  for (const m of await readMounts()) {
    if (!devs.has(m.dev)) continue;
    out.push({ device: `/dev/${(await deviceName(m.dev)) ?? m.dev}`, mountPoint: m.mountPoint, readWrite: m.readWrite });
  }
  return out;
}

/** "major:minor" of a block device's st_rdev. */
export function devNo(major: number, minor: number): DevNo {
  return `${major}:${minor}`;
}

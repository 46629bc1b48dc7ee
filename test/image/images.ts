/**
 * Real disk images for the image tests, made with the tools an operator has:
 * mkfs.ext4 -d (bare file systems), sfdisk on an image file (partitioned
 * disks, file systems at their offsets with mke2fs -E offset=), and loop
 * mounts (changes made by the kernel's own ext4). Tests that need root or
 * loop devices ask `loopUnavailable()` for the reason to skip.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Runs a command; throws with its stderr unless it exits 0. */
export function sh(file: string, args: string[], input?: string | Buffer): string {
  const r = spawnSync(file, args, { input: typeof input === 'string' ? Buffer.from(input) : input, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** The path of a program, or undefined. */
export function which(name: string): string | undefined {
  for (const d of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Why mkfs-based tests cannot run here, or undefined. */
export function mkfsUnavailable(): string | undefined {
  for (const t of ['mkfs.ext4', 'dumpe2fs', 'sfdisk']) if (!which(t)) return `${t} is not installed (apt-get install -y e2fsprogs fdisk)`;
  return undefined;
}

let loopReason: string | undefined | null = null;
/** Why loop-mount tests cannot run here (not root, no loop devices), or undefined. */
export function loopUnavailable(): string | undefined {
  if (loopReason !== null) return loopReason;
  loopReason = (() => {
    const m = mkfsUnavailable();
    if (m) return m;
    if (process.getuid?.() !== 0) return 'needs root: changes are made through a loop mount';
    if (!which('losetup') || !which('mount')) return 'losetup/mount not installed';
    const r = spawnSync(which('losetup')!, ['-f'], { encoding: 'utf8' });
    if (r.status !== 0) return `no free loop device (${r.stderr.trim()})`;
    return undefined;
  })();
  return loopReason;
}

/** A deterministic pseudo-random buffer (xorshift), incompressible. */
export function noise(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed | 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

/** A small tree of files: text, noise, a larger file, nested folders. */
export async function makeTree(dir: string, seed = 1): Promise<void> {
  await mkdir(join(dir, 'etc', 'app'), { recursive: true });
  await mkdir(join(dir, 'var', 'lib', 'db'), { recursive: true });
  for (let i = 0; i < 40; i++) await writeFile(join(dir, 'etc', 'app', `conf-${i}.txt`), `setting ${i} = ${'x'.repeat(i * 37)}\n`.repeat(20 + i));
  await writeFile(join(dir, 'var', 'lib', 'db', 'data.bin'), noise(3 << 20, seed));
  await writeFile(join(dir, 'var', 'lib', 'db', 'log.txt'), 'entry\n'.repeat(100_000));
}

/** A bare ext4 image of `mib` MiB holding `dir` (mkfs.ext4 -d). */
export function mkExt4(image: string, mib: number, dir?: string, extra: string[] = []): void {
  sh('truncate', ['-s', `${mib}M`, image]);
  sh('mkfs.ext4', ['-q', '-F', ...extra, ...(dir ? ['-d', dir] : []), image]);
}

export interface PartitionSpec {
  /** MiB. */
  readonly size: number;
  /** sfdisk type (GPT: L, S, U; MBR: 83, 82, 5). */
  readonly type: string;
  /** Make an ext4 file system here, populated from this folder (or empty). */
  readonly ext4?: string | true;
}

/** A partitioned disk image: sfdisk, then mke2fs at each partition's offset. */
export function partitionedImage(image: string, mib: number, label: 'gpt' | 'dos', parts: readonly PartitionSpec[]): { start: number; size: number }[] {
  sh('truncate', ['-s', `${mib}M`, image]);
  const script = [`label: ${label}`, ...parts.map((p) => `size=${p.size}MiB, type=${p.type}`)].join('\n');
  sh('sfdisk', ['-q', image], `${script}\n`);
  const json = JSON.parse(sh('sfdisk', ['--json', image])) as { partitiontable: { sectorsize?: number; partitions: { start: number; size: number }[] } };
  const ss = json.partitiontable.sectorsize ?? 512;
  const out = json.partitiontable.partitions.map((p) => ({ start: p.start * ss, size: p.size * ss }));
  parts.forEach((p, i) => {
    if (!p.ext4) return;
    const { start, size } = out[i]!;
    sh('mkfs.ext4', ['-q', '-F', '-E', `offset=${start}`, ...(typeof p.ext4 === 'string' ? ['-d', p.ext4] : []), image, `${size / 1024}k`]);
  });
  return out;
}

/** Loop-mounts an image (or a window of it) at `mnt`, runs `fn`, unmounts. */
export async function withLoopMount<T>(image: string, mnt: string, fn: () => Promise<T>, window?: { start: number; size: number }, readOnly = false): Promise<T> {
  await mkdir(mnt, { recursive: true });
  const opts = ['loop', ...(window ? [`offset=${window.start}`, `sizelimit=${window.size}`] : []), ...(readOnly ? ['ro'] : [])].join(',');
  sh('mount', ['-o', opts, image, mnt]);
  try {
    return await fn();
  } finally {
    sh('umount', [mnt]);
  }
}

/** Attaches a loop device to a file; returns its path. */
export function losetup(file: string): string {
  return sh('losetup', ['-f', '--show', file]).trim();
}

export function losetupDetach(dev: string): void {
  spawnSync('losetup', ['-d', dev]);
}

/** The persistent dirty bitmaps of a qcow2 file (qemu-img info): name → flags. */
export function qcow2Bitmaps(file: string): Record<string, string[]> {
  const j = JSON.parse(sh('qemu-img', ['info', '--output=json', '-U', file])) as { 'format-specific': { data: { bitmaps?: { name: string; flags: string[] }[] } } };
  return Object.fromEntries((j['format-specific'].data.bitmaps ?? []).map((b) => [b.name, b.flags]));
}

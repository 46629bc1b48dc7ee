/**
 * Disk images for the image-files and NBD tests, made with the real tools:
 * `mkfs.ext2/3/4 -d DIR` (e2fsprogs), `sfdisk` (fdisk) for partition tables,
 * `mkswap`, `debugfs` to plant what mkfs never writes (nanosecond times,
 * directory loops). Tests skip with a reason when a tool is missing.
 */
import { execFile, spawnSync } from 'node:child_process';
import { open, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Why a test must skip (a missing tool), or undefined when all are there. */
export function missingTools(...tools: string[]): string | undefined {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length === 0) return undefined;
  const pkg: Record<string, string> = { 'mkfs.ext4': 'e2fsprogs', debugfs: 'e2fsprogs', e2fsck: 'e2fsprogs', sfdisk: 'fdisk', mkswap: 'util-linux', nbdinfo: 'libnbd-bin', nbdcopy: 'libnbd-bin', 'qemu-img': 'qemu-utils', 'qemu-nbd': 'qemu-utils', 'qemu-system-x86_64': 'qemu-system-x86' };
  return `needs ${missing.join(', ')} (Debian: apt-get install ${[...new Set(missing.map((t) => pkg[t] ?? t))].join(' ')})`;
}

/** Makes an ext2/3/4 filesystem image of `size` (e.g. "64M") holding the tree at `dir`. */
export async function makeExtImage(image: string, dir: string | undefined, size: string, kind: 'ext2' | 'ext3' | 'ext4' = 'ext4', extra: string[] = []): Promise<void> {
  await run(`mkfs.${kind}`, ['-q', '-F', ...extra, ...(dir ? ['-d', dir] : []), image, size]);
}

/** Runs debugfs commands on an image, writable. */
export async function debugfs(image: string, ...commands: string[]): Promise<void> {
  for (const c of commands) await run('debugfs', ['-w', '-R', c, image]);
}

/** Runs debugfs commands in one session (journal commands need that), writable; returns its output. */
export function debugfsSession(image: string, commands: readonly string[]): string {
  const r = spawnSync('debugfs', ['-w', '-f', '-', image], { input: `${commands.join('\n')}\n` });
  if (r.status !== 0) throw new Error(`debugfs failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** The first data block of a file, by debugfs. */
export async function firstBlockOf(image: string, path: string): Promise<number> {
  const { stdout } = await run('debugfs', ['-R', `blocks ${path}`, image]);
  return Number(stdout.trim().split(/\s+/)[0]);
}

/** A partition to lay out: its content (an image file, or a magic to plant) and its size in MiB. */
export interface PartitionSpec {
  readonly sizeMiB: number;
  /** MBR type byte (hex, "83") or GPT type GUID. */
  readonly type: string;
  /** Image file copied into the partition. */
  readonly image?: string;
  /** Bytes planted at an offset inside the partition (a fake filesystem signature). */
  readonly plant?: { offset: number; bytes: Buffer };
}

/**
 * Makes a partitioned disk image: partitions start at 1 MiB and follow each
 * other; returns their byte offsets.
 */
export async function makeDisk(disk: string, label: 'dos' | 'gpt', parts: readonly PartitionSpec[]): Promise<number[]> {
  const totalMiB = 2 + parts.reduce((a, p) => a + p.sizeMiB, 0);
  await writeFile(disk, '');
  const fh = await open(disk, 'r+');
  try {
    await fh.truncate(totalMiB * 1024 * 1024);
  } finally {
    await fh.close();
  }
  let start = 2048;
  const offsets: number[] = [];
  const lines = [`label: ${label}`];
  for (const p of parts) {
    lines.push(`start=${start}, size=${p.sizeMiB * 2048}, type=${p.type}`);
    offsets.push(start * 512);
    start += p.sizeMiB * 2048;
  }
  const r = spawnSync('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', disk], { input: `${lines.join('\n')}\n` });
  if (r.status !== 0) throw new Error(`sfdisk failed: ${r.stderr.toString()}`);
  const out = await open(disk, 'r+');
  try {
    for (const [i, p] of parts.entries()) {
      if (p.image) {
        const bytes = await readFile(p.image);
        if (bytes.length > p.sizeMiB * 1024 * 1024) throw new Error(`${p.image} does not fit in partition ${i + 1}`);
        await out.write(bytes, 0, bytes.length, offsets[i]!);
      }
      if (p.plant) await out.write(p.plant.bytes, 0, p.plant.bytes.length, offsets[i]! + p.plant.offset);
    }
  } finally {
    await out.close();
  }
  return offsets;
}

/**
 * Rewrites a directory entry's name in place, in the raw image: finds the
 * entry named `from` (its name_len byte and type byte precede the name) and
 * gives it the shorter name `to`. Checksums are not updated (the reader does
 * not check them), which is the point: this is what a hostile image does.
 */
export async function renameEntryRaw(image: string, from: string, to: Buffer): Promise<void> {
  const bytes = await readFile(image);
  const name = Buffer.from(from);
  if (to.length > name.length) throw new Error('the new name must not be longer');
  let at = bytes.indexOf(name);
  while (at >= 0 && bytes[at - 2] !== name.length) at = bytes.indexOf(name, at + 1);
  if (at < 0) throw new Error(`no directory entry named ${from}`);
  bytes[at - 2] = to.length;
  to.copy(bytes, at);
  await writeFile(image, bytes);
}

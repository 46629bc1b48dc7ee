// The VM-disk rows' disk (bench/vmdisk.ts): a virtual disk whose file system
// is mostly used, as a hosting provider's VM disks are, and the change made
// inside it between the backups.
//
//   the corpus's ext4 image of the disk's size (bench/image.ts baseImage, about
//   1.5 GiB in use) copied, loop-mounted, and filled to FILL_SHARE of its blocks
//   with deterministic data files of 1–256 MiB in /srv-data: half incompressible
//   (AES-256-CTR keystream, a file's own key), half log-like text (4 KiB slices of
//   a text pool, each stamped: compressible, not deduplicable); built once and
//   cached in $BENCH_DIR/vmdisk with the list of its data files.
//
//   the change: 640 pieces of 64 KiB at seeded places of the data files (40 MiB,
//   a database's kind of change), as byte ranges of the disk from debugfs.

import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { prng, textPool } from './datagen.js';
import { capture } from './measure.js';

/** The share of the file system's blocks in use once filled. */
export const FILL_SHARE = 0.7;
/** Bytes of the change between the backups: PIECES pieces of PIECE bytes. */
const PIECE = 64 << 10;
const PIECES = 640;
export const CHANGE_BYTES = PIECE * PIECES;
/** Where the data files are, inside the file system. */
const DATA_DIR = 'srv-data';
/** Raised when the data files' recipe changes, so that a cached disk of the old one is rebuilt. */
const RECIPE = 1;
const WRITE_BUFFER = 8 << 20;

export interface DataFile {
  /** The path inside the file system. */
  readonly path: string;
  readonly size: number;
  readonly kind: 'random' | 'text';
}

export interface FilledDisk {
  /** The raw image (sparse). */
  readonly raw: string;
  readonly files: readonly DataFile[];
  /** Bytes of the file system in use, and its size (statfs). */
  readonly usedBytes: number;
  readonly fsBytes: number;
}

/** A byte range of the disk. */
export interface Extent {
  offset: number;
  length: number;
}

export async function must(file: string, args: string[], what: string): Promise<string> {
  const r = await capture(file, args, { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`${what} failed (${file} ${args.slice(0, 6).join(' ')}…): ${(r.stderr || r.error || '').trim()}`);
  return r.stdout;
}

/** Writes `size` bytes of `kind` into `path`, deterministic for `seed`. */
async function writeDataFile(path: string, size: number, kind: DataFile['kind'], seed: number, pool: Buffer): Promise<void> {
  const r = prng(seed);
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(`holdfast-vmdisk:${seed}`).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(WRITE_BUFFER);
  const text = Buffer.alloc(WRITE_BUFFER);
  const fh = await open(path, 'wx');
  try {
    let stamp = 0;
    for (let off = 0; off < size; off += WRITE_BUFFER) {
      const n = Math.min(WRITE_BUFFER, size - off);
      let buf: Buffer;
      if (kind === 'random') {
        buf = cipher.update(zeros.subarray(0, n));
      } else {
        for (let o = 0; o < n; o += 4096) {
          const from = r() % (pool.length - 4096);
          pool.copy(text, o, from, from + 4096);
          text.write(`\n#${seed}:${(stamp++).toString(16).padStart(10, '0')}\n`, o, 'latin1');
        }
        buf = text.subarray(0, n);
      }
      await fh.write(buf, 0, n, off);
    }
  } finally {
    await fh.close();
  }
}

/** Fills the mounted file system `mnt` to FILL_SHARE with data files; returns them. */
async function fill(mnt: string): Promise<DataFile[]> {
  const s = await statfs(mnt);
  let budget = Math.floor((FILL_SHARE * s.blocks - (s.blocks - s.bfree)) * s.bsize);
  const r = prng(0x71ed);
  const pool = textPool(0x7e47, 16 << 20);
  const files: DataFile[] = [];
  await mkdir(join(mnt, DATA_DIR));
  // A file's blocks take a little more than its size (extent blocks): keep a margin.
  while (budget > 8 << 20) {
    const size = Math.min(budget - (4 << 20), (1 + (r() % 256)) << 20) & ~4095;
    const kind = r() % 2 === 0 ? 'random' : 'text';
    const path = `/${DATA_DIR}/data-${String(files.length).padStart(4, '0')}.${kind === 'random' ? 'bin' : 'log'}`;
    await writeDataFile(join(mnt, path), size, kind, files.length + 1, pool);
    files.push({ path, size, kind });
    budget -= size;
  }
  return files;
}

/**
 * The raw disk of `size` bytes, its file system filled (see the module
 * comment): built from `base` (the corpus's ext4 image of that size) once
 * and cached in `dir` with a stamp naming the base, its own stamp and the recipe.
 */
export async function filledDisk(dir: string, base: string, size: number): Promise<FilledDisk> {
  const img = join(dir, `filled-${size}.img`);
  const stampFile = `${img}.json`;
  const baseStamp = await readFile(`${base}.done`, 'utf8').catch(() => '');
  if (existsSync(img) && existsSync(stampFile)) {
    const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as FilledDisk & { base: string; baseStamp: string; recipe: number; share: number };
    if (stamp.base === base && stamp.baseStamp === baseStamp && stamp.recipe === RECIPE && stamp.share === FILL_SHARE) return { ...stamp, raw: img };
  }
  await mkdir(dir, { recursive: true });
  await rm(img, { force: true });
  await rm(stampFile, { force: true });
  const partial = `${img}.partial`;
  const mnt = join(dir, 'mnt');
  console.log(`  filling the file system of a copy of ${base} to ${(FILL_SHARE * 100).toFixed(0)} % (once; cached in ${dir}) ...`);
  const t0 = process.hrtime.bigint();
  await must('cp', ['--sparse=always', base, partial], 'cp of the base image');
  await mkdir(mnt, { recursive: true });
  await must('mount', ['-o', 'loop', partial, mnt], 'loop mount of the disk (as root)');
  let files: DataFile[];
  let s: Awaited<ReturnType<typeof statfs>>;
  try {
    files = await fill(mnt);
    s = await statfs(mnt);
  } finally {
    await must('umount', [mnt], 'umount');
  }
  await must('e2fsck', ['-fn', partial], 'e2fsck of the filled disk');
  await rename(partial, img);
  const disk = { files, usedBytes: (s.blocks - s.bfree) * s.bsize, fsBytes: s.blocks * s.bsize };
  await writeFile(stampFile, `${JSON.stringify({ base, baseStamp, recipe: RECIPE, share: FILL_SHARE, ...disk })}\n`);
  console.log(`    ${files.length} data files written, ${(disk.usedBytes / 2 ** 30).toFixed(1)} of ${(disk.fsBytes / 2 ** 30).toFixed(1)} GiB in use, in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(0)} s`);
  return { ...disk, raw: img };
}

/**
 * The change (see the module comment) as byte ranges of the disk, in disk
 * order: the data files' blocks from debugfs (`blocks`, in file order).
 */
export async function changeExtents(disk: FilledDisk): Promise<Extent[]> {
  const r = prng(0xc4a9);
  const pieces = new Map<number, Set<number>>();
  for (let n = 0; n < PIECES;) {
    const f = r() % disk.files.length;
    const p = r() % Math.floor(disk.files[f]!.size / PIECE);
    const set = pieces.get(f) ?? new Set<number>();
    pieces.set(f, set);
    if (!set.has(p)) {
      set.add(p);
      n++;
    }
  }
  const order = [...pieces.keys()];
  const script = `${disk.raw}.debugfs`;
  await writeFile(script, `${order.map((f) => `blocks "${disk.files[f]!.path}"`).join('\n')}\n`);
  const out = await must('debugfs', ['-f', script, disk.raw], 'debugfs blocks').finally(() => rm(script));
  const bs = Number((await must('debugfs', ['-R', 'stats', disk.raw], 'debugfs stats')).match(/Block size:\s+(\d+)/)?.[1] ?? 4096);
  const lists = out.split('\n').filter((l, i, a) => i > 0 && a[i - 1]!.startsWith('debugfs: blocks')).map((l) => l.trim().split(/\s+/).map(Number));
  if (lists.length !== order.length) throw new Error(`debugfs listed the blocks of ${lists.length} of ${order.length} files`);
  const blocks: number[] = [];
  for (const [i, f] of order.entries()) {
    for (const p of pieces.get(f)!) blocks.push(...lists[i]!.slice((p * PIECE) / bs, ((p + 1) * PIECE) / bs));
  }
  blocks.sort((a, b) => a - b);
  const extents: Extent[] = [];
  for (const b of blocks) {
    const last = extents[extents.length - 1];
    if (last && last.offset + last.length === b * bs) last.length += bs;
    else extents.push({ offset: b * bs, length: bs });
  }
  return extents;
}

// VM-disk benchmark (issue 19 §2), run at the end of the image scenario: a qcow2
// disk backed up incrementally through its persistent dirty bitmap, beside a full
// read of the same disk and beside restic backing the disk up as a raw image.
//
//   the corpus's ext4 image (bench/image.ts baseImage, BENCH_VMDISK_SIZE) converted
//   to qcow2 (qemu-img convert), and the same bytes as a raw file for restic;
//   first backup (holdfast: adds the bitmap) → 40 MiB of files rewritten in place
//   inside the file system (their blocks found with debugfs, written with qemu-io
//   into both disks: a database's kind of change) → incremental backup (holdfast:
//   only the dirty clusters) → the bitmap removed → holdfast's full read of the
//   changed disk (the fallback, with the changed-block cache) → restore-image
//   --format qcow2, compared with qemu-img compare.
//
// Targets from the issue: the incremental ≤ 5 % of the time of a full read, and
// ≤ 0.1× restic's incremental of the raw image.
//
// Environment:
//   BENCH_VMDISK        0: skip
//   BENCH_VMDISK_SIZE   disk size (default 1G; the issue's size is 20G)

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { capture, findInPath, runMeasured, type Cmd, type RunResult } from './measure.js';
import { HOLDFAST_MAIN, PASSWORD } from './tools.js';

/** Bytes of files rewritten between the backups. */
const CHANGE_BYTES = 40 << 20;

export interface VmDiskOptions {
  benchDir: string;
  /** The raw ext4 image of the corpus of this size (bench/image.ts). */
  baseImage: (size: number) => Promise<string>;
  timeoutSec: number;
  parseSize: (s: string) => number;
}

async function must(file: string, args: string[], what: string): Promise<string> {
  const r = await capture(file, args, { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`${what} failed (${file} ${args.slice(0, 6).join(' ')}…): ${(r.stderr || r.error || '').trim()}`);
  return r.stdout;
}

/**
 * Byte ranges of regular files of the image totalling CHANGE_BYTES: the blocks
 * of every 7th file from the largest down, from debugfs (`ls -p` then
 * `blocks`), in disk order.
 */
async function fileExtents(raw: string): Promise<{ offset: number; length: number }[]> {
  const files: { path: string; size: number }[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 12) return;
    const out = await must('debugfs', ['-R', `ls -p ${dir}`, raw], 'debugfs ls');
    for (const line of out.split('\n')) {
      // /inode/mode/uid/gid/name/size/
      const f = line.split('/');
      if (f.length < 7 || f[5] === '.' || f[5] === '..' || f[5] === 'lost+found') continue;
      const path = `${dir === '/' ? '' : dir}/${f[5]}`;
      if (f[2]!.startsWith('04')) await walk(path, depth + 1);
      else if (f[2]!.startsWith('10') && Number(f[6]) >= 65536) files.push({ path, size: Number(f[6]) });
    }
  };
  await walk('/', 0);
  files.sort((a, b) => b.size - a.size);
  const picked: string[] = [];
  let total = 0;
  for (let i = 0; i < files.length && total < CHANGE_BYTES; i += 7) {
    picked.push(files[i]!.path);
    total += files[i]!.size;
  }
  const script = `${raw}.debugfs`;
  await writeFile(script, `${picked.map((p) => `blocks "${p}"`).join('\n')}\n`);
  const blocks = await must('debugfs', ['-f', script, raw], 'debugfs blocks');
  await rm(script);
  const bs = Number((await must('debugfs', ['-R', 'stats', raw], 'debugfs stats')).match(/Block size:\s+(\d+)/)?.[1] ?? 4096);
  const nums = blocks.split(/\s+/).filter((x) => /^\d+$/.test(x)).map(Number).sort((a, b) => a - b);
  const out: { offset: number; length: number }[] = [];
  // Only the first CHANGE_BYTES of them: a large file is rewritten in part.
  for (const b of nums.slice(0, Math.ceil(CHANGE_BYTES / bs))) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === b * bs) last.length += bs;
    else out.push({ offset: b * bs, length: bs });
  }
  return out;
}

/** Writes a pattern over `extents` of `disk` with qemu-io, in batches of commands. */
async function rewrite(disk: string, format: 'raw' | 'qcow2', extents: { offset: number; length: number }[]): Promise<void> {
  for (let i = 0; i < extents.length; i += 200) {
    const cmds = extents.slice(i, i + 200).flatMap((e) => ['-c', `write -P 0x5a ${e.offset} ${e.length}`]);
    await must('qemu-io', ['-f', format, ...cmds, disk], 'qemu-io write');
  }
}

const fmtS = (r: RunResult | undefined): string => (r ? (r.ok ? `${r.seconds.toFixed(2)} s` : 'FAILED') : '-');

/** Runs the VM-disk rows; returns the number of problems. */
export async function runVmDiskBench(o: VmDiskOptions): Promise<number> {
  if (process.env['BENCH_VMDISK'] === '0') return 0;
  const size = o.parseSize(process.env['BENCH_VMDISK_SIZE'] ?? '1G');
  console.log(`\nVM-disk benchmark: ${(size / 2 ** 30).toFixed(0)} GiB qcow2 disk of the corpus, incremental through its dirty bitmap, beside a full read and restic backing up the raw disk`);
  const missing = ['qemu-img', 'qemu-nbd', 'qemu-io', 'debugfs'].filter((t) => !findInPath(t));
  if (missing.length > 0) {
    console.log(`  skipped: ${missing.join(', ')} not found (apt-get install -y qemu-utils e2fsprogs)`);
    return 1;
  }
  const base = await o.baseImage(size);
  const work = join(o.benchDir, 'work', 'vmdisk');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const qcow2 = join(work, 'vm.qcow2');
  const raw = join(work, 'vm.img');
  await must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', base, qcow2], 'qemu-img convert');
  await must('cp', ['--sparse=always', base, raw], 'cp of the base image');
  const extents = await fileExtents(raw);
  const changed = extents.reduce((a, e) => a + e.length, 0);
  const restic = findInPath('restic') !== null;
  const problems: string[] = [];
  const steps = new Map<string, RunResult>();
  const env = (t: string): Record<string, string> => t === 'holdfast'
    ? { HOLDFAST_REPOSITORY: join(work, t, 'repo'), HOLDFAST_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(work, t, 'cache') }
    : { RESTIC_REPOSITORY: join(work, t, 'repo'), RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(work, t, 'cache') };
  const hf = (args: string[]): Cmd => ({ file: process.execPath, args: [HOLDFAST_MAIN, ...args], env: env('holdfast') });
  const rs = (args: string[]): Cmd => ({ file: 'restic', args, env: env('restic') });
  const run = async (name: string, label: string, c: Cmd): Promise<RunResult> => {
    await mkdir(join(work, 'logs'), { recursive: true });
    const r = await runMeasured(c, join(work, 'logs', name), o.timeoutSec);
    steps.set(name, r);
    console.log(`  ${label}: ${r.ok ? `${r.seconds.toFixed(2)} s` : `FAILED (exit ${r.exitCode}) ${r.stderrTail}`}`);
    if (!r.ok) problems.push(`${name} failed: ${r.stderrTail}`);
    return r;
  };
  await run('holdfast-init', '[holdfast] init', hf(['init']));
  await run('holdfast-full', '[holdfast] first backup (full read, adds the bitmap)', hf(['backup', '--host', 'bench', '--image', qcow2]));
  if (restic) {
    await run('restic-init', '[restic] init', rs(['init', '--repository-version', '2']));
    await run('restic-full', '[restic] first backup of the raw disk', rs(['backup', '--host', 'bench', raw]));
  }
  await rewrite(qcow2, 'qcow2', extents);
  await rewrite(raw, 'raw', extents);
  console.log(`  rewrote ${(changed / 2 ** 20).toFixed(1)} MiB of files inside the file system (${extents.length} extents)`);
  const inc = await run('holdfast-incremental', '[holdfast] incremental (dirty bitmap)', hf(['backup', '--json', '--host', 'bench', '--image', qcow2]));
  if (restic) await run('restic-incremental', '[restic] incremental of the raw disk', rs(['backup', '--host', 'bench', raw]));
  for (const b of JSON.parse(await must('qemu-img', ['info', '--output=json', qcow2], 'qemu-img info'))['format-specific'].data.bitmaps ?? []) {
    await must('qemu-img', ['bitmap', '--remove', qcow2, b.name], 'qemu-img bitmap --remove');
  }
  await run('holdfast-fullread', '[holdfast] full read of the same disk (no bitmap: the changed-block cache)', hf(['backup', '--host', 'bench', '--image', qcow2]));
  const restored = join(work, 'restored.qcow2');
  const r = await run('holdfast-restore', '[holdfast] restore-image --format qcow2', hf(['restore-image', 'latest', '--format', 'qcow2', '--to', restored]));
  if (r.ok) {
    const cmp = await capture('qemu-img', ['compare', qcow2, restored], { timeoutMs: 3_600_000 });
    console.log(`  restored qcow2: ${cmp.code === 0 ? 'identical (qemu-img compare)' : cmp.stdout.trim()}`);
    if (cmp.code !== 0) problems.push(`restored qcow2 differs: ${cmp.stdout.trim()}`);
  }
  let bytesRead: number | null = null;
  if (inc.ok) {
    const line = (await readFile(inc.stdoutFile, 'utf8')).trim().split('\n').pop() ?? '{}';
    bytesRead = (JSON.parse(line) as { bytes_read?: number }).bytes_read ?? null;
  }

  const h = steps.get('holdfast-incremental');
  const full = steps.get('holdfast-fullread');
  const ri = steps.get('restic-incremental');
  const ratio = (a: RunResult | undefined, b: RunResult | undefined): number | null => (a?.ok && b?.ok && b.seconds > 0 ? a.seconds / b.seconds : null);
  const vsFull = ratio(h, full);
  const vsRestic = ratio(h, ri);
  const verdict = (x: number | null, t: number): string => (x === null ? '' : x <= t ? 'met' : 'MISSED');
  console.log('\nVM-disk results (one run each):\n');
  const rows = [
    ['', 'holdfast', 'other', 'ratio', 'target', ''],
    ['incremental vs full read', fmtS(h), fmtS(full), vsFull === null ? '-' : vsFull.toFixed(3), '≤ 0.050', verdict(vsFull, 0.05)],
    ['incremental vs restic (raw)', fmtS(h), fmtS(ri), vsRestic === null ? '-' : vsRestic.toFixed(3), '≤ 0.100', verdict(vsRestic, 0.1)],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) console.log(`  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ')}`);
  if (bytesRead !== null) console.log(`\n  holdfast incremental read ${(bytesRead / 2 ** 20).toFixed(1)} MiB for ${(changed / 2 ** 20).toFixed(1)} MiB rewritten`);
  if (!restic) problems.push('restic not found: the restic row is not run');
  if (problems.length > 0) console.log(`\nVM-disk problems:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  await writeFile(join(o.benchDir, `vmdisk-results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify({
    size, changedBytes: changed, bytesRead, steps: Object.fromEntries(steps), problems,
  }, null, 2)}\n`);
  return problems.length;
}

// Image benchmark: holdfast's block-level backup beside restic backing up the same image file.
//
//   a 4 GiB ext4 image holding the corpus (mkfs.ext4 -d, built once and cached in
//   $BENCH_DIR/image), copied sparse for the run;
//   first backup → issue 19 §4's change through a loop mount (400 scattered
//   one-line edits, a new 40 MiB file) → incremental backup → restore;
//   repository sizes. One run of each step.
//
// Environment (besides run.ts's):
//   BENCH_IMAGE        0: skip this scenario; only: run nothing else
//   BENCH_IMAGE_SIZE   image size (default 4G)
//   BENCH_IMAGE_TOOLS  holdfast,restic (default both)
//   BENCH_VMDISK, BENCH_VMDISK_SIZE: the VM-disk rows run after this scenario (bench/vmdisk.ts)
//
// Before each timed step the page cache is written back and dropped and the
// step's input read once, as in the tree scenario (bench/corpus.ts prepareStep).
// The restored image is checked: holdfast's with e2fsck and, as root, by mounting
// it beside the source and comparing the trees (unused blocks restore as zeros, so
// the images themselves differ wherever deleted files left data); restic's with cmp.

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile, open as openFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { capture, duBytes, findInPath, runMeasured, type Cmd, type RunResult } from './measure.js';
import { deterministicBytes, prepareStep } from './corpus.js';
import { HOLDFAST_MAIN, PASSWORD, TOOLS } from './tools.js';
import { runVmDiskBench } from './vmdisk.js';

export interface ImageBenchOptions {
  benchDir: string;
  corpus: string;
  timeoutSec: number;
}

type Tool = 'holdfast' | 'restic';
const STEP_NAMES = ['backup1', 'backup2', 'restore'] as const;
type Step = (typeof STEP_NAMES)[number];
const LABELS: Record<Step, string> = { backup1: 'first backup', backup2: 'incremental', restore: 'restore' };
/** The issue's targets, as ratios to restic. */
const TARGETS: Record<Step | 'size', number> = { backup1: 0.5, backup2: 0.3, restore: 0.5, size: 1.0 };

/** "4G", "512M": bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad BENCH_IMAGE_SIZE ${s}`);
  return Number(m[1]) * ({ '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G']);
}

async function must(file: string, args: string[], what: string, timeoutMs = 3_600_000): Promise<string> {
  const r = await capture(file, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${what} failed (${file} ${args.join(' ')}): ${(r.stderr || r.error || '').trim()}`);
  return r.stdout;
}

/** The ext4 image of the corpus, built once (mkfs.ext4 -d) and cached. */
export async function baseImage(dir: string, corpus: string, size: number): Promise<string> {
  const img = join(dir, `base-${size}.img`);
  const stamp = `${img}.done`;
  if (existsSync(img) && existsSync(stamp) && (await readFile(stamp, 'utf8')) === corpus) return img;
  await mkdir(dir, { recursive: true });
  await rm(img, { force: true });
  await rm(stamp, { force: true });
  console.log(`  building the ${(size / 2 ** 30).toFixed(0)} GiB ext4 image of ${corpus} (once; cached in ${dir}) ...`);
  const t0 = process.hrtime.bigint();
  await must('truncate', ['-s', String(size), img], 'truncate');
  await must('mkfs.ext4', ['-q', '-F', '-d', corpus, img], 'mkfs.ext4 -d (e2fsprogs 1.43 or newer)');
  await writeFile(stamp, corpus);
  console.log(`    built in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`);
  return img;
}

/** Regular files below `root`, sorted, with sizes. */
async function listFiles(root: string): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push({ path: p, size: (await stat(p)).size });
    }
  };
  await walk(root);
  return out;
}

export interface ImageChange {
  /** Files edited (one line inserted near the middle). */
  editedFiles: number;
  /** Their sizes after the edit. */
  editedBytes: number;
  newBytes: number;
}

/** Files edited inside the image between the backups, and the new file's size (issue 19 §4's change). */
const EDITED_FILES = 400;
const NEW_FILE_BYTES = 40 << 20;

/**
 * Issue 19 §4's change, deterministically: hundreds of scattered small edits
 * and one new 40 MiB file. Each of EDITED_FILES files of at least 4 KiB,
 * evenly spaced through the sorted tree, gets one line inserted at its first
 * line break past the middle, half of them written in place from that point
 * on (as an append-style writer does) and half written to a new file renamed
 * over the old one (as editors, `sed -i` and git do, so the file moves to
 * new blocks); then one new file of incompressible bytes.
 */
export async function changeInside(mnt: string): Promise<ImageChange> {
  const files = (await listFiles(mnt)).filter((f) => f.size >= 4096 && !relative(mnt, f.path).startsWith('lost+found'));
  const stride = Math.max(1, Math.floor(files.length / (EDITED_FILES + 1)));
  const change: ImageChange = { editedFiles: 0, editedBytes: 0, newBytes: 0 };
  for (let i = 1; i <= EDITED_FILES && i * stride < files.length; i++) {
    const f = files[i * stride]!;
    const text = await readFile(f.path);
    const nl = text.indexOf(10, text.length >> 1);
    const at = nl < 0 ? text.length : nl + 1;
    const tail = Buffer.concat([Buffer.from(`/* holdfast image bench: edit ${i} */\n`), text.subarray(at)]);
    if (i % 2 === 0) {
      const fh = await openFile(f.path, 'r+');
      try {
        await fh.write(tail, 0, tail.length, at);
      } finally {
        await fh.close();
      }
    } else {
      const tmp = `${f.path}.holdfast-bench`;
      await writeFile(tmp, Buffer.concat([text.subarray(0, at), tail]));
      await rename(tmp, f.path);
    }
    change.editedFiles++;
    change.editedBytes += at + tail.length;
  }
  await writeFile(join(mnt, 'holdfast-bench-new-40MiB.bin'), deterministicBytes(NEW_FILE_BYTES));
  change.newBytes = NEW_FILE_BYTES;
  return change;
}

function canLoopMount(): string | null {
  if (process.getuid?.() !== 0) return 'not root: the change is made through a loop mount';
  if (!findInPath('mount') || !findInPath('losetup')) return 'mount/losetup not found';
  if (!existsSync('/dev/loop-control') && !existsSync('/dev/loop0')) return 'no loop devices';
  return null;
}

const fmtS = (r: RunResult | undefined): string => (r ? (r.ok ? `${r.seconds.toFixed(2)} s` : 'FAILED') : '-');
const fmtMB = (n: number | null): string => (n === null ? '-' : `${(n / 1e6).toFixed(0)} MB`);

/** Runs the image scenario; returns the number of problems. */
export async function runImageBench(o: ImageBenchOptions): Promise<number> {
  const size = parseSize(process.env['BENCH_IMAGE_SIZE'] ?? '4G');
  const tools = (process.env['BENCH_IMAGE_TOOLS'] ?? 'holdfast,restic').split(',').map((s) => s.trim()).filter((s): s is Tool => s === 'holdfast' || s === 'restic');
  if (tools.includes('restic') && !findInPath('restic')) tools.splice(tools.indexOf('restic'), 1);
  console.log(`\nImage benchmark: ${(size / 2 ** 30).toFixed(0)} GiB ext4 image of the corpus, block-level (holdfast backup --image) beside restic backing up the image file`);
  if (!findInPath('mkfs.ext4')) {
    console.log('  skipped: mkfs.ext4 not found (apt-get install -y e2fsprogs)');
    return 1;
  }
  const dir = join(o.benchDir, 'image');
  const base = await baseImage(dir, o.corpus, size);
  const work = join(o.benchDir, 'work', 'image');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const disk = join(work, 'disk.img');
  await must('cp', ['--sparse=always', base, disk], 'cp of the base image');
  const problems: string[] = [];
  const steps = new Map<string, RunResult>();
  const repoOf = (t: Tool): string => join(work, t, 'repo');
  const env = (t: Tool): Record<string, string> => t === 'holdfast'
    ? { HOLDFAST_REPOSITORY: repoOf(t), HOLDFAST_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(work, t, 'home', 'cache') }
    : { RESTIC_REPOSITORY: repoOf(t), RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(work, t, 'home', 'cache') };
  const cmd = (t: Tool, args: string[]): Cmd => (t === 'holdfast' ? { file: process.execPath, args: [HOLDFAST_MAIN, ...args], env: env(t) } : { file: 'restic', args, env: env(t) });
  const run = async (t: Tool, step: string, c: Cmd): Promise<RunResult> => {
    await mkdir(join(work, t, 'logs'), { recursive: true });
    // As the tree scenario: the page cache written back and dropped, the tool's
    // code read again, then the step's input read once (a backup: the image,
    // the tool's cache and its repository but for the packs; a restore: the
    // repository), so each tool reads its input from the cache and pays for no
    // other step's dirty pages.
    if (step !== 'init') {
      const home = join(work, t, 'home');
      await prepareStep(step === 'restore' ? { whole: [repoOf(t), home] } : { whole: [disk, home], metadataOf: repoOf(t) }, TOOLS[t].code(), () => TOOLS[t].probe());
    }
    const r = await runMeasured(c, join(work, t, 'logs', step), o.timeoutSec);
    steps.set(`${t}:${step}`, r);
    console.log(`  [${t}] ${LABELS[step as Step] ?? step}: ${r.ok ? `${r.seconds.toFixed(2)} s` : `FAILED (exit ${r.exitCode}) ${r.stderrTail}`}`);
    if (!r.ok) problems.push(`[${t}] ${step} failed: ${r.stderrTail}`);
    return r;
  };
  for (const t of tools) {
    await rm(join(work, t), { recursive: true, force: true });
    await mkdir(join(work, t, 'home'), { recursive: true });
    await run(t, 'init', t === 'holdfast' ? cmd(t, ['init']) : cmd(t, ['init', '--repository-version', '2']));
  }
  for (const t of tools) await run(t, 'backup1', cmd(t, t === 'holdfast' ? ['backup', '--host', 'bench', '--image', disk] : ['backup', '--host', 'bench', disk]));

  const noLoop = canLoopMount();
  let change: ImageChange | undefined;
  if (noLoop) {
    console.log(`  incremental skipped: ${noLoop}`);
    problems.push(`incremental not run: ${noLoop}`);
  } else {
    const mnt = join(work, 'mnt');
    await mkdir(mnt, { recursive: true });
    await must('mount', ['-o', 'loop', disk, mnt], 'loop mount of the image');
    try {
      change = await changeInside(mnt);
    } finally {
      await must('umount', [mnt], 'umount');
    }
    console.log(`  changed inside the file system: ${change.editedFiles} files edited (${(change.editedBytes / 2 ** 20).toFixed(1)} MiB), a new file of ${(change.newBytes / 2 ** 20).toFixed(0)} MiB`);
    for (const t of tools) await run(t, 'backup2', cmd(t, t === 'holdfast' ? ['backup', '--host', 'bench', '--image', disk] : ['backup', '--host', 'bench', disk]));
  }

  for (const t of tools) {
    const target = join(work, t, 'restore');
    await rm(target, { recursive: true, force: true });
    await mkdir(target, { recursive: true });
    const restored = t === 'holdfast' ? join(target, 'restored.img') : join(target, disk);
    const r = await run(t, 'restore', t === 'holdfast' ? cmd(t, ['restore-image', 'latest', '--to', restored]) : cmd(t, ['restore', 'latest', '--target', target]));
    if (!r.ok) continue;
    const why = t === 'restic' ? await sameBytes(disk, restored) : await sameFilesystem(disk, restored, work);
    console.log(`  [${t}] restored image: ${why ?? 'verified'}`);
    if (why) problems.push(`[${t}] restored image differs: ${why}`);
    await rm(target, { recursive: true, force: true });
  }

  const sizes = new Map<Tool, number | null>();
  for (const t of tools) sizes.set(t, await duBytes(repoOf(t)));
  const hfImage = await imageCounts(steps.get('holdfast:backup2') ?? steps.get('holdfast:backup1'));

  console.log('\nImage results (one run each; ratio = holdfast / restic; target from the issue):\n');
  const rows: string[][] = [['', 'holdfast', 'restic', 'ratio', 'target', '']];
  const verdict = (ratio: number | null, target: number): string => (ratio === null ? '' : ratio <= target ? 'met' : 'MISSED');
  for (const s of STEP_NAMES) {
    const h = steps.get(`holdfast:${s}`);
    const r = steps.get(`restic:${s}`);
    const ratio = h?.ok && r?.ok && r.seconds > 0 ? h.seconds / r.seconds : null;
    rows.push([LABELS[s], fmtS(h), fmtS(r), ratio === null ? '-' : ratio.toFixed(2), `≤ ${TARGETS[s].toFixed(2)}`, verdict(ratio, TARGETS[s])]);
  }
  const hs = sizes.get('holdfast') ?? null;
  const rs = sizes.get('restic') ?? null;
  const sizeRatio = hs !== null && rs ? hs / rs : null;
  rows.push(['repository size', fmtMB(hs), fmtMB(rs), sizeRatio === null ? '-' : sizeRatio.toFixed(2), `≤ ${TARGETS.size.toFixed(2)}`, verdict(sizeRatio, TARGETS.size)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) console.log(`  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ')}`);
  if (hfImage) console.log(`\n  holdfast incremental: ${hfImage}`);
  if (problems.length > 0) console.log(`\nImage problems:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  await writeFile(join(o.benchDir, `image-results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify({
    size, change, tools, sizes: Object.fromEntries(sizes), steps: Object.fromEntries(steps), problems,
  }, null, 2)}\n`);
  return problems.length + await runVmDiskBench({ benchDir: o.benchDir, baseImage: (n) => baseImage(dir, o.corpus, n), timeoutSec: o.timeoutSec, parseSize });
}

/** The block counts from holdfast's summary (its stdout log). */
async function imageCounts(r: RunResult | undefined): Promise<string | null> {
  if (!r?.ok) return null;
  const out = await readFile(r.stdoutFile, 'utf8').catch(() => '');
  const line = out.split('\n').find((l) => l.startsWith('Blocks:'));
  const added = out.split('\n').find((l) => l.startsWith('Added:'));
  return line ? `${line.replace(/^Blocks:\s*/, '')}; ${added?.replace(/^Added:\s*/, 'added ') ?? ''}` : null;
}

async function sameBytes(a: string, b: string): Promise<string | null> {
  const r = await capture('cmp', [a, b], { timeoutMs: 600_000 });
  return r.code === 0 ? null : (r.stdout + r.stderr).trim() || `cmp exit ${r.code}`;
}

/** e2fsck of the restored image; as root, the trees of both images compared. */
async function sameFilesystem(source: string, restored: string, work: string): Promise<string | null> {
  const fsck = await capture('e2fsck', ['-fn', restored], { timeoutMs: 600_000 });
  if (fsck.code !== 0) return `e2fsck -fn exit ${fsck.code}: ${(fsck.stdout + fsck.stderr).trim().split('\n').slice(-3).join(' ')}`;
  if (canLoopMount()) return null;
  const a = join(work, 'cmp-a');
  const b = join(work, 'cmp-b');
  await mkdir(a, { recursive: true });
  await mkdir(b, { recursive: true });
  await must('mount', ['-o', 'loop,ro', source, a], 'mount');
  try {
    await must('mount', ['-o', 'loop,ro', restored, b], 'mount');
    try {
      const d = await capture('diff', ['-rq', '--no-dereference', a, b], { timeoutMs: 1_800_000 });
      return d.code === 0 ? null : `trees differ: ${d.stdout.split('\n').slice(0, 3).join('; ')}`;
    } finally {
      await must('umount', [b], 'umount');
    }
  } finally {
    await must('umount', [a], 'umount');
  }
}

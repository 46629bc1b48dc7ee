// Many-files scenario: BENCH_MANY_FILES (default 1,000,000) small files (0..4 KiB,
// 1000 per directory), created once by parallel worker threads
// (bench/manyfiles-gen.ts) and cached in $BENCH_DIR/manyfiles/. Every tool backs
// up the cached tree (read-only) into a fresh repository: an initial backup,
// then an unchanged re-backup. Page cache warmed once before the first backup.
// Targets from the speed issue: initial backup, holdfast peak RSS < 1 GB;
// unchanged re-backup, holdfast faster than restic.

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { UserError, warmUp, warmUpEach } from './corpus.js';
import { duBytes } from './measure.js';
import type { ManyFilesDone, ManyFilesJob } from './manyfiles-gen.js';
import type { ScaleRow } from './report.js';
import { describeRun, filesLine, initTool, measure, repoCell, stepCell, verdict, type ScenarioContext, type ToolRun } from './scale-common.js';
import { TOOLS } from './tools.js';

const WORKER = new URL('./manyfiles-gen.js', import.meta.url);
/** Bump when manyfiles-gen.ts changes what it writes: cached trees of older versions are not reused. */
const GENERATOR_VERSION = 1;
const PER_DIR = 1000;
export const MANY_RSS_TARGET_MB = 1000;

export interface ManyFilesTree {
  path: string;
  files: number;
  dirs: number;
  bytes: number;
  /** Seconds it took to create, when this run created it; null when cached. */
  createdSeconds: number | null;
  /** Creation time of the cached tree (from its stats file). */
  createSecondsOriginally: number;
  workers: number;
}

export interface ManyFilesResult {
  tree: ManyFilesTree;
  warmUpSeconds: number;
  runs: ToolRun[];
  targets: {
    initialRss: { what: string; holdfastPeakRssMB: number | null; pass: boolean | null };
    unchanged: { what: string; holdfastSeconds: number | null; resticSeconds: number | null; pass: boolean | null };
  };
  loadAverage: { start: number[]; end: number[] };
  notes: string[];
}

export function manyFilesCount(): number {
  const spec = process.env.BENCH_MANY_FILES ?? '1000000';
  const n = Number(spec);
  if (!Number.isSafeInteger(n) || n <= 0 || n > 20_000_000) throw new UserError(`BENCH_MANY_FILES=${spec}: give a file count, e.g. 1000000`);
  return n;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

/** The cached tree of `files` files, created on first use (into a scratch dir, renamed when complete). */
async function ensureTree(benchDir: string, files: number): Promise<ManyFilesTree> {
  const root = join(benchDir, 'manyfiles');
  const name = `files-${files}-v${GENERATOR_VERSION}`;
  const path = join(root, name);
  const statsFile = join(root, `${name}.json`);
  if (existsSync(path) && existsSync(statsFile)) {
    const cached = JSON.parse(await readFile(statsFile, 'utf8')) as ManyFilesTree;
    return { ...cached, path, createdSeconds: null };
  }
  await mkdir(root, { recursive: true });
  for (const stale of (await readdir(root)).filter((n) => /^\.partial-\d+$/.test(n) && !alive(Number(n.slice(9))))) {
    await rm(join(root, stale), { recursive: true, force: true }); // left by an interrupted run
  }
  const partial = join(root, `.partial-${process.pid}`);
  await rm(partial, { recursive: true, force: true });
  await rm(path, { recursive: true, force: true });
  const workers = Math.min(8, Math.max(4, cpus().length * 2));
  console.log(`  creating ${files} files in ${Math.ceil(files / PER_DIR)} dirs with ${workers} worker threads (once; cached in ${path}) ...`);
  const t0 = process.hrtime.bigint();
  const done = await Promise.all(
    Array.from(
      { length: workers },
      (_, worker) =>
        new Promise<ManyFilesDone>((resolve, reject) => {
          const job: ManyFilesJob = { root: partial, files, perDir: PER_DIR, worker, workers };
          const w = new Worker(WORKER, { workerData: job });
          let result: ManyFilesDone | null = null;
          w.on('message', (m: ManyFilesDone) => (result = m));
          w.on('error', reject);
          w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`many-files generator worker ${worker} exited with code ${code}`))));
        }),
    ),
  );
  const createdSeconds = secs(t0);
  const tree: ManyFilesTree = {
    path,
    files: done.reduce((a, d) => a + d.files, 0),
    dirs: Math.ceil(files / PER_DIR),
    bytes: done.reduce((a, d) => a + d.bytes, 0),
    createdSeconds,
    createSecondsOriginally: createdSeconds,
    workers,
  };
  await writeFile(statsFile, `${JSON.stringify(tree, null, 2)}\n`);
  await rename(partial, path);
  console.log(`    created in ${createdSeconds.toFixed(1)} s (${(tree.files / createdSeconds).toFixed(0)} files/s)`);
  return tree;
}

export async function runManyFiles(ctx: ScenarioContext): Promise<ManyFilesResult> {
  const files = manyFilesCount();
  const label = `${files.toLocaleString('en-US')} files`;
  const start = loadavg();
  console.log(`\n${label}: initial backup, then unchanged re-backup, of ${files} small files (bench/manyfiles-gen.ts)`);
  const tree = await ensureTree(ctx.benchDir, files);
  console.log(`  tree ${tree.path}: ${tree.files} files, ${tree.dirs} dirs, ${(tree.bytes / 1e6).toFixed(1)} MB${tree.createdSeconds === null ? ` (cached; created in ${tree.createSecondsOriginally.toFixed(1)} s)` : ''}`);
  const t0 = process.hrtime.bigint();
  await warmUp(tree.path);
  const warmUpSeconds = secs(t0);
  console.log(`  page cache warmed by reading the whole tree once (tar to a pipe, ${warmUpSeconds.toFixed(1)} s); again, with the tool's repository and cache, before every step`);

  const work = join(ctx.benchDir, 'work-scale', 'manyfiles');
  await rm(work, { recursive: true, force: true });
  const runs: ToolRun[] = [];
  for (const name of ctx.tools) {
    const run = await initTool(ctx, name, join(work, name), label);
    if (run) runs.push(run);
  }
  const steps = [
    ['backup1', 'initial backup'],
    ['backup2', 'unchanged re-backup'],
  ] as const;
  for (const [step, what] of steps) {
    for (const run of runs) {
      if (step === 'backup2' && !run.steps.backup1?.ok) continue;
      await warmUpEach([tree.path, run.paths.repo, run.paths.home]);
      const rec = await measure(ctx, run, step, TOOLS[run.name].backup(run.paths, tree.path, step === 'backup1' ? 1 : 2));
      console.log(`  [${run.name}] ${label} ${what}: ${describeRun(rec)}`);
      if (!rec.ok) ctx.problems.push(`[${run.name}] ${label} ${what} failed: ${rec.stderrTail}`);
    }
  }
  for (const run of runs) {
    run.repoBytes = await duBytes(run.paths.repo);
    if (!ctx.keep) await rm(run.paths.repo, { recursive: true, force: true });
  }

  const hf = runs.find((r) => r.name === 'holdfast');
  const rs = runs.find((r) => r.name === 'restic');
  const hf1 = hf?.steps.backup1;
  const initialRssMB = hf1?.ok && hf1.maxRssKiB !== null ? (hf1.maxRssKiB * 1024) / 1e6 : null;
  const hf2 = hf?.steps.backup2?.ok ? hf.steps.backup2.seconds : null;
  const rs2 = rs?.steps.backup2?.ok ? rs.steps.backup2.seconds : null;
  const result: ManyFilesResult = {
    tree,
    warmUpSeconds,
    runs,
    targets: {
      initialRss: { what: `holdfast initial backup peak RSS < ${MANY_RSS_TARGET_MB} MB`, holdfastPeakRssMB: initialRssMB, pass: initialRssMB === null ? null : initialRssMB < MANY_RSS_TARGET_MB },
      unchanged: { what: 'holdfast unchanged re-backup faster than restic', holdfastSeconds: hf2, resticSeconds: rs2, pass: hf2 === null || rs2 === null ? null : hf2 < rs2 },
    },
    loadAverage: { start, end: loadavg() },
    notes: [],
  };
  result.notes.push(
    `${label}: ${tree.files} files (0..4 KiB: 75% log-like text, 25% random), ${tree.dirs} dirs, ${(tree.bytes / 1e6).toFixed(1)} MB; ` +
      `created once in ${tree.createSecondsOriginally.toFixed(1)} s by ${tree.workers} worker threads, cached in ${tree.path}`,
  );
  for (const run of runs) {
    for (const step of ['backup1', 'backup2']) {
      const line = await filesLine(run.steps[step]);
      if (line) result.notes.push(`${label}, ${run.name} ${step === 'backup1' ? 'initial' : 'unchanged'}: ${line}`);
    }
  }
  result.notes.push(`${label}: load average ${start.map((l) => l.toFixed(1)).join(' ')} at start, ${result.loadAverage.end.map((l) => l.toFixed(1)).join(' ')} at end`);
  return result;
}

export function manyFilesRows(m: ManyFilesResult): ScaleRow[] {
  const label = `${m.tree.files.toLocaleString('en-US')} files`;
  const cells = (f: (r: ToolRun) => { value: number | null; text: string }): ScaleRow['cells'] => Object.fromEntries(m.runs.map((r) => [r.name, f(r)]));
  return [
    { label: `${label}: initial backup (s)`, cells: cells((r) => stepCell(r, 'backup1', 'seconds')), target: '', verdict: '' },
    {
      label: `${label}: initial backup peak RSS (MB)`,
      cells: cells((r) => stepCell(r, 'backup1', 'rss')),
      target: `< ${MANY_RSS_TARGET_MB / 1000} GB`,
      verdict: verdict(m.targets.initialRss.pass),
    },
    { label: `${label}: unchanged re-backup (s)`, cells: cells((r) => stepCell(r, 'backup2', 'seconds')), target: '< restic', verdict: verdict(m.targets.unchanged.pass) },
    { label: `${label}: unchanged re-backup peak RSS (MB)`, cells: cells((r) => stepCell(r, 'backup2', 'rss')), target: '', verdict: '' },
    { label: `${label}: repository size (MB)`, cells: cells((r) => repoCell(r, ['backup1', 'backup2'])), target: '', verdict: '' },
  ];
}

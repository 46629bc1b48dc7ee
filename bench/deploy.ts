// Deploy scenario: small, frequent backups. A generated tree of BENCH_DEPLOY_FILES
// (default 4,000) files, about 10 KiB each on average (tens of MB), is backed up
// once, then "deployed" BENCH_DEPLOY_ROUNDS times (default 5): every file gets a
// new mtime and 2% of them new content of the same size, and every tool backs it
// up again after each round. Most of such a backup is fixed cost (process start,
// key derivation, index load, worker start), which is what this scenario weighs.
// Also measured: a bare snapshot listing, three times, the fixed cost alone.
//
// Deterministic: the same count and round give the same tree. The tree lives in
// the scenario's work dir and is written afresh every run (about a second).
// Target from issue 15: holdfast's deploy re-backup ≤ 0.5 of restic's (median).

import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { UserError, warmUpEach } from './corpus.js';
import { fillRandom, prng, textPool } from './datagen.js';
import { duBytes, runMeasured, type Cmd } from './measure.js';
import { withSample, type ScaleRow, type StepRecord } from './report.js';
import { describeRun, filesLine, initTool, repoCell, stepCell, verdict, type ScenarioContext, type ToolRun } from './scale-common.js';
import { TOOLS } from './tools.js';

/** Target: holdfast's median deploy re-backup at most this fraction of restic's. */
export const DEPLOY_RATIO_TARGET = 0.5;
const PER_DIR = 40;
/** Share of the files whose content a deploy round changes, in percent. */
const CHANGED_PERCENT = 2;
/** mtime of the generated tree; round k sets every file to this plus k hours. */
const BASE_MTIME = 1_764_000_000;
const LISTINGS = 3;

export interface DeployTree {
  path: string;
  files: number;
  bytes: number;
}

export interface DeployResult {
  tree: DeployTree;
  rounds: number;
  /** Files whose content each round changed. */
  changedPerRound: number;
  runs: ToolRun[];
  target: { what: string; holdfastSeconds: number | null; resticSeconds: number | null; ratio: number | null; pass: boolean | null };
  loadAverage: { start: number[]; end: number[] };
  notes: string[];
}

function envCount(name: string, fallback: number, max: number): number {
  const spec = process.env[name] ?? String(fallback);
  const n = Number(spec);
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new UserError(`${name}=${spec}: give a whole number from 1 to ${max}`);
  return n;
}

/** BENCH_DEPLOY_FILES: the tree's file count (default 4000). */
export const deployFiles = (): number => envCount('BENCH_DEPLOY_FILES', 4000, 1_000_000);
/** BENCH_DEPLOY_ROUNDS: how many deploys follow the initial backup (default 5). */
export const deployRounds = (): number => envCount('BENCH_DEPLOY_ROUNDS', 5, 50);

function filePath(root: string, i: number): string {
  const d = Math.floor(i / PER_DIR);
  return join(root, `m${String(Math.floor(d / 10)).padStart(3, '0')}`, `d${d % 10}`, `f${String(i % PER_DIR).padStart(2, '0')}.${i % 20 === 0 ? 'bin' : 'js'}`);
}

/**
 * Content of file `i` in version `v`: 95% text (a header naming file and
 * version, then a slice of a shared log-like pool) of 0.5–16 KiB, 5% random
 * bytes of 16–80 KiB. The size depends on `i` alone, so a new version keeps it.
 */
function content(pool: Buffer, i: number, v: number): Buffer {
  const r = prng(Math.imul(i, 0x9e3779b1) ^ 0xde9107);
  const binary = i % 20 === 0;
  const size = binary ? 16_384 + (r() % 65_536) : 512 + (r() % 15_873);
  const buf = Buffer.alloc(size);
  if (binary) {
    fillRandom(prng(r() ^ Math.imul(v + 1, 0x85ebca6b)), buf);
  } else {
    const header = buf.write(`// holdfast bench deploy: file ${i}, version ${v}\n`, 0, 'latin1');
    const from = (r() + v * 7919) % (pool.length - size);
    pool.copy(buf, header, from, from + size - header);
  }
  return buf;
}

/** The files deploy round `round` (from 1) rewrites: CHANGED_PERCENT of them, picked by a PRNG of the round. */
function changedFiles(files: number, round: number): Set<number> {
  const r = prng(0xc0ffee ^ Math.imul(round, 0x27d4eb2d));
  const want = Math.max(1, Math.round((files * CHANGED_PERCENT) / 100));
  const picked = new Set<number>();
  while (picked.size < want) picked.add(r() % files);
  return picked;
}

/** Writes version 0 of the tree into `root` (which must not exist). */
function writeTree(root: string, files: number): DeployTree {
  const pool = textPool(0xde9107, 1 << 20);
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const p = filePath(root, i);
    if (i % PER_DIR === 0) mkdirSync(join(p, '..'), { recursive: true });
    const data = content(pool, i, 0);
    writeFileSync(p, data, { mode: 0o644 });
    utimesSync(p, BASE_MTIME, BASE_MTIME);
    bytes += data.length;
  }
  return { path: root, files, bytes };
}

/** Deploy round `round`: new content for the changed files, a new mtime for every file. */
function deploy(tree: DeployTree, round: number): number {
  const pool = textPool(0xde9107, 1 << 20);
  const changed = changedFiles(tree.files, round);
  const mtime = BASE_MTIME + round * 3600;
  for (let i = 0; i < tree.files; i++) {
    const p = filePath(tree.path, i);
    if (changed.has(i)) writeFileSync(p, content(pool, i, round));
    utimesSync(p, mtime, mtime);
  }
  return changed.size;
}

const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

export async function runDeploy(ctx: ScenarioContext): Promise<DeployResult> {
  const files = deployFiles();
  const rounds = deployRounds();
  const start = loadavg();
  console.log(`\ndeploy: ${files} files backed up, then ${rounds} deploys (every mtime new, ${CHANGED_PERCENT}% of the content), each backed up again`);
  const work = join(ctx.benchDir, 'work-scale', 'deploy');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const t0 = process.hrtime.bigint();
  const tree = writeTree(join(work, 'src'), files);
  console.log(`  tree ${tree.path}: ${tree.files} files, ${(tree.bytes / 1e6).toFixed(1)} MB (written in ${secs(t0).toFixed(1)} s)`);

  const runs: ToolRun[] = [];
  for (const name of ctx.tools) {
    const run = await initTool(ctx, name, join(work, name), 'deploy');
    if (run) runs.push(run);
  }
  /** Runs `cmd` as repetition `k` of `name`, the tree, repository and cache read first; `seconds` is the median. */
  const step = async (run: ToolRun, name: string, k: number, cmd: Cmd): Promise<StepRecord> => {
    await warmUpEach([tree.path, run.paths.repo, run.paths.home]);
    const rec: StepRecord = { ...(await runMeasured(cmd, join(run.paths.dir, 'logs', k === 0 ? name : `${name}-${k + 1}`), ctx.timeoutSec)), skipped: false };
    run.steps[name] = withSample(run.steps[name], rec);
    if (!rec.ok) ctx.problems.push(`[${run.name}] deploy ${name} failed: ${rec.stderrTail}`);
    return rec;
  };
  const rotated = (k: number): ToolRun[] => [...runs.slice(k % runs.length), ...runs.slice(0, k % runs.length)];

  for (const run of runs) {
    const rec = await step(run, 'initial', 0, TOOLS[run.name].backup(run.paths, tree.path, 1));
    console.log(`  [${run.name}] deploy initial backup: ${describeRun(rec)}`);
  }
  let changedPerRound = 0;
  for (let k = 0; k < rounds; k++) {
    changedPerRound = deploy(tree, k + 1);
    for (const run of rotated(k)) {
      if (!run.steps.initial?.ok) continue;
      const rec = await step(run, 'deploy', k, TOOLS[run.name].backup(run.paths, tree.path, 100 + k));
      console.log(`  [${run.name}] deploy ${k + 1}/${rounds} re-backup: ${describeRun(rec)}`);
    }
  }
  for (let k = 0; k < LISTINGS; k++) {
    for (const run of rotated(k)) {
      if (!run.steps.initial?.ok) continue;
      const rec = await step(run, 'list', k, TOOLS[run.name].snapshots(run.paths));
      console.log(`  [${run.name}] deploy snapshot listing ${k + 1}/${LISTINGS}: ${describeRun(rec)}`);
    }
  }
  for (const run of runs) {
    run.repoBytes = await duBytes(run.paths.repo);
    if (!ctx.keep) await rm(run.paths.repo, { recursive: true, force: true });
  }
  if (!ctx.keep) await rm(tree.path, { recursive: true, force: true });

  const seconds = (name: string): number | null => {
    const s = runs.find((r) => r.name === name)?.steps.deploy;
    return s?.ok ? s.seconds : null;
  };
  const hf = seconds('holdfast');
  const rs = seconds('restic');
  const ratio = hf === null || rs === null ? null : hf / rs;
  const result: DeployResult = {
    tree,
    rounds,
    changedPerRound,
    runs,
    target: { what: `holdfast deploy re-backup ≤ ${DEPLOY_RATIO_TARGET} of restic's (median of ${rounds})`, holdfastSeconds: hf, resticSeconds: rs, ratio, pass: ratio === null ? null : ratio <= DEPLOY_RATIO_TARGET },
    loadAverage: { start, end: loadavg() },
    notes: [],
  };
  result.notes.push(
    `deploy: ${tree.files} files in ${Math.ceil(tree.files / PER_DIR)} dirs, ${(tree.bytes / 1e6).toFixed(1)} MB (95% text of 0.5–16 KiB, 5% random of 16–80 KiB); ` +
      `each deploy sets every mtime and rewrites ${changedPerRound} files (same sizes); tools take turns to go first; median (min–max) of ${rounds} deploys and of ${LISTINGS} listings`,
  );
  for (const run of runs) {
    const line = await filesLine(run.steps.deploy);
    if (line) result.notes.push(`deploy, ${run.name} (last deploy): ${line}`);
  }
  result.notes.push(`deploy: load average ${start.map((l) => l.toFixed(1)).join(' ')} at start, ${result.loadAverage.end.map((l) => l.toFixed(1)).join(' ')} at end`);
  return result;
}

/** A cell of the median and, when there are several samples, their range. */
function spreadCell(run: ToolRun, step: string): { value: number | null; text: string } {
  const cell = stepCell(run, step, 'seconds');
  const samples = run.steps[step]?.samples ?? [];
  if (cell.value === null || samples.length < 2) return cell;
  return { ...cell, text: `${cell.text} (${Math.min(...samples).toFixed(2)}–${Math.max(...samples).toFixed(2)})` };
}

export function deployRows(d: DeployResult): ScaleRow[] {
  const cells = (f: (r: ToolRun) => { value: number | null; text: string }): ScaleRow['cells'] => Object.fromEntries(d.runs.map((r) => [r.name, f(r)]));
  return [
    { label: `deploy: initial backup (s)`, cells: cells((r) => stepCell(r, 'initial', 'seconds')), target: '', verdict: '' },
    { label: `deploy: re-backup after a deploy (s)`, cells: cells((r) => spreadCell(r, 'deploy')), target: `≤ ${DEPLOY_RATIO_TARGET}x restic`, verdict: verdict(d.target.pass) },
    { label: `deploy: re-backup peak RSS (MB)`, cells: cells((r) => stepCell(r, 'deploy', 'rss')), target: '', verdict: '' },
    { label: `deploy: bare snapshot listing (s)`, cells: cells((r) => spreadCell(r, 'list')), target: '', verdict: '' },
    { label: `deploy: repository size (MB)`, cells: cells((r) => repoCell(r, ['initial', 'deploy'])), target: '', verdict: '' },
  ];
}

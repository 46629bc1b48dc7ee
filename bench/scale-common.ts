// Helpers shared by the scenarios beside the tree (bench/stream.ts, manyfiles.ts,
// deploy.ts, s3.ts, server.ts): a tool's directories and init, measured steps,
// table cells, and BENCH_REPEAT, which the tree scenario reads too.

import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from './corpus.js';
import { runMeasured, type Cmd, type RunResult } from './measure.js';
import type { StepRecord } from './report.js';
import { TOOLS, wipeRepo, type ToolName, type ToolPaths } from './tools.js';

/** One tool in one scenario: its own repository and cache under <scenario dir>/<tool>/. */
export interface ToolRun {
  name: ToolName;
  paths: ToolPaths;
  settings: string;
  steps: Record<string, StepRecord>;
  repoBytes: number | null;
}

export interface ScenarioContext {
  benchDir: string;
  /** Tools to run (available ones; unavailable ones are reported and left out). */
  tools: ToolName[];
  timeoutSec: number;
  keep: boolean;
  problems: string[];
}

/** BENCH_REPEAT: how many times the repeatable steps of the tree and server scenarios run (default 3). */
export function benchRepeat(): number {
  const spec = process.env.BENCH_REPEAT;
  if (spec === undefined || spec.trim() === '') return 3;
  const n = Number(spec);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new UserError('BENCH_REPEAT must be a whole number from 1 to 9');
  return n;
}

export function describeRun(r: RunResult): string {
  if (r.ok) {
    const rss = r.maxRssKiB === null ? '' : `, peak RSS ${fmtMB(r.maxRssKiB)} MB`;
    return `${r.seconds.toFixed(2)} s${rss}`;
  }
  const why = r.timedOut ? 'timed out' : r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`;
  return `FAILED (${why}) after ${r.seconds.toFixed(2)} s: ${r.stderrTail.split('\n').slice(-3).join(' | ')}`;
}

export const fmtMB = (kib: number): string => ((kib * 1024) / 1e6).toFixed(0);

/** The tool's environment (repository, password, cache dir), as tools.ts sets it. */
export function toolEnv(name: ToolName, p: ToolPaths): Record<string, string> {
  return TOOLS[name].backup(p, '.', 0).env ?? {};
}

/** Fresh directories and repository for `name` under `dir`; runs init (with fallbacks, as run.ts). */
export async function initTool(ctx: ScenarioContext, name: ToolName, dir: string, label: string): Promise<ToolRun | null> {
  const paths: ToolPaths = { dir, repo: join(dir, 'repo'), home: join(dir, 'home') };
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'logs'), { recursive: true });
  await mkdir(paths.home, { recursive: true });
  const run: ToolRun = { name, paths, settings: '', steps: {}, repoBytes: null };
  for (const a of await TOOLS[name].initAttempts(paths)) {
    await wipeRepo(paths);
    const rec = await measure(ctx, run, 'init', a.cmd);
    if (rec.ok) {
      run.settings = a.settings;
      return run;
    }
  }
  const rec = run.steps.init;
  console.log(`  [${name}] ${label} init: ${rec ? describeRun(rec) : 'FAILED'}`);
  ctx.problems.push(`[${name}] ${label}: init failed: ${rec?.stderrTail ?? ''}`);
  return null;
}

/** One measured step (runMeasured syncs first: no tool pays for the previous one's writeback). */
export async function measure(ctx: ScenarioContext, run: ToolRun, step: string, cmd: Cmd): Promise<StepRecord> {
  const rec: StepRecord = { ...(await runMeasured(cmd, join(run.paths.dir, 'logs', step), ctx.timeoutSec)), skipped: false };
  run.steps[step] = rec;
  return rec;
}

export function stepCell(run: ToolRun | undefined, step: string, what: 'seconds' | 'rss'): { value: number | null; text: string } {
  const s = run?.steps[step];
  if (!run) return { value: null, text: '-' };
  if (!s?.ok) return { value: null, text: 'FAILED' };
  if (what === 'seconds') return { value: s.seconds, text: s.seconds.toFixed(2) };
  if (s.maxRssKiB === null) return { value: null, text: 'n/a' };
  return { value: (s.maxRssKiB * 1024) / 1e6, text: fmtMB(s.maxRssKiB) };
}

export function repoCell(run: ToolRun | undefined, steps: string[]): { value: number | null; text: string } {
  if (!run) return { value: null, text: '-' };
  if (!steps.every((s) => run.steps[s]?.ok) || run.repoBytes === null) return { value: null, text: 'FAILED' };
  return { value: run.repoBytes / 1e6, text: (run.repoBytes / 1e6).toFixed(1) };
}

/** A cell of a step's median and, when it ran several times, their range; with MB/s when `mb` is given. */
export function medianCell(rec: StepRecord | undefined, mb: number | null = null): { value: number | null; text: string } {
  if (rec === undefined) return { value: null, text: '-' };
  if (!rec.ok) return { value: null, text: 'FAILED' };
  const xs = rec.samples ?? [rec.seconds];
  const spread = xs.length > 1 ? ` (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : '';
  return { value: rec.seconds, text: `${rec.seconds.toFixed(2)}${spread}${mb === null ? '' : `, ${(mb / rec.seconds).toFixed(0)} MB/s`}` };
}

export function verdict(pass: boolean | null): string {
  return pass === null ? '-' : pass ? 'PASS' : 'FAIL';
}

/** PASS when both steps ran and `a` took at most `target` times `b`'s time, '-' when one failed. */
export function ratioVerdict(a: StepRecord | undefined, b: StepRecord | undefined, target: number): string {
  return verdict(a?.ok && b?.ok ? a.seconds / b.seconds <= target : null);
}

/** The first "Files: ..." summary line a backup printed (holdfast, restic), for the notes. */
export async function filesLine(rec: StepRecord | undefined): Promise<string | null> {
  if (!rec?.ok) return null;
  const out = await readFile(rec.stdoutFile, 'utf8').catch(() => '');
  return out.split('\n').find((l) => /^Files:/.test(l))?.replace(/\s+/g, ' ').trim() ?? null;
}

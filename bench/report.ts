// Result model and text rendering for the benchmark.

import { writeFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import type { RunResult, TreeStats } from './measure.js';
import type { ToolName } from './tools.js';

export const STEPS = ['init', 'backup1', 'backup2', 'backup3', 'restore'] as const;
export type StepName = (typeof STEPS)[number];

export const STEP_LABELS: Record<StepName, string> = {
  init: 'init',
  backup1: 'initial backup',
  backup2: 'unchanged re-backup',
  backup3: 're-backup after small change',
  restore: 'full restore',
};

export interface StepRecord extends RunResult {
  /** True if the step was not run (tool missing, or init failed). */
  skipped: boolean;
  /** Earlier failed alternatives (init only, e.g. borg repokey-blake2). */
  failedAttempts?: RunResult[];
  /** Wall-clock seconds of every repetition, in the order run (`seconds` is their median). */
  samples?: number[];
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * A step with one more repetition: `seconds` becomes the median of all of
 * them and peak RSS the highest; a failed repetition makes the step failed.
 */
export function withSample(prev: StepRecord | undefined, rec: StepRecord): StepRecord {
  const samples = [...(prev?.samples ?? []), rec.seconds];
  if (prev && !prev.ok) return { ...prev, samples };
  if (!rec.ok) return { ...rec, samples };
  const rss = [prev?.maxRssKiB, rec.maxRssKiB].filter((k): k is number => typeof k === 'number');
  return { ...rec, seconds: median(samples), maxRssKiB: rss.length > 0 ? Math.max(...rss) : null, samples };
}

export interface VerifyResult {
  ok: boolean;
  restoredRoot: string;
  expected: TreeStats;
  actual: TreeStats;
  diffs: string[];
}

export interface ToolResult {
  name: ToolName;
  version: string;
  settings: string;
  steps: Partial<Record<StepName, StepRecord>>;
  verify: VerifyResult | null;
  repoBytes: number | null;
  /** Size of the tool's local cache/config dir (not part of the repository). */
  localStateBytes: number | null;
}

const MB = 1e6;

interface Cell {
  value: number | null;
  text: string;
}

function stepCell(t: ToolResult, step: StepName): Cell {
  const s = t.steps[step];
  if (!s || !s.ok) return { value: null, text: 'FAILED' };
  let text = s.seconds.toFixed(2);
  if (s.samples && s.samples.length > 1) text += ` (${Math.min(...s.samples).toFixed(2)}–${Math.max(...s.samples).toFixed(2)})`;
  if (step === 'restore' && t.verify && !t.verify.ok) text += ' (!)';
  return { value: s.seconds, text };
}

function allOk(t: ToolResult): boolean {
  return STEPS.every((s) => t.steps[s]?.ok === true);
}

function backupsOk(t: ToolResult): boolean {
  return (['init', 'backup1', 'backup2', 'backup3'] as const).every((s) => t.steps[s]?.ok === true);
}

function repoCell(t: ToolResult): Cell {
  if (!backupsOk(t) || t.repoBytes === null) return { value: null, text: 'FAILED' };
  const v = t.repoBytes / MB;
  return { value: v, text: v.toFixed(1) };
}

export function peakRssKiB(t: ToolResult): number | null {
  let max: number | null = null;
  for (const s of STEPS) {
    const k = t.steps[s]?.maxRssKiB;
    if (k !== null && k !== undefined) max = Math.max(max ?? 0, k);
  }
  return max;
}

function rssCell(t: ToolResult): Cell {
  if (!allOk(t)) return { value: null, text: 'FAILED' };
  const k = peakRssKiB(t);
  if (k === null) return { value: null, text: 'n/a' };
  const v = (k * 1024) / MB;
  return { value: v, text: v.toFixed(0) };
}

function ratio(a: Cell | undefined, b: Cell | undefined): string {
  if (!a || !b || a.value === null || b.value === null || b.value === 0) return '-';
  return `${(a.value / b.value).toFixed(2)}x`;
}

/** Rows of cells in columns: the first column left-aligned, the others right-aligned, a rule under the header. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), sep, ...rows.map(line)].join('\n');
}

/** The main table: rows = measurements, columns = tools + ratios to restic. */
export function mainTable(results: ToolResult[]): string {
  const byName = new Map(results.map((r) => [r.name, r]));
  const restic = byName.get('restic');
  const ratioCols = results.filter((r) => r.name !== 'restic' && restic).map((r) => r.name);
  const header = ['', ...results.map((r) => r.name), ...ratioCols.map((n) => `${n}/restic`)];
  const rowDefs: [string, (t: ToolResult) => Cell][] = [
    ['initial backup (s)', (t) => stepCell(t, 'backup1')],
    ['unchanged re-backup (s)', (t) => stepCell(t, 'backup2')],
    ['re-backup after small change (s)', (t) => stepCell(t, 'backup3')],
    ['full restore (s)', (t) => stepCell(t, 'restore')],
    ['repository size (MB)', repoCell],
    ['peak RSS (MB, max over steps)', rssCell],
  ];
  const rows = rowDefs.map(([label, f]) => {
    const cells = new Map(results.map((r) => [r.name, f(r)]));
    const resticCell = restic ? cells.get('restic') : undefined;
    return [
      label,
      ...results.map((r) => cells.get(r.name)?.text ?? ''),
      ...ratioCols.map((n) => ratio(cells.get(n), resticCell)),
    ];
  });
  return renderTable(header, rows);
}

/** Secondary table: time (median, and every repetition) and peak RSS of every step. */
export function stepTable(results: ToolResult[]): string {
  const header = ['step', ...results.map((r) => `${r.name} s`), ...results.map((r) => `${r.name} RSS MB`)];
  const rows = STEPS.map((step) => [
    STEP_LABELS[step],
    ...results.map((r) => {
      const s = r.steps[step];
      if (!s) return '-';
      if (s.skipped) return 'not run';
      if (!s.ok) return 'FAILED';
      const all = s.samples && s.samples.length > 1 ? ` (${s.samples.map((x) => x.toFixed(2)).join(' ')})` : '';
      return `${s.seconds.toFixed(2)}${all}`;
    }),
    ...results.map((r) => {
      const k = r.steps[step]?.maxRssKiB;
      return k === null || k === undefined ? '-' : ((k * 1024) / MB).toFixed(0);
    }),
  ]);
  return renderTable(header, rows);
}

export function fmtStats(s: TreeStats): string {
  return `${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${(s.bytes / MB).toFixed(1)} MB`;
}

/** A row of the stream / many-files table (bench/scenarios.ts): one cell per tool, an optional target. */
export interface ScaleRow {
  label: string;
  cells: Partial<Record<ToolName, Cell>>;
  /** e.g. "holdfast < 400 MB"; empty when the row has no target. */
  target: string;
  /** PASS / FAIL, or '-' when it could not be decided (a step failed); empty without a target. */
  verdict: string;
}

/** Stream and many-files scenarios: rows = measurements, columns = tools, ratios to restic, target, PASS/FAIL. */
export function scaleTable(tools: ToolName[], rows: ScaleRow[]): string {
  const ratioCols = tools.includes('restic') ? tools.filter((t) => t !== 'restic') : [];
  const header = ['', ...tools, ...ratioCols.map((n) => `${n}/restic`), 'target', 'result'];
  const body = rows.map((row) => [
    row.label,
    ...tools.map((t) => row.cells[t]?.text ?? '-'),
    ...ratioCols.map((n) => ratio(row.cells[n], row.cells.restic)),
    row.target,
    row.verdict,
  ]);
  return renderTable(header, body);
}

/**
 * Writes a run's results as JSON (`results-<start>.json` in `benchDir`): the
 * run's times and host, then `fields`; says where, and returns the exit
 * status (3 when problems were reported).
 */
export async function writeResults(benchDir: string, runStarted: Date, fields: Record<string, unknown>, problems: number): Promise<number> {
  const jsonFile = join(benchDir, `results-${runStarted.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = {
    startedAt: runStarted.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, totalMemBytes: totalmem(), kernel: release(), node: process.version },
    ...fields,
  };
  await writeFile(jsonFile, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nJSON results: ${jsonFile}`);
  if (problems > 0) console.log(`${problems} problem(s) reported above; exiting with status 3.`);
  return problems > 0 ? 3 : 0;
}

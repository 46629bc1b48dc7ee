/**
 * Progress of long jobs: a status bar on a terminal (stderr), JSON lines on
 * stdout with --json, nothing with --quiet. HOLDFAST_PROGRESS_FPS sets how
 * many updates a second are shown (default 5), as RESTIC_PROGRESS_FPS does.
 *
 * The figures are what was done against what there is to do. What there is
 * is counted beside the job (`Totals`); until that count is complete it is
 * at least what was counted so far, what was done already, and the
 * `estimate` (for a backup, the size of its parent snapshot), or unknown
 * (0) while nothing is counted or estimated. The fraction stays below 1
 * until the count is complete.
 */
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import { formatBytes, formatDuration, type GlobalOptions } from './context.js';
import { printable } from './printable.js';

export interface ProgressState {
  files: number;
  bytes: number;
  errors?: number;
  current?: string;
}

/**
 * The fields of a `--json` status line besides `message_type` and the times:
 * a command's own vocabulary (a restore's is restic's restore names).
 */
export type StatusFields<P extends ProgressState> = (p: P, f: Figures) => Record<string, unknown>;

/** A backup's status fields, restic's names. */
export const backupStatus: StatusFields<ProgressState> = (p, f) => ({
  percent_done: f.fraction,
  total_files: f.totalFiles,
  files_done: p.files,
  total_bytes: f.totalBytes,
  bytes_done: p.bytes,
  error_count: p.errors ?? 0,
  current_files: p.current ? [p.current] : [],
});

export interface Totals {
  files: number;
  bytes: number;
  /** True once `files` and `bytes` are the whole of the job. */
  done: boolean;
  /** What the job is expected to hold while the count is not done (the parent snapshot's size). */
  estimate?: { readonly files: number; readonly bytes: number };
}

/** The figures of one status update. */
export interface Figures {
  /** Done, from 0 to 1. */
  readonly fraction: number;
  readonly totalFiles: number | undefined;
  readonly totalBytes: number | undefined;
  /** True when the totals are counted or estimated, not merely what was seen so far. */
  readonly known: boolean;
  /** Seconds left at the rate so far; undefined while there is nothing to go by, or too little (`ETA_AFTER_SECONDS`, `ETA_AFTER_FRACTION`). */
  readonly eta: number | undefined;
  /** Bytes a second so far. */
  readonly rate: number;
}

/**
 * No ETA before a second has passed or 1 % is done: the first update of a
 * 0.3 s backup, 4e-7 done, said 69 hours.
 */
const ETA_AFTER_SECONDS = 1;
const ETA_AFTER_FRACTION = 0.01;

/** Below 1 while the count of what there is to do is still going on. */
const UNCOUNTED_MAX = 0.99;

/** The figures of `p` against `totals`, `elapsed` seconds into the job. */
export function progressFigures(p: ProgressState, totals: Totals | undefined, elapsed: number): Figures {
  const rate = elapsed > 0 ? p.bytes / elapsed : 0;
  if (!totals) return { fraction: 0, totalFiles: undefined, totalBytes: undefined, known: false, eta: undefined, rate };
  const { done, estimate } = totals;
  // Nothing counted nor estimated yet (a stream of unknown size): no total to go by.
  const atLeast = (counted: number, expected: number, seen: number): number => (counted > 0 || expected > 0 ? Math.max(counted, expected, seen) : 0);
  const totalFiles = done ? totals.files : atLeast(totals.files, estimate?.files ?? 0, p.files);
  const totalBytes = done ? totals.bytes : atLeast(totals.bytes, estimate?.bytes ?? 0, p.bytes);
  const part = totalBytes > 0 ? p.bytes / totalBytes : totalFiles > 0 ? p.files / totalFiles : 0;
  const fraction = Math.min(part, done ? 1 : UNCOUNTED_MAX);
  const known = done || estimate !== undefined;
  const measured = elapsed >= ETA_AFTER_SECONDS || fraction >= ETA_AFTER_FRACTION;
  const eta = known && measured && rate > 0 ? Math.max(0, (totalBytes - p.bytes) / rate) : undefined;
  return { fraction, totalFiles, totalBytes, known, eta, rate };
}

/** Milliseconds between updates: HOLDFAST_PROGRESS_FPS updates a second, else 5. */
function updateInterval(): number {
  const fps = Number(process.env['HOLDFAST_PROGRESS_FPS']);
  return fps > 0 ? 1000 / fps : 200;
}

export class Progress<P extends ProgressState = ProgressState> {
  private bar: cliProgress.SingleBar | undefined;
  private last = -Infinity;
  private readonly interval = updateInterval();
  private readonly start = performance.now();
  private readonly fields: StatusFields<P>;

  /**
   * `unit`: what `files` counts, on the bar (`copy` counts packs); `fields`:
   * what a `--json` status line says (a backup's by default).
   */
  constructor(
    private readonly g: GlobalOptions,
    private readonly totals?: Totals,
    { unit = 'files', fields = backupStatus as StatusFields<P> }: { unit?: string; fields?: StatusFields<P> } = {},
  ) {
    this.fields = fields;
    if (!g.quiet && !g.json && process.stderr.isTTY) {
      // Loaded only for a terminal: it cost every backup and restore 20 ms of CPU (docs/decisions.md, "Fixed costs per run").
      const { SingleBar } = createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
      this.bar = new SingleBar({
        format: `{percentage}% {bar} {files} ${unit} {bytes} {rate}/s ETA {etaText} {current}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
        barsize: 20,
        fps: 5,
      });
      this.bar.start(1, 0, { files: 0, bytes: '0 B', rate: '0 B', etaText: '?', current: '' });
    }
  }

  /**
   * Reports the current state; throttled to the update interval, but for
   * `final`: the last status, which says what the summary says.
   */
  update(p: P, final = false): void {
    const now = performance.now();
    if (!final && now - this.last < this.interval) return;
    this.last = now;
    const elapsed = (now - this.start) / 1000;
    const f = progressFigures(p, this.totals, elapsed);
    if (this.g.json && !this.g.quiet) {
      process.stdout.write(`${JSON.stringify({
        message_type: 'status',
        seconds_elapsed: Math.round(elapsed),
        ...(f.eta === undefined ? {} : { seconds_remaining: Math.round(f.eta) }),
        ...this.fields(p, f),
      })}\n`);
    }
    this.bar?.update(f.fraction, {
      files: f.known ? `${p.files}/${f.totalFiles}` : p.files,
      bytes: formatBytes(p.bytes),
      rate: formatBytes(f.rate),
      etaText: f.eta === undefined ? '?' : formatDuration(f.eta),
      current: printable(p.current ?? '').slice(-40),
    });
  }

  /** Removes the bar before the summary is printed. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

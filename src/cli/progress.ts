/**
 * Progress of long jobs: a status bar on a terminal (stderr), JSON lines on
 * stdout with --json, nothing with --quiet.
 */
import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, type GlobalOptions } from './context.js';

export interface ProgressState {
  files: number;
  bytes: number;
  errors?: number;
  current?: string;
}

export interface Totals {
  files: number;
  bytes: number;
  done: boolean;
}

export class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private last = 0;
  private readonly start = Date.now();

  constructor(private readonly g: GlobalOptions, private readonly totals?: Totals) {
    if (!g.quiet && !g.json && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar({
        format: '{percentage}% {bar} {files} files {bytes} {rate}/s ETA {etaText} {current}',
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
        barsize: 20,
        fps: 5,
      });
      this.bar.start(1, 0, { files: 0, bytes: '0 B', rate: '0 B', etaText: '?', current: '' });
    }
  }

  /** Reports the current state; throttled to a few updates a second. */
  update(p: ProgressState): void {
    const now = Date.now();
    if (now - this.last < 200) return;
    this.last = now;
    const elapsed = (now - this.start) / 1000;
    const rate = elapsed > 0 ? p.bytes / elapsed : 0;
    const total = this.totals;
    const fraction = total && total.bytes > 0 ? Math.min(1, p.bytes / total.bytes) : 0;
    const eta = total?.done && rate > 0 ? Math.max(0, (total.bytes - p.bytes) / rate) : undefined;
    if (this.g.json && !this.g.quiet) {
      process.stdout.write(`${JSON.stringify({
        message_type: 'status',
        seconds_elapsed: Math.round(elapsed),
        ...(eta === undefined ? {} : { seconds_remaining: Math.round(eta) }),
        percent_done: fraction,
        total_files: total?.files,
        files_done: p.files,
        total_bytes: total?.bytes,
        bytes_done: p.bytes,
        error_count: p.errors ?? 0,
        current_files: p.current ? [p.current] : [],
      })}\n`);
    }
    this.bar?.update(fraction, {
      files: total?.done ? `${p.files}/${total.files}` : p.files,
      bytes: formatBytes(p.bytes),
      rate: formatBytes(rate),
      etaText: eta === undefined ? '?' : formatDuration(eta),
      current: (p.current ?? '').slice(-40),
    });
  }

  /** Removes the bar before the summary is printed. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

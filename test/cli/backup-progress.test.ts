/**
 * Backup progress in --json status lines: the figures count what was done
 * (a file once its content is stored, a large file chunk by chunk), against
 * totals counted beside the backup or, until that count is done, the parent
 * snapshot's size. HOLDFAST_PROGRESS_FPS set far above the rate of events
 * makes every event a line, so the lines do not depend on timing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { progressFigures } from '../../src/cli/progress.js';
import { formatBytes } from '../../src/cli/context.js';

interface Status {
  percent_done: number;
  seconds_elapsed: number;
  seconds_remaining?: number;
  files_done: number;
  total_files: number;
  bytes_done: number;
  total_bytes: number;
}

/** The status lines and the summary of a `backup --json`. */
async function backup(s: Sandbox, src: string): Promise<{ lines: Status[]; summary: Record<string, number> }> {
  const r = await s.ok(['backup', '--json', src], { env: { HOLDFAST_PROGRESS_FPS: '1000000000' } });
  const all = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const summary = all.pop()!;
  assert.equal(summary['message_type'], 'summary');
  assert.ok(all.every((l) => l['message_type'] === 'status'));
  return { lines: all as unknown as Status[], summary: summary as Record<string, number> };
}

/** Checks what every backup's lines must show, against its summary. */
function checkLines(lines: Status[], summary: Record<string, number>): void {
  assert.ok(lines.length >= 5, `${lines.length} status lines`);
  const files = summary['files_new']! + summary['files_changed']! + summary['files_unmodified']!;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const where = `line ${i}: ${JSON.stringify(l)}`;
    if (i > 0) {
      const prev = lines[i - 1]!;
      for (const k of ['seconds_elapsed', 'files_done', 'bytes_done'] as const) assert.ok(l[k] >= prev[k], `${k} went back at ${where}`);
      // The fraction may drop while the count still finds files; once the total is final it only grows.
      if (prev.total_bytes === summary['total_bytes_processed']) assert.ok(l.percent_done >= prev.percent_done && l.total_bytes === prev.total_bytes, `percent_done went back at ${where}`);
    }
    // Before the count has found anything, there is no total (0), and the fraction is 0.
    if (l.total_bytes === 0) assert.equal(l.percent_done, 0, where);
    else assert.ok(l.bytes_done <= l.total_bytes && l.files_done <= l.total_files, where);
    assert.ok(l.bytes_done <= summary['total_bytes_processed']! && l.files_done <= files, where);
    if (l.bytes_done < summary['total_bytes_processed']!) assert.ok(l.percent_done < 1, `not done, yet 100 % at ${where}`);
    if (l.total_bytes > 0) assert.ok(Math.abs(l.percent_done - Math.min(l.bytes_done / l.total_bytes, l.percent_done)) < 1e-9, where);
  }
  const last = lines.at(-1)!;
  assert.deepEqual([last.bytes_done, last.total_bytes, last.files_done, last.total_files, last.percent_done], [summary['total_bytes_processed'], summary['total_bytes_processed'], files, files, 1]);
}

describe('backup progress', () => {
  let s: Sandbox;
  let src: string;

  before(async () => {
    s = await Sandbox.create();
    src = s.path('src');
    await mkdir(join(src, 'small'), { recursive: true });
    // A large file (over 32 MiB: chunked on the main thread) that costs no disk, files read whole by a worker, and small files in batches.
    await writeFile(join(src, 'a-large'), '');
    await truncate(join(src, 'a-large'), 33 << 20);
    for (const n of ['b-mid', 'c-mid', 'd-mid']) await writeFile(join(src, n), randomBytes(5 << 20));
    for (let i = 0; i < 10; i++) await writeFile(join(src, 'small', `f${i}`), randomBytes(50_000));
    await s.ok(['init']);
  });
  after(() => removeTree(s.dir));

  it('counts what is done, below 100 % until it is, and ends where the summary does', async () => {
    const { lines, summary } = await backup(s, src);
    checkLines(lines, summary);
    assert.ok(lines[0]!.percent_done < 0.5, `the first line says ${lines[0]!.percent_done}`);
    assert.equal(summary['total_bytes_processed'], (33 << 20) + 3 * (5 << 20) + 10 * 50_000);
    // The large file's bytes come chunk by chunk, not all at once.
    const steps = new Set(lines.map((l) => l.bytes_done));
    assert.ok(steps.size >= 8, `bytes_done took ${steps.size} values`);
  });

  it('estimates the whole by the parent snapshot until the count is done, so an ETA is there from the start', async () => {
    await writeFile(join(src, 'c-mid'), randomBytes(5 << 20));
    const { lines, summary } = await backup(s, src);
    checkLines(lines, summary);
    for (const l of lines) assert.notEqual(l.seconds_remaining, undefined, JSON.stringify(l));
  });
});

describe('progress figures', () => {
  it('take the largest of what was counted, what was done and the estimate until the count is done, and stay below 1', () => {
    const estimate = { files: 10, bytes: 1000 };
    let f = progressFigures({ files: 2, bytes: 100 }, { files: 1, bytes: 50, done: false, estimate }, 1);
    assert.deepEqual([f.totalFiles, f.totalBytes, f.fraction, f.eta, f.known], [10, 1000, 0.1, 9, true]);
    f = progressFigures({ files: 12, bytes: 1500 }, { files: 11, bytes: 1200, done: false, estimate }, 3);
    assert.deepEqual([f.totalFiles, f.totalBytes, f.fraction, f.eta], [12, 1500, 0.99, 0]);
    f = progressFigures({ files: 12, bytes: 1500 }, { files: 12, bytes: 1500, done: true, estimate }, 3);
    assert.deepEqual([f.totalBytes, f.fraction, f.eta], [1500, 1, 0]);
  });

  it('give no ETA before a second has passed or 1 % is done (a first update at 4e-7 done said 69 hours)', () => {
    const totals = { files: 10, bytes: 10_000_000, done: true };
    assert.equal(progressFigures({ files: 0, bytes: 4 }, totals, 0.2).eta, undefined);
    assert.equal(progressFigures({ files: 0, bytes: 4 }, totals, 0.999).eta, undefined);
    assert.equal(progressFigures({ files: 1, bytes: 100_000 }, totals, 0.2).eta, 19.8, '1 % done');
    assert.equal(progressFigures({ files: 0, bytes: 4 }, totals, 1).eta, 9_999_996 / 4, 'a second in');
  });

  it('print rates rounded like sizes (a rate below 1 KiB/s printed 1.8419143792694852 B)', () => {
    assert.equal(formatBytes(1.8419143792694852), '2 B');
    assert.equal(formatBytes(1023.4), '1023 B');
    assert.equal(formatBytes(1536.7), '1.50 KiB');
  });

  it('give no ETA while there is neither a complete count nor an estimate, and go by files when there are no bytes', () => {
    let f = progressFigures({ files: 1, bytes: 10 }, { files: 5, bytes: 100, done: false }, 1);
    assert.deepEqual([f.fraction, f.eta, f.known], [0.1, undefined, false]);
    f = progressFigures({ files: 1, bytes: 0 }, { files: 4, bytes: 0, done: true }, 1);
    assert.deepEqual([f.fraction, f.eta], [0.25, undefined]);
    // A stream of unknown size: nothing to measure against, not 99 %.
    f = progressFigures({ files: 0, bytes: 5000 }, { files: 0, bytes: 0, done: false }, 1);
    assert.deepEqual([f.fraction, f.totalBytes, f.eta], [0, 0, undefined]);
  });
});

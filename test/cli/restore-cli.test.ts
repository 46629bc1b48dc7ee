/**
 * `holdfast restore` as a user runs it: its --json output and progress, and
 * Ctrl-C while it waits on the repository.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { Sandbox, largestPack, type RunResult } from '../helpers/cli.js';
import { errorLines } from '../helpers/cli-errors.js';
import { writeRandom } from '../helpers/random-file.js';
import { assertSameTree } from '../helpers/restore-check.js';

/** A source folder of `files` small files, one larger one and an empty one, backed up; returns the source, file count and bytes. */
async function backedUp(s: Sandbox, files: number): Promise<{ src: string; count: number; bytes: number }> {
  await s.ok(['init']);
  const src = s.path('src');
  await fs.mkdir(join(src, 'sub'), { recursive: true });
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const text = `file ${i}\n`.repeat(i + 1);
    await fs.writeFile(join(src, 'sub', `f${i}.txt`), text);
    bytes += text.length;
  }
  await writeRandom(join(src, 'big.bin'), 1_000_000);
  // Last in walk order; empty files are created by the walk itself.
  await fs.writeFile(join(src, 'zz-last'), '');
  await s.ok(['backup', '-q', src]);
  return { src, count: files + 2, bytes: bytes + 1_000_000 };
}

describe('restore --json', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-restore-');
  });
  after(() => s.remove());

  it('writes only JSON lines: status lines with true totals, then a summary', async () => {
    const { src, count, bytes } = await backedUp(s, 40);
    const target = s.path('t');
    const r = await s.ok(['--json', 'restore', 'latest', '--target', target]);
    const lines = r.stdout.trim().split('\n');
    const messages = lines.map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
    const status = messages.filter((m) => m['message_type'] === 'status');
    assert.ok(status.length >= 1, r.stdout);
    for (const m of status) {
      assert.equal(m['total_files'], count, `status line ${JSON.stringify(m)}`);
      assert.equal(m['total_bytes'], bytes, `status line ${JSON.stringify(m)}`);
      assert.ok((m['files_restored'] as number) <= count && (m['percent_done'] as number) <= 1);
    }
    const summary = messages.pop()!;
    assert.equal(summary['message_type'], 'summary', r.stdout);
    assert.equal(summary['files_restored'], count);
    assert.equal(summary['total_files'], count);
    assert.equal(summary['bytes_restored'], bytes);
    assert.equal(summary['error_count'], 0);
    assertSameTree(src, join(target, src));
  });
});

/** The JSON lines a command printed. */
const jsonLines = (r: RunResult): Record<string, unknown>[] => r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

/** Status and summary share these names (restic's restore names). */
const FIGURES = ['total_files', 'files_restored', 'files_skipped', 'total_bytes', 'bytes_restored', 'bytes_skipped', 'error_count'] as const;
const figures = (m: Record<string, unknown>): unknown[] => FIGURES.map((k) => m[k]);

describe('restore --json: one vocabulary, the backup\'s bytes', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-restore-');
    await s.ok(['init']);
    // f and g are one file of 10 bytes under two names, h is 3 bytes: a backup processes 23 bytes.
    src = s.path('src');
    await fs.mkdir(src);
    await fs.writeFile(join(src, 'f'), '0123456789');
    await fs.link(join(src, 'f'), join(src, 'g'));
    await fs.writeFile(join(src, 'h'), 'abc');
    const backup = jsonLines(await s.ok(['--json', 'backup', src])).pop()!;
    assert.equal(backup['total_bytes_processed'], 23);
  });
  after(() => s.remove());

  it('every status counts each name of a hard link, the last one is the summary, and the text says the same bytes', async () => {
    const target = s.path('t1');
    const lines = jsonLines(await s.ok(['--json', 'restore', 'latest', '--target', target]));
    const summary = lines.pop()!;
    assert.equal(summary['message_type'], 'summary');
    assert.deepEqual(figures(summary), [3, 3, 0, 23, 23, 0, 0]);
    const status = lines.filter((m) => m['message_type'] === 'status');
    assert.ok(status.length >= 1);
    for (const m of status) {
      assert.equal(m['total_bytes'], 23, JSON.stringify(m));
      assert.equal(m['files_done'], undefined, 'a backup\'s name in a restore status');
    }
    const last = status.pop()!;
    assert.deepEqual(figures(last), figures(summary));
    assert.equal(last['percent_done'], 1);
    assertSameTree(src, join(target, src));
    const text = await s.ok(['restore', 'latest', '--target', s.path('t2')]);
    assert.match(text.stdout, /restored 3 files, \d+ folders, 23 B\n/);
  });

  it('--overwrite if-changed --verify: skipped bytes are the same 23, and the summary counts the files verified', async () => {
    const target = s.path('t3');
    await s.ok(['restore', 'latest', '--target', target]);
    const summary = jsonLines(await s.ok(['--json', 'restore', 'latest', '--target', target, '--overwrite', 'if-changed', '--verify'])).pop()!;
    // The two names of the hard-linked file are restored again (a file with several names is never kept: its
    // metadata would be set on every name); the third file is kept.
    assert.deepEqual(figures(summary), [3, 2, 1, 23, 20, 3, 0]);
    assert.equal(summary['files_verified'], 3);
    assert.equal(summary['verify_failed'], 0);
    const text = await s.ok(['restore', 'latest', '--target', target, '--verify']);
    assert.match(text.stdout, /verified 3 files: all match the snapshot/);
  });

  it('--json --quiet prints the summary and no status line, for restore and backup', async () => {
    const restore = jsonLines(await s.ok(['--json', '--quiet', 'restore', 'latest', '--target', s.path('t4')]));
    assert.deepEqual(restore.map((m) => m['message_type']), ['summary']);
    assert.equal(restore[0]!['bytes_restored'], 23);
    const backup = jsonLines(await s.ok(['--json', '--quiet', 'backup', src], { env: { HOLDFAST_PROGRESS_FPS: '1000' } }));
    assert.deepEqual(backup.map((m) => m['message_type']), ['summary']);
    assert.equal(backup[0]!['total_bytes_processed'], 23);
    // One name for the error count in status lines and summaries (the backup's summary said `errors`).
    assert.equal(backup[0]!['error_count'], 0);
    assert.equal(backup[0]!['errors'], undefined);
  });
});

describe('restore interrupted with Ctrl-C (SIGINT) or SIGTERM', () => {
  let s: Sandbox;
  beforeEach(async () => {
    s = await Sandbox.create('holdfast-restore-');
  });
  afterEach(() => s.remove());

  for (const signal of ['SIGINT', 'SIGTERM'] as const) it(`${signal} while a pack read hangs: exit 130, one plain message, and a later restore is complete`, { timeout: 60_000 }, async () => {
    const { src } = await backedUp(s, 5);
    // The pack becomes a FIFO: the restore's read of it waits until the test opens the other end.
    const pack = await largestPack(s);
    await fs.rename(pack, `${pack}.real`);
    execFileSync('mkfifo', [pack]);
    const target = s.path('t');
    const run = s.start(['restore', 'latest', '--target', target], { env: { HOLDFAST_WORKERS: '1' } });
    let stderr = '';
    run.child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    // The walk has ended once it has made the last file; the restore then waits for the pack.
    while (!existsSync(join(target, src, 'zz-last'))) await new Promise((r) => setTimeout(r, 20));
    run.child.kill(signal);
    let exited = false;
    void run.done.then(() => (exited = true));
    while (!exited) {
      // Once the restore has given up, let a read still waiting on the FIFO end, so the process can exit.
      if (stderr.includes('interrupted')) await fs.open(pack, constants.O_WRONLY | constants.O_NONBLOCK).then((h) => h.close(), () => undefined);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r: RunResult = await run.done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /interrupted: the restore is NOT complete/);
    assert.doesNotMatch(r.stderr, /worker pool is closed/);

    await fs.rm(pack);
    await fs.rename(`${pack}.real`, pack);
    const again = s.path('again');
    await s.ok(['restore', 'latest', '--target', again]);
    assertSameTree(src, join(again, src));
  });
});

describe('restore --exclude and --iexclude', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-restore-');
    await s.ok(['init']);
    src = s.path('src');
    await fs.mkdir(join(src, 'sub'), { recursive: true });
    await fs.mkdir(join(src, 'skipdir', 'deeper'), { recursive: true });
    for (const [name, text] of [['a.txt', 'a\n'], ['b.log', 'b\n'], ['sub/c.LOG', 'c\n'], ['sub/d.txt', 'd\n'], ['skipdir/deeper/e.txt', 'e\n'], ['zz.txt', 'z\n']]) {
      await fs.writeFile(join(src, name!), text!);
    }
    await s.ok(['backup', '-q', src]);
  });
  after(() => s.remove());

  /** The files below the restored source, relative, sorted. */
  async function filesIn(target: string): Promise<string[]> {
    const root = join(target, src);
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const e of await fs.readdir(join(root, rel), { withFileTypes: true })) {
        const p = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) await walk(p);
        else out.push(p);
      }
    };
    await walk('');
    return out.sort();
  }

  it('--exclude leaves out what matches (folders with everything below them), case and all', async () => {
    const target = s.path('t1');
    await s.ok(['restore', 'latest', '--target', target, '--exclude', '*.log', '--exclude', 'skipdir']);
    assert.deepEqual(await filesIn(target), ['a.txt', 'sub/c.LOG', 'sub/d.txt', 'zz.txt']);
    assert.equal(existsSync(join(target, src, 'skipdir')), false);
    assert.equal(await fs.readFile(join(target, src, 'sub', 'c.LOG'), 'utf8'), 'c\n');
  });

  it('--iexclude ignores case, and combines with --include', async () => {
    const target = s.path('t2');
    await s.ok(['restore', 'latest', '--target', target, '--iexclude', '*.log', '--include', join(src, 'sub')]);
    assert.deepEqual(await filesIn(target), ['sub/d.txt']);
  });

  // On main: "restoring snapshot …", then a raw "EEXIST: file already exists, mkdir …" (ENOTDIR below it).
  it('--target that is a file, or lies below one, is refused before anything is said or written', async () => {
    const file = s.path('a-file');
    await fs.writeFile(file, 'mine\n');
    for (const [target, what] of [[file, 'it'], [join(file, 'below'), file]] as const) {
      const r = await s.run(['restore', 'latest', '--target', target]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.deepEqual(errorLines(r), [`holdfast: cannot restore to ${target}: ${what} exists and is not a folder; nothing was restored`]);
    }
    assert.equal(await fs.readFile(file, 'utf8'), 'mine\n');
  });
});

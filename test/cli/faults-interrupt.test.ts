/**
 * Backups that do not end normally: killed with SIGKILL (power cut, OOM
 * killer), interrupted with Ctrl-C, and a file that grows while it is read.
 * None of them may damage what the repository held before, and a killed
 * backup's uploaded packs must be reused by the next one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type RunResult, type Started } from '../helpers/cli.js';
import { STACK, errorLines } from '../helpers/cli-errors.js';
import { writeRandom } from '../helpers/random-file.js';
import { assertRestores } from '../helpers/restore-check.js';

const MB = 1_000_000;

/** A repository with one snapshot of a small folder. */
async function withBaseline(s: Sandbox): Promise<{ snap: string; src: string }> {
  await s.ok(['init']);
  const src = s.path('keep');
  await fs.mkdir(join(src, 'etc'), { recursive: true });
  await writeRandom(join(src, 'small.bin'), 300_000);
  await fs.writeFile(join(src, 'etc', 'fstab'), '/dev/sda1 / ext4 defaults 0 1\n');
  await s.ok(['backup', '-q', src]);
  const [first] = await snapshotsOf(s);
  return { snap: first!.id, src };
}

/**
 * Resolves with the name of the first pack that appears in repo/data (a
 * final name, not a temporary file); inotify, so the caller reacts within
 * milliseconds. Rejects if `done` settles first.
 */
function firstNewPack(repo: string, done: Promise<RunResult>): { pack: Promise<string>; stop: () => void } {
  const watchers: FSWatcher[] = [];
  const stop = (): void => {
    for (const w of watchers) w.close();
  };
  const pack = new Promise<string>((resolve, reject) => {
    for (let i = 0; i < 256; i++) {
      const dir = join(repo, 'data', i.toString(16).padStart(2, '0'));
      watchers.push(watch(dir, (_event, name) => {
        if (name && !name.startsWith('.')) resolve(name);
      }));
    }
    void done.then((r) => reject(new Error(`the backup ended before a pack appeared: exit ${r.code}\n${r.stderr}`)));
  });
  return { pack: pack.finally(stop), stop };
}

/** Starts `backup DIR` and resolves, with the running backup, once its first pack is in the repository. */
async function backupUntilFirstPack(s: Sandbox, dir: string): Promise<Started> {
  const run = s.start(['backup', dir]);
  const watcher = firstNewPack(s.repo, run.done);
  try {
    await watcher.pack;
  } finally {
    watcher.stop();
  }
  return run;
}

/** The `summary` line of `backup --json`. */
function summaryOf(r: RunResult): { snapshot_id: string; data_added: number; incomplete: boolean } {
  const line = r.stdout.split('\n').filter((l) => l.includes('"message_type":"summary"')).pop();
  assert.ok(line, `no summary line in:\n${r.stdout}`);
  return JSON.parse(line) as never;
}

describe('a backup killed with SIGKILL', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
  });
  after(() => s.remove());

  it('leaves a usable repository, and the next backup reuses what was uploaded', async () => {
    const base = await withBaseline(s);
    const big = s.path('big');
    await fs.mkdir(big);
    const size = 200 * MB;
    await writeRandom(join(big, 'disk.img'), size);

    const run = await backupUntilFirstPack(s, big);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    assert.equal(killed.signal, 'SIGKILL', `the backup was not killed: exit ${killed.code}`);

    const list = await snapshotsOf(s);
    assert.deepEqual(list.map((x) => x.id), [base.snap], 'a killed backup left a snapshot');
    await assertRestores(s, base.snap, base.src);

    const r = await s.run(['backup', '--json', big]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, STACK);
    assert.match(r.stderr, /indexed \d+ pack\(s\) left by an interrupted backup/);
    const sum = summaryOf(r);
    assert.equal(sum.incomplete, false);
    assert.ok(sum.data_added < size, `dataAdded ${sum.data_added} is not less than ${size}: nothing was reused`);
    // A pack is closed at 16 MiB of stored bytes: its blobs' plaintext is that less each blob's nonce,
    // tag and header record (at most 33 blobs of 512 KiB or more), so well over 16 MiB - 64 KiB.
    assert.ok(sum.data_added <= size - (16 * 1024 * 1024 - 64 * 1024), `only ${size - sum.data_added} bytes reused, less than one pack`);
    await assertRestores(s, sum.snapshot_id, big);
    await assertRestores(s, base.snap, base.src);
  });
});

describe('a backup interrupted with Ctrl-C (SIGINT)', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
  });
  after(() => s.remove());

  it('exits 130 with a plain message, writes no snapshot, and the repository stays usable', async () => {
    const base = await withBaseline(s);
    const big = s.path('big');
    await fs.mkdir(big);
    await writeRandom(join(big, 'disk.img'), 120 * MB);

    const run = await backupUntilFirstPack(s, big);
    run.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /interrupted/);
    assert.doesNotMatch(r.stdout, /snapshot \w+ saved/);

    assert.deepEqual((await snapshotsOf(s)).map((x) => x.id), [base.snap], 'an interrupted backup left a snapshot');
    await assertRestores(s, base.snap, base.src);
    const again = await s.run(['backup', '--json', big]);
    assert.equal(again.code, 0, again.stderr);
    await assertRestores(s, summaryOf(again).snapshot_id, big);
  });
});

describe('a backup under --limit-upload interrupted with Ctrl-C', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
  });
  after(() => s.remove());

  // On main the limiter's wait went on, then the snapshot was saved and the exit was 0.
  it('ends the limiter\'s wait while it uploads the last packs: exit 130, no snapshot', async () => {
    await s.ok(['init']);
    const src = s.path('many');
    await fs.mkdir(src);
    await writeRandom(join(src, 'small.bin'), 2000);
    // Hundreds of names make the tree pack some 10 KB: at 1 KiB/s its upload waits for seconds.
    for (let i = 0; i < 400; i++) await fs.writeFile(join(src, `${i}-${randomBytes(16).toString('hex')}`), '');
    const run = s.start(['--limit-upload', '1', 'backup', src]);
    // The data pack goes first: once it is there, the backup is in its last uploads (the flush),
    // past every point that looked at Ctrl-C before, and the tree pack waits for its turn.
    const watcher = firstNewPack(s.repo, run.done);
    try {
      await watcher.pack;
    } finally {
      watcher.stop();
    }
    run.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    assert.match(errorLines(r).join('\n'), /interrupted/);
    assert.deepEqual(await snapshotsOf(s), [], 'an interrupted backup left a snapshot');
  });
});

describe('a file that grows while it is backed up', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
  });
  after(() => s.remove());

  it('exits 3 with a "changed while it was being read" warning naming the file', async () => {
    const base = await withBaseline(s);
    const src = s.path('logs');
    await fs.mkdir(src);
    const log = join(src, 'app.log');
    await writeRandom(log, 100 * MB);
    await fs.writeFile(join(src, 'steady.txt'), 'does not change\n');

    // Appends 64 KiB every few milliseconds until it is killed, i.e. for the
    // whole backup, whatever the machine's speed.
    const appender = spawn(process.execPath, ['-e', `
      const fs = require('node:fs');
      const fd = fs.openSync(${JSON.stringify(log)}, 'a');
      const chunk = require('node:crypto').randomBytes(65536);
      setInterval(() => fs.writeSync(fd, chunk), 2);
      process.stdout.write('ready\\n');
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    let r: RunResult;
    try {
      await new Promise<void>((resolve, reject) => {
        appender.stdout!.once('data', () => resolve());
        appender.once('exit', (code) => reject(new Error(`appender exited ${code}`)));
      });
      r = await s.run(['backup', src]);
    } finally {
      appender.kill('SIGKILL');
    }

    assert.equal(r.code, 3, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, STACK);
    assert.ok(
      r.stderr.split('\n').some((l) => l.startsWith('warning: ') && l.includes(log) && l.includes('changed while it was being read')),
      `no warning naming ${log}:\n${r.stderr}`,
    );
    assert.match(r.stdout, /INCOMPLETE/);
    const list = await snapshotsOf(s);
    assert.equal(list.length, 2);
    assert.equal(list[1]!.incomplete, true);
    // The file that did not change restores as it is.
    const target = s.path('grown');
    await s.ok(['restore', 'latest', '--target', target]);
    assert.equal(await fs.readFile(join(target, src, 'steady.txt'), 'utf8'), 'does not change\n');
    await assertRestores(s, base.snap, base.src);
  });
});

/**
 * `holdfast verify-restore` of snapshots of files, through the real CLI: a
 * clean snapshot proves restorable; a damaged or missing pack holding a
 * sampled file's blob makes it fail naming the file, with exit 17; the
 * scratch folder is gone afterwards however the test ended (also after
 * Ctrl-C while a pack read hangs); `--seed` repeats the sample.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Sandbox, largestPack, type RunResult } from '../helpers/cli.js';
import { errorLines } from '../helpers/cli-errors.js';
import { writeRandom } from '../helpers/random-file.js';
import { EVERYTHING, buildTree, removeTree } from '../fixtures/tree.js';

interface FileSample {
  seed: string;
  candidates: number;
  paths: string[];
  largest?: string;
  newest?: string;
  bytes: number;
  verified: number;
  failed: { path: string; error: string; code?: string }[];
}
interface Result { snapshot: string; kind: string; restorable: boolean; seconds: number; files: FileSample }

const parse = (r: RunResult): Result => JSON.parse(r.stdout) as Result;

/** 60 small files in two folders, a 1 MB file (the largest), a symlink, a file with mode 0640, and the newest file; backed up. */
async function backedUp(s: Sandbox): Promise<{ src: string }> {
  await s.ok(['init']);
  const src = s.path('src');
  for (const d of ['a', 'b']) {
    await fs.mkdir(join(src, d), { recursive: true });
    for (let i = 0; i < 30; i++) await fs.writeFile(join(src, d, `f${i}.txt`), `${d} file ${i}\n`.repeat(i + 1));
  }
  await writeRandom(join(src, 'big.bin'), 1_000_000);
  await fs.symlink('a/f1.txt', join(src, 'link'));
  await fs.chmod(join(src, 'b', 'f3.txt'), 0o640);
  const old = new Date('2020-01-01T00:00:00Z');
  for (const d of ['a', 'b']) for (let i = 0; i < 30; i++) await fs.utimes(join(src, d, `f${i}.txt`), old, old);
  await fs.utimes(join(src, 'big.bin'), old, old);
  await fs.writeFile(join(src, 'a', 'newest.txt'), 'the newest file\n');
  // The symlink's own mtime: older than newest.txt.
  execFileSync('touch', ['-h', '-d', '2020-01-01', join(src, 'link')]);
  await s.ok(['backup', '-q', src]);
  return { src };
}

describe('verify-restore of a snapshot of files', { timeout: 180_000 }, () => {
  let s: Sandbox;
  beforeEach(async () => {
    s = await Sandbox.create('holdfast-verify-restore-');
  });
  afterEach(() => s.remove());

  it('a clean snapshot is restorable: the sample (with the largest and the newest file) restores exactly, and the scratch is removed', async () => {
    const { src } = await backedUp(s);
    const scratch = s.path('scratch');
    const r = parse(await s.ok(['--json', 'verify-restore', 'latest', '--min-files', '10', '--scratch', scratch]));
    assert.equal(r.kind, 'files');
    assert.equal(r.restorable, true, JSON.stringify(r));
    assert.equal(r.files.candidates, 63);
    assert.equal(r.files.largest, join(src, 'big.bin'));
    assert.equal(r.files.newest, join(src, 'a', 'newest.txt'));
    assert.ok(r.files.paths.includes(join(src, 'big.bin')) && r.files.paths.includes(join(src, 'a', 'newest.txt')), r.files.paths.join('\n'));
    assert.ok(r.files.paths.length >= 10 && r.files.paths.length <= 12, r.files.paths.join('\n'));
    assert.equal(r.files.verified, r.files.paths.length);
    assert.deepEqual(r.files.failed, []);
    assert.ok(r.files.bytes >= 1_000_000);
    assert.equal(existsSync(scratch), false, 'the scratch folder the test made is removed');

    // The default scratch: a private folder in TMPDIR, removed too; the text output says where and the seed.
    const tmp = s.path('tmp');
    await fs.mkdir(tmp);
    const t = await s.ok(['verify-restore', 'latest', '--share', '100%'], { env: { TMPDIR: tmp } });
    assert.match(t.stdout, new RegExp(`restoring 63 files of 63 \\(.*; seed \\d+\\) into ${tmp}/holdfast-verify-`), t.stdout);
    assert.match(t.stdout, /restorable: 63 sampled files \(.*\) restored exactly in [\d.]+ s \(seed \d+\)/, t.stdout);
    assert.deepEqual(await fs.readdir(tmp), []);

    // An empty folder given as the scratch stays, emptied.
    await fs.mkdir(scratch);
    await s.ok(['verify-restore', '-q', 'latest', '--scratch', scratch]);
    assert.deepEqual(await fs.readdir(scratch), []);
  });

  it('--seed repeats the sample; the seed a run prints repeats it', async () => {
    await backedUp(s);
    const args = ['--json', 'verify-restore', 'latest', '--min-files', '8'];
    const first = parse(await s.ok(args));
    const again = parse(await s.ok([...args, '--seed', first.files.seed]));
    assert.deepEqual(again.files.paths, first.files.paths);
    const a = parse(await s.ok([...args, '--seed', '1']));
    const b = parse(await s.ok([...args, '--seed', '1']));
    const c = parse(await s.ok([...args, '--seed', '2']));
    assert.equal(a.files.seed, '1');
    assert.deepEqual(b.files.paths, a.files.paths);
    assert.notDeepEqual(c.files.paths, a.files.paths, 'another seed takes other files');
  });

  it('restores every kind of node and name with --share 100% (non-UTF-8, long paths, hard links, modes, owners as root)', async () => {
    await s.ok(['init']);
    const src = s.path('src');
    await buildTree(src, EVERYTHING);
    await s.ok(['backup', '-q', src], {}, 0);
    const tmp = s.path('tmp');
    await fs.mkdir(tmp);
    const r = parse(await s.ok(['--json', 'verify-restore', 'latest', '--share', '100%'], { env: { TMPDIR: tmp } }));
    assert.equal(r.restorable, true, JSON.stringify(r.files.failed));
    assert.equal(r.files.verified, r.files.candidates);
    // The deep folders (paths past PATH_MAX) are removed too.
    assert.deepEqual(await fs.readdir(tmp), []);
    await removeTree(src);
  });

  for (const damage of ['a flipped byte', 'a missing pack'] as const) it(`${damage} in the pack of a sampled file: exit 17, the file named, the scratch removed`, async () => {
    const { src } = await backedUp(s);
    const pack = await largestPack(s);
    if (damage === 'a missing pack') await fs.rm(pack);
    else {
      const fh = await fs.open(pack, 'r+');
      const { size } = await fh.stat();
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, Math.floor(size / 2));
      b[0] = b[0]! ^ 0xff;
      await fh.write(b, 0, 1, Math.floor(size / 2));
      await fh.close();
    }
    const scratch = s.path('scratch');
    const r = await s.run(['verify-restore', 'latest', '--min-files', '5', '--scratch', scratch]);
    assert.equal(r.code, 17, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^NOT RESTORABLE: \d+ paths? of the sample \(\d+ files, seed \d+\) did not restore exactly:$/m, r.stdout);
    assert.match(r.stdout, new RegExp(`^  ${join(src, 'big.bin')}: `, 'm'), r.stdout);
    assert.equal(existsSync(scratch), false);
    const j = parse(await s.run(['--json', 'verify-restore', 'latest', '--min-files', '5', '--scratch', scratch]));
    assert.equal(j.restorable, false);
    const failed = j.files.failed.map((f) => f.path);
    // The small files share a blob with big.bin (a backup stores small files in a shared stream): they fail with it.
    assert.ok(failed.includes(join(src, 'big.bin')) && failed.every((p) => j.files.paths.includes(p)), failed.join('\n'));
    assert.equal(j.files.verified, j.files.paths.length - failed.length);
  });

  it('a damaged listing: the folder is named (nothing below it restores), exit 17, also once repair has marked it', async () => {
    await backedUp(s);
    // The smallest pack holds the trees (the listings), from the root's to a/ and b/.
    let pack = { path: '', size: Infinity };
    for (const dir of await fs.readdir(join(s.repo, 'data'))) {
      for (const name of await fs.readdir(join(s.repo, 'data', dir))) {
        const path = join(s.repo, 'data', dir, name);
        const { size } = await fs.stat(path);
        if (size < pack.size) pack = { path, size };
      }
    }
    const bytes = await fs.readFile(pack.path);
    bytes[Math.floor(bytes.length / 3)]! ^= 0xff;
    await fs.writeFile(pack.path, bytes);
    const r = await s.run(['--json', 'verify-restore', 'latest']);
    assert.equal(r.code, 17, r.stderr);
    const j = parse(r);
    assert.equal(j.restorable, false);
    assert.ok(j.files.failed.length >= 1);
    for (const f of j.files.failed) {
      assert.match(f.error, /^its listing cannot be read \(pack \w+, tree \w+ is damaged: authentication failed\): nothing below it can be restored$/, f.error);
      assert.equal(f.code, 'CORRUPT');
    }
    // Once repair has marked the folder damaged, its loss is still reported (its listing is empty now).
    await s.ok(['repair', 'snapshots', '--mark-damaged']);
    const marked = parse(await s.run(['--json', 'verify-restore', 'latest'], {}));
    assert.equal(marked.restorable, false);
    assert.deepEqual(marked.files.failed.map((f) => f.path), j.files.failed.map((f) => f.path));
    for (const f of marked.files.failed) assert.match(f.error, /marked damaged by "repair snapshots"/);
  });

  it('Ctrl-C while a pack read hangs: exit 130 and the scratch is removed', async () => {
    const { src } = await backedUp(s);
    // The pack becomes a FIFO: the restore's read of it waits until the test opens the other end.
    const pack = await largestPack(s);
    await fs.rename(pack, `${pack}.real`);
    execFileSync('mkfifo', [pack]);
    const scratch = s.path('scratch');
    const run = s.start(['verify-restore', 'latest', '--share', '100%', '--scratch', scratch], { env: { HOLDFAST_WORKERS: '1' } });
    let stderr = '';
    run.child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    // The restore's walk has made the folders before it waits for the pack.
    while (!existsSync(join(scratch, src, 'b'))) await new Promise((r) => setTimeout(r, 20));
    run.child.kill('SIGINT');
    let exited = false;
    void run.done.then(() => (exited = true));
    while (!exited) {
      // Once the test has given up, let a read still waiting on the FIFO end, so the process can exit.
      if (stderr.includes('interrupted')) await fs.open(pack, constants.O_WRONLY | constants.O_NONBLOCK).then((h) => h.close(), () => undefined);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await run.done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    assert.deepEqual(errorLines(r), ['holdfast: interrupted: the restore test did not complete (its scratch folder was removed)']);
    assert.equal(existsSync(scratch), false);
  });

  it('as another user than root: a restored folder without write permission is emptied and removed with the scratch', { skip: process.getuid?.() === 0 ? undefined : 'needs root to run the CLI as nobody' }, async () => {
    await s.ok(['init']);
    const src = s.path('src');
    await fs.mkdir(join(src, 'ro', 'deeper'), { recursive: true });
    for (const name of ['a', 'b', 'deeper/c']) await fs.writeFile(join(src, 'ro', name), `${name}\n`);
    await fs.chmod(join(src, 'ro', 'deeper'), 0o555);
    await fs.chmod(join(src, 'ro'), 0o555);
    await s.ok(['backup', '-q', src]);
    const nobody = { uid: 65534, gid: 65534 };
    const tmp = s.path('tmp');
    await fs.mkdir(tmp);
    await fs.chown(tmp, nobody.uid, nobody.gid);
    await fs.chmod(s.dir, 0o755);
    execFileSync('chmod', ['-R', 'a+rX', s.repo]);
    const r = await s.run(['--json', 'verify-restore', 'latest', '--share', '100%'], { asUser: nobody, env: { HOLDFAST_CACHE_DIR: s.path('nobody-cache'), TMPDIR: tmp }, cwd: s.dir });
    assert.equal(r.code, 0, r.stderr);
    const j = parse(r);
    assert.equal(j.restorable, true, JSON.stringify(j.files.failed));
    assert.equal(j.files.verified, 3);
    assert.deepEqual(await fs.readdir(tmp), []);
  });

  it('refuses a scratch folder that is not empty, and bad values, touching nothing', async () => {
    await backedUp(s);
    const scratch = s.path('scratch');
    await fs.mkdir(scratch);
    await fs.writeFile(join(scratch, 'keep'), 'mine');
    const r = await s.run(['verify-restore', 'latest', '--scratch', scratch]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the scratch folder .* is not empty/);
    assert.equal(await fs.readFile(join(scratch, 'keep'), 'utf8'), 'mine');
    for (const [flag, value] of [['--share', '0%'], ['--share', '5'], ['--share', '101%'], ['--min-files', 'x'], ['--seed', 'abc']]) {
      const u = await s.run(['verify-restore', 'latest', flag!, value!]);
      assert.equal(u.code, 2, `${flag} ${value}: ${u.stderr}`);
      assert.match(u.stderr, new RegExp(`^holdfast: ${flag} wants`), u.stderr);
    }
  });
});

/**
 * The disk under the job gives out: the repository's file system fills up
 * during a backup, the restore target fills up during a restore, and a file
 * the backup may not read. Needs root (tmpfs mounts, running as another
 * user); each test says why it is skipped otherwise.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { STACK, errorLines } from '../helpers/cli-errors.js';
import { writeRandom } from '../helpers/random-file.js';
import { assertRestores, assertSameTree } from '../helpers/restore-check.js';

const MB = 1_000_000;
const isRoot = process.getuid?.() === 0;

/** Mounts a tmpfs of `size` at `dir`; returns why it cannot, or undefined. */
function mountTmpfs(dir: string, size: string): string | undefined {
  if (!isRoot) return 'needs root to mount a tmpfs';
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `cannot mount a tmpfs: ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim() || (e as Error).message}`;
  }
}

function unmount(dir: string): void {
  spawnSync('umount', [dir], { stdio: 'ignore' });
}

/** A sandbox with a small disk: a tmpfs folder, or why there is none. */
interface SmallDisk {
  s: Sandbox;
  mnt: string;
  skip: string | undefined;
}

/**
 * Registers `before`/`after` hooks on the enclosing suite that create a
 * sandbox with a tmpfs of `size` mounted at its folder `name`, and unmount
 * and remove it again. The fields are set once the `before` hook has run.
 */
function smallDiskPerSuite(name: string, size: string): SmallDisk {
  const disk = {} as SmallDisk;
  before(async () => {
    disk.s = await Sandbox.create('holdfast-faults-');
    disk.mnt = disk.s.path(name);
    await fs.mkdir(disk.mnt);
    disk.skip = mountTmpfs(disk.mnt, size);
  });
  after(async () => {
    if (!disk.skip) unmount(disk.mnt);
    await disk.s.remove();
  });
  return disk;
}

async function snapshotIds(s: Sandbox, env: Record<string, string>): Promise<string[]> {
  const r = await s.ok(['snapshots', '--json'], { env });
  return (JSON.parse(r.stdout) as { id: string }[]).map((x) => x.id);
}

async function tempFilesBelow(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { recursive: true })).filter((e) => e.split('/').pop()!.startsWith('.tmp-'));
}

describe('the repository disk fills up during a backup', () => {
  const disk = smallDiskPerSuite('small-disk', '20m');

  it('exits non-zero saying there is no space; no snapshot; earlier snapshots restore', async (t) => {
    const { s, mnt, skip } = disk;
    if (skip) return t.skip(skip);
    const env = { HOLDFAST_REPOSITORY: join(mnt, 'repo') };
    await s.ok(['init'], { env });
    const keep = s.path('keep');
    await fs.mkdir(keep);
    await writeRandom(join(keep, 'passwd.bak'), 200_000);
    await s.ok(['backup', '-q', keep], { env });
    const before = await snapshotIds(s, env);
    assert.equal(before.length, 1);

    const big = s.path('big');
    await fs.mkdir(big);
    await writeRandom(join(big, 'a.bin'), 30 * MB);
    await writeRandom(join(big, 'b.bin'), 30 * MB);
    const r = await s.run(['backup', big], { env });

    assert.notEqual(r.code, 0, `a backup onto a full disk exited 0:\n${r.stdout}`);
    assert.equal(r.code, 1, r.stderr);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /no space/i);
    assert.doesNotMatch(r.stdout, /snapshot \w+ saved/);

    assert.deepEqual(await snapshotIds(s, env), before, 'a snapshot was written');
    assert.deepEqual(await tempFilesBelow(join(mnt, 'repo')), [], 'temporary files left in the repository');
    const target = s.path('restored');
    await s.ok(['restore', before[0]!, '--target', target], { env });
    assertSameTree(keep, join(target, keep));
  });

  it('says "no space" once, not as a "cannot read" warning per file', async (t) => {
    const { s, mnt, skip } = disk;
    if (skip) return t.skip(skip);
    const env = { HOLDFAST_REPOSITORY: join(mnt, 'repo') };
    const r = await s.run(['backup', s.path('big')], { env });
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stderr, /cannot read: .*no space/i, `a full repository is blamed on the source files:\n${r.stderr}`);
  });
});

describe('the restore target fills up', () => {
  const disk = smallDiskPerSuite('small-target', '8m');

  it('exits 1, says INCOMPLETE and lists every file that was not restored', async (t) => {
    const { s, mnt, skip } = disk;
    if (skip) return t.skip(skip);
    await s.ok(['init']);
    const src = s.path('srv');
    await fs.mkdir(src);
    const names = ['1-small.txt', '2-big.bin', '3-big.bin', '4-big.bin', '5-big.bin'];
    await fs.writeFile(join(src, names[0]!), 'fits\n');
    for (const n of names.slice(1)) await writeRandom(join(src, n), 3 * MB);
    await s.ok(['backup', '-q', src]);
    const [snap] = await snapshotsOf(s);

    const r = await s.run(['restore', snap!.id, '--target', mnt]);
    assert.equal(r.code, 1, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /restore INCOMPLETE/);
    assert.doesNotMatch(r.stdout, /success|all match/i);
    const listed = r.stderr.slice(r.stderr.indexOf('holdfast: restore INCOMPLETE'));
    // Every file either came back identical or is named as not restored.
    let failed = 0;
    for (const n of names) {
      const want = await fs.readFile(join(src, n));
      const got = await fs.readFile(join(mnt, src, n)).catch(() => undefined);
      if (got?.equals(want)) continue;
      failed++;
      assert.match(listed, new RegExp(`${join(src, n)}: .*no space`, 'i'), `${n} was not restored but is not listed:\n${r.stderr}`);
    }
    assert.ok(failed >= 2, `only ${failed} files failed on an 8 MB disk`);
    assert.ok(listed.includes(`${failed} path(s)`), listed);
    await assertRestores(s, snap!.id, src);
  });
});

describe('a file the backup may not read', () => {
  let s: Sandbox;
  let skip: string | undefined;
  const nobody = { uid: 65534, gid: 65534 };
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    if (!isRoot) skip = 'needs root to run the backup as another user';
    else if (spawnSync('setpriv', ['--version']).status !== 0) skip = 'setpriv is not installed';
  });
  after(() => s.remove());

  it('exits 3, names the file, marks the snapshot incomplete, and the other files restore', async (t) => {
    if (skip) return t.skip(skip);
    await s.ok(['init']);
    await fs.chmod(s.dir, 0o755);
    execFileSync('chown', ['-R', `${nobody.uid}:${nobody.gid}`, s.repo]);
    const src = s.path('home');
    await fs.mkdir(join(src, 'docs'), { recursive: true });
    await writeRandom(join(src, 'photo.jpg'), 500_000);
    await fs.writeFile(join(src, 'docs', 'readme.txt'), 'hello\n');
    const secret = join(src, 'docs', 'secret.key');
    await fs.writeFile(secret, 'root only\n', { mode: 0o000 });
    await fs.chmod(secret, 0o000);

    const r = await s.run(['backup', src], { asUser: nobody, cwd: s.dir });
    assert.equal(r.code, 3, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, STACK);
    assert.ok(
      r.stderr.split('\n').some((l) => l.startsWith('warning: ') && l.includes(secret) && /permission denied/i.test(l)),
      `no warning naming ${secret}:\n${r.stderr}`,
    );
    assert.match(r.stdout, /INCOMPLETE/);
    const [snap] = await snapshotsOf(s);
    assert.equal(snap!.incomplete, true);
    assert.equal(snap!.summary['error_count'], 1);
    assert.equal(snap!.summary['errors'], undefined, 'one name for the error count, as in the status lines');

    const target = s.path('restored');
    await s.ok(['restore', snap!.id, '--target', target]);
    assertSameTree(src, join(target, src), ['secret.key']);
    await assert.rejects(fs.lstat(join(target, secret)), { code: 'ENOENT' });
  });
});

/**
 * `backup --fs-snapshot btrfs|auto` on a real btrfs (mkfs.btrfs on a loop
 * device, as root): a file written during the backup is read as it was when
 * the snapshot was taken; the snapshot records the original paths, restores
 * the snapshot's bytes and metadata (an extended attribute too), and is the parent of a backup without
 * a snapshot that finds nothing changed; the snapshot is removed after the
 * backup, and one left by a backup killed with SIGKILL is removed by the
 * next run (one whose owner still runs is not). A path not on btrfs is an
 * error with `btrfs`, read in place with a warning under `auto`.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type Started } from '../helpers/cli.js';
import { loopSkip, mountLoopFs, type LoopFs } from '../helpers/loop-fs.js';
import { snapshotName } from '../../src/sources/fs-snapshots/tools.js';

const MiB = 1 << 20;
const skip = loopSkip('btrfs') || (spawnSync('setfattr', ['--version']).error ? 'setfattr is not installed (attr)' : false);

/** The holdfast snapshots in a subvolume's root folder. */
async function snapshotsIn(root: string): Promise<string[]> {
  return (await fs.readdir(root)).filter((n) => n.startsWith('.holdfast-snapshot-'));
}

/** Resolves with the first holdfast snapshot that appears in `root` while `run` goes on. */
async function snapshotAppears(root: string, run: Started): Promise<string> {
  let exited = false;
  void run.done.then(() => {
    exited = true;
  });
  for (;;) {
    const [name] = await snapshotsIn(root);
    if (name) return name;
    if (exited) throw new Error(`the backup ended before its snapshot appeared: ${(await run.done).stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('backup --fs-snapshot on btrfs', { skip }, () => {
  let s: Sandbox;
  let disk: LoopFs;
  let vol: string;
  before(async () => {
    s = await Sandbox.create();
    await s.ok(['init']);
    disk = mountLoopFs(s.dir, 'btrfs', 256);
    vol = join(disk.mountPoint, 'vol');
    execFileSync('btrfs', ['subvolume', 'create', vol], { stdio: 'ignore' });
  });
  after(async () => {
    disk?.unmount();
    await s.remove();
  });

  it('reads a file being written from the snapshot, records the original paths, and restores the snapshot\'s bytes and metadata', async () => {
    const data = join(vol, 'data');
    await fs.mkdir(data);
    await fs.writeFile(join(data, 'a.txt'), 'as it was\n', { mode: 0o640 });
    await fs.symlink('a.txt', join(data, 'link'));
    // Larger than the backup holds in flight (16 MiB a worker: 32 MiB with 2), and read chunk by chunk: its end is
    // read only once enough has been uploaded at --limit-upload, well after the snapshot was taken and the file rewritten.
    const big = randomBytes(40 * MiB);
    await fs.writeFile(join(data, 'growing.bin'), big);
    await fs.utimes(join(data, 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    const before = await fs.stat(join(data, 'a.txt'));
    execFileSync('setfattr', ['-n', 'user.state', '-v', 'as-it-was', join(data, 'growing.bin')]);

    const run = s.start(['--limit-upload', '4096', 'backup', '--fs-snapshot', 'btrfs', data], { env: { HOLDFAST_WORKERS: '2' } });
    const name = await snapshotAppears(vol, run);
    // Written while the backup runs: the end of the big file, and the small one.
    const h = await fs.open(join(data, 'growing.bin'), 'r+');
    await h.write(Buffer.alloc(MiB, 0x55), 0, MiB, big.length - MiB);
    await h.close();
    await fs.appendFile(join(data, 'a.txt'), 'written during the backup\n');
    execFileSync('setfattr', ['-n', 'user.state', '-v', 'changed-during', join(data, 'growing.bin')]);
    await fs.writeFile(join(data, 'new.txt'), 'not in the snapshot\n');
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /changed while it was being read|warning/);
    assert.ok(name.startsWith(`.${snapshotName(hostname(), run.child.pid!, 0).replace(/0$/, '')}`), name);
    assert.deepEqual(await snapshotsIn(vol), [], 'the snapshot is removed after the backup');

    const [snap] = await snapshotsOf(s);
    assert.deepEqual(snap!.paths, [data]);
    const target = s.path('restored');
    await s.ok(['restore', snap!.id, '--target', target]);
    const back = join(target, data);
    assert.deepEqual((await fs.readdir(back)).sort(), ['a.txt', 'growing.bin', 'link']);
    assert.equal(await fs.readFile(join(back, 'a.txt'), 'utf8'), 'as it was\n');
    assert.ok((await fs.readFile(join(back, 'growing.bin'))).equals(big), 'the big file as it was when the snapshot was taken');
    assert.equal(await fs.readlink(join(back, 'link')), 'a.txt');
    assert.equal(execFileSync('getfattr', ['-n', 'user.state', '--only-values', join(back, 'growing.bin')], { encoding: 'utf8' }), 'as-it-was');
    const restored = await fs.stat(join(back, 'a.txt'));
    assert.equal(restored.mode, before.mode);
    assert.equal(restored.mtimeMs, before.mtimeMs);
    assert.equal(restored.uid, before.uid);
  });

  it('is the parent of a backup without a snapshot, which finds nothing changed', async () => {
    const path = join(vol, 'steady');
    await fs.mkdir(join(path, 'sub'), { recursive: true });
    await fs.writeFile(join(path, 'one'), 'one\n');
    await fs.writeFile(join(path, 'sub', 'two'), randomBytes(100_000));
    const first = JSON.parse((await s.ok(['backup', '--json', '--fs-snapshot', 'btrfs', path])).stdout.trim().split('\n').pop()!) as { snapshot_id: string };
    const second = await s.ok(['backup', path]);
    assert.match(second.stdout, new RegExp(`using parent snapshot ${first.snapshot_id.slice(0, 8)}`));
    const summary = (await snapshotsOf(s)).at(-1)!.summary;
    assert.equal(summary['files_new'], 0);
    assert.equal(summary['files_changed'], 0);
    assert.equal(summary['files_unmodified'], 2);
    // The folders the path holds are as the snapshot recorded them (those above it hold the snapshot's own coming and going).
    assert.equal(summary['dirs_new'], 0);
    const diff = await s.ok(['diff', first.snapshot_id, 'latest']);
    assert.doesNotMatch(diff.stdout, /steady\//, diff.stdout);
  });

  it('the next run removes the snapshot of a backup killed with SIGKILL, not that of a backup still running', async () => {
    const path = join(vol, 'killed');
    await fs.mkdir(path);
    await fs.writeFile(join(path, 'big'), randomBytes(8 * MiB));
    const run = s.start(['--limit-upload', '256', 'backup', '--fs-snapshot', 'btrfs', path]);
    const left = await snapshotAppears(vol, run);
    run.child.kill('SIGKILL');
    await run.done;
    assert.deepEqual(await snapshotsIn(vol), [left], 'SIGKILL leaves the snapshot');
    // A snapshot named after this test's process, which runs: another backup's, to be left alone.
    const live = `.${snapshotName(hostname(), process.pid, Date.now())}`;
    execFileSync('btrfs', ['subvolume', 'snapshot', '-r', vol, join(vol, live)], { stdio: 'ignore' });
    try {
      const r = await s.ok(['backup', '--fs-snapshot', 'btrfs', path]);
      assert.match(r.stderr, new RegExp(`removed ${join(vol, left).replace(/[.]/g, '\\.')}, a snapshot left by a backup that was killed`));
      assert.deepEqual(await snapshotsIn(vol), [live]);
    } finally {
      execFileSync('btrfs', ['subvolume', 'delete', join(vol, live)], { stdio: 'ignore' });
    }
  });

  it('leaves out a subvolume below the snapshot\'s with a warning (exit 3), and another backup\'s snapshot silently', async () => {
    const path = join(vol, 'holder');
    await fs.mkdir(path);
    await fs.writeFile(join(path, 'kept'), 'kept\n');
    execFileSync('btrfs', ['subvolume', 'create', join(path, 'nested')], { stdio: 'ignore' });
    await fs.writeFile(join(path, 'nested', 'inside'), 'not in the snapshot\n');
    const other = join(path, '.holdfast-snapshot-elsewhere-1-1');
    execFileSync('btrfs', ['subvolume', 'snapshot', '-r', join(path, 'nested'), other], { stdio: 'ignore' });
    try {
      const r = await s.run(['backup', '--fs-snapshot', 'btrfs', path]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, new RegExp(`${join(path, 'nested')}: a subvolume below the file-system snapshot's, which that snapshot does not hold: left out`));
      assert.doesNotMatch(r.stderr, /elsewhere/);
      const listed = (await s.ok(['ls', 'latest', path])).stdout.split('\n').filter((l) => l !== '');
      assert.deepEqual(listed, [path, join(path, 'kept')]);
    } finally {
      execFileSync('btrfs', ['subvolume', 'delete', other, join(path, 'nested')], { stdio: 'ignore' });
    }
  });

  it('a leftover that cannot be removed is a warning, and the backup goes on', async () => {
    const path = join(vol, 'undeletable');
    await fs.mkdir(path);
    // Named as a dead backup's snapshot (no pid is that high), but a plain folder: `btrfs subvolume delete` refuses it.
    const fake = join(vol, `.${snapshotName(hostname(), 2 ** 22 + 1, 1)}`);
    await fs.mkdir(fake);
    try {
      const r = await s.ok(['backup', '--fs-snapshot', 'btrfs', path]);
      assert.match(r.stderr, new RegExp(`could not remove ${fake.replace(/[.]/g, '\\.')}, a snapshot left by a backup that was killed: btrfs subvolume delete`));
      assert.deepEqual(await snapshotsIn(vol), [fake.slice(vol.length + 1)]);
    } finally {
      await fs.rmdir(fake);
    }
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`${sig} during the backup removes the snapshot (exit 130, no snapshot written)`, async () => {
      const path = join(vol, `interrupted-${sig}`);
      await fs.mkdir(path);
      await fs.writeFile(join(path, 'big'), randomBytes(8 * MiB));
      const count = (await snapshotsOf(s)).length;
      const run = s.start(['--limit-upload', '256', 'backup', '--fs-snapshot', 'btrfs', path]);
      await snapshotAppears(vol, run);
      run.child.kill(sig);
      const r = await run.done;
      assert.equal(r.code, 130, r.stderr);
      assert.deepEqual(await snapshotsIn(vol), []);
      assert.equal((await snapshotsOf(s)).length, count);
    });
  }

  it('a snapshot that fails removes those already taken: nothing is read, nothing is left', async () => {
    const second = s.path('second-fs');
    await fs.mkdir(second, { recursive: true });
    // The btrfs path comes first (paths are sorted): its snapshot is taken, then the second path fails.
    const r = await s.run(['backup', '--fs-snapshot', 'btrfs', join(vol, 'steady'), second]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /second-fs is on \S+, not btrfs/);
    assert.deepEqual(await snapshotsIn(vol), []);
  });

  it('refuses --fs-snapshot with a stream or an image, and --freeze without it (usage, nothing written)', async () => {
    const count = (await snapshotsOf(s)).length;
    assert.match((await s.run(['backup', '--fs-snapshot', 'btrfs', '--stdin'], { input: 'x' })).stderr, /--fs-snapshot is for files and folders, not --stdin/);
    const img = s.path('disk.img');
    await fs.writeFile(img, Buffer.alloc(65536));
    const image = await s.run(['backup', '--fs-snapshot', 'auto', '--image', img]);
    assert.equal(image.code, 2);
    assert.match(image.stderr, /--fs-snapshot is for files and folders; for --image/);
    const freeze = await s.run(['backup', '--freeze', join(vol, 'steady')]);
    assert.equal(freeze.code, 2);
    assert.match(freeze.stderr, /--freeze and --lvm-snapshot-size go with --fs-snapshot/);
    assert.match((await s.run(['backup', '--fs-snapshot', 'zfs', join(vol, 'steady')])).stderr, /bad --fs-snapshot "zfs": use btrfs, lvm or auto/);
    assert.equal((await snapshotsOf(s)).length, count);
  });

  it('a path not on btrfs: an error with btrfs (nothing written), read in place with a warning under auto', async () => {
    const elsewhere = s.path('plain');
    await fs.mkdir(elsewhere);
    await fs.writeFile(join(elsewhere, 'f'), 'f\n');
    const count = (await snapshotsOf(s)).length;
    const r = await s.run(['backup', '--fs-snapshot', 'btrfs', elsewhere]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${elsewhere} is on \\S+, not btrfs: --fs-snapshot btrfs cannot snapshot it .*nothing was backed up`));
    assert.equal((await snapshotsOf(s)).length, count);
    const auto = await s.ok(['backup', '--fs-snapshot', 'auto', elsewhere, join(vol, 'steady')]);
    assert.match(auto.stderr, new RegExp(`${elsewhere}: no snapshot \\(its file system, \\S+, is neither btrfs nor on an LVM logical volume\\); read in place`));
    assert.equal((await snapshotsOf(s)).length, count + 1);
    assert.ok(!existsSync(join(vol, '.holdfast-snapshot')));
    assert.deepEqual(await snapshotsIn(vol), []);
  });
});

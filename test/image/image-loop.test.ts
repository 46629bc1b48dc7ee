/**
 * Image backups of file systems changed by the kernel, and of block devices
 * (loop devices): an incremental after a known change stores about that
 * much; a source mounted read-write is refused without --allow-live; a
 * restore onto a mounted image file is refused, even with --force; a
 * restore to a device that is too small fails before writing anything, and
 * one to a larger device works. Needs root and loop devices; skipped with
 * the reason otherwise.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox, type RunOptions, type RunResult } from '../helpers/cli.js';
import { loopUnavailable, losetup, losetupDetach, makeTree, mkExt4, noise, partitionedImage, sh, withLoopMount } from './images.js';

type Summary = Record<string, unknown> & { blocks_changed: number; blocks_stored: number; blocks_unchanged: number; data_added: number; snapshot_id: string; block_size: number; crash_consistent_only: boolean };
const summaryOf = (r: RunResult): Summary => JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;

describe('image backups of changed file systems and block devices', { skip: loopUnavailable() }, () => {
  let s: Sandbox;
  let tree: string;
  const devices: string[] = [];
  const ok = (args: string[], opts: RunOptions = {}, want = 0): Promise<RunResult> => s.ok(args, { ...opts, env: { HOLDFAST_CACHE_DIR: s.path('cache'), ...opts.env } }, want);
  const run = (args: string[], opts: RunOptions = {}): Promise<RunResult> => s.run(args, { ...opts, env: { HOLDFAST_CACHE_DIR: s.path('cache'), ...opts.env } });
  const sameTrees = (a: string, b: string): void => {
    sh('diff', ['-r', '--no-dereference', a, b]);
  };

  before(async () => {
    s = await Sandbox.create('holdfast-image-loop-');
    tree = s.path('tree');
    await makeTree(tree);
    await s.ok(['init']);
  });
  after(async () => {
    for (const d of devices) losetupDetach(d);
    await s.remove();
  });

  it('an incremental after a change through a loop mount stores about that much, and restores the changed file system', async () => {
    const img = s.path('disk.img');
    mkExt4(img, 128, tree, ['-b', '4096']);
    const first = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    const mnt = s.path('mnt');
    const added = noise(3 << 20, 42);
    await withLoopMount(img, mnt, async () => {
      await writeFile(join(mnt, 'new.bin'), added);
      await writeFile(join(mnt, 'etc', 'app', 'conf-3.txt'), 'changed\n');
    });
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    const stored = r.blocks_stored * r.block_size;
    // 3 MiB of data plus what ext4 rewrote around it: inode table, bitmaps,
    // directory, journal, superblock; never a re-read of everything.
    assert.ok(stored >= 3 << 20, `stored ${stored} bytes for a 3 MiB change`);
    assert.ok(stored <= (3 << 20) + (3 << 20), `stored ${stored} bytes for a 3 MiB change`);
    assert.ok(r.blocks_unchanged >= first.blocks_changed - 60, `${r.blocks_unchanged} unchanged of ${first.blocks_changed}`);
    const out = s.path('restored.img');
    await ok(['restore-image', 'latest', '--to', out, '--verify']);
    sh('e2fsck', ['-fn', out]);
    await withLoopMount(img, s.path('a'), () => withLoopMount(out, s.path('b'), async () => sameTrees(s.path('a'), s.path('b')), undefined, true), undefined, true);
  });

  it('a change inside one partition of a GPT disk changes only blocks of that partition', async () => {
    const img = s.path('gpt.img');
    const parts = partitionedImage(img, 96, 'gpt', [{ size: 40, type: 'L', ext4: tree }, { size: 40, type: 'L', ext4: tree }]);
    await ok(['backup', '--json', '--image', img, '--block-size', '64K']);
    const before1 = (await readFile(img)).subarray(parts[0]!.start, parts[0]!.start + parts[0]!.size);
    await withLoopMount(img, s.path('p2'), async () => writeFile(join(s.path('p2'), 'more.bin'), noise(1 << 20, 5)), parts[1]);
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    assert.ok(r.blocks_stored * r.block_size <= 4 << 20, `stored ${r.blocks_stored} blocks`);
    const out = s.path('gpt-restored.img');
    await ok(['restore-image', 'latest', '--to', out]);
    const restored = await readFile(out);
    assert.ok(restored.subarray(parts[0]!.start, parts[0]!.start + parts[0]!.size).equals(before1), 'partition 1 changed');
    await withLoopMount(img, s.path('c'), () => withLoopMount(out, s.path('d'), async () => sameTrees(s.path('c'), s.path('d')), parts[1], true), parts[1], true);
  });

  it('refuses a source mounted read-write unless --allow-live, and says so; read-only is fine', async () => {
    const img = s.path('live.img');
    mkExt4(img, 32, tree, ['-b', '4096']);
    const mnt = s.path('live-mnt');
    await withLoopMount(img, mnt, async () => {
      const r = await run(['backup', '--image', img]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /is mounted read-write \(\/dev\/loop\d+ on .*live-mnt\).*only crash-consistent.*--allow-live.*Nothing was written/s);
      const live = await ok(['backup', '--json', '--image', img, '--allow-live']);
      assert.match(live.stderr, /only crash-consistent \(--allow-live\)/);
      assert.equal(summaryOf(live).crash_consistent_only, true);
    });
    await withLoopMount(img, mnt, async () => {
      await ok(['backup', '--image', img]);
    }, undefined, true);
  });

  // On main the mounted image file was overwritten (exit 0).
  it('refuses to restore onto an image file whose loop device is mounted, even with --force, and writes nothing', async () => {
    const img = s.path('mounted.img');
    mkExt4(img, 32, tree, ['-b', '4096']);
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    const mnt = s.path('mounted-mnt');
    for (const ro of [false, true]) {
      await withLoopMount(img, mnt, async () => {
        const before = await readFile(img);
        const bad = await run(['restore-image', r.snapshot_id, '--to', img, '--force']);
        assert.equal(bad.code, 1, bad.stderr);
        assert.match(bad.stderr, /mounted\.img is in use \(\/dev\/loop\d+ mounted on .*mounted-mnt\); unmount it first; nothing was written/);
        assert.doesNotMatch(bad.stdout, /restored/);
        assert.ok((await readFile(img)).equals(before), 'the mounted image changed');
      }, undefined, ro);
    }
    // Unmounted, --force restores it.
    await ok(['restore-image', r.snapshot_id, '--to', img, '--force', '--verify']);
  });

  it('a restore to an image file on a file system without room fails before writing', async () => {
    const img = s.path('roomy.img');
    mkExt4(img, 32, tree, ['-b', '4096']);
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    const small = s.path('tiny-fs');
    await mkdir(small, { recursive: true });
    sh('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    try {
      const bad = await run(['restore-image', r.snapshot_id, '--to', join(small, 'out.img')]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /the image needs \d+ bytes for its data \(written sparse\), \d+ are free there: the target is too small; nothing was written/);
      assert.deepEqual(sh('ls', ['-A', small]).trim(), '');
    } finally {
      sh('umount', [small]);
    }
  });

  it('backs up a block device and restores it to another; a target too small fails before writing, a larger one works', async () => {
    const img = s.path('dev-src.img');
    mkExt4(img, 32, tree, ['-b', '4096']);
    const src = losetup(img);
    devices.push(src);
    const r = summaryOf(await ok(['backup', '--json', '--image', src, '--block-size', '64K']));
    const small = s.path('small.img');
    await writeFile(small, Buffer.alloc(16 << 20, 0xaa));
    const smallDev = losetup(small);
    devices.push(smallDev);
    const bad = await run(['restore-image', r.snapshot_id, '--to', smallDev]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /holds 16777216 bytes, the image needs 33554432: the target is too small; nothing was written/);
    const fh = await open(smallDev, 'r');
    const head = Buffer.alloc(1 << 20);
    await fh.read(head, 0, head.length, 0);
    await fh.close();
    assert.ok(head.every((b) => b === 0xaa), 'the small target was written to');
    const big = s.path('big.img');
    await writeFile(big, Buffer.alloc(48 << 20, 0xbb));
    const bigDev = losetup(big);
    devices.push(bigDev);
    const okr = await ok(['restore-image', r.snapshot_id, '--to', bigDev, '--verify']);
    assert.match(okr.stdout, /the target is larger than the image/);
    assert.match(okr.stdout, /verified/);
    const restored = await readFile(bigDev);
    assert.ok(restored.subarray(0, 32 << 20).equals(await readFile(img)), 'device restore differs');
    assert.ok(restored.subarray(32 << 20).every((b) => b === 0xbb), 'the space after the image was touched');
    await mkdir(s.path('dev-mnt'), { recursive: true });
    sh('mount', ['-o', 'ro', bigDev, s.path('dev-mnt')]);
    try {
      const refused = await run(['restore-image', r.snapshot_id, '--to', bigDev]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /is in use .*mounted on .*unmount it first; nothing was written/);
    } finally {
      sh('umount', [s.path('dev-mnt')]);
    }
  });
});

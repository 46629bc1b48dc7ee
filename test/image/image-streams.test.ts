/**
 * Image backups of streams, where nothing says how long the disk should be:
 * an empty stream or file is refused, a stream that ends before the end of
 * the partitions and file systems it holds is saved but marked incomplete
 * (exit 3), and `--image-from-command` writes no snapshot unless the producer
 * exits 0; the README's recipe for a qcow2 disk (nbdcopy from qemu-nbd)
 * round-trips byte for byte.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { Sandbox, snapshotsOf, type RunOptions, type RunResult } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { missingTools } from '../image-files/ext-images.js';
import { makeTree, mkExt4, mkfsUnavailable, partitionedImage, sh } from './images.js';

const MiB = 1 << 20;

describe('image backups of streams', { skip: mkfsUnavailable() }, () => {
  let s: Sandbox;
  let bare: string;
  let bareBytes: Buffer;
  const env = (): Record<string, string> => ({ HOLDFAST_CACHE_DIR: s.path('cache') });
  const run = (args: string[], opts: RunOptions = {}): Promise<RunResult> => s.run(args, { ...opts, env: { ...env(), ...opts.env } });
  const ok = (args: string[], opts: RunOptions = {}, want = 0): Promise<RunResult> => s.ok(args, { ...opts, env: { ...env(), ...opts.env } }, want);
  const ids = async (): Promise<string[]> => (await snapshotsOf(s)).map((x) => x.id);
  const restored = async (id: string): Promise<Buffer> => (await ok(['restore-image', id, '--to', '-'])).stdoutBytes;

  before(async () => {
    s = await Sandbox.create('holdfast-image-streams-');
    const tree = s.path('tree');
    await makeTree(tree);
    bare = s.path('bare.img');
    mkExt4(bare, 16, tree, ['-b', '4096']);
    bareBytes = await readFile(bare);
    await s.ok(['init']);
  });
  after(async () => s.remove());

  it('an empty stream, an empty producer and an empty image file are refused, and nothing is written', async () => {
    const before = await ids();
    failsWith(await run(['backup', '--image', '-'], { input: Buffer.alloc(0) }), 1, /stdin ended before its first byte.*an empty image is no disk; no snapshot was written/);
    failsWith(await run(['backup', '--image-from-command', '--', 'true']), 1, /true wrote nothing: an empty image is no disk; no snapshot was written/);
    await writeFile(s.path('empty.img'), '');
    failsWith(await run(['backup', '--image', s.path('empty.img')]), 1, /empty\.img holds 0 bytes/);
    assert.deepEqual(await ids(), before);
  });

  // On main "using parent snapshot …" came first, then the refusal.
  it('an empty stream with a parent snapshot is refused before the parent is named', async () => {
    await ok(['backup', '--image', '-', '--stdin-filename', 'parent.img'], { input: bareBytes });
    const before = await ids();
    const r = await run(['backup', '--image', '-', '--stdin-filename', 'parent.img'], { input: Buffer.alloc(0) });
    failsWith(r, 1, /stdin ended before its first byte/);
    assert.equal(r.stdout, '');
    assert.deepEqual(await ids(), before);
    assert.match((await ok(['backup', '--image', '-', '--stdin-filename', 'parent.img'], { input: bareBytes })).stdout, /^using parent snapshot /);
  });

  it('a stream cut inside its file system is saved, marked incomplete, exit 3', async () => {
    const r = await run(['backup', '--json', '--image', '-'], { input: bareBytes.subarray(0, 6 * MiB) });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /stdin ended at 6291456 bytes, but the ext4? file system on the image ends at 16777216: the image is truncated.*marked incomplete/);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string; incomplete: boolean };
    assert.equal(summary.incomplete, true);
    const snap = (await snapshotsOf(s)).find((x) => x.id === summary.snapshot_id)!;
    assert.equal(snap.incomplete, true);
    // What arrived is kept as it arrived.
    assert.ok((await restored(snap.id)).equals(bareBytes.subarray(0, 6 * MiB)));
    // The whole stream is complete.
    const whole = await run(['backup', '--json', '--image', '-'], { input: bareBytes });
    assert.equal(whole.code, 0, whole.stderr);
    assert.equal((JSON.parse(whole.stdout.trim().split('\n').pop()!) as { incomplete: boolean }).incomplete, false);
  });

  it('a partitioned disk cut before its last partition is incomplete, exit 3', async () => {
    const img = s.path('gpt.img');
    const parts = partitionedImage(img, 24, 'gpt', [{ size: 8, type: 'L', ext4: true }, { size: 8, type: 'L', ext4: true }]);
    const cut = (await readFile(img)).subarray(0, parts[1]!.start - MiB);
    const r = await run(['backup', '--image', '-', '--stdin-filename', 'gpt.img'], { input: cut });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`stdin ended at ${cut.length} bytes, but partition 2 ends at ${parts[1]!.start + parts[1]!.size}: the image is truncated`));
    assert.match(r.stdout, /saved, INCOMPLETE/);
  });

  it('--image-from-command: no snapshot when the producer fails, a good one when it succeeds', async () => {
    await writeFile(s.path('half.img'), bareBytes.subarray(0, 4 * MiB));
    const before = await ids();
    const failed = await run(['backup', '--image-from-command', '--', 'sh', '-c', `cat ${s.path('half.img')}; exit 4`]);
    failsWith(failed, 1, /sh failed \(exit code 4\); no snapshot was written/);
    assert.doesNotMatch(failed.stdout, /saved/);
    failsWith(await run(['backup', '--image-from-command', '--', s.path('no-such-program')]), 1, /no-such-program.*no snapshot was written/);
    assert.deepEqual(await ids(), before);
    failsWith(await run(['backup', '--image-from-command']), 2, /needs a command/);
    failsWith(await run(['backup', '--image', bare, '--image-from-command', '--', 'cat', bare]), 2, /not both/);

    const r = await ok(['backup', '--json', '--image-from-command', '--stdin-filename', 'vm.img', '--', 'cat', bare]);
    const id = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
    const snap = (await snapshotsOf(s)).find((x) => x.id === id)!;
    assert.deepEqual(snap.paths, ['/vm.img']);
    assert.ok((await restored(id)).equals(bareBytes));
  });

  it('the README recipe: a qcow2 disk through qemu-nbd and nbdcopy', { skip: missingTools('qemu-img', 'qemu-nbd', 'nbdcopy') }, async () => {
    const qcow = s.path('vm.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', bare, qcow]);
    const r = await ok(['backup', '--json', '--image-from-command', '--stdin-filename', 'vm.img', '--', 'nbdcopy', '--', '[', 'qemu-nbd', '-r', '-f', 'qcow2', qcow, ']', '-']);
    const id = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
    assert.ok((await restored(id)).equals(bareBytes));
  });
});

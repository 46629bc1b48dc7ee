/**
 * Image backups and restores through the real CLI, on images made by mkfs
 * and sfdisk (no root needed): byte-identical restores to a sparse file and
 * to stdout, stdin sources, allocation skipping, unchanged incrementals, the
 * changed-block cache, partitioned disks, and the clear errors for damaged
 * images, damaged repositories and bad targets; a target file that holds
 * something is replaced only with --force; --json output is only JSON.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile, readdir, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox, type RunResult, type RunOptions } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { makeTree, mkExt4, mkfsUnavailable, noise, partitionedImage, sh } from './images.js';

type Summary = Record<string, unknown> & {
  blocks: number; blocks_unused: number; blocks_zero: number; blocks_unchanged: number; blocks_changed: number; blocks_stored: number;
  bytes_read: number; image_size: number; block_size: number; data_added: number; snapshot_id: string;
  filesystems: { type: string; understood: boolean; partition?: number; note?: string; used_bytes?: number }[]; partition_table: string;
};

const summaryOf = (r: RunResult): Summary => JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;

describe('image backups through the CLI', { skip: mkfsUnavailable() }, () => {
  let s: Sandbox;
  let tree: string;
  let bare: string;
  const env = (): Record<string, string> => ({ HOLDFAST_CACHE_DIR: s.path('cache') });
  const ok = (args: string[], opts: RunOptions = {}, want = 0): Promise<RunResult> => s.ok(args, { ...opts, env: { ...env(), ...opts.env } }, want);
  const run = (args: string[], opts: RunOptions = {}): Promise<RunResult> => s.run(args, { ...opts, env: { ...env(), ...opts.env } });
  const same = async (a: string, b: string): Promise<void> => {
    assert.ok((await readFile(a)).equals(await readFile(b)), `${a} and ${b} differ`);
  };

  before(async () => {
    s = await Sandbox.create('holdfast-image-');
    tree = s.path('tree');
    await makeTree(tree);
    bare = s.path('bare.img');
    mkExt4(bare, 64, tree, ['-b', '4096']);
    await s.ok(['init']);
  });
  after(async () => s.remove());

  let first: Summary;
  it('backs up a bare ext4 image, skipping the blocks the file system does not use', async () => {
    first = summaryOf(await ok(['backup', '--json', '--image', bare, '--block-size', '64K']));
    assert.equal(first.image_size, 64 << 20);
    assert.equal(first.block_size, 65536);
    assert.equal(first.blocks, 1024);
    assert.equal(first.partition_table, 'none');
    assert.deepEqual(first.filesystems.map((f) => [f.type, f.understood]), [['ext4', true]]);
    assert.ok(Object.keys(first.filesystems[0]!).every((k) => k === k.toLowerCase()), `snake_case keys: ${Object.keys(first.filesystems[0]!).join(', ')}`);
    assert.ok(first.filesystems[0]!.used_bytes! > 0 && first.filesystems[0]!.used_bytes! < 24 << 20, `used_bytes ${first.filesystems[0]!.used_bytes}`);
    assert.ok(first.blocks_unused > 600, `only ${first.blocks_unused} unused blocks`);
    assert.ok(first.bytes_read < 24 << 20, `read ${first.bytes_read} bytes of a 64 MiB image holding ~8 MiB`);
    assert.equal(first.blocks_unused + first.blocks_zero + first.blocks_unchanged + first.blocks_changed, first.blocks);
    assert.ok(first.blocks_stored > 0 && first.blocks_stored <= first.blocks_changed, 'equal blocks are stored once');
  });

  it('restores it byte for byte to a sparse file, verified, and to stdout', async () => {
    const out = s.path('restored.img');
    const r = await ok(['restore-image', 'latest', '--to', out, '--verify']);
    assert.match(r.stdout, /verified: every block reads back as in the snapshot/);
    await same(bare, out);
    const st = await stat(out);
    assert.ok(st.blocks * 512 < 32 << 20, `restored file uses ${st.blocks * 512} bytes on disk: not sparse`);
    const piped = await ok(['restore-image', first.snapshot_id, '--to', '-']);
    assert.ok(piped.stdoutBytes.equals(await readFile(bare)), 'stdout restore differs');
    assert.match(piped.stderr, /restoring image snapshot/);
  });

  it('an image file that holds something is overwritten only with --force', async () => {
    const out = s.path('precious.img');
    await writeFile(out, 'not a backup\n');
    const r = await run(['restore-image', first.snapshot_id, '--to', out]);
    failsWith(r, 1, /precious\.img exists and holds 13 bytes; pass --force to overwrite it; nothing was written/);
    // Refused before the restore is announced (main said "restoring image snapshot …" first).
    assert.equal(r.stdout, '');
    assert.equal(await readFile(out, 'utf8'), 'not a backup\n');
    assert.match((await ok(['restore-image', first.snapshot_id, '--to', out, '--force'])).stdout, /^restoring image snapshot /);
    await same(bare, out);
    // An empty file is no one's data.
    await writeFile(s.path('empty-target.img'), '');
    await ok(['restore-image', first.snapshot_id, '--to', s.path('empty-target.img')]);
    await same(bare, s.path('empty-target.img'));
  });

  it('--json: every line on stdout is JSON, the messages go to stderr', async () => {
    const r = await ok(['restore-image', first.snapshot_id, '--to', s.path('json.img'), '--verify', '--json']);
    const lines = r.stdout.trim().split('\n');
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not JSON: ${line}`);
    const summary = JSON.parse(lines.pop()!) as { message_type: string; size: number; verify_failed: number[] };
    assert.equal(summary.message_type, 'summary');
    assert.equal(summary.size, 64 << 20);
    assert.deepEqual(summary.verify_failed, []);
    assert.match(r.stderr, /restoring image snapshot/);
  });

  it('an unchanged incremental reuses every block through the changed-block cache', async () => {
    const r = summaryOf(await ok(['backup', '--json', '--image', bare, '--block-size', '64K']));
    assert.equal(r.blocks_changed, 0);
    assert.equal(r.blocks_stored, 0);
    assert.equal(r.blocks_unchanged, first.blocks_changed);
    assert.equal(r.data_added, 0);
    const snaps = JSON.parse((await ok(['snapshots', '--json'])).stdout) as { id: string; parent?: string }[];
    assert.equal(snaps[snaps.length - 1]!.parent, first.snapshot_id);
  });

  it('a damaged cache is ignored with a warning, and the snapshot is still right', async () => {
    const cacheDir = s.path('cache');
    const [repoDir] = await readdir(cacheDir);
    const [file] = await readdir(join(cacheDir, repoDir!));
    const path = join(cacheDir, repoDir!, file!);
    const bytes = await readFile(path);
    bytes[bytes.length - 100]! ^= 0xff;
    await writeFile(path, bytes);
    const r = await ok(['backup', '--json', '--image', bare, '--block-size', '64K']);
    assert.match(r.stderr, /changed-block cache .* is damaged/);
    const sum = summaryOf(r);
    assert.equal(sum.blocks_stored, 0, 'the blocks are in the repository already');
    assert.equal(sum.blocks_unchanged, first.blocks_changed, 'unchanged by comparison with the parent');
    const out = s.path('restored-2.img');
    await ok(['restore-image', 'latest', '--to', out]);
    await same(bare, out);
  });

  it('--all-blocks reads and keeps every block', async () => {
    const r = summaryOf(await ok(['backup', '--json', '--image', bare, '--block-size', '64K', '--all-blocks', '--no-cache']));
    assert.equal(r.blocks_unused, 0);
    assert.equal(r.bytes_read, 64 << 20);
    assert.equal(r.filesystems[0]!.understood, false);
  });

  it('backs up a raw stream from stdin and restores it', async () => {
    const bytes = await readFile(bare);
    const r = summaryOf(await ok(['backup', '--json', '--image', '-', '--block-size', '64K', '--stdin-filename', 'vm.img'], { input: bytes }));
    assert.equal(r.image_size, bytes.length);
    assert.deepEqual(r.filesystems.map((f) => [f.type, f.understood]), [['ext4', false]]);
    assert.equal(r.blocks_stored, 0, 'every block is in the repository already (deduplicated)');
    const piped = await ok(['restore-image', r.snapshot_id, '--to', '-']);
    assert.ok(piped.stdoutBytes.equals(bytes));
    const snaps = JSON.parse((await ok(['snapshots', '--json'])).stdout) as { id: string; paths: string[] }[];
    assert.deepEqual(snaps.find((x) => x.id === r.snapshot_id)!.paths, ['/vm.img']);
  });

  it('a GPT disk: each ext4 partition understood, the unknown one and the gaps kept whole', async () => {
    const img = s.path('gpt.img');
    const parts = partitionedImage(img, 96, 'gpt', [
      { size: 32, type: 'L', ext4: tree },
      { size: 8, type: 'S' },
      { size: 40, type: 'L', ext4: true },
    ]);
    // Something that is not a file system in partition 2, and in the gap before partition 1.
    const fh = await open(img, 'r+');
    await fh.write(noise(4 << 20, 7), 0, 4 << 20, parts[1]!.start);
    await fh.write(noise(200_000, 8), 0, 200_000, 40 * 512);
    await fh.close();
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    assert.equal(r.partition_table, 'gpt');
    assert.deepEqual(r.filesystems.map((f) => [f.type, f.understood, f.partition]), [['ext4', true, 1], ['ext4', true, 3]]);
    assert.ok(r.blocks_unused > 700, `${r.blocks_unused} unused`);
    const out = s.path('gpt-restored.img');
    await ok(['restore-image', 'latest', '--to', out, '--verify']);
    await same(img, out);
  });

  it('an MBR disk with an ext4 file system in a logical partition', async () => {
    const img = s.path('mbr.img');
    sh('truncate', ['-s', '64M', img]);
    sh('sfdisk', ['-q', img], `label: dos\nsize=8MiB, type=83\nsize=50MiB, type=5\n${img}5 : size=40MiB, type=83\n`);
    const p5 = (JSON.parse(sh('sfdisk', ['--json', img])) as { partitiontable: { partitions: { start: number; size: number }[] } }).partitiontable.partitions[2]!;
    sh('mkfs.ext4', ['-q', '-F', '-E', `offset=${p5.start * 512}`, '-d', tree, img, `${(p5.size * 512) / 1024}k`]);
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--block-size', '64K']));
    assert.equal(r.partition_table, 'mbr');
    assert.deepEqual(r.filesystems.map((f) => [f.type, f.understood, f.partition]), [['ext4', true, 5]]);
    const out = s.path('mbr-restored.img');
    await ok(['restore-image', 'latest', '--to', out]);
    await same(img, out);
  });

  it('a truncated image and a damaged superblock are backed up whole, with a clear warning', async () => {
    const cut = s.path('truncated.img');
    await writeFile(cut, (await readFile(bare)).subarray(0, 40 << 20));
    const r = await ok(['backup', '--json', '--image', cut, '--block-size', '64K']);
    assert.match(r.stderr, /claims 67108864 bytes, but only 41943040 are there .*reading all its blocks/);
    assert.equal(summaryOf(r).blocks_unused, 0);
    await ok(['restore-image', 'latest', '--to', s.path('truncated-restored.img')]);
    await same(cut, s.path('truncated-restored.img'));

    const bad = s.path('badsb.img');
    await writeFile(bad, await readFile(bare));
    const fh = await open(bad, 'r+');
    const v = Buffer.alloc(4);
    v.writeUInt32LE(0, 0);
    await fh.write(v, 0, 4, 1024 + 0x20); // blocks per group = 0
    await fh.close();
    const r2 = await ok(['backup', '--json', '--image', bad, '--block-size', '64K']);
    assert.match(r2.stderr, /ext4? file system on the image: superblock: 0 blocks per group; reading all its blocks/);
    await ok(['restore-image', 'latest', '--to', s.path('badsb-restored.img')]);
    await same(bad, s.path('badsb-restored.img'));
  });

  it('clear errors: missing source, a folder, a FIFO or character device as the image, restore of a file snapshot, --verify to stdout, a missing folder', async () => {
    let r = await run(['backup', '--image', s.path('nope.img')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot open .*nope\.img.*ENOENT/);
    r = await run(['backup', '--image', s.dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /neither a block device nor a regular file/);
    // A FIFO no one writes to: refused at once (its open hung for ever), as a character device is.
    const fifo = s.path('image.fifo');
    sh('mkfifo', [fifo]);
    for (const notImage of [fifo, '/dev/null']) {
      r = await run(['backup', '--image', notImage]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /neither a block device nor a regular file/);
    }
    const fileSnap = await ok(['backup', '--json', tree]);
    const fileId = (JSON.parse(fileSnap.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
    r = await run(['restore-image', fileId, '--to', s.path('x.img')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not an image snapshot/);
    r = await run(['restore-image', 'latest', '--to', '-', '--verify']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--verify cannot read back stdout/);
    r = await run(['restore-image', 'latest', '--to', s.path('no', 'such', 'dir', 'x.img')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ENOENT/);
  });

  it('a damaged repository gives a clear error, not a wrong image', async () => {
    const img = s.path('lonely.img');
    mkExt4(img, 16, undefined, ['-b', '4096']);
    await writeFile(join(s.path('lonely-data')), noise(1 << 20, 99));
    const fh = await open(img, 'r+');
    await fh.write(noise(1 << 20, 99), 0, 1 << 20, 8 << 20);
    await fh.close();
    const r = summaryOf(await ok(['backup', '--json', '--image', img, '--all-blocks', '--no-cache']));
    assert.ok(r.blocks_stored > 0);
    // Remove the newest data pack: it holds the noise blocks only this snapshot has.
    const packs: { path: string; mtime: number }[] = [];
    for (const d of await readdir(join(s.repo, 'data'))) {
      for (const f of await readdir(join(s.repo, 'data', d))) packs.push({ path: join(s.repo, 'data', d, f), mtime: (await stat(join(s.repo, 'data', d, f))).mtimeMs });
    }
    packs.sort((a, b) => b.mtime - a.mtime);
    await unlink(packs[0]!.path);
    const bad = await run(['restore-image', r.snapshot_id, '--to', s.path('lonely-restored.img')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /pack [0-9a-f]{64} is damaged: missing/);
  });

  it('the block size is checked', async () => {
    const r = await run(['backup', '--image', bare, '--block-size', '3000']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /a power of two from 4K to 64M/);
    await truncate(s.path('truncated.img'), 0);
  });
});

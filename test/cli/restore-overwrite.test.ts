/**
 * Restoring into a target that already holds a restore (an interrupted one
 * to resume, or an earlier one to bring back): `--overwrite always`
 * (default), `if-changed` and `never`, as restic has them.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { makeExtImage, missingTools } from '../image-files/ext-images.js';

describe('restore into a target that holds a restore', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-overwrite-');
    src = s.path('src');
    await buildTree(src, EVERYTHING);
    await s.ok(['init']);
    await s.ok(['backup', '-q', src]);
  });
  after(() => removeTree(s.dir));

  /** Restores into a fresh target and returns where the source landed in it. */
  async function restored(name: string): Promise<string> {
    const target = s.path(name);
    await s.ok(['restore', 'latest', '--target', target]);
    return join(target, src);
  }

  /** A file of the restore given other bytes of the same size, with its mtime put back. */
  async function sameSizeAndMtime(file: string, bytes: string): Promise<void> {
    const st = await fs.stat(file, { bigint: true });
    assert.equal(BigInt(bytes.length), st.size);
    await fs.writeFile(file, bytes);
    const back = Number(st.mtimeNs / 1000n) / 1e6;
    await fs.utimes(file, back, back);
    assert.equal((await fs.stat(file, { bigint: true })).mtimeNs / 1000n, st.mtimeNs / 1000n);
  }

  it('a second restore with every kind of file is exact and exits 0, and so is a third', async () => {
    const at = await restored('twice');
    for (let i = 0; i < 2; i++) {
      const r = await s.run(['restore', 'latest', '--target', s.path('twice'), '--verify']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /all match the snapshot/);
      await compareTrees(src, at);
    }
  });

  it('always (the default) puts back what was changed, removed or put in the way, and never writes through a symlink', async () => {
    const at = await restored('always');
    const outside = s.path('outside.txt');
    await fs.writeFile(outside, 'not part of any restore\n');
    await fs.writeFile(join(at, 'sizes', 'text.txt'), 'changed, and longer than before\n');
    await sameSizeAndMtime(join(at, 'sizes', 'one-byte'), 'y');
    await fs.rm(join(at, 'sizes', '100k.bin'));
    await fs.rm(join(at, 'links', 'to-file'));
    await fs.writeFile(join(at, 'links', 'to-file'), 'a file where a symlink was\n');
    await fs.rm(join(at, 'nested', 'a', 'b', 'c', 'leaf.txt'));
    await fs.symlink(outside, join(at, 'nested', 'a', 'b', 'c', 'leaf.txt'));
    await fs.rm(join(at, 'special', 'fifo'));
    await fs.writeFile(join(at, 'special', 'fifo'), 'a file where a FIFO was\n');
    await fs.rm(join(at, 'other-dir', 'third'));
    await fs.writeFile(join(at, 'other-dir', 'third'), 'no longer a hard link\n');
    await fs.chmod(join(at, 'modes', 'private'), 0o644);
    await s.ok(['restore', 'latest', '--target', s.path('always')]);
    await compareTrees(src, at);
    assert.equal(await fs.readFile(outside, 'utf8'), 'not part of any restore\n');
  });

  it('if-changed keeps files of the same size and mtime, replaces the others, and sets metadata again', async () => {
    const at = await restored('if-changed');
    await fs.writeFile(join(at, 'sizes', 'text.txt'), 'changed, and longer than before\n');
    await sameSizeAndMtime(join(at, 'sizes', 'one-byte'), 'y');
    await fs.rm(join(at, 'links', 'dangling'));
    await fs.chmod(join(at, 'modes', 'private'), 0o644);
    const r = await s.ok(['--json', 'restore', 'latest', '--target', s.path('if-changed'), '--overwrite', 'if-changed']);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    // The changed file, and the three names of the hard-linked file (a file with several names is never
    // kept: its metadata would be set on every name, one of which may be a link put there to a file elsewhere).
    assert.equal(summary['files_restored'], 4, r.stdout);
    assert.ok(summary['files_skipped']! > 10, r.stdout);
    assert.equal(await fs.readFile(join(at, 'sizes', 'one-byte'), 'utf8'), 'y', 'a file of the same size and mtime was rewritten');
    await sameSizeAndMtime(join(at, 'sizes', 'one-byte'), 'x');
    await compareTrees(src, at);
  });

  it('never leaves every file there as it is and restores only what is missing', async () => {
    const at = await restored('never');
    await fs.writeFile(join(at, 'sizes', 'text.txt'), 'changed, and longer than before\n');
    await fs.rm(join(at, 'sizes', '100k.bin'));
    await fs.rm(join(at, 'links', 'to-dir'));
    const r = await s.ok(['restore', 'latest', '--target', s.path('never'), '--overwrite', 'never']);
    assert.match(r.stdout, /restored 1 file, .* already there were left as they are/);
    assert.equal(await fs.readFile(join(at, 'sizes', 'text.txt'), 'utf8'), 'changed, and longer than before\n');
    assert.deepEqual(await fs.readFile(join(at, 'sizes', '100k.bin')), await fs.readFile(join(src, 'sizes', '100k.bin')));
    assert.equal(await fs.readlink(join(at, 'links', 'to-dir')), '../nested/a');
    assert.ok(existsSync(join(at, 'special', 'fifo')));
    // --verify says that the file it left alone differs, not that it restored it wrong.
    const verified = await s.run(['restore', 'latest', '--target', s.path('never'), '--overwrite', 'never', '--verify']);
    assert.equal(verified.code, 1, verified.stderr);
    const line = join(src, 'sizes', 'text.txt') + ': verification failed: left as it was (--overwrite never); its bytes differ from the snapshot';
    assert.ok(verified.stderr.includes(line), verified.stderr);
    assert.doesNotMatch(verified.stderr, /restored bytes/);
  });

  it('a bad --overwrite choice is a usage error', async () => {
    const r = await s.run(['restore', 'latest', '--target', s.path('bad'), '--overwrite', 'sometimes']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /always, if-changed, never/);
  });
});

describe('restore of files out of an image into a target that holds them', { skip: missingTools('mkfs.ext4') }, () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-overwrite-');
    src = s.path('src');
    await buildTree(src, {
      kind: 'dir',
      entries: {
        'file.txt': { kind: 'file', content: 'in the image\n' },
        'link': { kind: 'symlink', target: 'file.txt' },
        'fifo': { kind: 'fifo' },
        'sub': { kind: 'dir', mode: 0o555, entries: { 'inner.txt': { kind: 'file', content: 'inner\n', mode: 0o444 } } },
        'hard': { kind: 'hardlink', to: 'file.txt' },
      },
    });
    const image = s.path('fs.img');
    await makeExtImage(image, src, '8M');
    await s.ok(['init']);
    await s.ok(['backup', '-q', '--image', image]);
  });
  after(() => removeTree(s.dir));

  it('is exact again, and if-changed keeps what is unchanged', async () => {
    const target = s.path('t');
    for (const args of [[], [], ['--overwrite', 'if-changed']]) {
      await s.ok(['restore', 'latest', '--target', target, ...args]);
      await removeTree(join(target, 'lost+found'));
      await compareTrees(src, target, { ignoreRootMetadata: true, mtimePrecisionNs: 1_000_000_000n });
    }
  });
});

/**
 * Modification times before 1970 through backup and restore, of files and of
 * files out of an image (Node's utimes turns a negative time into "now" and
 * restores had set 1970-01-01), and `restore --verify` checking mtimes.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildTree, compareTrees, removeTree, type Dir } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { Forge } from '../helpers/forge.js';
import { makeExtImage, missingTools } from '../image-files/ext-images.js';
import { utimesSeconds } from '../../src/sources/posix.js';

/** Every kind of node, each with a time before 1970 (to the nanosecond; restores keep microseconds). */
const OLD: Dir = {
  kind: 'dir',
  mtime: -302_000_000_123_456_789n,
  entries: {
    'one-blob.txt': { kind: 'file', content: 'written in 1960\n', mtime: -315_619_199_876_543_210n },
    'holes.bin': { kind: 'file', sparse: { size: 3 << 20, data: [[1 << 20, 5000]] }, mtime: -500_000_000n },
    'empty': { kind: 'file', mtime: -1n },
    'big.bin': { kind: 'file', size: 6 << 20, mtime: -86_400_000_000_001n },
    'folder': { kind: 'dir', mtime: -1_000_000_000_000_000_000n, entries: { 'inner.txt': { kind: 'file', content: 'inner\n', mtime: -2n } } },
    'link': { kind: 'symlink', target: 'one-blob.txt', mtime: -123_456_789_000n },
    'fifo': { kind: 'fifo', mtime: -42_000_000_000n },
  },
};

describe('mtimes before 1970', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-mtime-');
    src = s.path('src');
    await buildTree(src, OLD);
    await s.ok(['init']);
    await s.ok(['backup', '-q', src]);
  });
  after(() => removeTree(s.dir));

  it('restore exactly (to the microsecond), and --verify passes', async () => {
    const target = s.path('t');
    const r = await s.ok(['restore', 'latest', '--target', target, '--verify']);
    assert.match(r.stdout, /all match the snapshot/);
    await compareTrees(src, join(target, src));
  });

  it('--verify reports an mtime the target cannot hold', async (t) => {
    // ext4 keeps no time before 1901-12-13 (-2^31 s); tmpfs and others keep it and there is nothing to report.
    const probe = s.path('probe');
    await fs.writeFile(probe, '');
    const early = -(2n ** 31n + 10n) * 1_000_000_000n;
    await fs.utimes(probe, utimesSeconds(early), utimesSeconds(early));
    if ((await fs.lstat(probe, { bigint: true })).mtimeNs === early) {
      t.skip('the file system of the sandbox holds times before 1901');
      return;
    }
    const f = await Forge.open(s);
    const text = Buffer.from('from 1800\n');
    const snap = await f.snapshot(await f.tree([f.file('ancient.txt', text.length, [await f.data(text)], { mtime: early })]));
    const target = s.path('t-ancient');
    const r = await s.run(['restore', snap, '--target', target, '--verify']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /\/ancient\.txt: restored mtime -2147483648000000000 ns differs from the snapshot's -2147483658000000000 ns/);
    assert.deepEqual(await fs.readFile(join(target, 'ancient.txt')), text);
  });
});

describe('mtimes before 1970 of files out of an image', { skip: missingTools('mkfs.ext4') }, () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-mtime-');
    src = s.path('src');
    await buildTree(src, { kind: 'dir', entries: { 'old.txt': { kind: 'file', content: 'from 1960\n', mtime: -315_619_199_000_000_000n }, 'sub': { kind: 'dir', mtime: -1_000_000_000n, entries: {} } } });
    const image = s.path('fs.img');
    await makeExtImage(image, src, '8M');
    await s.ok(['init']);
    await s.ok(['backup', '-q', '--image', image]);
  });
  after(() => removeTree(s.dir));

  it('restore with them (mkfs keeps whole seconds), and --verify passes', async () => {
    const target = s.path('t');
    await s.ok(['restore', 'latest', '--target', target, '--verify']);
    await removeTree(join(target, 'lost+found'));
    await compareTrees(src, target, { ignoreRootMetadata: true, mtimePrecisionNs: 1_000_000_000n });
  });
});

/**
 * The hand-written ext2/3/4 allocation reader against e2fsprogs: for images
 * made by mkfs in many shapes (1 KiB and 4 KiB blocks, 32- and 64-bit
 * descriptors, flex_bg, meta_bg, bigalloc, sparse_super2, ext2 and ext3),
 * the free blocks it finds are exactly those `dumpe2fs` lists. Damaged
 * superblocks and descriptors fail with FsCorruptError, never a crash.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FsCorruptError, extFreeRuns, readExtInfo } from '../../src/sources/image/ext-fs.js';
import { analyzeImage } from '../../src/sources/image/image-layout.js';
import { openImageInput } from '../../src/sources/image/image-input.js';
import type { RandomAccessSource } from '../../src/sources/image/random-access.js';
import { makeTree, mkExt4, mkfsUnavailable, sh } from './images.js';

/** Free blocks per dumpe2fs, as a sorted list of [first, last] block numbers. */
function dumpe2fsFree(image: string): [number, number][] {
  const out: [number, number][] = [];
  for (const line of sh('dumpe2fs', [image]).split('\n')) {
    const m = /^\s+Free blocks: (.*)$/.exec(line);
    if (!m || m[1]!.trim() === '') continue;
    for (const part of m[1]!.split(',')) {
      const [a, b] = part.trim().split('-').map(Number);
      out.push([a!, b ?? a!]);
    }
  }
  return out;
}

async function ourFree(src: RandomAccessSource): Promise<{ runs: [number, number][]; blockSize: number }> {
  const info = await readExtInfo(src);
  const runs: [number, number][] = [];
  await extFreeRuns(src, (offset, length) => runs.push([offset / info.blockSize, offset / info.blockSize + length / info.blockSize - 1]));
  return { runs, blockSize: info.blockSize };
}

/** Merges adjacent ranges so two lists can be compared. */
function merged(r: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of [...r].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

const skip = mkfsUnavailable();

describe('ext2/3/4 allocation bitmaps', { skip }, () => {
  let dir: string;
  let tree: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-ext-'));
    tree = join(dir, 'tree');
    await makeTree(tree);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const shapes: [string, number, string[]][] = [
    ['ext4, small (1 KiB blocks)', 48, []],
    ['ext4, 4 KiB blocks, 64-bit, flex_bg', 160, ['-b', '4096', '-O', '64bit']],
    ['ext4 without 64-bit descriptors', 96, ['-b', '4096', '-O', '^64bit']],
    ['ext4 without flex_bg', 96, ['-b', '4096', '-O', '^flex_bg']],
    ['ext4 with meta_bg', 160, ['-b', '1024', '-O', 'meta_bg,^resize_inode']],
    ['ext4 with bigalloc', 160, ['-b', '4096', '-O', 'bigalloc', '-C', '16384']],
    ['ext4 with sparse_super2', 160, ['-b', '4096', '-O', 'sparse_super2']],
    ['ext4 with many small groups', 64, ['-b', '1024', '-g', '1024', '-N', '2048']],
    ['ext3', 64, ['-t', 'ext3']],
    ['ext2', 64, ['-t', 'ext2']],
  ];
  for (const [name, mib, opts] of shapes) {
    it(`${name}: free blocks equal dumpe2fs's`, async () => {
      const img = join(dir, `${name.replace(/\W+/g, '-')}.img`);
      mkExt4(img, mib, tree, opts);
      const input = await openImageInput(img);
      try {
        const { runs } = await ourFree(input.random!);
        // With bigalloc dumpe2fs names each free cluster by its first block: compare clusters.
        const c = opts.includes('bigalloc') ? 4 : 1;
        const clusters = (r: [number, number][]): [number, number][] => r.map(([a, b]) => [Math.floor(a / c), Math.floor(b / c)]);
        assert.deepEqual(merged(clusters(runs)), merged(clusters(dumpe2fsFree(img))));
        const expected = name.startsWith('ext2') ? 'ext2' : name.startsWith('ext3') ? 'ext3' : 'ext4';
        assert.equal((await readExtInfo(input.random!)).type, expected);
      } finally {
        await input.close();
      }
    });
  }

  it('a damaged superblock or descriptor table gives FsCorruptError, and the image is then read whole', async () => {
    const img = join(dir, 'damaged.img');
    mkExt4(img, 32, tree);
    const fh = await open(img, 'r+');
    const sb = Buffer.alloc(1024);
    await fh.read(sb, 0, 1024, 1024);
    const corrupt = async (patch: (b: Buffer) => void): Promise<void> => {
      const b = Buffer.from(sb);
      patch(b);
      await fh.write(b, 0, 1024, 1024);
    };
    try {
      for (const patch of [
        (b: Buffer) => b.writeUInt32LE(40, 0x18), // block size 2^50
        (b: Buffer) => b.writeUInt32LE(0xffffffff, 0x4), // more blocks than the image holds
        (b: Buffer) => b.writeUInt32LE(0, 0x20), // no blocks per group
        (b: Buffer) => b.writeUInt16LE(3, 0x58), // inode size 3
      ]) {
        await corrupt(patch);
        const input = await openImageInput(img);
        try {
          await assert.rejects(ourFree(input.random!), FsCorruptError);
          const a = await analyzeImage(input.random!, { blockSize: 65536 });
          assert.equal(a.freeBytes, undefined, 'nothing may be skipped');
          assert.equal(a.filesystems[0]?.understood, false);
          assert.ok(a.warnings.some((w) => /reading all its blocks/.test(w)), a.warnings.join('\n'));
        } finally {
          await input.close();
        }
      }
      // A descriptor pointing outside the file system.
      await fh.write(sb, 0, 1024, 1024);
      const gd = Buffer.alloc(4);
      gd.writeUInt32LE(0x7fffffff, 0);
      await fh.write(gd, 0, 4, 2048 /* 1 KiB blocks: descriptors in block 2 */);
      const input = await openImageInput(img);
      try {
        await assert.rejects(ourFree(input.random!), /outside the file system/);
      } finally {
        await input.close();
      }
    } finally {
      await fh.close();
    }
  });

  it('a file system whose journal needs recovery is not trusted', async () => {
    const img = join(dir, 'recover.img');
    mkExt4(img, 32, tree);
    const fh = await open(img, 'r+');
    try {
      const b = Buffer.alloc(4);
      await fh.read(b, 0, 4, 1024 + 0x60);
      b.writeUInt32LE(b.readUInt32LE(0) | 0x4, 0);
      await fh.write(b, 0, 4, 1024 + 0x60);
    } finally {
      await fh.close();
    }
    const input = await openImageInput(img);
    try {
      const a = await analyzeImage(input.random!, { blockSize: 65536 });
      assert.equal(a.filesystems[0]?.understood, false);
      assert.match(a.filesystems[0]?.note ?? '', /journal needs recovery/);
    } finally {
      await input.close();
    }
  });

  it('random damage to the metadata never crashes the reader', async () => {
    const img = join(dir, 'fuzz.img');
    mkExt4(img, 16, undefined, ['-b', '1024']);
    const input = await openImageInput(img);
    const pristine = await input.random!.read(0, 64 * 1024);
    await input.close();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ at: fc.nat({ max: pristine.length - 1 }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 24 }), async (flips) => {
        const head = Buffer.from(pristine);
        for (const f of flips) head[f.at] = f.value;
        const size = 16 << 20;
        const src: RandomAccessSource = {
          size,
          read: async (offset, length) => {
            if (offset < 0 || offset + length > size) throw new RangeError('outside');
            const out = Buffer.alloc(length);
            if (offset < head.length) head.copy(out, 0, offset, Math.min(head.length, offset + length));
            return out;
          },
        };
        const a = await analyzeImage(src, { blockSize: 4096 });
        if (a.freeBytes) for (const v of a.freeBytes) assert.ok(v <= 4096);
      }),
      { numRuns: 150 },
    );
  });
});

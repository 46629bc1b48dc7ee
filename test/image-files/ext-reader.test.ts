/**
 * The ext2/3/4 reader and the image tree, on image files made by the real
 * mkfs (no repository involved): every file of the EVERYTHING fixture comes
 * back out of the image equal to the original, for ext4 (extents, htree),
 * ext2/ext3 with 1 KiB blocks (direct, indirect, double and triple indirect
 * blocks), 128-byte inodes, inline data and 64 KiB blocks; partitioned disks
 * show their partitions; damaged and hostile images give clear errors and
 * never escape the target or loop.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EVERYTHING, buildTree, compareTrees, removeTree, tempDir, type Dir } from '../fixtures/tree.js';
import { FileSource, type ByteSource } from '../../src/sources/image/fs/byte-source.js';
import { ImageVolume, type ImageNode } from '../../src/sources/image/fs/image-volume.js';
import { ImageRestorer } from '../../src/jobs/image-files/image-restore.js';
import { findImageNode, walkImage } from '../../src/jobs/image-files/image-walk.js';
import { listImage } from '../../src/jobs/image-files/image-ls.js';
import { fileBytes } from '../../src/jobs/image-files/image-file-reader.js';
import { debugfs, debugfsSession, firstBlockOf, makeDisk, makeExtImage, missingTools, renameEntryRaw } from './ext-images.js';
import { errorCode } from '../../src/core/errors.js';

const skip = missingTools('mkfs.ext4', 'debugfs', 'e2fsck', 'sfdisk', 'mkswap');
/** mke2fs -d stores whole seconds. */
const MKFS_TIMES = { ignoreRootMetadata: true, mtimePrecisionNs: 1_000_000_000n } as const;

async function openImage(path: string, warnings: string[] = []): Promise<{ volume: ImageVolume; source: FileSource }> {
  const source = await FileSource.open(path);
  return { volume: await ImageVolume.open(source, { onWarning: (m) => warnings.push(m) }), source };
}

/** Restores everything out of an image and compares it with the source tree (owners and device nodes too when the test runs as root). */
async function roundTrip(image: string, src: string, target: string): Promise<void> {
  const { volume, source } = await openImage(image);
  try {
    const r = await new ImageRestorer(volume, target, { verify: true, privileged: process.getuid?.() === 0 }).run();
    assert.deepEqual(r.failed, []);
    assert.deepEqual(r.verifyFailed, []);
    await removeTree(join(target, 'lost+found'));
    await compareTrees(src, target, MKFS_TIMES);
  } finally {
    await source.close();
  }
}

/** A whole file out of an image. */
async function readAll(volume: ImageVolume, node: ImageNode): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of fileBytes(volume, node)) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

/** Counts the bytes read from a source. */
class CountingSource implements ByteSource {
  bytes = 0;
  constructor(private readonly inner: ByteSource) {}
  get size(): number {
    return this.inner.size;
  }
  read(offset: number, length: number): Promise<Buffer> {
    this.bytes += length;
    return this.inner.read(offset, length);
  }
}

describe('files out of ext2/3/4 images', { skip, timeout: 180_000 }, () => {
  let dir: string;
  let src: string;

  before(async () => {
    dir = await tempDir('image-files');
    src = join(dir, 'src');
    await buildTree(src, EVERYTHING);
  });
  after(async () => {
    await removeTree(dir);
  });

  for (const [name, kind, size, extra] of [
    ['ext4 (extents, 64bit, metadata_csum)', 'ext4', '96M', []],
    ['ext2 with 1 KiB blocks (indirect blocks up to triple)', 'ext2', '96M', ['-b', '1024']],
    ['ext3 with 1 KiB blocks', 'ext3', '96M', ['-b', '1024']],
    ['ext4 with 128-byte inodes, no 64bit, no journal', 'ext4', '96M', ['-I', '128', '-O', '^64bit,^has_journal']],
    ['ext4 with 64 KiB blocks', 'ext4', '256M', ['-b', '65536']],
  ] as const) {
    it(`restores every file of the fixture from ${name}`, async () => {
      const image = join(dir, `${kind}.img`);
      await makeExtImage(image, src, size, kind, [...extra]);
      await roundTrip(image, src, join(dir, `out-${kind}-${extra.join('')}`));
    });
  }

  it('reads inline data (small files and directories inside the inode)', async () => {
    const small: Dir = { kind: 'dir', entries: {
      'tiny.txt': { kind: 'file', content: 'fits in the inode\n', mtime: new Date('2020-01-02T03:04:05Z') },
      'bigger.txt': { kind: 'file', content: 'x'.repeat(140), mtime: new Date('2020-01-02T03:04:05Z') },
      'large.bin': { kind: 'file', size: 50_000, mtime: new Date('2020-01-02T03:04:05Z') },
      'small-dir': { kind: 'dir', entries: { a: { kind: 'file', content: 'a' }, b: { kind: 'symlink', target: 'a' } } },
      'long-link': { kind: 'symlink', target: 'l'.repeat(200) },
    } };
    const s = join(dir, 'inline-src');
    await buildTree(s, small);
    const image = join(dir, 'inline.img');
    await makeExtImage(image, s, '16M', 'ext4', ['-O', 'inline_data']);
    await roundTrip(image, s, join(dir, 'out-inline'));
  });

  it('lists a hashed (htree) directory completely', async () => {
    const s = join(dir, 'htree-src');
    await mkdir(s);
    await Promise.all(Array.from({ length: 1500 }, (_, i) => writeFile(join(s, `file-with-a-longer-name-${i}`), `${i}\n`)));
    const image = join(dir, 'htree.img');
    await makeExtImage(image, s, '32M');
    await import('node:child_process').then(({ execFileSync }) => {
      try {
        execFileSync('e2fsck', ['-fyD', image], { stdio: 'ignore' });
      } catch (e) {
        if ((e as { status?: number }).status !== 1) throw e; // 1 = "errors corrected" (the directories were indexed)
      }
    });
    const stat = await import('node:child_process').then(({ execFileSync }) => execFileSync('debugfs', ['-R', 'stat /', image], { stdio: ['ignore', 'pipe', 'ignore'] }).toString());
    const flags = Number(/Flags: (0x[0-9a-f]+)/.exec(stat)?.[1]);
    assert.ok(flags & 0x1000, `the root directory is hashed (flags ${flags.toString(16)})`);
    const { volume, source } = await openImage(image);
    try {
      const root = await volume.root();
      assert.ok(root.type === 'dir');
      const names = (await volume.list(root)).map((n) => n.name.toString()).filter((n) => n !== 'lost+found');
      assert.equal(names.length, 1500);
      assert.equal(new Set(names).size, 1500);
      const f = await findImageNode(volume, '/file-with-a-longer-name-1499');
      assert.equal((await readAll(volume, f)).toString(), '1499\n');
    } finally {
      await source.close();
    }
  });

  it('decodes nanosecond times, uids above 65535 and device numbers', async () => {
    const s = join(dir, 'meta-src');
    await buildTree(s, { kind: 'dir', entries: { f: { kind: 'file', content: 'x' } } });
    const image = join(dir, 'meta.img');
    await makeExtImage(image, s, '8M');
    const extra = (123_456_789 << 2) >>> 0;
    await debugfs(image, `sif /f mtime 1000000000`, `sif /f mtime_extra ${extra}`, 'sif /f uid 70000', 'sif /f gid 4000000000', 'mknod dev-node c 300 700');
    const { volume, source } = await openImage(image);
    try {
      const f = await findImageNode(volume, '/f');
      assert.equal(f.mtime, 1_000_000_000_123_456_789n);
      assert.equal(f.uid, 70000);
      assert.equal(f.gid, 4_000_000_000);
      const d = await findImageNode(volume, '/dev-node');
      assert.equal(d.type, 'chardev');
      // glibc makedev(300, 700)
      assert.equal(d.rdev, (700n & 0xffn) | ((300n & 0xfffn) << 8n) | ((700n & ~0xffn) << 12n));
    } finally {
      await source.close();
    }
  });

  it('replays a journal that needs recovery in memory, honouring revokes (as e2fsck does)', async () => {
    const s = join(dir, 'journal-src');
    await buildTree(s, { kind: 'dir', entries: { 'a.txt': { kind: 'file', content: 'old a\n' }, 'b.txt': { kind: 'file', content: 'old b\n' } } });
    const newBlock = join(dir, 'new-block');
    await writeFile(newBlock, Buffer.concat([Buffer.from('NEW a\n'), Buffer.alloc(4096 - 6)]));
    for (const [label, open] of [['no checksums', 'jo'], ['checksum v3', 'jo -c']] as const) {
      const image = join(dir, `journal-${label.replace(' ', '-')}.img`);
      await makeExtImage(image, s, '16M');
      const a = await firstBlockOf(image, '/a.txt');
      const b = await firstBlockOf(image, '/b.txt');
      // Transaction 1 rewrites a's and b's blocks; transaction 2 revokes b's.
      debugfsSession(image, [open, `jw -b ${a},${b} ${newBlock}`, 'jc', open, `jw -r ${b}`, 'jc']);
      const warnings: string[] = [];
      const { volume, source } = await openImage(image, warnings);
      try {
        assert.equal((await readAll(volume, await findImageNode(volume, '/a.txt'))).toString(), 'NEW a\n', label);
        assert.equal((await readAll(volume, await findImageNode(volume, '/b.txt'))).toString(), 'old b\n', label);
        assert.ok(warnings.some((w) => /replayed 2 journal transaction/.test(w)), warnings.join('\n'));
      } finally {
        await source.close();
      }
      // e2fsck replays the same journal for real: the result must agree.
      await import('node:child_process').then(({ spawnSync }) => spawnSync('e2fsck', ['-fy', image], { stdio: 'ignore' }));
      const fixed = await openImage(image);
      try {
        assert.equal((await readAll(fixed.volume, await findImageNode(fixed.volume, '/a.txt'))).toString(), 'NEW a\n');
        assert.equal((await readAll(fixed.volume, await findImageNode(fixed.volume, '/b.txt'))).toString(), 'old b\n');
      } finally {
        await fixed.source.close();
      }
    }
  });

  it('reads only the blocks it needs', async () => {
    const s = join(dir, 'sparse-read-src');
    await buildTree(s, { kind: 'dir', entries: { big: { kind: 'file', size: 40 * 1024 * 1024 }, small: { kind: 'file', content: 'small\n' } } });
    const image = join(dir, 'sparse-read.img');
    await makeExtImage(image, s, '64M');
    const file = await FileSource.open(image);
    try {
      const counting = new CountingSource(file);
      const volume = await ImageVolume.open(counting);
      const node = await findImageNode(volume, '/small');
      assert.equal((await readAll(volume, node)).toString(), 'small\n');
      assert.ok(counting.bytes < 2 * 1024 * 1024, `read ${counting.bytes} bytes of a ${file.size}-byte image for one small file`);
    } finally {
      await file.close();
    }
  });

  it('shows the partitions of MBR and GPT disks as /p1, /p2 …, and says why one cannot be entered', async () => {
    const s = join(dir, 'part-src');
    await buildTree(s, { kind: 'dir', entries: { 'hello.txt': { kind: 'file', content: 'hello from p1\n' }, etc: { kind: 'dir', entries: { hostname: { kind: 'file', content: 'box\n' } } } } });
    const fs1 = join(dir, 'p1.img');
    await makeExtImage(fs1, s, '16M');
    const swap = join(dir, 'swap.img');
    await writeFile(swap, Buffer.alloc(4 * 1024 * 1024));
    await import('node:child_process').then(({ execFileSync }) => execFileSync('mkswap', [swap], { stdio: 'ignore' }));
    for (const label of ['dos', 'gpt'] as const) {
      const disk = join(dir, `disk-${label}.img`);
      const linux = label === 'dos' ? '83' : '0FC63DAF-8483-4772-8E79-3D69D8477DE4';
      await makeDisk(disk, label, [
        { sizeMiB: 16, type: linux, image: fs1 },
        { sizeMiB: 8, type: linux, plant: { offset: 0, bytes: Buffer.from('XFSB') } },
        { sizeMiB: 4, type: label === 'dos' ? '82' : '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F', image: swap },
      ]);
      const { volume, source } = await openImage(disk);
      try {
        const lines: string[] = [];
        const warnings: string[] = [];
        await listImage(volume, '/', { format: 'plain', write: (t) => void lines.push(...t.split('\n').filter(Boolean)), warn: (m) => warnings.push(m) });
        assert.deepEqual(lines.filter((l) => !l.includes('lost+found')), ['/p1', '/p1/etc', '/p1/etc/hostname', '/p1/hello.txt', '/p2', '/p3'], label);
        assert.ok(warnings.some((w) => w === '/p2: filesystem not supported (xfs)'), warnings.join('\n'));
        assert.ok(warnings.some((w) => w.startsWith('/p3: swap space')), warnings.join('\n'));
        await assert.rejects(listImage(volume, '/p2', { format: 'plain', write: () => undefined, warn: () => undefined }), /\/p2: filesystem not supported \(xfs\)/);
        const node = await findImageNode(volume, '/p1/etc/hostname');
        assert.equal((await readAll(volume, node)).toString(), 'box\n');
        // A restore of one partition's folder.
        const target = join(dir, `out-${label}`);
        const r = await new ImageRestorer(volume, target, { includes: ['/p1/etc'] }).run();
        assert.deepEqual(r.failed, []);
        assert.equal(await readFile(join(target, 'p1/etc/hostname'), 'utf8'), 'box\n');
        // Asking for the unsupported partition by name fails clearly.
        const r2 = await new ImageRestorer(volume, join(dir, `out2-${label}`), { includes: ['/p2'] }).run();
        assert.deepEqual(r2.failed, [{ path: '/p2', error: 'filesystem not supported (xfs)' }]);
      } finally {
        await source.close();
      }
    }
  });

  it('refuses names and links that a hostile image could use to escape or loop', async () => {
    const s = join(dir, 'evil-src');
    await buildTree(s, { kind: 'dir', entries: {
      'evil-dotdot': { kind: 'file', content: 'would land above the target\n' },
      'evil-slash1': { kind: 'file', content: 'would land in a subfolder\n' },
      sub: { kind: 'dir', entries: { 'ok.txt': { kind: 'file', content: 'fine\n' } } },
    } });
    const image = join(dir, 'evil.img');
    await makeExtImage(image, s, '8M', 'ext4', ['-O', '^metadata_csum']);
    await debugfs(image, 'ln / /sub/loop-to-root', 'ln /sub /sub/loop-to-self');
    await renameEntryRaw(image, 'evil-dotdot', Buffer.from('..'));
    await renameEntryRaw(image, 'evil-slash1', Buffer.from('../x'));
    const { volume, source } = await openImage(image);
    try {
      const unsafe: string[] = [];
      const paths: string[] = [];
      for await (const e of walkImage(volume, await volume.root(), Buffer.from('/'), { onUnsafe: (p, why) => unsafe.push(`${p}: ${why}`) })) paths.push(e.path.toString());
      assert.ok(!paths.some((p) => p.includes('..') || p.includes('loop')), paths.join('\n'));
      assert.ok(paths.includes('/sub/ok.txt'));
      assert.ok(unsafe.some((u) => u.includes('name is ".."')), unsafe.join('\n'));
      assert.ok(unsafe.some((u) => u.includes('contains "/"')), unsafe.join('\n'));
      assert.ok(unsafe.some((u) => u.startsWith('/sub/loop-to-root') && u.includes('appears twice')), unsafe.join('\n'));
      assert.ok(unsafe.some((u) => u.startsWith('/sub/loop-to-self') && u.includes('appears twice')), unsafe.join('\n'));
      const target = join(dir, 'evil-out', 'target');
      const r = await new ImageRestorer(volume, target).run();
      assert.ok(r.failed.every((f) => f.error.startsWith('refused')), JSON.stringify(r.failed));
      assert.equal(await readFile(join(target, 'sub/ok.txt'), 'utf8'), 'fine\n');
      await assert.rejects(readFile(join(dir, 'evil-out', 'x')), { code: 'ENOENT' });
    } finally {
      await source.close();
    }
  });

  it('survives damaged metadata: errors name what is broken, nothing hangs or crashes', async () => {
    const s = join(dir, 'fuzz-src');
    await buildTree(s, { kind: 'dir', entries: {
      a: { kind: 'dir', entries: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, { kind: 'file' as const, size: (i * 7919) % 20000 }])) },
      b: { kind: 'symlink', target: 'a/f1' },
      c: { kind: 'file', size: 300_000 },
    } });
    const image = join(dir, 'fuzz.img');
    await makeExtImage(image, s, '4M', 'ext4', ['-b', '1024', '-N', '128']);
    const clean = await readFile(image);
    // Metadata lives in the first ~300 KiB of this small filesystem.
    const metaEnd = Math.min(clean.length, 320 * 1024);
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const allowed = /^(ExtCorruptError|ExtUnsupportedError|OutOfBoundsError|FilesystemNotSupportedError)$/;
    for (let round = 0; round < 60; round++) {
      const bytes = Buffer.from(clean);
      for (let k = 0; k < 1 + rand(40); k++) bytes[1024 + rand(metaEnd - 1024)] = rand(256);
      const path = join(dir, 'fuzzed.img');
      await writeFile(path, bytes);
      const source = await FileSource.open(path);
      const problems: Error[] = [];
      try {
        const volume = await ImageVolume.open(source);
        const root = await volume.root();
        for await (const e of walkImage(volume, root, Buffer.from('/'), { onError: (_p, err) => problems.push(err) })) {
          if (e.node.type !== 'file') continue;
          try {
            let n = 0;
            for await (const chunk of fileBytes(volume, e.node as ImageNode)) n += chunk.length;
            assert.equal(n, e.node.size);
          } catch (err) {
            problems.push(err as Error);
          }
        }
      } catch (err) {
        problems.push(err as Error);
      } finally {
        await source.close();
      }
      for (const p of problems) assert.match(p.name, allowed, `round ${round}: ${p.name}: ${p.message}\n${p.stack}`);
      // Each carries a stable code, so the CLI reports it as a known failure (exit 1, no stack trace).
      for (const p of problems) assert.ok(errorCode(p) !== undefined, `round ${round}: ${p.name} has no code`);
    }
  });
});

/**
 * Files out of image snapshots through the real CLI: `backup --image` of an
 * ext4 image and of a partitioned disk, then `ls`, `dump` and `restore`
 * read files out of the snapshot without restoring the image and without
 * root; everything is compared with the tree the image was made from. Also
 * checks that reading one file fetches only a few blocks of the image.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EVERYTHING, buildTree, compareTrees, pseudoRandomBytes, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { makeDisk, makeExtImage, missingTools } from './ext-images.js';
import { openBackend } from '../../src/storage/open-backend.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { BlobType } from '../../src/repo/pack.js';
import { openImageFiles } from '../../src/jobs/image-files/open-image-files.js';
import { dumpImage } from '../../src/jobs/image-files/image-dump.js';
import { Writable } from 'node:stream';
import { PathShortener } from '../../src/sources/posix.js';

const skip = missingTools('mkfs.ext4', 'sfdisk', 'tar');
const MKFS_TIMES = { ignoreRootMetadata: true, mtimePrecisionNs: 1_000_000_000n } as const;

/** Every path below `root` as `ls` prints it (names as UTF-8, lossy like the CLI); paths may exceed PATH_MAX. */
async function walkPaths(root: string): Promise<string[]> {
  const long = new PathShortener();
  const out: string[] = [];
  const walk = async (rel: Buffer): Promise<void> => {
    const names = (await readdir(await long.short(Buffer.concat([Buffer.from(root), rel])), { encoding: 'buffer' })).sort(Buffer.compare);
    for (const name of names) {
      const p = Buffer.concat([rel, Buffer.from('/'), name]);
      out.push(p.toString());
      if ((await lstat(await long.short(Buffer.concat([Buffer.from(root), p])))).isDirectory()) await walk(p);
    }
  };
  try {
    await walk(Buffer.alloc(0));
  } finally {
    await long.close();
  }
  return out;
}

describe('files out of image snapshots (CLI)', { skip, timeout: 180_000 }, () => {
  let s: Sandbox;
  let src: string;
  let image: string;
  let imageSnap: string;
  let diskSnap: string;

  before(async () => {
    s = await Sandbox.create('holdfast-image-files-');
    src = s.path('src');
    await buildTree(src, EVERYTHING);
    image = s.path('fs.img');
    await makeExtImage(image, src, '96M');
    const small = s.path('small');
    await buildTree(small, { kind: 'dir', entries: { etc: { kind: 'dir', entries: { hostname: { kind: 'file', content: 'web-01\n' } } } } });
    const p1 = s.path('p1.img');
    await makeExtImage(p1, small, '8M');
    const disk = s.path('disk.img');
    await makeDisk(disk, 'gpt', [
      { sizeMiB: 8, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', image: p1 },
      { sizeMiB: 4, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', plant: { offset: 0, bytes: Buffer.from('XFSB') } },
    ]);
    await s.ok(['init']);
    await s.ok(['backup', '--image', image, '--block-size', '64K', '--tag', 'fs']);
    await s.ok(['backup', '--image', disk, '--tag', 'disk']);
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'])).stdout) as { id: string; tags: string[] }[];
    imageSnap = snaps.find((x) => x.tags.includes('fs'))!.id;
    diskSnap = snaps.find((x) => x.tags.includes('disk'))!.id;
  });
  after(async () => {
    await removeTree(s.dir);
  });

  it('ls lists every file of the filesystem in the image', async () => {
    const plain = await s.ok(['ls', imageSnap]);
    assert.match(plain.stdout, /^\/sizes\/3m-random\.bin$/m);
    // --json, because one name holds a newline.
    const r = await s.ok(['ls', imageSnap, '--json']);
    const listed = r.stdout.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { path: string }).path).filter((p) => !p.startsWith('/lost+found'));
    assert.deepEqual(listed, await walkPaths(src));
  });

  it('ls -l and --json show modes, owners, sizes and symlink targets', async () => {
    const l = await s.ok(['ls', imageSnap, '/modes', '-l']);
    assert.match(l.stdout, /^-rwsr-xr-x 0 +0 +10 2\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d \/modes\/setuid$/m);
    assert.match(l.stdout, /^drwxrwxrwt .* \/modes\/sticky-dir$/m);
    const j = await s.ok(['ls', imageSnap, '/links/to-file', '--json']);
    const entry = JSON.parse(j.stdout.trim()) as { type: string; target: string };
    assert.deepEqual([entry.type, entry.target], ['symlink', '../sizes/text.txt']);
    const big = await s.ok(['ls', imageSnap, '/sizes/3m-random.bin', '--json']);
    assert.equal((JSON.parse(big.stdout.trim()) as { size: number }).size, 3 * 1024 * 1024);
  });

  it('dump writes a file byte for byte, and a folder as a tar', async () => {
    const f = await s.ok(['dump', imageSnap, '/sizes/3m-random.bin']);
    assert.ok(f.stdoutBytes.equals(await readFile(join(src, 'sizes/3m-random.bin'))));
    const sparse = await s.ok(['dump', imageSnap, '/sparse-64m.img']);
    assert.ok(sparse.stdoutBytes.equals(await readFile(join(src, 'sparse-64m.img'))));
    const t = await s.ok(['dump', imageSnap, '/nested']);
    const out = s.path('untar');
    await mkdir(out);
    await new Promise<void>((resolve, reject) => {
      const p = execFile('tar', ['-x', '-C', out], (e) => (e ? reject(e) : resolve()));
      p.stdin!.end(t.stdoutBytes);
    });
    assert.equal(await readFile(join(out, 'nested/a/b/c/leaf.txt'), 'utf8'), 'leaf\n');
  });

  it('restore puts back every file with its metadata, holes as holes', async () => {
    const target = s.path('restored-all');
    const r = await s.ok(['restore', imageSnap, '--target', target, '--verify']);
    assert.match(r.stdout, /all match the snapshot/);
    await removeTree(join(target, 'lost+found'));
    await compareTrees(src, target, MKFS_TIMES);
  });

  it('restore --include restores only what was asked for', async () => {
    const target = s.path('restored-some');
    await s.ok(['restore', imageSnap, '--target', target, '--include', '/modes', '--include', '/names']);
    assert.deepEqual((await readdir(target)).sort(), ['modes', 'names']);
    await compareTrees(join(src, 'modes'), join(target, 'modes'), MKFS_TIMES);
    await compareTrees(join(src, 'names'), join(target, 'names'), MKFS_TIMES);
    const missing = await s.run(['restore', imageSnap, '--target', s.path('restored-none'), '--include', '/no/such/path']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /\/no\/such\/path: not in the snapshot/);
  });

  it('a partitioned disk shows /p1, /p2; an unsupported partition says so', async () => {
    const r = await s.ok(['ls', diskSnap, '-l'], {}, 0);
    assert.match(r.stdout, /^d.* \/p1 {2}\(ext4, Linux filesystem, 8\.0 MiB\)$/m);
    assert.match(r.stdout, /^d.* \/p2 {2}\(filesystem not supported \(xfs\), Linux filesystem, 4\.0 MiB\)$/m);
    assert.match(r.stdout, /\/p1\/etc\/hostname$/m);
    assert.match(r.stderr, /\/p2: filesystem not supported \(xfs\)/);
    const p2 = await s.run(['ls', diskSnap, '/p2']);
    assert.equal(p2.code, 1);
    assert.match(p2.stderr, /holdfast: \/p2: filesystem not supported \(xfs\)/);
    const d = await s.ok(['dump', diskSnap, '/p1/etc/hostname']);
    assert.equal(d.stdout, 'web-01\n');
    const target = s.path('restored-p1');
    await s.ok(['restore', diskSnap, '--target', target, '--include', '/p1/etc']);
    assert.equal(await readFile(join(target, 'p1/etc/hostname'), 'utf8'), 'web-01\n');
  });

  it('an image of a filesystem it cannot read, or of nothing it knows, gives a clear error', async () => {
    const xfs = s.path('xfs.img');
    await writeFile(xfs, Buffer.concat([Buffer.from('XFSB'), Buffer.alloc(2 * 1024 * 1024)]));
    const noise = s.path('noise.img');
    await writeFile(noise, pseudoRandomBytes('noise', 1024 * 1024));
    await s.ok(['backup', '--image', xfs, '--tag', 'xfs']);
    await s.ok(['backup', '--image', noise, '--tag', 'noise']);
    const ls = await s.run(['ls', 'latest', '--tag', 'xfs']);
    assert.equal(ls.code, 1);
    assert.match(ls.stderr, /filesystem not supported \(xfs\)/);
    const r = await s.run(['restore', 'latest', '--tag', 'xfs', '--target', s.path('xfs-out')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /restore INCOMPLETE[\s\S]*filesystem not supported \(xfs\)/);
    const n = await s.run(['ls', 'latest', '--tag', 'noise']);
    assert.equal(n.code, 1);
    assert.match(n.stderr, /no partition table and no filesystem/);
    // "latest" may name an image where files were meant: the message says which snapshot it is and what would work.
    const out = await s.run(['restore', 'latest', '--tag', 'noise', '--target', s.path('noise-out')]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, new RegExp(`snapshot [0-9a-f]{8} is an image of ${noise.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, and no files can be read out of it: .*"holdfast restore-image" puts the whole image back, or name a snapshot of files`));
  });

  it('reading one file fetches only the blocks it needs from the repository', async () => {
    const repo = await Repository.open(await Store.open(openBackend(s.repo)), 'correct horse');
    await repo.loadIndex();
    const snapshot = await repo.loadSnapshot(imageSnap);
    let dataBlobs = 0;
    const counting = {
      loadBlob: (type: BlobType, id: string): Promise<Buffer> => {
        if (type === BlobType.Data) dataBlobs++;
        return repo.loadBlob(type, id);
      },
    };
    const volume = await openImageFiles(counting, snapshot, imageSnap, () => undefined);
    const chunks: Buffer[] = [];
    const out = new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb(); } });
    await dumpImage(volume, '/sizes/text.txt', { out, warn: () => undefined });
    assert.equal(Buffer.concat(chunks).toString(), 'hello, world\n');
    const stored = snapshot.image!.counts.blocks - snapshot.image!.counts.unused - snapshot.image!.counts.zero;
    assert.ok(dataBlobs <= 16, `fetched ${dataBlobs} of ${stored} stored 64 KiB blocks for one small file`);
  });
});


/**
 * The image backups' scan of a mapped file (native/mapscan.cc): the kinds
 * and fingerprints it finds are the JavaScript scan's (the changed-block
 * cache of one path is good for the other), only changed blocks are copied
 * out, a file that ends inside the mapped range is reported (SIGBUS caught,
 * the process lives on), a SIGBUS sent with kill keeps its default action,
 * and a descriptor that cannot be mapped says so (/dev/null: ENODEV). An
 * image backup of a real file maps it and stores what reading it stores;
 * one whose mapping fails reads instead; one whose file was cut short fails
 * with SourceShrankError and writes no snapshot.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { native } from '../../src/sources/native.js';
import { FP_BYTES } from '../../src/core/crypto.js';
import { ImageBackup } from '../../src/jobs/image/image-backup.js';
import { openImageInput, SourceShrankError, type ImageInput } from '../../src/sources/image/image-input.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import { tempDir } from '../fixtures/tree.js';
import { noise } from './images.js';

const BS = 65536;

/** Blocks: zeros, noise A, noise B, noise A again, and a short last block of noise C. */
function sample(): Buffer {
  const b = Buffer.alloc(4 * BS + 10_000);
  noise(BS, 3).copy(b, BS);
  noise(BS, 5).copy(b, 2 * BS);
  noise(BS, 3).copy(b, 3 * BS);
  noise(10_000, 7).copy(b, 4 * BS);
  return b;
}

const blocksOf = (b: Buffer): Buffer[] => Array.from({ length: Math.ceil(b.length / BS) }, (_, i) => b.subarray(i * BS, Math.min(b.length, (i + 1) * BS)));

describe('native scanMapped', async () => {
  const dir = await tempDir('map-scan');
  after(() => rm(dir, { recursive: true, force: true }));
  const data = sample();
  const file = join(dir, 'disk.img');
  await writeFile(file, data);
  const key = randomBytes(32);
  const blocks = blocksOf(data);

  const scan = (fd: number, position: number, length: number, expect: Uint8Array): { result: number; kinds: Uint8Array; fps: Buffer; copy: Buffer } => {
    const n = Math.ceil(length / BS);
    const kinds = new Uint8Array(n).fill(9);
    const fps = Buffer.alloc(n * FP_BYTES, 0xaa);
    const copy = Buffer.from(new SharedArrayBuffer(length)).fill(0xee);
    const result = native.scanMapped(fd, position, length, BS, key, expect, kinds, fps, copy);
    return { result, kinds, fps, copy };
  };

  it('finds what the JavaScript scan finds, and copies out only the changed blocks', () => {
    const expect = Buffer.alloc(blocks.length * FP_BYTES);
    native.fingerprint(key, blocks[1]!).copy(expect, 1 * FP_BYTES); // block 1 is in the cache
    native.fingerprint(key, blocks[2]!).copy(expect, 3 * FP_BYTES); // block 3's cached fingerprint is another block's
    const fd = openSync(file, 'r');
    try {
      const r = scan(fd, 0, data.length, expect);
      assert.equal(r.result, 0);
      assert.deepEqual([...r.kinds], [0, 1, 2, 2, 2]);
      assert.deepEqual(r.fps.subarray(0, FP_BYTES), Buffer.alloc(FP_BYTES), 'a zero block has no fingerprint');
      for (let i = 1; i < blocks.length; i++) assert.deepEqual(r.fps.subarray(i * FP_BYTES, (i + 1) * FP_BYTES), native.fingerprint(key, blocks[i]!), `block ${i}`);
      for (const i of [2, 3, 4]) assert.deepEqual(r.copy.subarray(i * BS, i * BS + blocks[i]!.length), blocks[i], `block ${i} copied`);
      for (const i of [0, 1]) assert.ok(r.copy.subarray(i * BS, (i + 1) * BS).every((x) => x === 0xee), `block ${i} not copied`);
      // A range further in: positions are the file's, offsets in the copy the range's.
      const later = scan(fd, 2 * BS, 2 * BS, Buffer.alloc(2 * FP_BYTES));
      assert.equal(later.result, 0);
      assert.deepEqual([...later.kinds], [2, 2]);
      assert.deepEqual(later.copy.subarray(BS), blocks[3]);
    } finally {
      closeSync(fd);
    }
  });

  it('reports a file that ends inside the range, and goes on working', async () => {
    const short = join(dir, 'short.img');
    await writeFile(short, data);
    const fd = openSync(short, 'r');
    try {
      await truncate(short, BS + 100);
      const r = scan(fd, 0, 4 * BS, Buffer.alloc(4 * FP_BYTES));
      assert.equal(r.result, -1);
      const again = scan(fd, 0, BS, Buffer.alloc(FP_BYTES));
      assert.equal(again.result, 0);
      assert.deepEqual([...again.kinds], [0]);
    } finally {
      closeSync(fd);
    }
  });

  it('leaves any other SIGBUS its default action: one sent with kill still ends the process', () => {
    const addon = new URL('../../src/sources/native.js', import.meta.url).href;
    const script = `import { native } from ${JSON.stringify(addon)};
      import { openSync } from 'node:fs';
      const fd = openSync(${JSON.stringify(file)}, 'r');
      const r = native.scanMapped(fd, 0, 65536, 65536, Buffer.alloc(32), Buffer.alloc(16), new Uint8Array(1), Buffer.alloc(16), Buffer.alloc(65536));
      if (r !== 0) process.exit(3);
      process.kill(process.pid, 'SIGBUS');
      setTimeout(() => process.exit(4), 2000);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGBUS', `status ${child.status}, stderr ${child.stderr}`);
  });

  it('returns the errno of a descriptor that cannot be mapped, and refuses bad arguments', async () => {
    const dev = openSync('/dev/null', 'r'); // a character device: no mmap (ENODEV)
    try {
      assert.equal(scan(dev, 0, BS, Buffer.alloc(FP_BYTES)).result, 19);
    } finally {
      closeSync(dev);
    }
    const fd = openSync(file, 'r');
    try {
      assert.throws(() => scan(fd, 100, BS, Buffer.alloc(FP_BYTES)), RangeError);
      assert.throws(() => native.scanMapped(fd, 0, BS, BS, key.subarray(0, 16), Buffer.alloc(FP_BYTES), new Uint8Array(1), Buffer.alloc(FP_BYTES), Buffer.alloc(BS)), RangeError);
    } finally {
      closeSync(fd);
    }
  });
});

describe('image backups of a mapped file', async () => {
  const dir = await tempDir('map-backup');
  after(() => rm(dir, { recursive: true, force: true }));
  const data = sample();

  /** The maps' ids of a backup of `input`, and the stored count. */
  async function backUp(repo: Awaited<ReturnType<typeof memoryRepo>>['repo'], input: ImageInput): Promise<{ maps: readonly string[]; stored: number }> {
    const { snapshot } = await new ImageBackup(repo, { input, paths: ['/disk.img'], blockSize: BS, workers: 1 }).run();
    return { maps: snapshot.image!.maps, stored: snapshot.image!.counts.stored };
  }

  it('stores what reading stores; a mapping that fails falls back to reading', async () => {
    const file = join(dir, 'disk.img');
    await writeFile(file, data);
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const mapped = await openImageInput(file);
    assert.equal(typeof mapped.fd, 'number');
    let first;
    try {
      first = await backUp(repo, mapped);
    } finally {
      await mapped.close();
    }
    assert.equal(first.stored, 3, 'noise A (twice), noise B, noise C: three blocks stored');
    // The same bytes read, not mapped: the same map, nothing new stored.
    const read = await openImageInput(file);
    const { fd: _fd, ...unmapped } = read;
    try {
      assert.deepEqual(await backUp(repo, unmapped), { maps: first.maps, stored: 0 });
    } finally {
      await read.close();
    }
    // A descriptor that cannot be mapped (/dev/null's): read instead, same map.
    const dev = openSync('/dev/null', 'r');
    const again = await openImageInput(file);
    try {
      assert.deepEqual(await backUp(repo, { ...again, fd: dev }), { maps: first.maps, stored: 0 });
    } finally {
      await again.close();
      closeSync(dev);
    }
  });

  it('a file cut short after it was opened fails with SourceShrankError and writes no snapshot', async () => {
    const file = join(dir, 'shrinks.img');
    await writeFile(file, data);
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const input = await openImageInput(file);
    try {
      await truncate(file, BS + 100);
      await assert.rejects(new ImageBackup(repo, { input, paths: ['/shrinks.img'], blockSize: BS, workers: 1 }).run(), (e: unknown) => {
        assert.ok(e instanceof SourceShrankError, String(e));
        assert.match(e.message, /shrinks\.img shrank while it was read: expected 272144 bytes, the source ended at 65636/);
        return true;
      });
    } finally {
      await input.close();
    }
    assert.equal((await repo.listSnapshots()).ok.length, 0);
  });
});

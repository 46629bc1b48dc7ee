/**
 * The image backup job and reader in process, on an in-memory repository:
 * a source that shrinks while it is read (or comes back short) fails with
 * SourceShrankError and writes no snapshot; one that grows is a warning;
 * the reader returns exactly the source's bytes for any range, holes as
 * zeros, and describes the holes; the snapshot metadata round-trips.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { memoryRepo } from '../helpers/memory-repo.js';
import { ImageBackup } from '../../src/jobs/image/image-backup.js';
import { openImageSnapshot, NotAnImageSnapshotError } from '../../src/jobs/image/image-reader.js';
import { SourceShrankError, type ImageInput } from '../../src/sources/image/image-input.js';
import { decodeSnapshot, encodeSnapshot } from '../../src/repo/snapshot.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../src/repo/errors.js';
import { noise } from './images.js';

/** An image in memory: noise, zeros and a repeated block. */
function sampleImage(): Buffer {
  const b = Buffer.alloc(5 * 65536 + 1000);
  noise(65536 * 2, 3).copy(b, 0);
  noise(65536, 4).copy(b, 3 * 65536);
  noise(65536, 4).copy(b, 4 * 65536);
  b.fill(7, 5 * 65536);
  return b;
}

/** A fake file source over `data`: reads stop at `endAt`; the size reported afterwards is `sizeAfter`. */
function fakeInput(data: Buffer, endAt = data.length, sizeAfter = data.length): ImageInput {
  const size = data.length;
  return {
    path: '/fake.img',
    kind: 'file',
    size,
    random: { size, read: async (o, n) => data.subarray(o, o + n) },
    readAt: async (buf, offset, length, position) => {
      const n = Math.max(0, Math.min(length, endAt - position));
      data.copy(buf, offset, position, position + n);
      return n;
    },
    currentSize: async () => sizeAfter,
    close: async () => undefined,
  };
}

describe('the image backup job and the image reader', () => {
  it('a source that comes back short or shrinks fails, and writes no snapshot', async () => {
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const data = sampleImage();
    await assert.rejects(new ImageBackup(repo, { input: fakeInput(data, 3 * 65536), paths: ['/fake.img'], blockSize: 65536, workers: 1 }).run(), (e: unknown) => {
      assert.ok(e instanceof SourceShrankError);
      assert.match(e.message, /\/fake\.img shrank while it was read: expected 328680 bytes, the source ended at 196608; no snapshot was written/);
      return true;
    });
    await assert.rejects(new ImageBackup(repo, { input: fakeInput(data, data.length, 1000), paths: ['/fake.img'], blockSize: 65536, workers: 1 }).run(), SourceShrankError);
    assert.equal((await repo.listSnapshots()).ok.length, 0);
  });

  it('a source that grows is kept at its first size, with a warning', async () => {
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const warnings: string[] = [];
    const r = await new ImageBackup(repo, { input: fakeInput(sampleImage(), undefined, 400_000), paths: ['/fake.img'], blockSize: 65536, workers: 1, onWarning: (m) => warnings.push(m) }).run();
    assert.equal(r.snapshot.image!.size, 328680);
    assert.ok(warnings.some((w) => /grew from 328680 to 400000 bytes/.test(w)));
  });

  it('the reader returns the source bytes for any range; holes read as zeros and are reported', async () => {
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const data = sampleImage();
    const { id, snapshot } = await new ImageBackup(repo, { input: fakeInput(data), paths: ['/fake.img'], blockSize: 65536, workers: 1 }).run();
    const img = snapshot.image!;
    assert.deepEqual({ blocks: img.counts.blocks, zero: img.counts.zero, changed: img.counts.changed, stored: img.counts.stored }, { blocks: 6, zero: 1, changed: 5, stored: 4 });
    // The snapshot lists every block, the map and the empty tree, and survives encoding.
    assert.equal(snapshot.blobs.length, 4 + 1 + 1);
    const again = decodeSnapshot(encodeSnapshot(snapshot, Buffer.alloc(32)), 'snapshot');
    assert.deepEqual(again.image, snapshot.image);
    const reloaded = await repo.loadSnapshot(id);
    const reader = openImageSnapshot(repo, reloaded, { cacheBytes: 2 * 65536 });
    assert.equal(reader.size, data.length);
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: data.length }), fc.nat({ max: 200_000 }), async (offset, len) => {
        const length = Math.min(len, data.length - offset);
        const got = await reader.read(offset, length);
        assert.ok(got.equals(data.subarray(offset, offset + length)));
      }),
      { numRuns: 200 },
    );
    await assert.rejects(reader.read(data.length - 10, 11), RangeError);
    assert.deepEqual(await reader.extents(0, data.length), [
      { offset: 0, length: 2 * 65536, hole: false },
      { offset: 2 * 65536, length: 65536, hole: true },
      { offset: 3 * 65536, length: data.length - 3 * 65536, hole: false },
    ]);
    // Concurrent reads of the same blocks agree.
    const parts = await Promise.all([0, 1, 2, 3].map(() => reader.read(65000, 200_000)));
    for (const p of parts) assert.ok(p.equals(data.subarray(65000, 265000)));
  });

  it('refuses a file snapshot, and validates the image metadata', async () => {
    const { repo } = await memoryRepo();
    await repo.loadIndex();
    const { snapshot } = await new ImageBackup(repo, { input: fakeInput(sampleImage()), paths: ['/fake.img'], blockSize: 65536, workers: 1 }).run();
    const { image: _image, ...fileSnapshot } = snapshot;
    assert.throws(() => openImageSnapshot(repo, fileSnapshot), NotAnImageSnapshotError);
    const mutate = (f: (o: Record<string, unknown>) => void): Buffer => {
      const o = JSON.parse(JSON.stringify(snapshot.image)) as Record<string, unknown>;
      f(o);
      return encodeSnapshot({ ...snapshot, image: o as never }, Buffer.alloc(32));
    };
    assert.throws(() => decodeSnapshot(mutate((o) => (o['blockSize'] = 3000)), 's'), /image: bad blockSize/);
    assert.throws(() => decodeSnapshot(mutate((o) => (o['maps'] = [])), 's'), /image: 0 maps for 6 blocks/);
    assert.throws(() => decodeSnapshot(mutate((o) => (o['size'] = -1)), 's'), CorruptObjectError);
    assert.throws(() => decodeSnapshot(mutate((o) => (o['version'] = 2)), 's'), UnsupportedVersionError);
  });
});

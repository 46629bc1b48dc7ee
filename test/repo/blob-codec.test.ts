/**
 * Blob ids as docs/format.md §3.3 defines them: keyed BLAKE3 under the id
 * key for data, under a per-type key derived with HMAC-SHA512 for trees and
 * image maps; and the largest raw length of each type, which no writer
 * exceeds.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { blobId } from '../../src/core/crypto.js';
import { BlobType } from '../../src/repo/pack.js';
import { MAX_RAW_LENGTH } from '../../src/repo/blob-codec.js';
import { encodeTree } from '../../src/repo/tree.js';
import { memoryRepo } from '../helpers/memory-repo.js';

describe('blob ids', () => {
  it('follow the format: keyed BLAKE3 under the id key, or under the derived per-type key', async () => {
    const { repo } = await memoryRepo();
    const idKey = repo.workerSecrets().id;
    const data = Buffer.from('{"nodes":[]}');
    assert.equal(repo.blobId(data), blobId(idKey, data).toString('hex'));
    for (const type of [BlobType.Tree, BlobType.ImageMap]) {
      const typeKey = createHmac('sha512', idKey).update(`holdfast/blob-type/${type}`).digest().subarray(0, 32);
      assert.equal(repo.blobId(data, type), blobId(typeKey, data).toString('hex'));
    }
  });

  it('a file whose bytes equal a tree never shares its id, and the derived key is no data id', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const tree = encodeTree([]);
    assert.notEqual(repo.blobId(tree, BlobType.Tree), repo.blobId(tree, BlobType.Data));
    const label = Buffer.from(`holdfast/blob-type/${BlobType.Tree}`);
    const typeKey = createHmac('sha512', repo.workerSecrets().id).update(label).digest().subarray(0, 32);
    assert.notEqual(repo.blobId(label), typeKey.toString('hex'));
    const { id: dataId } = await w.saveBlob(BlobType.Data, tree);
    const { id: treeId, added } = await w.saveBlob(BlobType.Tree, tree);
    assert.ok(added);
    await w.flush();
    assert.deepEqual(await repo.loadBlob(BlobType.Data, dataId), tree);
    assert.deepEqual(await repo.loadTree(treeId), []);
  });
});

describe('raw length bounds', () => {
  it('a blob larger than its type allows is not written (format §8), and nothing is stored for it', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const max = MAX_RAW_LENGTH[BlobType.ImageMap];
    await assert.rejects(w.saveBlob(BlobType.ImageMap, Buffer.alloc(max + 32, 1)), new RegExp(`image map blob of ${max + 32} bytes: larger than image map blobs may be \\(${max}\\)`));
    const { id } = await w.saveBlob(BlobType.ImageMap, Buffer.alloc(max, 1));
    await w.flush();
    assert.equal((await repo.loadBlob(BlobType.ImageMap, id)).length, max);
    assert.equal(w.stats.blobsAdded, 1);
  });
});

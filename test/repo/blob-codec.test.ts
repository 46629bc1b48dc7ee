/**
 * Blob ids as docs/format.md §3.3 defines them: data ids under the id key,
 * tree and image-map ids under a per-type key derived with HMAC-SHA512.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { BlobType } from '../../src/repo/pack.js';
import { memoryRepo } from '../helpers/memory-repo.js';

describe('blob ids', () => {
  it('follow the format: HMAC-SHA256 under the id key, or under the derived per-type key', async () => {
    const { repo } = await memoryRepo();
    const idKey = repo.workerSecrets().id;
    const data = Buffer.from('{"nodes":[]}');
    assert.equal(repo.blobId(data), createHmac('sha256', idKey).update(data).digest('hex'));
    for (const type of [BlobType.Tree, BlobType.ImageMap]) {
      const typeKey = createHmac('sha512', idKey).update(`holdfast/blob-type/${type}`).digest().subarray(0, 32);
      assert.equal(repo.blobId(data, type), createHmac('sha256', typeKey).update(data).digest('hex'));
    }
  });

  it('a file whose bytes equal a tree never shares its id, and the derived key is no data id', async () => {
    const { repo } = await memoryRepo();
    const tree = Buffer.from('{"nodes":[]}');
    assert.notEqual(repo.blobId(tree, BlobType.Tree), repo.blobId(tree, BlobType.Data));
    const label = Buffer.from(`holdfast/blob-type/${BlobType.Tree}`);
    const typeKey = createHmac('sha512', repo.workerSecrets().id).update(label).digest().subarray(0, 32);
    assert.notEqual(repo.blobId(label), typeKey.toString('hex'));
    const { id: dataId } = await repo.saveBlob(BlobType.Data, tree);
    const { id: treeId, added } = await repo.saveBlob(BlobType.Tree, tree);
    assert.ok(added);
    await repo.flush();
    assert.deepEqual(await repo.loadBlob(BlobType.Data, dataId), tree);
    assert.deepEqual(await repo.loadTree(treeId), []);
  });
});

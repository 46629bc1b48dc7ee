/**
 * FileContentReader (what a mounted snapshot reads files with): every range
 * of a file made of whole blobs, slices and holes reads as the same bytes
 * that `contentBytes` streams, and a file whose content cannot be what its
 * node says is refused when opened.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BlobType } from '../../src/repo/pack.js';
import { CorruptObjectError } from '../../src/repo/errors.js';
import { contentBytes, type ContentEntry, type TreeNode } from '../../src/repo/tree.js';
import { FileContentReader } from '../../src/jobs/mount/file-content-reader.js';
import { pseudoRandomBytes } from '../fixtures/tree.js';
import { memoryRepo } from '../helpers/memory-repo.js';

const node = (content: readonly ContentEntry[], size: number, extra: Partial<TreeNode> = {}): TreeNode => ({
  name: Buffer.from('f'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1, size, content, ...extra,
});

describe('FileContentReader', () => {
  it('reads any range as the whole content streams', async () => {
    const { repo } = await memoryRepo();
    const a = pseudoRandomBytes('a', 70_000);
    const b = pseudoRandomBytes('b', 5_000);
    const c = pseudoRandomBytes('c', 1);
    const ids = [];
    const w = repo.newWriter();
    for (const x of [a, b, c]) ids.push((await w.saveBlob(BlobType.Data, x)).id);
    await w.flush();
    const content: ContentEntry[] = [ids[0]!, 4096, { blob: ids[1]!, offset: 10, length: 1234 }, ids[2]!, { blob: ids[0]!, offset: 69_000, length: 1000 }, 7];
    const whole: Buffer[] = [];
    for await (const piece of contentBytes(content, (id) => repo.loadBlob(BlobType.Data, id), 'f')) whole.push(Buffer.from(piece));
    const expected = Buffer.concat(whole);
    const reader = await FileContentReader.open(repo, node(content, expected.length), 'f');
    assert.equal(reader.size, expected.length);
    // Every boundary, one byte either side, and ranges across several entries.
    const edges = [0, 70_000, 74_096, 75_330, 75_331, 76_331, expected.length];
    for (const from of edges.flatMap((e) => [e - 1, e, e + 1]).filter((x) => x >= 0 && x < expected.length)) {
      for (const len of [1, 2, 100, 5000, expected.length - from]) {
        const n = Math.min(len, expected.length - from);
        assert.ok((await reader.read(from, n)).equals(expected.subarray(from, from + n)), `${from}+${n}`);
      }
    }
    await assert.rejects(reader.read(expected.length - 1, 2), RangeError);
    assert.equal((await reader.read(expected.length, 0)).length, 0);
  });

  it('refuses content that does not add up to the size, a blob not in the index, and a node marked damaged', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const { id } = await w.saveBlob(BlobType.Data, Buffer.from('fourteen bytes'));
    await w.flush();
    await assert.rejects(FileContentReader.open(repo, node([id], 1 << 30), 'big'), (e: unknown) => e instanceof CorruptObjectError && /holds 14 bytes, its size says 1073741824/.test(e.message));
    await assert.rejects(FileContentReader.open(repo, node([id], 5), 'short'), /holds 14 bytes, its size says 5/);
    await assert.rejects(FileContentReader.open(repo, node(['ab'.repeat(32)], 14), 'lost'), /is not in the repository/);
    await assert.rejects(FileContentReader.open(repo, node([id], 14, { damaged: true }), 'marked'), /marked damaged/);
  });
});

/**
 * RepoState's locations: every copy any record claims, each once, until a
 * pack's header is read; then what the header says of that pack, and the
 * claims of other packs as they were.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { BlobType, FLAG_COMPRESSED, type PackedBlob } from '../../src/repo/pack.js';
import { RepoState } from '../../src/repo/repo-state.js';
import { Store } from '../../src/repo/store.js';
import { memoryRepo } from '../helpers/memory-repo.js';

const id = (): string => randomBytes(32).toString('hex');
const entry = (blob: string, offset: number): PackedBlob => ({ type: BlobType.Data, id: blob, flags: FLAG_COMPRESSED, offset, length: 100, rawLength: 150 });
const where = (s: RepoState, blob: string): string[] => s.locations(blob).map((l) => `${l.pack.slice(0, 4)}@${l.offset}`).sort();

describe('RepoState locations', () => {
  it('keeps every claimed copy once; a header read replaces the claims about its pack and no other', async () => {
    const { backend } = await memoryRepo();
    const store = await Store.open(backend);
    const [p, q] = [id(), id()];
    const [x, y, z] = [id(), id(), id()];
    for (const pack of [p, q]) await backend.save({ type: 'data', name: pack }, Buffer.alloc(1));
    // Two index files describe p alike (one copy each), a third otherwise; q holds y too.
    await store.saveIndex({ packs: [{ pack: p, blobs: [entry(x, 0), entry(y, 100)] }], supersedes: [] });
    await store.saveIndex({ packs: [{ pack: p, blobs: [entry(x, 0), entry(y, 100)] }, { pack: q, blobs: [entry(y, 0)] }], supersedes: [] });
    await store.saveIndex({ packs: [{ pack: p, blobs: [entry(x, 0), entry(y, 100), entry(y, 200)] }], supersedes: [] });
    const s = await RepoState.load(store);
    assert.deepEqual(where(s, x), [`${p.slice(0, 4)}@0`]);
    assert.deepEqual(where(s, y), [`${p.slice(0, 4)}@100`, `${p.slice(0, 4)}@200`, `${q.slice(0, 4)}@0`].sort());
    assert.ok(s.disputed.has(p));
    assert.equal(s.liveLocation(z), undefined);
    // p's header: x where claimed, z that no record named, and no y.
    s.confirm({ pack: p, blobs: [entry(x, 0), entry(z, 100)] });
    assert.deepEqual(where(s, x), [`${p.slice(0, 4)}@0`]);
    assert.deepEqual(where(s, y), [`${q.slice(0, 4)}@0`], 'the claims about p refuted, q\'s kept');
    assert.deepEqual(where(s, z), [`${p.slice(0, 4)}@100`]);
    assert.ok(!s.disputed.has(p));
    assert.equal(s.liveLocation(y)?.pack, q);
  });
});

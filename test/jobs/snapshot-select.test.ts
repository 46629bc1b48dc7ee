/**
 * Choosing snapshots and counting them, as the CLI, the agent and the server
 * share them (src/jobs/snapshots): `latest` and id prefixes with filters,
 * the parent of a file or image backup (one rule for both kinds), and the
 * repository statistics.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadSnapshotNameError, SnapshotNotFoundError, findParent, findSnapshot, matchesFilter } from '../../src/jobs/snapshots/select.js';
import { repositoryStats } from '../../src/jobs/snapshots/stats.js';
import { errorCode } from '../../src/core/errors.js';
import { BlobType } from '../../src/repo/pack.js';
import type { Snapshot } from '../../src/repo/snapshot.js';
import type { SnapshotEntry } from '../../src/repo/store.js';
import { memoryRepo } from '../helpers/memory-repo.js';

const summary: Snapshot['summary'] = {
  filesNew: 1, filesChanged: 0, filesUnchanged: 0, dirs: 1, otherNodes: 0, errors: 0, totalBytes: 10, bytesRead: 10, blobsAdded: 1, dataAdded: 10,
  dataAddedStored: 38, start: '2026-12-05T10:00:00.000Z', end: '2026-12-05T10:00:01.000Z',
};
const snap = (fields: Partial<Snapshot>): Snapshot => ({
  time: '2026-12-05T10:00:00.000Z', hostname: 'web', username: 'root', paths: ['/srv'], tags: [], tree: 'a'.repeat(64), blobs: [], summary, ...fields,
}) as Snapshot;
const image = { size: 1 << 20, blockSize: 65536 } as unknown as NonNullable<Snapshot['image']>;

describe('choosing snapshots', () => {
  it('filters: every path, any tag group, any host, images only', () => {
    const s = snap({ paths: ['/srv', '/etc'], tags: ['daily', 'db'] });
    assert.ok(matchesFilter(s, { path: ['/etc/'], tag: ['weekly', 'daily,db'], host: ['x', 'web'] }));
    assert.ok(!matchesFilter(s, { path: ['/etc', '/home'] }));
    assert.ok(!matchesFilter(s, { tag: ['daily,weekly'] }));
    assert.ok(!matchesFilter(s, { image: true }));
    assert.ok(matchesFilter(snap({ image }), { image: true }));
  });

  it('the parent of a backup is the latest of the same host, paths and kind; --parent must name one of that kind', () => {
    const all: SnapshotEntry[] = [
      { id: 'aa01', snapshot: snap({}) },
      { id: 'aa02', snapshot: snap({ image }) },
      { id: 'bb03', snapshot: snap({ hostname: 'db' }) },
      { id: 'cc04', snapshot: snap({ image, time: '2026-12-05T11:00:00.000Z' }) },
    ];
    assert.equal(findParent(all, { hostname: 'web', paths: ['/srv'], image: false })?.id, 'aa01', 'an image snapshot of the same path is no parent of files');
    assert.equal(findParent(all, { hostname: 'web', paths: ['/srv'], image: true })?.id, 'cc04');
    assert.equal(findParent(all, { hostname: 'mail', paths: ['/srv'], image: false }), null);
    assert.equal(findParent(all, { hostname: 'x', paths: [], image: false, parent: 'bb' })?.id, 'bb03');
    assert.throws(() => findParent(all, { hostname: 'web', paths: ['/srv'], image: false, parent: 'aa' }), (e: unknown) => e instanceof BadSnapshotNameError && /--parent aa matches 2 snapshots/.test(e.message));
    assert.throws(() => findParent(all, { hostname: 'web', paths: ['/srv'], image: true, parent: 'aa01' }), /--parent aa01 is not an image snapshot/);
    assert.throws(() => findParent(all, { hostname: 'web', paths: ['/srv'], image: false, parent: 'cc' }), /--parent cc is an image snapshot/);
  });

  it('findSnapshot resolves latest with a filter and id prefixes, with coded errors; stats count what the snapshots reference', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const a = await w.saveBlob(BlobType.Data, Buffer.alloc(1000, 1));
    const b = await w.saveBlob(BlobType.Data, Buffer.alloc(3000, 2));
    await w.flush();
    const first = await w.saveSnapshot(snap({ tags: ['x'], blobs: [a.id] }));
    const second = await w.saveSnapshot(snap({ time: '2026-12-05T11:00:00.000Z', blobs: [a.id, b.id] }));
    assert.equal((await findSnapshot(repo, 'latest', {})).id, second);
    assert.equal((await findSnapshot(repo, 'latest', { tag: ['x'] })).id, first);
    assert.equal((await findSnapshot(repo, first.slice(0, 10), {})).id, first);
    await assert.rejects(findSnapshot(repo, 'latest', { host: ['nobody'] }), (e: unknown) => e instanceof SnapshotNotFoundError && errorCode(e) === 'SNAPSHOT_NOT_FOUND');
    await assert.rejects(findSnapshot(repo, 'latest', { image: true }), /no image snapshot matches/);
    await assert.rejects(findSnapshot(repo, 'zz', {}), (e: unknown) => errorCode(e) === 'BAD_SNAPSHOT_NAME');
    await assert.rejects(findSnapshot(repo, 'f'.repeat(64), {}), /no snapshot with id/);

    const all = [{ id: first, snapshot: await repo.loadSnapshot(first) }, { id: second, snapshot: await repo.loadSnapshot(second) }];
    const stats = await repositoryStats(repo, all);
    assert.deepEqual([stats.snapshots, stats.files, stats.logicalBytes, stats.uniqueBlobs, stats.rawBytes, stats.missingBlobs], [2, 2, 20, 2, 4000, 0]);
    assert.ok(stats.storedBytes > 0 && stats.repositoryBytes > stats.storedBytes);
  });
});

// A client's records of the snapshot headers it authenticated: a listing for
// headers reads only what it has not authenticated before, and nothing in the
// records that the client did not write (a changed byte, a record moved to
// another snapshot's name, another repository's records) is taken.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { BlobType } from '../../src/repo/pack.js';
import { saveAddressed } from '../../src/repo/objects.js';
import { encodeSnapshot, snapshotHeaderBytes, type Snapshot } from '../../src/repo/snapshot.js';
import { ForgedObjectError } from '../../src/repo/errors.js';
import { encodeHeaderRecords, type SnapshotHeaderStore } from '../../src/repo/snapshot-headers.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import type { Handle, LoadOptions } from '../../src/storage/backend.js';
import { TEST_PASSWORD, memoryRepo } from '../helpers/memory-repo.js';

/** Two blobs every snapshot of the tests lists (the fence wants them stored), set by `withBlobs`. */
let blobs: string[] = [];

const snapshot = (time: string, hostname = 'h'): Snapshot => ({
  time, hostname, username: 'u', paths: ['/srv'], tags: ['t'], tree: '0'.repeat(64), blobs,
  summary: { filesNew: 1, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 5, bytesRead: 5, blobsAdded: 1, dataAdded: 5, dataAddedStored: 9, start: time, end: time },
});

/** Counts snapshot loads. */
class Counting extends WrapperBackend {
  snapshotLoads = 0;
  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    if (h.type === 'snapshot') this.snapshotLoads++;
    return super.load(h, opts);
  }
}

/** Records in memory, by repository id. */
class Records implements SnapshotHeaderStore {
  readonly saved = new Map<string, Buffer>();
  async load(id: string): Promise<Buffer | undefined> {
    return this.saved.get(id);
  }

  async save(id: string, records: Buffer): Promise<void> {
    this.saved.set(id, Buffer.from(records));
  }
}

async function withBlobs(repo: Repository): Promise<void> {
  const w = repo.newWriter();
  blobs = [(await w.saveBlob(BlobType.Data, Buffer.from('one'))).id, (await w.saveBlob(BlobType.Data, Buffer.from('two'))).id].sort();
  await w.flush();
}

const headers = (list: Awaited<ReturnType<Repository['listSnapshots']>>): unknown[] =>
  list.ok.map(({ id, snapshot: s }) => ({ id, time: s.time, hostname: s.hostname, paths: s.paths, tags: s.tags, summary: s.summary }));

describe('snapshot header records', () => {
  it('a second run lists headers without reading a snapshot, and the same headers', async () => {
    const { backend, repo } = await memoryRepo();
    await withBlobs(repo);
    const w = repo.newWriter();
    for (let d = 1; d <= 3; d++) await w.saveSnapshot(snapshot(`2030-01-0${d}T00:00:00Z`));
    const records = new Records();
    const open = async (): Promise<{ counting: Counting; repo: Repository }> => {
      const counting = new Counting(backend);
      return { counting, repo: await Repository.open(await Store.open(counting), TEST_PASSWORD, { headerStore: records }) };
    };

    const first = await open();
    const whole = await first.repo.listSnapshots();
    const listed = await first.repo.listSnapshots({ blobList: false });
    assert.equal(first.counting.snapshotLoads, 3, 'the first run reads each snapshot (once: the listing for headers had them in memory)');
    assert.deepEqual(headers(listed), headers(whole));

    const second = await open();
    const again = await second.repo.listSnapshots({ blobList: false });
    assert.equal(second.counting.snapshotLoads, 0, 'the second run reads none');
    assert.deepEqual(headers(again), headers(whole));
    assert.throws(() => again.ok[0]!.snapshot.blobs, /its blob list was not kept/);
    // A listing that wants blob lists still reads every snapshot whole.
    assert.deepEqual((await second.repo.listSnapshots()).ok.map((s) => s.snapshot.blobs.length), [2, 2, 2]);
    assert.equal(second.counting.snapshotLoads, 3);

    // A snapshot this client writes is recorded as it is stored; one removed is no longer listed, nor recorded.
    const added = await second.repo.newWriter().saveSnapshot(snapshot('2030-01-09T00:00:00Z'));
    const gone = whole.ok[0]!.id;
    await backend.remove({ type: 'snapshot', name: gone });
    const third = await open();
    const now = await third.repo.listSnapshots({ blobList: false });
    assert.equal(third.counting.snapshotLoads, 0);
    assert.deepEqual(now.ok.map((s) => s.id), [...whole.ok.slice(1).map((s) => s.id), added]);
    const fourth = await open();
    await fourth.repo.listSnapshots({ blobList: false });
    assert.equal(fourth.counting.snapshotLoads, 0);
    assert.ok(!records.saved.get(repo.config.id)!.includes(Buffer.from(gone, 'hex')), 'the removed snapshot\'s record is gone');
  });

  it('a record changed, moved to another snapshot\'s name, or of another repository is not taken; a forged snapshot is reported every time', async () => {
    const { backend, repo } = await memoryRepo();
    await withBlobs(repo);
    const w = repo.newWriter();
    const a = await w.saveSnapshot(snapshot('2030-01-01T00:00:00Z', 'alpha'));
    const b = await w.saveSnapshot(snapshot('2030-01-02T00:00:00Z', 'bravo'));
    const forged = await saveAddressed(backend, 'snapshot', encodeSnapshot(snapshot('2030-01-03T00:00:00Z', 'mallory'), Buffer.alloc(32)));
    const records = new Records();
    const list = async (): Promise<{ hosts: string[]; loads: number; forgedReported: boolean }> => {
      const counting = new Counting(backend);
      const r = await Repository.open(await Store.open(counting), TEST_PASSWORD, { headerStore: records });
      const l = await r.listSnapshots({ blobList: false });
      return { hosts: l.ok.map((s) => s.snapshot.hostname), loads: counting.snapshotLoads, forgedReported: l.damaged.get(forged) instanceof ForgedObjectError };
    };
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 3, forgedReported: true });
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 1, forgedReported: true }, 'only the forged snapshot is read again');
    const id = repo.config.id;
    const good = records.saved.get(id)!;

    // The header of "alpha" made to say "mallo" (same length): its MAC fails, the snapshot is read again.
    const changed = Buffer.from(good);
    const at = changed.indexOf('"alpha"');
    assert.ok(at > 0);
    changed.write('"mallo"', at);
    records.saved.set(id, changed);
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 2, forgedReported: true });

    // The two records with their ids swapped: each MAC binds its id.
    const swapped = Buffer.from(good);
    const [atA, atB] = [good.indexOf(Buffer.from(a, 'hex')), good.indexOf(Buffer.from(b, 'hex'))];
    assert.ok(atA >= 0 && atB >= 0);
    swapped.write(b, atA, 'hex');
    swapped.write(a, atB, 'hex');
    records.saved.set(id, swapped);
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 3, forgedReported: true });

    // Records for these names under another key (another repository's, or made up), of headers that say "mallory".
    const header = snapshotHeaderBytes(encodeSnapshot(snapshot('2030-01-05T00:00:00Z', 'mallory'), Buffer.alloc(32)));
    records.saved.set(id, Buffer.concat([encodeHeaderRecords(new Map([[a, header], [b, header]]), randomBytes(32)), Buffer.from('cut short')]));
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 3, forgedReported: true });
    assert.deepEqual(await list(), { hosts: ['alpha', 'bravo'], loads: 1, forgedReported: true }, 'and its own records are written again');
  });
});

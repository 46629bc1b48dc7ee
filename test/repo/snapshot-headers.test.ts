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
import { CorruptObjectError, ForgedObjectError } from '../../src/repo/errors.js';
import { encodeHeaderRecords, type SnapshotHeaderStore } from '../../src/repo/snapshot-headers.js';
import { verifiedParent } from '../../src/jobs/snapshots/select.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import type { Handle, LoadOptions } from '../../src/storage/backend.js';
import { TEST_PASSWORD, TEST_SCRYPT, memoryRepo } from '../helpers/memory-repo.js';

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

  it('records changed, swapped between names, of another key or of another repository sharing the key are not taken; a forged snapshot is reported every time', async () => {
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
    const all = { hosts: ['alpha', 'bravo'], loads: 3, forgedReported: true };
    assert.deepEqual(await list(), all);
    assert.deepEqual(await list(), { ...all, loads: 1 }, 'only the forged snapshot is read again');
    const id = repo.config.id;
    const good = records.saved.get(id)!;
    const taken = async (bytes: Buffer, what: string): Promise<void> => {
      records.saved.set(id, bytes);
      assert.deepEqual(await list(), all, `${what}: every snapshot read again`);
      assert.ok(records.saved.get(id)!.equals(good), `${what}: and the records written again`);
    };

    // The header of "alpha" made to say "mallo" (same length).
    const changed = Buffer.from(good);
    assert.ok(changed.indexOf('"alpha"') > 0);
    changed.write('"mallo"', changed.indexOf('"alpha"'));
    await taken(changed, 'a header changed');

    // The two records' names swapped.
    const swapped = Buffer.from(good);
    const [atA, atB] = [good.indexOf(Buffer.from(a, 'hex')), good.indexOf(Buffer.from(b, 'hex'))];
    assert.ok(atA >= 0 && atB >= 0);
    swapped.write(b, atA, 'hex');
    swapped.write(a, atB, 'hex');
    await taken(swapped, 'names swapped');

    // Headers that say "mallory" for these names, under a key made up; and the file cut short.
    const header = snapshotHeaderBytes(encodeSnapshot(snapshot('2030-01-05T00:00:00Z', 'mallory'), Buffer.alloc(32)));
    await taken(encodeHeaderRecords(id, new Map([[a, header], [b, header]]), randomBytes(32)), 'another key');
    await taken(good.subarray(0, good.length - 1), 'cut short');
    await taken(Buffer.alloc(1 << 20), 'a megabyte of zeros');

    // A repository sharing the master key (`init --copy-from`) whose snapshots have the same names (a copy): its
    // records, put in this repository's place, are not this repository's.
    const twin = await repo.initSharingKey(new MemoryBackend(), TEST_PASSWORD, { scrypt: TEST_SCRYPT });
    for (const name of [a, b]) await twin.backend.save({ type: 'snapshot', name }, await backend.load({ type: 'snapshot', name }));
    const twinRecords = new Records();
    const viaTwin = await (await Repository.open(await Store.open(twin.backend), TEST_PASSWORD, { headerStore: twinRecords })).listSnapshots({ blobList: false });
    assert.deepEqual(viaTwin.ok.map((s) => s.id), [a, b]);
    await taken(twinRecords.saved.get(twin.config.id)!, 'the twin repository\'s records');
  });

  it('a header too large to record is read each time, and the others are still recorded', async () => {
    const { backend, repo } = await memoryRepo();
    await withBlobs(repo);
    const w = repo.newWriter();
    await w.saveSnapshot(snapshot('2030-01-01T00:00:00Z', 'x'.repeat(100_000)));
    for (let d = 2; d <= 4; d++) await w.saveSnapshot(snapshot(`2030-01-0${d}T00:00:00Z`));
    const records = new Records();
    const loads = async (): Promise<number> => {
      const counting = new Counting(backend);
      await (await Repository.open(await Store.open(counting), TEST_PASSWORD, { headerStore: records })).listSnapshots({ blobList: false });
      return counting.snapshotLoads;
    };
    assert.equal(await loads(), 4);
    assert.equal(await loads(), 1);
    assert.equal(await loads(), 1);
  });

  it('a backup\'s parent is read whole: a name whose snapshot was removed and taken by other bytes is skipped, and its record forgotten', async () => {
    const { backend, repo } = await memoryRepo();
    await withBlobs(repo);
    const w = repo.newWriter();
    const older = await w.saveSnapshot(snapshot('2030-01-01T00:00:00Z'));
    const newer = await w.saveSnapshot(snapshot('2030-01-02T00:00:00Z'));
    const records = new Records();
    const open = async (): Promise<Repository> => Repository.open(await Store.open(backend), TEST_PASSWORD, { headerStore: records });
    await (await open()).listSnapshots({ blobList: false });
    // The newer one forgotten (and pruned) elsewhere; an add-only client puts other bytes under its name.
    await backend.remove({ type: 'snapshot', name: newer });
    await backend.save({ type: 'snapshot', name: newer }, Buffer.from('x'));
    const r = await open();
    const listed = await r.listSnapshots({ blobList: false });
    assert.deepEqual(listed.ok.map((s) => s.id), [older, newer], 'the listing takes the record');
    const skipped: string[] = [];
    const q = { hostname: 'h', paths: ['/srv'], image: false };
    const parent = await verifiedParent(r, listed.ok, q, (id, e) => skipped.push(`${id}: ${e.message}`));
    assert.equal(parent?.id, older);
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!, new RegExp(`^${newer}: `));
    // Its record is gone: the next listing reads it, and reports it.
    const counting = new Counting(backend);
    const next = await (await Repository.open(await Store.open(counting), TEST_PASSWORD, { headerStore: records })).listSnapshots({ blobList: false });
    assert.equal(counting.snapshotLoads, 1);
    assert.deepEqual([...next.damaged.keys()], [newer]);
    // Named with --parent, it is the error.
    await assert.rejects(verifiedParent(await open(), listed.ok, { ...q, parent: newer.slice(0, 8) }, () => undefined), CorruptObjectError);
  });
});

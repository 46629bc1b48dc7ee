/**
 * Prune on an in-memory repository: the two phases, repacking, dry runs, no
 * key, and the races with a backup running alongside (restic issue 3126),
 * each interleaving played out step by step with a test clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pruner } from '../../src/jobs/prune/pruner.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { BlobType } from '../../src/repo/pack.js';
import { BlobsLostError } from '../../src/repo/snapshot-fence.js';
import { sha256 } from '../../src/core/crypto.js';
import { GcFixture, bytes, names } from './gc-fixture.js';
import { signedSnapshot } from '../helpers/master-key.js';

const GRACE = 60_000;

function pruner(f: GcFixture, extra: ConstructorParameters<typeof Pruner>[1] = {}): Pruner {
  return new Pruner(f.plain(), { graceMs: GRACE, now: f.clock, ...extra });
}

describe('prune', () => {
  it('marks first, deletes only after the grace period, and keeps every live snapshot whole', async () => {
    const f = await GcFixture.create();
    const shared = bytes('shared', 40_000);
    const a = { 'a.bin': bytes('a', 120_000), 'shared.bin': shared };
    const b = { 'b.bin': bytes('b', 90_000), 'shared.bin': shared, 'd/x.txt': 'x' };
    const sa = await f.snapshot(a);
    const sb = await f.snapshot(b);
    await f.forget(sa);
    const before = await names(f.backend, 'data');

    const dry = await pruner(f, { dryRun: true }).run();
    assert.ok(dry.mark.unusedPacks > 0);
    const first = await pruner(f).run();
    assert.equal(first.mark.unusedPacks, dry.mark.unusedPacks, 'the dry run reports what the real run does');
    assert.equal(first.mark.bytesToFree, dry.mark.bytesToFree);
    assert.ok(first.mark.marker, 'a marker was written');
    const after = await names(f.backend, 'data');
    for (const p of before) assert.ok(after.includes(p), 'phase 1 deletes nothing');
    await f.assertRestores(sb, b);
    await f.assertCheckPasses();

    f.advance(GRACE - 1);
    const early = await pruner(f).run();
    assert.equal(early.sweep.packsDeleted, 0, 'nothing is deleted before the grace period is over');
    assert.equal(early.sweep.markersWaiting.length, 1);

    f.advance(1);
    const second = await pruner(f).run();
    assert.equal(second.sweep.markersSwept, 1);
    assert.equal(second.sweep.packsDeleted, first.mark.unusedPacks + first.mark.repackedPacks);
    assert.equal(second.sweep.bytesFreed - first.mark.bytesCopied, first.mark.bytesToFree);
    assert.deepEqual(await names(f.backend, 'deletion'), [], 'the marker is gone once swept');
    await f.assertRestores(sb, b);
    await f.assertCheckPasses();
    const r = await f.open();
    for (const id of (await r.loadSnapshot(sb)).blobs) assert.ok(r.index.has(id));
    assert.equal(r.index.lookup(r.blobId(bytes('a', 120_000).subarray(0, f.chunk))), undefined, 'blobs only the forgotten snapshot used are gone');
  });

  it('a dry run changes nothing, in either phase', async () => {
    const f = await GcFixture.create();
    const s = await f.snapshot({ 'a.bin': bytes(1, 100_000) });
    await f.snapshot({ 'b.bin': bytes(2, 100_000) });
    await f.forget(s);
    await pruner(f).run();
    f.advance(GRACE);
    const objects = await f.objects();
    const r = await pruner(f, { dryRun: true }).run();
    assert.ok(r.sweep.packsDeleted > 0, 'the dry run reports the deletions that are due');
    assert.deepEqual(await f.objects(), objects);
  });

  it('repacks packs that are mostly unused and keeps the live blobs', async () => {
    // Files of one chunk each, kept and dropped ones alternating, so every pack holds both.
    const keep: Record<string, Buffer> = {};
    const all: Record<string, Buffer> = {};
    for (let i = 0; i < 24; i++) {
      keep[`k${i}`] = bytes(`keep${i}`, 4000);
      all[`k${i}`] = keep[`k${i}`]!;
      all[`d${i}`] = bytes(`drop${i}`, 6000);
    }
    const run = async (maxUnused: number): Promise<{ f: GcFixture; only: string; packsBefore: number; first: Awaited<ReturnType<Pruner['run']>> }> => {
      const f = await GcFixture.create({ chunk: 8192 });
      const both = await f.snapshot(all);
      const only = await f.snapshot(keep);
      await f.forget(both);
      const packsBefore = (await names(f.backend, 'data')).length;
      return { f, only, packsBefore, first: await pruner(f, { maxUnused }).run() };
    };
    const { f, only, packsBefore, first } = await run(0.3);
    assert.ok(first.mark.repackedPacks > 0, 'packs holding some live data were repacked');
    assert.ok(first.mark.blobsCopied >= 24, 'their live blobs were copied');
    await f.assertRestores(only, keep);
    f.advance(GRACE);
    const second = await pruner(f, { maxUnused: 0.3 }).run();
    assert.ok(second.sweep.packsDeleted >= first.mark.repackedPacks);
    await f.assertRestores(only, keep);
    await f.assertCheckPasses();
    assert.ok((await names(f.backend, 'data')).length < packsBefore);
    // With a threshold of 100 %, a pack with any live blob stays.
    const none = await run(1);
    assert.equal(none.first.mark.repackedPacks, 0);
  });

  it('never repacks a pack whose blobs are all live, however much of it is header', async () => {
    const f = await GcFixture.create();
    const files = { 'tiny.txt': 'abc' };
    const snap = await f.snapshot(files);
    const objects = await f.objects();
    for (let i = 0; i < 3; i++) {
      const r = await pruner(f).run();
      assert.equal(r.mark.repackedPacks, 0, `prune ${i + 1} repacked a pack of one live 3-byte blob`);
      assert.equal(r.mark.unusedPacks, 0);
      assert.equal(r.mark.marker, undefined, 'no marker is written');
      f.advance(GRACE);
    }
    assert.deepEqual(await f.objects(), objects, 'three prunes changed nothing');
    await f.assertRestores(snap, files);
  });

  it('runs without the key: it never reads a key file', async () => {
    const f = await GcFixture.create();
    const a = await f.snapshot({ 'a.bin': bytes(3, 100_000) });
    const b = { 'b.bin': bytes(4, 100_000) };
    const sb = await f.snapshot(b);
    await f.forget(a);
    const noKeys = new FaultBackend(f.backend, [
      { op: 'load', type: 'key', error: new Error('prune must not read keys') },
      { op: 'list', type: 'key', error: new Error('prune must not list keys') },
    ]);
    const plain = f.plain(noKeys);
    await new Pruner(plain, { graceMs: GRACE, now: f.clock }).run();
    f.advance(GRACE);
    const r = await new Pruner(plain, { graceMs: GRACE, now: f.clock }).run();
    assert.ok(r.sweep.packsDeleted > 0);
    const check = await f.check({ readData: true, keyless: true, backend: noKeys });
    assert.deepEqual(check.errors, []);
    assert.equal(noKeys.faults, 0, 'no key object was touched');
    await f.assertRestores(sb, b);
  });

  it('adopts packs no index names instead of deleting them', async () => {
    const f = await GcFixture.create();
    const s = { 'a.bin': bytes(5, 100_000) };
    const id = await f.snapshot(s);
    // Lose the index files: the packs become orphans, as after a crash before the index was written.
    for (const n of await names(f.backend, 'index')) await f.backend.remove({ type: 'index', name: n });
    const r = await pruner(f).run();
    assert.ok(r.mark.orphansAdopted > 0);
    assert.equal(r.mark.unusedPacks, 0);
    f.advance(GRACE);
    await pruner(f).run();
    await f.assertRestores(id, s);
    await f.assertCheckPasses();
  });

  it('refuses when a snapshot cannot be read (what it references is unknown)', async () => {
    const f = await GcFixture.create();
    const id = await f.snapshot({ 'a.bin': bytes(6, 50_000) });
    await f.tamper('snapshot', id, (b) => {
      b[b.length - 1]! ^= 1;
      return b;
    });
    await assert.rejects(pruner(f).run(), /prune refused: 1 snapshot\(s\) cannot be read/);
    assert.deepEqual(await names(f.backend, 'deletion'), []);
  });
});

describe('prune alongside a backup (restic issue 3126)', () => {
  const garbage = bytes('garbage', 60_000);

  /** A repository whose only copy of `garbage` belongs to a forgotten snapshot. */
  async function setup(): Promise<{ f: GcFixture; live: string; liveFiles: Record<string, Buffer> }> {
    const f = await GcFixture.create();
    const old = await f.snapshot({ 'g.bin': garbage });
    const liveFiles = { 'live.bin': bytes('live', 30_000) };
    const live = await f.snapshot(liveFiles);
    await f.forget(old);
    return { f, live, liveFiles };
  }

  it('a backup that loaded the index before the marker copies the blobs it reuses before writing its snapshot', async () => {
    const { f, live, liveFiles } = await setup();
    const backup = await f.open(); // loads the index: `garbage` is there to deduplicate against
    const w = backup.newWriter();
    const { tree, blobs } = await f.store(w, { 'g.bin': garbage, 'new.bin': bytes('new', 20_000) });
    assert.ok([...blobs].some((id) => backup.index.has(id)), 'the backup deduplicated against the forgotten data');
    await pruner(f).run(); // phase 1 marks the forgotten packs while the backup runs
    await w.flush();
    const sid = await w.saveSnapshot(f.snapshotOf(tree, blobs, new Date(f.now))); // the fence copies
    f.advance(GRACE);
    await pruner(f).run(); // phase 2
    await f.assertRestores(sid, { 'g.bin': garbage, 'new.bin': bytes('new', 20_000) });
    await f.assertRestores(live, liveFiles);
    await f.assertCheckPasses();
  });

  it('a snapshot written after the marker without copying is seen by phase 2, which copies first', async () => {
    const { f } = await setup();
    const backup = await f.open();
    const w = backup.newWriter();
    const { tree, blobs } = await f.store(w, { 'g.bin': garbage });
    await w.flush();
    await pruner(f).run();
    // Written as a backup whose fence ran just before the marker appeared would write it.
    const snap = await signedSnapshot(f.backend, f.snapshotOf(tree, blobs, new Date(f.now)));
    const sid = sha256(snap).toString('hex');
    await f.backend.save({ type: 'snapshot', name: sid }, snap);
    f.advance(GRACE);
    const r = await pruner(f).run();
    assert.ok(r.sweep.blobsRescued > 0, 'phase 2 copied the blobs the new snapshot references');
    await f.assertRestores(sid, { 'g.bin': garbage });
    await f.assertCheckPasses();
  });

  // A backup that commits between the prune's reading of the index and its listing of the snapshots: the snapshot is seen, its index file is not,
  // and its packs are not either (it committed after data/ was listed) or are, as packs no index file named (it committed just before).
  for (const phase of ['mark', 'sweep'] as const) for (const packs of ['after', 'before'] as const) {
    it(`a snapshot written after ${phase} read the index, of packs written ${packs} it listed data/, is kept and does not stop the prune`, async () => {
      const { f, live, liveFiles } = await setup();
      if (phase === 'sweep') {
        await pruner(f).run();
        f.advance(GRACE);
      }
      const fresh = { 'fresh.bin': bytes('fresh', 30_000) };
      let sid = '';
      const interleave = async (): Promise<void> => { sid = await f.snapshot(fresh); };
      // The sweep lists data/ first, then the mark: its own listing comes after the sweep's.
      const racing = new FaultBackend(f.backend, [packs === 'after'
        ? { op: 'list', type: 'snapshot', times: 1, interleave }
        : { op: 'list', type: 'data', after: phase === 'sweep' ? 0 : 1, times: 1, interleave }]);
      const r = await new Pruner(f.plain(racing), { graceMs: GRACE, now: f.clock }).run();
      assert.notEqual(sid, '', 'the backup ran inside the prune');
      if (phase === 'sweep') assert.ok(r.sweep.packsDeleted > 0, 'the sweep deleted the forgotten packs');
      else assert.ok(r.mark.unusedPacks > 0, 'the mark condemned the forgotten packs');
      f.advance(GRACE);
      await pruner(f).run();
      await f.assertRestores(sid, fresh);
      await f.assertRestores(live, liveFiles);
      await f.assertCheckPasses();
    });
  }

  it('a backup started after the marker does not deduplicate against marked blobs', async () => {
    const { f } = await setup();
    await pruner(f).run();
    const backup = await f.open();
    const w = backup.newWriter();
    const { id, added } = await w.saveBlob(BlobType.Data, garbage.subarray(0, f.chunk));
    assert.equal(added, true, 'a blob only in a marked pack is stored again');
    assert.ok(backup.index.lookup(id), 'but it can still be read');
  });

  it('phase 2 waits while a client that locked before the marker still runs', async () => {
    const { f } = await setup();
    const lockTaken = f.now - 1000;
    await pruner(f).run();
    f.advance(GRACE * 2);
    const r = await pruner(f, { otherLocks: async () => [{ created: lockTaken, description: 'backup (pid 1)' }] }).run();
    assert.equal(r.sweep.packsDeleted, 0);
    assert.match(r.sweep.markersWaiting[0]!.reason, /still running since before it was marked: backup/);
    f.advance(10 * 60_000); // past the margin for clock skew (the commit window)
    const later = await pruner(f, { otherLocks: async () => [{ created: f.now, description: 'backup (pid 2)' }] }).run();
    assert.ok(later.sweep.packsDeleted > 0, 'a lock taken after the marker does not hold it back');
  });

  it('a backup that outlived the grace period with a stale lock refuses to write a snapshot instead of writing a broken one', async () => {
    const { f } = await setup();
    const backup = await f.open();
    const w = backup.newWriter();
    const { tree, blobs } = await f.store(w, { 'g.bin': garbage });
    await w.flush();
    await pruner(f).run();
    f.advance(GRACE);
    await pruner(f).run(); // its lock went stale (not passed as otherLocks): the packs are deleted
    await assert.rejects(w.saveSnapshot(f.snapshotOf(tree, blobs, new Date(f.now))), BlobsLostError);
    assert.equal((await names(f.backend, 'snapshot')).length, 1, 'only the live snapshot exists: none was written');
    await f.assertCheckPasses();
    // Without the fence, this is restic 3126: the snapshot would reference deleted data.
    const raw = await signedSnapshot(f.backend, f.snapshotOf(tree, blobs, new Date(f.now)));
    await f.backend.save({ type: 'snapshot', name: sha256(raw).toString('hex') }, raw);
    const broken = await f.check({ readData: true });
    assert.equal(broken.damaged.length, 1, 'a snapshot written without the fence is damaged');
  });

  it('a snapshot commit that overruns the commit window is removed again and retried', async () => {
    const f = await GcFixture.create();
    const slow = new FaultBackend(f.backend, [{ op: 'save', type: 'snapshot', delayMs: 700 }]);
    const backup = await f.open(slow, { minGraceMs: 1000 }); // commit window 500 ms: wide enough for a loaded machine
    const w = backup.newWriter();
    const { tree, blobs } = await f.store(w, { 'a.txt': 'a' });
    await w.flush();
    await assert.rejects(w.saveSnapshot(f.snapshotOf(tree, blobs, new Date(f.now))), /longer than the commit window/);
    assert.deepEqual(await names(f.backend, 'snapshot'), [], 'no snapshot is left behind');
    slow.clear();
    slow.inject({ op: 'save', type: 'snapshot', times: 1, delayMs: 700 });
    const id = await w.saveSnapshot(f.snapshotOf(tree, blobs, new Date(f.now)));
    assert.deepEqual(await names(f.backend, 'snapshot'), [id], 'the retry within the window succeeds');
  });
});

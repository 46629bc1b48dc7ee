/**
 * The copy job on in-memory repositories (src/jobs/copy/snapshot-copier.ts):
 * a pack of which little is needed is read by ranges, a blob is taken from
 * another pack when the first one claimed is damaged, and a snapshot whose
 * blobs the source lacks is not written.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import type { Backend, Handle, ListOptions, LoadOptions, ObjectInfo, ObjectType, OperationOptions } from '../../src/storage/backend.js';
import { Store } from '../../src/repo/store.js';
import { BlobType, PackWriter } from '../../src/repo/pack.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { SnapshotCopier, type CopyProgress, type CopyReport } from '../../src/jobs/copy/snapshot-copier.js';
import { GcFixture, bytes, names } from './gc-fixture.js';
import { NameTakenError } from '../../src/repo/errors.js';
import { TEST_PASSWORD, TEST_SCRYPT } from '../helpers/memory-repo.js';

/** Records the loads of data objects: pack → [offset, length] of each (offset undefined: the whole pack). */
class LoadLog extends WrapperBackend {
  readonly loads: { pack: string; offset?: number; length?: number }[] = [];

  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    if (h.type === 'data') this.loads.push({ pack: h.name, offset: opts?.offset, length: opts?.length });
    return super.load(h, opts);
  }
}

/** Counts the data saves in progress at once, each held for a turn of the event loop (a slow upload). */
class SaveCount extends WrapperBackend {
  private now = 0;
  most = 0;

  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    if (h.type !== 'data') return super.save(h, data, opts);
    this.most = Math.max(this.most, ++this.now);
    try {
      await new Promise((r) => setImmediate(r));
      return await super.save(h, data, opts);
    } finally {
      this.now--;
    }
  }
}

/** Counts the listings of each type of object. */
class ListCount extends WrapperBackend {
  readonly lists = new Map<ObjectType, number>();

  override list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    this.lists.set(type, (this.lists.get(type) ?? 0) + 1);
    return super.list(type, opts);
  }
}

/**
 * A destination from which a prune removes pack `pack` just as the snapshot
 * fence looks (its first listing of deletion markers after an index file
 * was stored): the blobs only that pack held are lost.
 */
class PackRemovedAtFence extends WrapperBackend {
  private armed = false;
  removed = false;

  constructor(private readonly mem: MemoryBackend, private readonly pack: string) {
    super(mem);
  }

  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await super.save(h, data, opts);
    if (h.type === 'index') this.armed = true;
  }

  override list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    if (type !== 'deletion' || !this.armed || this.removed) return super.list(type, opts);
    this.removed = true;
    const inner = super.list(type, opts);
    const mem = this.mem;
    const pack = this.pack;
    return (async function* () {
      await mem.remove({ type: 'data', name: pack });
      yield* inner;
    })();
  }
}

/**
 * A source whose first pack by name answers only once every other pack has
 * been read, or once no read has started for many turns of the event loop
 * (a copy that waits for that pack before reading on): a slow download.
 */
class FirstPackHeld extends WrapperBackend {
  /** Other packs read while the first was held. */
  readWhileHeld = 0;
  private started = 0;
  private holding = false;

  constructor(inner: Backend, private readonly first: string, private readonly others: number) {
    super(inner);
  }

  override async load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    if (h.type !== 'data') return super.load(h, opts);
    if (h.name !== this.first) {
      this.started++;
      const bytes = await super.load(h, opts);
      if (this.holding) this.readWhileHeld++;
      return bytes;
    }
    this.holding = true;
    for (let idle = 0, seen = this.started; this.readWhileHeld < this.others && idle < 50; idle = this.started === seen ? idle + 1 : 0, seen = this.started) {
      await new Promise((r) => setImmediate(r));
    }
    this.holding = false;
    return super.load(h, opts);
  }
}

/**
 * An add-only client of the destination racing copy: it predicted copy's pack
 * names (from a copy into an empty twin: they follow from the source) and
 * plants garbage under each just before copy saves it, of the object's own
 * size and of another.
 */
class PlantingPacks extends WrapperBackend {
  readonly planted: string[] = [];
  constructor(inner: MemoryBackend, private readonly predicted: ReadonlySet<string>) {
    super(inner);
  }

  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    if (this.predicted.has(h.name) && !this.planted.includes(h.name)) {
      await this.inner.save(h, Buffer.alloc(this.planted.length % 2 === 0 ? data.length : 5000, 0x5a));
      this.planted.push(h.name);
    }
    return super.save(h, data, opts);
  }
}

/** A destination sharing the fixture's key, and a copier from `src` (default: the fixture's backend) into it. */
async function twin(f: GcFixture): Promise<MemoryBackend> {
  const backend = new MemoryBackend();
  (await f.repo.initSharingKey(backend, TEST_PASSWORD, { scrypt: TEST_SCRYPT })).close();
  return backend;
}

async function copy(from: Store, to: MemoryBackend, ids: string[], warnings: string[] = [], progress: CopyProgress[] = []): Promise<CopyReport> {
  return new SnapshotCopier(from, await Store.open(to), { onWarning: (m) => warnings.push(m), onProgress: (p) => progress.push(p) }).run(ids);
}

describe('copy job', () => {
  it('stores a source pack whose every blob is wanted as it is: read once, whole, and the same bytes under the same name; the copy restores and checks', async () => {
    const f = await GcFixture.create();
    const files = { 'a.bin': bytes('whole', 100_000), 'b.txt': 'a small file\n' };
    const snap = await f.snapshot(files);
    const srcPacks = await names(f.backend, 'data');
    assert.ok(srcPacks.length >= 3, `data packs and a tree pack: ${srcPacks.length}`);
    const log = new LoadLog(f.backend);
    const dst = await twin(f);
    const r = await copy(await Store.open(log), dst, [snap]);
    assert.deepEqual(r.copied, [snap]);
    assert.deepEqual(await names(dst, 'data'), srcPacks);
    for (const p of srcPacks) assert.ok((await dst.load({ type: 'data', name: p })).equals(await f.backend.load({ type: 'data', name: p })), `pack ${p} as it is`);
    assert.deepEqual(log.loads.map((l) => l.pack).sort(), srcPacks, 'each pack read once');
    assert.ok(log.loads.every((l) => l.offset === undefined), 'and whole (its name checked)');
    assert.equal(r.packsWritten, srcPacks.length);
    assert.equal(r.blobsCopied, (await (await Store.open(f.backend)).loadSnapshot(snap)).blobs.length);
    await f.assertRestores(snap, files, dst);
    await f.assertCheckPasses(dst);
  });

  it('reads each source snapshot once: the copy takes the bytes of the snapshots its caller chose from (the CLI read every snapshot twice)', async () => {
    const f = await GcFixture.create();
    const first = await f.snapshot({ 'a.txt': 'one\n' });
    const second = await f.snapshot({ 'b.txt': 'two\n' });
    const counting = new FaultBackend(f.backend, [{ op: 'load', type: 'snapshot' }]);
    const src = await Store.open(counting);
    const loaded = await src.loadStoredSnapshots();
    assert.equal(counting.faults, 2);
    const dst = await twin(f);
    const r = await new SnapshotCopier(src, await Store.open(dst)).run([first, second], loaded);
    assert.deepEqual(r.copied.sort(), [first, second].sort());
    assert.equal(counting.faults, 2, 'no snapshot of the source read again');
    await f.assertRestores(second, { 'b.txt': 'two\n' }, dst);
  });

  it('a source pack whose every blob is wanted, but whose name the destination holds (other bytes, left unindexed), is stored under a name of its own; the object there is left as it was', async () => {
    const f = await GcFixture.create();
    const files = { 'a.bin': bytes('held', 30_000) };
    const snap = await f.snapshot(files);
    const srcPacks = await names(f.backend, 'data');
    const dst = await twin(f);
    const garbage = Buffer.alloc(3000, 0x5a);
    for (const p of srcPacks) await dst.save({ type: 'data', name: p }, garbage);
    const warnings: string[] = [];
    const r = await copy(await Store.open(f.backend), dst, [snap], warnings);
    assert.deepEqual(r.copied, [snap]);
    assert.equal(warnings.filter((w) => w.startsWith('ignoring unindexed pack')).length, srcPacks.length, warnings.join('\n'));
    for (const p of srcPacks) assert.ok((await dst.load({ type: 'data', name: p })).equals(garbage), `${p} left as it was`);
    const written = (await names(dst, 'data')).filter((p) => !srcPacks.includes(p));
    assert.equal(written.length, srcPacks.length, 'each pack under a name of its own');
    await f.assertRestores(snap, files, dst);
  });

  it('a source pack (its name true to its bytes) whose header lists a blob twice is taken apart, not stored as it is; the copy restores', async () => {
    const f = await GcFixture.create();
    const files = { 'a.bin': bytes('twice-listed', 20_000) };
    const snap = await f.snapshot(files);
    const store = await Store.open(f.backend);
    const [pack] = await names(f.backend, 'data');
    const header = await store.readPackHeader(pack!);
    const original = await f.backend.load({ type: 'data', name: pack! });
    // The pack again, its first blob listed (and stored) a second time, under the SHA-256 of those bytes.
    const writer = new PackWriter();
    for (const b of [...header, header[0]!]) writer.add(b.type, b.id, b.flags, b.rawLength, original.subarray(b.offset, b.offset + b.length));
    const { bytes: forged, blobs } = writer.finish();
    const name = createHash('sha256').update(forged).digest('hex');
    await f.backend.save({ type: 'data', name }, forged);
    await store.saveIndex({ packs: [{ pack: name, blobs }], supersedes: [] });
    await f.backend.remove({ type: 'data', name: pack! });
    const dst = await twin(f);
    const r = await copy(await Store.open(f.backend), dst, [snap]);
    assert.deepEqual(r.copied, [snap]);
    assert.ok(!(await names(dst, 'data')).includes(name), 'not stored as it is');
    await f.assertRestores(snap, files, dst);
  });

  it('stores as many packs at once as the destination has connections, and no more', async () => {
    const f = await GcFixture.create();
    const files = { 'a.bin': bytes('many', 600_000) };
    const snap = await f.snapshot(files);
    const dst = await twin(f);
    const counting = new SaveCount(dst);
    const r = await new SnapshotCopier(await Store.open(f.backend), await Store.open(counting)).run([snap]);
    assert.deepEqual(r.copied, [snap]);
    assert.ok(r.packsWritten > 2 * dst.capabilities.connections, `${r.packsWritten} packs`);
    assert.equal(counting.most, dst.capabilities.connections);
    await f.assertRestores(snap, files, dst);
  });

  it('takes each source pack as it arrives: one slow pack holds up no other read, and the copy restores', async () => {
    const f = await GcFixture.create();
    const files = { 'a.bin': bytes('slow', 600_000) };
    const snap = await f.snapshot(files);
    const packs = await names(f.backend, 'data');
    assert.ok(packs.length > 2 * f.backend.capabilities.connections, `${packs.length} packs`);
    const slow = new FirstPackHeld(f.backend, packs.sort()[0]!, packs.length - 1);
    const dst = await twin(f);
    const r = await copy(await Store.open(slow), dst, [snap]);
    assert.deepEqual(r.copied, [snap]);
    assert.equal(slow.readWhileHeld, packs.length - 1, 'every other pack was read while the first was on its way');
    assert.deepEqual(await names(dst, 'data'), packs);
    await f.assertRestores(snap, files, dst);
  });

  it('writes many snapshots behind one fence: the destination\'s packs are listed as often for five snapshots as for one, and each restores', async () => {
    const f = await GcFixture.create();
    const files = (i: number): Record<string, Buffer> => ({ [`f${i}.bin`]: bytes(`fence-${i}`, 5_000) });
    const snaps: string[] = [];
    for (let i = 0; i < 5; i++) snaps.push(await f.snapshot(files(i), undefined, new Date(f.now + i * 1000)));
    const one = new ListCount(await twin(f));
    assert.deepEqual((await new SnapshotCopier(await Store.open(f.backend), await Store.open(one)).run(snaps.slice(0, 1))).copied, snaps.slice(0, 1));
    const dst = await twin(f);
    const five = new ListCount(dst);
    const r = await new SnapshotCopier(await Store.open(f.backend), await Store.open(five)).run(snaps);
    assert.deepEqual(r.copied, snaps);
    assert.equal(five.lists.get('data'), one.lists.get('data'), `data listed ${five.lists.get('data')} times for five snapshots, ${one.lists.get('data')} for one`);
    assert.equal(five.lists.get('deletion'), one.lists.get('deletion'));
    for (let i = 0; i < 5; i++) await f.assertRestores(snaps[i]!, files(i), dst);
  });

  it('behind one fence, a snapshot written past the commit window is removed, and it and the rest are fenced again: all are written once', async () => {
    const f = await GcFixture.create();
    const files = (i: number): Record<string, Buffer> => ({ [`w${i}.bin`]: bytes(`window-${i}`, 5_000) });
    const snaps: string[] = [];
    for (let i = 0; i < 3; i++) snaps.push(await f.snapshot(files(i), undefined, new Date(f.now + i * 1000)));
    const dst = await twin(f);
    // The second snapshot's save stalls past the window of 500 ms (a minimum grace of 1 s), once.
    const slow = new FaultBackend(dst, [{ op: 'save', type: 'snapshot', after: 1, times: 1, delayMs: 700 }]);
    const counted = new ListCount(slow);
    const r = await new SnapshotCopier(await Store.open(f.backend), await Store.open(counted), { minGraceMs: 1000 }).run(snaps);
    assert.deepEqual(r.copied, snaps);
    assert.deepEqual((await names(dst, 'snapshot')).sort(), [...snaps].sort());
    const once = new ListCount(await twin(f));
    await new SnapshotCopier(await Store.open(f.backend), await Store.open(once), { minGraceMs: 1000 }).run(snaps);
    assert.equal(counted.lists.get('data'), once.lists.get('data')! + 1, 'one more fence pass, for the second and third snapshots');
    for (let i = 0; i < 3; i++) await f.assertRestores(snaps[i]!, files(i), dst);
  });

  it('behind one fence, a snapshot whose blobs a prune removed as the fence looked is not written, and the others are', async () => {
    const f = await GcFixture.create();
    const lostFiles = { 'lost.bin': bytes('fence-lost', 20_000) };
    const keptFiles = { 'kept.bin': bytes('fence-kept', 20_000) };
    const lost = await f.snapshot(lostFiles);
    const kept = await f.snapshot(keptFiles, undefined, new Date(f.now + 1000));
    const src = await Store.open(f.backend);
    const keptBlobs = new Set((await src.loadSnapshot(kept)).blobs);
    const lostBlobs = new Set((await src.loadSnapshot(lost)).blobs);
    let only: string | undefined;
    for (const p of await names(f.backend, 'data')) {
      const held = (await src.readPackHeader(p)).map((b) => b.id);
      if (held.some((id) => lostBlobs.has(id)) && !held.some((id) => keptBlobs.has(id))) only = p;
    }
    assert.ok(only !== undefined, 'a pack of the lost snapshot\'s blobs only');
    const dst = await twin(f);
    const pruned = new PackRemovedAtFence(dst, only);
    const r = await new SnapshotCopier(src, await Store.open(pruned)).run([lost, kept]);
    assert.ok(pruned.removed);
    assert.deepEqual(r.copied, [kept]);
    assert.deepEqual(r.failed.map((x) => x.id), [lost]);
    assert.match(r.failed[0]!.reason, /no longer in the repository/);
    assert.deepEqual(await names(dst, 'snapshot'), [kept]);
    await f.assertRestores(kept, keptFiles, dst);
  });

  it('reads a pack of which little is needed by ranges, and what it copies reads back', async () => {
    const f = await GcFixture.create();
    const big = bytes('big', 40_000);
    // Both files' chunks land in one pack; the second snapshot needs only the big one's.
    const both = await f.snapshot({ 'big.bin': big, 'small.txt': 'a small file\n' });
    const bigOnly = await f.snapshot({ 'big.bin': big });
    const dst = await twin(f);
    const log = new LoadLog(f.backend);
    const src = await Store.open(log);
    const progress: CopyProgress[] = [];
    const first = await copy(src, dst, [bigOnly], [], progress);
    assert.deepEqual(first.copied, [bigOnly]);
    // Progress counts source packs and stored bytes up to what was planned, and ends there.
    assert.deepEqual(progress.at(-1), { packsDone: 2, packsTotal: 2, bytesCopied: first.bytesCopied, bytesTotal: first.bytesCopied });
    assert.ok(progress.every((p, i) => i === 0 || p.bytesCopied >= progress[i - 1]!.bytesCopied));
    const dataPacks: string[] = [];
    for (const p of await names(f.backend, 'data')) if ((await src.readPackHeader(p)).some((x) => x.type === BlobType.Data)) dataPacks.push(p);
    assert.equal(dataPacks.length, 1);
    const dataPack = dataPacks[0]!;
    assert.ok(log.loads.some((l) => l.pack === dataPack && l.offset === undefined), 'the pack of both files was read whole (most of it was needed)');
    log.loads.length = 0;
    const second = await copy(src, dst, [both]);
    assert.deepEqual(second.copied, [both]);
    const fromDataPack = log.loads.filter((l) => l.pack === dataPack);
    assert.ok(fromDataPack.length > 0 && fromDataPack.every((l) => l.offset !== undefined && l.length! < 8192), `ranged reads only: ${JSON.stringify(fromDataPack)}`);
    assert.equal(second.blobsCopied, 2, 'the small file\'s blob and the new root tree');
    await f.assertRestores(both, { 'big.bin': big, 'small.txt': 'a small file\n' }, dst);
    await f.assertCheckPasses(dst);
  });

  it('takes a blob from another pack that holds it when the first is damaged, whichever that is', async () => {
    const f = await GcFixture.create();
    const content = bytes('twice', 20_000);
    // Two sessions open at once store the same chunks, each in a pack of its own.
    const [a, b] = [(await f.open()).newWriter(), (await f.open()).newWriter()];
    const sa = await f.store(a, { 'x.bin': content });
    await f.store(b, { 'x.bin': content });
    await a.flush();
    await b.flush();
    const id = await a.saveSnapshot(f.snapshotOf(sa.tree, sa.blobs, new Date(f.now)));
    const store = await Store.open(f.backend);
    const packs: string[] = [];
    for (const p of await names(f.backend, 'data')) if ((await store.readPackHeader(p)).every((x) => x.type === BlobType.Data)) packs.push(p);
    assert.equal(packs.length, 2, 'a data pack of each session (the trees differ: their inodes do)');
    for (const damaged of packs) {
      const saved = await f.backend.load({ type: 'data', name: damaged });
      await f.tamper('data', damaged, (x) => {
        x.writeUInt8(x.readUInt8(100) ^ 1, 100);
        return x;
      });
      const dst = await twin(f);
      const warnings: string[] = [];
      const r = await copy(await Store.open(f.backend), dst, [id], warnings);
      assert.deepEqual(r.copied, [id], `with ${damaged} damaged: ${JSON.stringify(r.failed)}`);
      assert.ok(warnings.every((w) => w.includes(damaged)), warnings.join('\n'));
      await f.assertRestores(id, { 'x.bin': content }, dst);
      await f.backend.remove({ type: 'data', name: damaged });
      await f.backend.save({ type: 'data', name: damaged }, saved);
    }
  });

  it('does not write a snapshot whose blobs the source lacks, and copies the others', async () => {
    const f = await GcFixture.create();
    const lost = await f.snapshot({ 'lost.bin': bytes('lost', 10_000) });
    const kept = await f.snapshot({ 'kept.bin': bytes('kept', 10_000) }, undefined, new Date(f.now + 1000));
    const lostBlobs = new Set((await (await Store.open(f.backend)).loadSnapshot(lost)).blobs);
    const store = await Store.open(f.backend);
    for (const p of await names(f.backend, 'data')) {
      if ((await store.readPackHeader(p)).some((x) => lostBlobs.has(x.id))) await f.backend.remove({ type: 'data', name: p });
    }
    const dst = await twin(f);
    const r = await copy(store, dst, [lost, kept]);
    assert.deepEqual(r.copied, [kept]);
    assert.equal(r.failed.length, 1);
    assert.equal(r.failed[0]!.id, lost);
    assert.match(r.failed[0]!.reason, /could not be copied .*the source holds no copy of it/);
    assert.deepEqual(await names(dst, 'snapshot'), [kept]);
    await f.assertCheckPasses(dst);
  });

  it('stores a pack under another name when a destination client planted garbage under the name it was about to take, and the copy restores', async () => {
    const f = await GcFixture.create();
    const files = { 'big.bin': bytes('planted', 40_000), 'small.txt': 'a small file\n' };
    const snap = await f.snapshot(files);
    const src = await Store.open(f.backend);
    const rehearsal = await twin(f);
    await copy(src, rehearsal, [snap]);
    const predicted = new Set(await names(rehearsal, 'data'));
    assert.ok(predicted.size >= 2, 'a data pack and a tree pack');

    const dst = await twin(f);
    const racing = new PlantingPacks(dst, predicted);
    const r = await new SnapshotCopier(src, await Store.open(racing)).run([snap]);
    assert.deepEqual(r.copied, [snap]);
    assert.deepEqual(racing.planted.sort(), [...predicted].sort(), 'garbage sat under every name the copy first chose');
    const written = (await names(dst, 'data')).filter((p) => !predicted.has(p));
    assert.equal(written.length, predicted.size, 'each pack was written under a name of its own');
    await f.assertRestores(snap, files, dst);
  });

  it('fails with NameTakenError, writing nothing under the name, when garbage was planted under the snapshot\'s name just before its save', async () => {
    const f = await GcFixture.create();
    const files = { 'a.txt': 'a file\n' };
    const snap = await f.snapshot(files);
    const dst = await twin(f);
    const racing = new PlantingPacks(dst, new Set([snap]));
    await assert.rejects(new SnapshotCopier(await Store.open(f.backend), await Store.open(racing)).run([snap]), (e: unknown) => e instanceof NameTakenError && e.message.includes(`snapshot ${snap}`));
    assert.deepEqual(racing.planted, [snap]);
    // What copy stored before is valid: the next copy, once the planted object is gone, needs only the snapshot.
    await dst.remove({ type: 'snapshot', name: snap });
    const again = await copy(await Store.open(f.backend), dst, [snap]);
    assert.deepEqual(again.copied, [snap]);
    assert.equal(again.blobsCopied, 0);
    await f.assertRestores(snap, files, dst);
  });

  it('does not take other bytes planted under a snapshot\'s name before the copy for that snapshot, and copies it once they are removed', async () => {
    const f = await GcFixture.create();
    const files = { 'a.txt': 'a file\n' };
    const snap = await f.snapshot(files);
    const dst = await twin(f);
    await dst.save({ type: 'snapshot', name: snap }, Buffer.from('planted by a client that can add objects'));
    const r = await copy(await Store.open(f.backend), dst, [snap]);
    assert.deepEqual(r.present, [], 'the planted object is not taken for the snapshot');
    assert.equal(r.failed.length, 1);
    assert.match(r.failed[0]!.reason, new RegExp(`other bytes under this snapshot's name .*holdfast forget ${snap}`));
    await dst.remove({ type: 'snapshot', name: snap });
    const again = await copy(await Store.open(f.backend), dst, [snap]);
    assert.deepEqual(again.copied, [snap]);
    await f.assertRestores(snap, files, dst);
  });
});

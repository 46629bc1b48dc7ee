/**
 * What an add-only client (one that can add packs, index files, snapshots and
 * markers, and remove nothing) can make the storage owner's keyless prune,
 * check and repair do (docs/format.md §15.10, §18). Each attack is written
 * from the client's side, through an `AppendOnlyBackend` over the shared
 * storage, which lists in name order as S3 does, so that the client can
 * choose names that every reader meets first. Afterwards the genuine objects
 * must still hold every snapshot, byte for byte.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Pruner, PruneRefusedError } from '../../src/jobs/prune/pruner.js';
import { rebuildIndex } from '../../src/jobs/repair/index-rebuilder.js';
import { repairSnapshots } from '../../src/jobs/repair/snapshot-repairer.js';
import { sha256 } from '../../src/core/crypto.js';
import { AppendOnlyBackend } from '../../src/storage/append-only-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import type { Backend, ObjectInfo, ObjectType } from '../../src/storage/backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import { encodeIndex, type IndexFile, type IndexedPack } from '../../src/repo/index-file.js';
import { encodeMarker, newMarker } from '../../src/repo/deletion-marker.js';
import { PackWriter } from '../../src/repo/pack.js';
import { RepoState } from '../../src/repo/repo-state.js';
import { GcFixture, bytes, names, type Files } from './gc-fixture.js';

const GRACE = 60_000;

/** Storage that lists every type in name order, as S3 does. */
class NameOrderBackend extends WrapperBackend {
  override async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const all: ObjectInfo[] = [];
    for await (const o of this.inner.list(type)) all.push(o);
    yield* all.sort((a, b) => (a.name < b.name ? -1 : 1));
  }
}

/** The client with backup-only credentials: it adds objects, and remembers what it added. */
class AddOnlyClient {
  readonly added = new Set<string>();
  private readonly backend: Backend;

  constructor(storage: Backend) {
    this.backend = new AppendOnlyBackend(storage);
  }

  private async save(type: ObjectType, bytes: Buffer): Promise<string> {
    const name = sha256(bytes).toString('hex');
    await this.backend.save({ type, name }, bytes);
    this.added.add(`${type}/${name}`);
    return name;
  }

  /** An index file whose name sorts before every index file there is (a superseded id is ignored by readers, so it is free to vary). */
  async index(f: IndexFile, storage: Backend): Promise<string> {
    const first = (await names(storage, 'index'))[0] ?? 'g';
    for (;;) {
      const b = encodeIndex({ packs: f.packs, supersedes: [randomBytes(32).toString('hex')] });
      if (sha256(b).toString('hex') < first) return this.save('index', b);
    }
  }

  /** A pack holding random bytes under each of `blobs`' ids, lengths and types: a plain header that matches, content that does not. */
  async fakePack(blobs: readonly IndexedPack['blobs'][number][]): Promise<IndexedPack> {
    const w = new PackWriter();
    for (const b of blobs) w.add(b.type, b.id, b.flags, b.rawLength, randomBytes(b.length));
    const { bytes: packBytes, blobs: header } = w.finish();
    const pack = await this.save('data', Buffer.from(packBytes));
    return { pack, blobs: header };
  }

  /**
   * A pack that holds a genuine pack's sealed bytes, blob for blob, with one
   * field of each header entry changed that the blob's AAD binds: name,
   * header and index all agree, and no copy in it authenticates.
   */
  async mirror(storage: Backend, pack: string, blobs: readonly IndexedPack['blobs'][number][], change: 'flags' | 'rawLength'): Promise<IndexedPack> {
    const bytes = await storage.load({ type: 'data', name: pack });
    const w = new PackWriter();
    for (const b of blobs) {
      const sealed = bytes.subarray(b.offset, b.offset + b.length);
      if (change === 'flags') w.add(b.type, b.id, b.flags ^ 1, b.rawLength, sealed);
      else w.add(b.type, b.id, b.flags, b.rawLength + 1, sealed);
    }
    const { bytes: packBytes, blobs: header } = w.finish();
    return { pack: await this.save('data', Buffer.from(packBytes)), blobs: header };
  }

  /** A deletion marker dated `back` ms before `now`. */
  async marker(packs: readonly IndexedPack[], now: number, back: number): Promise<string> {
    return this.save('deletion', encodeMarker(newMarker(packs, [], new Date(now - back))));
  }
}

/**
 * A copy of the storage without what the client added, its index rebuilt
 * from the pack headers: what the genuine writers stored and the owner's
 * prunes kept, which must hold every snapshot without the client's copies.
 */
async function genuine(storage: Backend, added: ReadonlySet<string>, f: GcFixture): Promise<Backend> {
  const copy = new MemoryBackend();
  for (const type of ['config', 'key', 'data', 'snapshot'] as const) {
    for await (const o of storage.list(type)) {
      if (!added.has(`${type}/${o.name}`)) await copy.save({ type, name: o.name }, await storage.load({ type, name: o.name }));
    }
  }
  await rebuildIndex(f.plain(copy));
  return copy;
}

async function setup(): Promise<{ f: GcFixture; s: string; files: Files; packs: string[]; client: AddOnlyClient; live: IndexedPack['blobs'][number][] }> {
  const f = await GcFixture.create({ backend: new NameOrderBackend(new MemoryBackend()) });
  const files: Files = { 'a.bin': bytes('a', 150_000), 'b.bin': bytes('b', 70_000), 'd/c.txt': 'c' };
  const s = await f.snapshot(files);
  const state = await RepoState.load(f.plain());
  const live = [...state.packBlobs.values()].flat();
  return { f, s, files, packs: await names(f.backend, 'data'), client: new AddOnlyClient(f.backend), live };
}

async function prunes(f: GcFixture, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Pruner(f.plain(), { graceMs: GRACE, now: f.clock }).run();
    f.advance(GRACE);
  }
}

async function assertPacksKept(f: GcFixture, packs: readonly string[]): Promise<void> {
  const now = new Set(await names(f.backend, 'data'));
  assert.deepEqual(packs.filter((p) => !now.has(p)), [], 'every pack the snapshot needs is still there');
}

describe('an add-only client against the keyless prune', () => {
  it('index files that list every pack as empty: two prunes past the grace period delete nothing the snapshot needs', async () => {
    const { f, s, files, packs, client } = await setup();
    await client.index({ packs: packs.map((pack) => ({ pack, blobs: [] })), supersedes: [] }, f.backend);
    await prunes(f, 3);
    await assertPacksKept(f, packs);
    await f.assertRestores(s, files);
    await f.assertCheckPasses();
  });

  it('a pack of garbage under every live id, with a matching header and an index naming it: the genuine packs stay', async () => {
    const { f, s, files, packs, client, live } = await setup();
    const fake = await client.fakePack(live);
    await client.index({ packs: [fake], supersedes: [] }, f.backend);

    // Keyless check cannot tell the copies apart, but says that they differ.
    const keyless = await f.check({ readData: true, keyless: true });
    assert.ok(keyless.warnings.some((w) => w.object === `pack ${fake.pack}` && /stored differently/.test(w.message)), JSON.stringify(keyless.warnings));
    // With the key, the planted copies are named.
    const keyed = await f.check({ readData: true });
    assert.ok(keyed.badCopies.length >= live.length && keyed.badCopies.every((c) => c.pack === fake.pack));

    await prunes(f, 3);
    await assertPacksKept(f, packs);
    await f.assertRestores(s, files, await genuine(f.backend, client.added, f));
  });

  it('a backdated marker that condemns every genuine pack, beside a pack of garbage under the same ids: the sweep copies the genuine bytes first', async () => {
    const { f, s, files, client, live } = await setup();
    const state = await RepoState.load(f.plain());
    const fake = await client.fakePack(live);
    await client.index({ packs: [fake], supersedes: [] }, f.backend);
    await client.marker([...state.packBlobs].map(([pack, blobs]) => ({ pack, blobs })), f.now, 10 * GRACE);
    await prunes(f, 2);
    await f.assertRestores(s, files, await genuine(f.backend, client.added, f));
  });

  for (const change of ['flags', 'rawLength'] as const) {
    it(`a mirror of every genuine pack with each entry's ${change} changed, and a backdated marker: keyless check warns, and the sweep keeps a copy that authenticates`, async () => {
      const { f, s, files, client } = await setup();
      const state = await RepoState.load(f.plain());
      const genuinePacks = [...state.packBlobs].map(([pack, blobs]) => ({ pack, blobs }));
      const mirrors: IndexedPack[] = [];
      for (const p of genuinePacks) mirrors.push(await client.mirror(f.backend, p.pack, p.blobs, change));
      await client.index({ packs: mirrors, supersedes: [] }, f.backend);

      // Keyless check cannot open either copy, but sees that they would not authenticate alike.
      const keyless = await f.check({ readData: true, keyless: true });
      for (const m of mirrors) assert.ok(keyless.warnings.some((w) => w.object === `pack ${m.pack}` && /stored differently/.test(w.message)), JSON.stringify(keyless.warnings));

      await client.marker(genuinePacks, f.now, 10 * GRACE);
      const report = await new Pruner(f.plain(), { graceMs: GRACE, now: f.clock }).run();
      assert.ok(report.sweep.packsDeleted > 0 && report.sweep.blobsRescued >= genuinePacks.reduce((n, p) => n + p.blobs.length, 0), JSON.stringify(report.sweep));
      f.advance(GRACE);
      await prunes(f, 2);
      await f.assertRestores(s, files, await genuine(f.backend, client.added, f));
      await f.assertCheckPasses(await genuine(f.backend, client.added, f));
    });
  }

  it('index records that move live blobs out of the packs that hold them do not get those packs condemned', async () => {
    const { f, s, files, packs, client, live } = await setup();
    // Every live blob claimed by the client's own pack (garbage), and every genuine pack claimed empty.
    const fake = await client.fakePack(live);
    await client.index({ packs: [fake, ...packs.map((pack) => ({ pack, blobs: [] }))], supersedes: [] }, f.backend);
    await prunes(f, 3);
    await assertPacksKept(f, packs);
    await f.assertRestores(s, files, await genuine(f.backend, client.added, f));
  });

  it('index files that claim one live blob at 20,000 places in a genuine pack: each claim counts once, the header settles the pack, and prunes keep it', async () => {
    const { f, s, files, packs, client } = await setup();
    const [pack, blobs] = [...(await RepoState.load(f.plain())).packBlobs][0]!;
    const b = blobs[0]!;
    const claimed = Array.from({ length: 20_000 }, (_, i) => ({ ...b, offset: b.offset + 1 + i }));
    // The same description twice (two index files), and once in another order.
    for (const l of [claimed, claimed, claimed.slice().reverse()]) await client.index({ packs: [{ pack, blobs: l }], supersedes: [] }, f.backend);

    const state = await RepoState.load(f.plain());
    assert.equal(state.locations(b.id).length, 20_001);
    assert.equal(state.descriptionsOf(pack).length, 3);
    assert.ok(state.disputed.has(pack));
    assert.equal(state.claims(pack).length, blobs.length + 20_000);
    await state.readHeader(f.plain(), pack);
    assert.deepEqual(state.locations(b.id), [{ ...b, pack }]);
    assert.deepEqual(state.claims(pack), blobs);

    await prunes(f, 2);
    await assertPacksKept(f, packs);
    await f.assertRestores(s, files, await genuine(f.backend, client.added, f));
  });

  it('an index record that puts a live blob past the end of a genuine pack does not make repair snapshots --forget-damaged remove the snapshot', async () => {
    const { f, s, client } = await setup();
    const state = await RepoState.load(f.plain());
    const [pack, blobs] = [...state.packBlobs][0]!;
    await client.index({ packs: [{ pack, blobs: blobs.map((b) => ({ ...b, offset: b.offset + 1_000_000 })) }], supersedes: [] }, f.backend);
    const r = await repairSnapshots(f.plain(), { mode: 'forget', readData: { kind: 'all' } });
    assert.deepEqual(r.removed, []);
    assert.deepEqual(await names(f.backend, 'snapshot'), [s]);
  });
});

describe('an add-only client against keyless repair', () => {
  it('a marker from the future that calls every genuine pack empty: repair index keeps their blobs, and repair snapshots --forget-damaged removes nothing', async () => {
    const { f, s, files, packs, client } = await setup();
    await client.marker(packs.map((pack) => ({ pack, blobs: [] })), f.now, -365 * 86_400_000);
    await rebuildIndex(f.plain());
    const r = await repairSnapshots(f.plain(), { mode: 'forget' });
    assert.deepEqual(r.removed, []);
    assert.deepEqual(await names(f.backend, 'snapshot'), [s]);
    await prunes(f, 2);
    await assertPacksKept(f, packs);
    await f.assertRestores(s, files);
  });
});

describe('the owner with the password', () => {
  it('repair snapshots --read-data removes a planted pack after copying what in it authenticates; the repository then restores as it is', async () => {
    const { f, s, files, packs, client, live } = await setup();
    // The planted pack also holds one genuine copy, which a backup may have deduplicated against.
    const genuineCopy = await f.open();
    const extra = await f.snapshot({ 'e.bin': bytes('extra', 5000) }, genuineCopy);
    const extraBlobs = (await genuineCopy.loadSnapshot(extra)).blobs;
    const [pack0, blobs0] = [...(await RepoState.load(f.plain())).packBlobs].find(([, b]) => b.some((x) => x.id === extraBlobs[0]))!;
    const entry = blobs0.find((x) => x.id === extraBlobs[0])!;
    const w = new PackWriter();
    for (const b of live) w.add(b.type, b.id, b.flags, b.rawLength, randomBytes(b.length));
    w.add(entry.type, entry.id, entry.flags, entry.rawLength, await f.backend.load({ type: 'data', name: pack0 }, { offset: entry.offset, length: entry.length }));
    const { bytes: packBytes, blobs } = w.finish();
    const planted = sha256(Buffer.from(packBytes)).toString('hex');
    await new AppendOnlyBackend(f.backend).save({ type: 'data', name: planted }, Buffer.from(packBytes));
    await client.index({ packs: [{ pack: planted, blobs }], supersedes: [] }, f.backend);
    // A reader meets the planted copies first and reads past them (test/cli/planted-copies.test.ts).
    await f.assertRestores(s, files);

    const r = await repairSnapshots(f.plain(), { mode: 'mark', readData: { kind: 'all' }, keyed: await f.openTolerant() });
    assert.deepEqual(r.removedPacks, [planted]);
    assert.equal(r.salvagedBlobs, 1);
    assert.ok(!(await names(f.backend, 'data')).includes(planted));
    await f.assertRestores(s, files);
    await f.assertRestores(extra, { 'e.bin': bytes('extra', 5000) });
    await f.assertCheckPasses();
    await assertPacksKept(f, packs);
  });
});

describe('the owner with the password, against mirrored packs', () => {
  it('repair snapshots --read-data removes packs that hold genuine sealed bytes under changed header entries, and only those', async () => {
    const { f, s, files, packs, client } = await setup();
    const state = await RepoState.load(f.plain());
    const mirrors: string[] = [];
    for (const [pack, blobs] of state.packBlobs) {
      const m = await client.mirror(f.backend, pack, blobs, 'flags');
      await client.index({ packs: [m], supersedes: [] }, f.backend);
      mirrors.push(m.pack);
    }
    const keyed = await f.check({ readData: true });
    assert.deepEqual([...new Set(keyed.badCopies.map((c) => c.pack))].sort(), [...mirrors].sort());
    const r = await repairSnapshots(f.plain(), { mode: 'mark', readData: { kind: 'all' }, keyed: await f.openTolerant() });
    assert.deepEqual([...r.removedPacks].sort(), [...mirrors].sort());
    assert.deepEqual((await names(f.backend, 'data')).sort(), [...packs].sort());
    await f.assertRestores(s, files);
    await f.assertCheckPasses();
  });
});

describe('prune refuses an incomplete repository', () => {
  it('a live blob in no pack: prune stops, writes no marker and deletes nothing', async () => {
    const f = await GcFixture.create();
    const kept = await f.snapshot({ 'a.bin': bytes('keep', 100_000) });
    const gone = await f.snapshot({ 'b.bin': bytes('drop', 100_000) });
    await f.forget(gone);
    const r = await f.open();
    const pack = r.index.lookup(r.blobId(bytes('keep', 100_000).subarray(0, f.chunk)))!.pack;
    await f.backend.remove({ type: 'data', name: pack });
    const before = await f.objects();
    await assert.rejects(new Pruner(f.plain(), { graceMs: GRACE, now: f.clock }).run(), (e: unknown) =>
      e instanceof PruneRefusedError && /referenced by snapshots are in no pack/.test(e.message));
    assert.deepEqual(await f.objects(), before);
    assert.equal((await f.check({ keyless: true })).damaged[0]?.id, kept);
  });
});

describe('prune rescue and damaged copies', () => {
  it('a truncated copy written by a repacking prune does not count: the sweep keeps the marked packs\' bytes, and repair index + restore recover everything', async () => {
    const keep: Record<string, Buffer> = {};
    const all: Record<string, Buffer> = {};
    for (let i = 0; i < 24; i++) {
      keep[`k${i}`] = bytes(`keep${i}`, 4000);
      all[`k${i}`] = keep[`k${i}`]!;
      all[`d${i}`] = bytes(`drop${i}`, 6000);
    }
    const f = await GcFixture.create();
    const both = await f.snapshot(all);
    const only = await f.snapshot(keep);
    await f.forget(both);
    const before = new Set(await names(f.backend, 'data'));
    const first = await new Pruner(f.plain(), { graceMs: GRACE, now: f.clock, maxUnused: 0.3 }).run();
    assert.ok(first.mark.repackedPacks > 0 && first.mark.packsWritten > 0);
    const copies = (await names(f.backend, 'data')).filter((p) => !before.has(p));
    // Storage damage to the new copies (same names): they lose their second half.
    for (const c of copies) await f.tamper('data', c, (b) => b.subarray(0, b.length >> 1));
    f.advance(GRACE);
    const warnings: string[] = [];
    const second = await new Pruner(f.plain(), { graceMs: GRACE, now: f.clock, maxUnused: 0.3, onWarning: (m) => warnings.push(m) }).run();
    assert.ok(second.sweep.blobsRescued > 0, 'the live blobs were copied again out of the marked packs');
    assert.ok(warnings.some((w) => /does not match its checksum/.test(w)), warnings.join('\n'));
    await rebuildIndex(f.plain());
    await f.assertRestores(only, keep);
  });
});

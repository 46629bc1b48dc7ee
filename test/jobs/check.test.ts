/**
 * Check and repair on an in-memory repository: damage found (flipped byte,
 * truncated pack, missing pack, damaged index, incomplete reference list),
 * reported as the snapshots and files it affects, with and without the key;
 * subsets that cover the repository over time; repair index and repair
 * snapshots; copies that never take the name of the pack they copy.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Checker } from '../../src/jobs/check/checker.js';
import { bucketOf, parseSubset, selectPacks } from '../../src/jobs/check/subset.js';
import { condemnDamagedPacks } from '../../src/jobs/repair/damaged-packs.js';
import { rebuildIndex } from '../../src/jobs/repair/index-rebuilder.js';
import { repairSnapshots } from '../../src/jobs/repair/snapshot-repairer.js';
import { Pruner } from '../../src/jobs/prune/pruner.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { PackCopier } from '../../src/repo/pack-copier.js';
import { RepoState } from '../../src/repo/repo-state.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { BlobType } from '../../src/repo/pack.js';
import { sha256 } from '../../src/core/crypto.js';
import { tempDir, removeTree } from '../fixtures/tree.js';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { GcFixture, bytes, names, type Files } from './gc-fixture.js';

/** A repository with two snapshots; returns the pack holding the first chunk of `victim.bin`. */
async function damaged(): Promise<{ f: GcFixture; s1: string; s2: string; files1: Files; files2: Files; pack: string }> {
  const f = await GcFixture.create();
  // victim.bin comes first and fills the first pack on its own (8 chunks of 8 KiB reach the 64 KiB pack size).
  const files1: Files = { 'victim.bin': bytes('victim', 100_000), 'ok.bin': bytes('ok', 20_000), 'sub/fine.txt': 'fine' };
  const s1 = await f.snapshot(files1);
  const files2: Files = { 'other.bin': bytes('other', 20_000) };
  const s2 = await f.snapshot(files2);
  const r = await f.open();
  const loc = r.index.lookup(r.blobId(bytes('victim', 100_000).subarray(0, f.chunk)))!;
  return { f, s1, s2, files1, files2, pack: loc.pack };
}

const flip = (at: number) => (b: Buffer): Buffer => {
  b[at]! ^= 0x40;
  return b;
};

describe('check', () => {
  it('passes on a sound repository, with and without the key', async () => {
    const { f } = await damaged();
    await f.assertCheckPasses();
    const structure = await f.check();
    assert.deepEqual(structure.errors, []);
    assert.equal(structure.packsRead, 0);
  });

  it('a flipped byte: --read-data names the snapshot and the file; the other files still restore', async () => {
    const { f, s1, s2, files1, files2, pack } = await damaged();
    await f.tamper('data', pack, flip(100)); // inside the first blob
    const keyed = await f.check({ readData: true });
    assert.ok(keyed.errors.some((e) => e.object === `pack ${pack}` && /do not match its name/.test(e.message)));
    assert.equal(keyed.damaged.length, 1);
    const d = keyed.damaged[0]!;
    assert.equal(d.id, s1);
    assert.equal(d.certain, true);
    assert.deepEqual(d.files, ['/victim.bin']);
    // Keyless: the pack fails its checksum; which blobs is unknown, so the snapshot is "possibly" damaged.
    const keyless = await f.check({ readData: true, keyless: true });
    assert.ok(keyless.errors.some((e) => e.object === `pack ${pack}`));
    assert.equal(keyless.damaged[0]?.id, s1);
    assert.equal(keyless.damaged[0]?.certain, false);
    // Structure alone does not read blob bytes: it cannot see this.
    assert.deepEqual((await f.check()).errors, []);
    // Undamaged files restore.
    await f.assertRestores(s2, files2);
    const target = await tempDir('check-restore');
    try {
      const r = await f.open();
      const res = await new Restorer(r, target).run((await r.loadSnapshot(s1)).tree);
      assert.deepEqual(res.failed.map((x) => x.path), ['/victim.bin']);
      assert.ok((await fs.readFile(join(target, 'ok.bin'))).equals(files1['ok.bin'] as Buffer));
      assert.equal(await fs.readFile(join(target, 'sub', 'fine.txt'), 'utf8'), 'fine');
    } finally {
      await removeTree(target);
    }
  });

  it('a truncated pack: structure check sees it, the blobs after the cut are named, the ones before still restore', async () => {
    const { f, s1, pack } = await damaged();
    const size = (await f.backend.stat({ type: 'data', name: pack }))!.size;
    await f.tamper('data', pack, (b) => b.subarray(0, Math.floor(size * 0.6)));
    const structure = await f.check();
    assert.ok(structure.errors.some((e) => e.object === `pack ${pack}` && /header cannot be read/.test(e.message)));
    for (const keyless of [false, true]) {
      const r = await f.check({ readData: true, keyless });
      assert.equal(r.damaged.length, 1, `keyless=${keyless}`);
      assert.equal(r.damaged[0]!.id, s1);
      assert.ok(r.lostBlobs.length > 0, 'blobs cut off are lost, key or no key');
      if (!keyless) assert.deepEqual(r.damaged[0]!.files, ['/victim.bin']);
    }
  });

  it('a missing pack: the snapshot and its files are named without reading any data', async () => {
    const { f, s1, pack } = await damaged();
    await f.backend.remove({ type: 'data', name: pack });
    const r = await f.check();
    assert.ok(r.errors.some((e) => /does not exist/.test(e.message)));
    assert.equal(r.damaged[0]?.id, s1);
    assert.deepEqual(r.damaged[0]?.files, ['/victim.bin']);
    const keyless = await f.check({ keyless: true });
    assert.equal(keyless.damaged[0]?.id, s1);
    assert.equal(keyless.damaged[0]?.certain, true);
  });

  it('a missing pack taken out of use: the next backup stores its blobs again, and a prune drops what the index still said of it', async () => {
    const { f, s1, files1, pack } = await damaged();
    await f.backend.remove({ type: 'data', name: pack });
    const found = await f.check({ keyless: true });
    assert.deepEqual(found.missingPacks, [pack]);
    const condemned = await condemnDamagedPacks(f.plain(), found.missingPacks, new Date(f.now));
    assert.deepEqual(condemned.condemned, [pack]);
    const marked = await f.check({ keyless: true });
    assert.deepEqual(marked.missingPacks, [], 'a marked pack is being taken out of use, not missing');
    assert.equal(marked.damaged[0]?.id, s1, 'its blobs are still lost');
    // The machine still has the files: the next backup stores victim.bin again rather than deduplicating against the gone pack.
    await f.snapshot(files1);
    await f.assertCheckPasses();
    await f.assertRestores(s1, files1);
    f.advance(120_000);
    await new Pruner(f.plain(), { graceMs: 60_000, now: f.clock }).run();
    assert.deepEqual(await names(f.backend, 'deletion'), [], 'the marker is swept');
    const state = await RepoState.load(f.plain());
    assert.equal(state.packBlobs.has(pack), false, 'no index file names the gone pack any more');
    await f.assertCheckPasses();
    await f.assertRestores(s1, files1);
  });

  it('a lost folder listing is reported as the folder', async () => {
    const { f, s1 } = await damaged();
    const r = await f.open();
    const root = await r.loadTree((await r.loadSnapshot(s1)).tree);
    const sub = root.find((n) => n.name.toString() === 'sub')!.subtree!;
    const loc = r.index.lookup(sub)!;
    await f.tamper('data', loc.pack, flip(loc.offset + 20));
    const rep = await f.check({ readData: true });
    const d = rep.damaged.find((x) => x.id === s1)!;
    assert.deepEqual(d.dirs, ['/sub']);
  });

  it('a damaged index file and an incomplete reference list are errors', async () => {
    const { f } = await damaged();
    const [index] = await names(f.backend, 'index');
    await f.tamper('index', index!, flip(10));
    assert.ok((await f.check()).errors.some((e) => e.object === `index ${index}`));

    const g = await GcFixture.create();
    const r = (await g.open()).newWriter();
    const { id: blob } = await r.saveBlob(BlobType.Data, bytes('x', 1000));
    const meta = { mode: 0o644, uid: 0, gid: 0, mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1 };
    const tree = await r.saveTree([{ ...meta, name: Buffer.from('x'), type: 'file', size: 1000, content: [blob] }]);
    await r.flush();
    await r.saveSnapshot(g.snapshotOf(tree, [tree], new Date())); // the data blob is missing from the plain list
    const rep = await g.check();
    assert.ok(rep.errors.some((e) => /missing from its plain reference list/.test(e.message)));
  });
});

describe('check --read-data-subset', () => {
  it('parses n/t, x% and sizes', () => {
    assert.deepEqual(parseSubset('2/5'), { kind: 'bucket', n: 2, of: 5 });
    assert.deepEqual(parseSubset('10%'), { kind: 'fraction', fraction: 0.1 });
    assert.deepEqual(parseSubset('500M'), { kind: 'bytes', bytes: 500 * 1024 ** 2 });
    assert.deepEqual(parseSubset('2GiB'), { kind: 'bytes', bytes: 2 * 1024 ** 3 });
    for (const bad of ['0/3', '4/3', '0%', '101%', 'x', '1/0']) assert.throws(() => parseSubset(bad), /bad subset/);
  });

  it('n/t: buckets are disjoint and together cover every pack', () => {
    const packs = new Map<string, number>();
    for (let i = 0; i < 300; i++) packs.set(sha256(Buffer.from(String(i))).toString('hex'), 1000);
    const seen = new Set<string>();
    for (let n = 1; n <= 7; n++) {
      const sel = selectPacks(packs, { kind: 'bucket', n, of: 7 });
      assert.ok(sel.length > 20 && sel.length < 70, `bucket ${n} of 7 holds ${sel.length} of 300`);
      for (const p of sel) {
        assert.ok(!seen.has(p));
        assert.equal(bucketOf(p, 7), n);
        seen.add(p);
      }
    }
    assert.equal(seen.size, 300);
  });

  it('x% and SIZE pick random packs within bounds', () => {
    const packs = new Map<string, number>();
    for (let i = 0; i < 100; i++) packs.set(sha256(Buffer.from(String(i))).toString('hex'), 1000 + i);
    assert.equal(selectPacks(packs, { kind: 'fraction', fraction: 0.1 }).length, 10);
    const a = selectPacks(packs, { kind: 'fraction', fraction: 0.5 });
    const b = selectPacks(packs, { kind: 'fraction', fraction: 0.5 });
    assert.notDeepEqual(a, b, 'different runs read different packs');
    const sized = selectPacks(packs, { kind: 'bytes', bytes: 10_000 });
    const total = sized.reduce((n, p) => n + packs.get(p)!, 0);
    assert.ok(total <= 10_000 && total > 8_000, `read ${total} bytes for a 10000-byte budget`);
  });

  it('Ctrl-C ends a pack read that storage is slow to answer, with the reason', { timeout: 60_000 }, async () => {
    const { f } = await damaged();
    // Every pack read hangs for an hour unless its signal ends it.
    const slow = new FaultBackend(f.backend, [{ op: 'load', type: 'data', delayMs: 3_600_000 }]);
    const ac = new AbortController();
    const reason = new Error('interrupted');
    const checking = new Checker(f.plain(slow), { keyed: await f.openTolerant(), readData: { kind: 'bucket', n: 1, of: 1 }, signal: ac.signal }).run();
    while (slow.faults === 0) await new Promise((r) => setImmediate(r));
    ac.abort(reason);
    await assert.rejects(checking, (e: unknown) => e === reason);
  });

  it('a subset finds damage in the packs it reads', async () => {
    const { f, pack } = await damaged();
    await f.tamper('data', pack, flip(100));
    const n = bucketOf(pack, 3);
    const hit = await new Checker(f.plain(), { keyed: await f.openTolerant(), readData: { kind: 'bucket', n, of: 3 } }).run();
    assert.equal(hit.damaged.length, 1);
    const miss = await new Checker(f.plain(), { keyed: await f.openTolerant(), readData: { kind: 'bucket', n: (n % 3) + 1, of: 3 } }).run();
    assert.equal(miss.damaged.length, 0);
  });
});

describe('repair', () => {
  it('repair index after every index file is deleted: everything restores', async () => {
    const { f, s1, s2, files1, files2 } = await damaged();
    for (const n of await names(f.backend, 'index')) await f.backend.remove({ type: 'index', name: n });
    await assert.rejects(f.files(s1), /not in the repository index/);
    const r = await rebuildIndex(f.plain());
    assert.equal(r.unreadable.length, 0);
    assert.ok(r.blobs > 0);
    await f.assertRestores(s1, files1);
    await f.assertRestores(s2, files2);
    await f.assertCheckPasses();
  });

  it('repair index keeps what the old index knew about a pack whose header is cut off', async () => {
    const { f, s1, pack } = await damaged();
    const size = (await f.backend.stat({ type: 'data', name: pack }))!.size;
    await f.tamper('data', pack, (b) => b.subarray(0, Math.floor(size * 0.6)));
    const r = await rebuildIndex(f.plain());
    assert.equal(r.unreadable.length, 1);
    assert.ok(r.unreadable[0]!.salvaged > 0, 'the blobs before the cut stay indexed');
    const check = await f.check({ readData: true });
    assert.deepEqual(check.damaged.map((d) => d.files), [['/victim.bin']]);
    assert.equal(check.damaged[0]!.id, s1);
  });

  it('repair snapshots --forget-damaged removes what references lost data; check then passes', async () => {
    const { f, s1, s2, files2, pack } = await damaged();
    await f.backend.remove({ type: 'data', name: pack });
    const r = await repairSnapshots(f.plain(), { mode: 'forget' }); // keyless
    assert.deepEqual(r.removed.map((x) => x.id), [s1]);
    assert.deepEqual(await names(f.backend, 'snapshot'), [s2]);
    await f.assertRestores(s2, files2);
    const check = await f.check();
    assert.deepEqual(check.damaged, []);
  });

  for (const mode of ['forget', 'mark'] as const) {
    it(`a pack no index file lists is not lost: check says to run repair index, repair snapshots (${mode}) leaves the snapshot, and after repair index it restores`, async () => {
      const { f, s1, s2, files1, files2, pack } = await damaged();
      // The pack's record is dropped from the index (a writer whose index file failed to save leaves the same).
      const store = f.plain();
      for (const [name, file] of (await store.loadIndexFiles()).ok) {
        if (!file.packs.some((p) => p.pack === pack)) continue;
        await store.saveIndex({ packs: file.packs.filter((p) => p.pack !== pack), supersedes: [] });
        await f.backend.remove({ type: 'index', name });
      }
      const held = (await store.readPackHeader(pack)).map((b) => b.id);
      for (const keyless of [true, false]) {
        const check = await f.check({ keyless, readData: !keyless });
        assert.deepEqual(check.lostBlobs, []);
        assert.deepEqual(check.damaged, []);
        assert.deepEqual(check.unindexedBlobs, [...new Set(held)].sort());
        assert.ok(check.errors.length > 0 && check.errors.every((e) => e.message.includes(`only in pack ${pack}, which no index file lists`) && e.message.includes('holdfast repair index')), JSON.stringify(check.errors));
      }
      const r = await repairSnapshots(f.plain(), { mode, ...(mode === 'mark' ? { keyed: await f.openTolerant() } : {}) });
      assert.deepEqual(r.removed, []);
      assert.deepEqual(r.rewritten, []);
      assert.deepEqual(r.skipped.map((x) => x.id), [s1]);
      assert.match(r.skipped[0]!.reason, /not lost.*holdfast repair index/);
      assert.deepEqual(await names(f.backend, 'snapshot'), [s1, s2].sort());
      await rebuildIndex(f.plain());
      await f.assertRestores(s1, files1);
      await f.assertRestores(s2, files2);
      await f.assertCheckPasses();
    });
  }

  it('repair snapshots --mark-damaged keeps the rest, marks the damaged file, and never restores it as whole', async () => {
    const { f, s1, files1, pack } = await damaged();
    await f.tamper('data', pack, flip(100));
    const keyed = await f.openTolerant();
    const r = await repairSnapshots(f.plain(), { mode: 'mark', keyed, readData: { kind: 'all' } });
    assert.equal(r.rewritten.length, 1);
    assert.deepEqual(r.rewritten[0]!.files, ['/victim.bin']);
    const repaired = r.rewritten[0]!.to;
    assert.ok(!(await names(f.backend, 'snapshot')).includes(s1), 'the original is replaced');
    assert.ok(r.marker, 'the damaged pack is marked for deletion after its intact blobs were copied');
    const snap = await (await f.open()).loadSnapshot(repaired);
    assert.equal(snap.incomplete, true);
    // Restore: the damaged file is reported, never written; the rest is byte for byte.
    const target = await tempDir('repaired');
    try {
      const rr = await f.open();
      const res = await new Restorer(rr, target).run(snap.tree);
      assert.equal(res.failed.length, 1);
      assert.match(res.failed[0]!.error, /marked damaged/);
      await assert.rejects(fs.stat(join(target, 'victim.bin')));
      assert.ok((await fs.readFile(join(target, 'ok.bin'))).equals(files1['ok.bin'] as Buffer));
    } finally {
      await removeTree(target);
    }
    // Check passes (the damaged pack is only marked now), and after the grace period prune removes it.
    const after = await f.check({ readData: true });
    assert.deepEqual(after.errors, []);
    f.advance(24 * 3600_000);
    await new Pruner(f.plain(), { graceMs: 60_000, now: f.clock }).run();
    assert.ok(!(await names(f.backend, 'data')).includes(pack));
    await f.assertCheckPasses();
  });
});

describe('copies of packs', () => {
  it('never get the name of an existing pack, even when they hold exactly its blobs', async () => {
    const f = await GcFixture.create();
    const r = (await f.open()).newWriter();
    await r.saveTree([]);
    await r.flush();
    const [pack] = await names(f.backend, 'data');
    const plain = f.plain();
    const blobs = await plain.readPackHeader(pack!, (await f.backend.stat({ type: 'data', name: pack! }))!.size);
    const present = new Set([pack!]);
    const copy = async (): Promise<string> => {
      const c = new PackCopier(f.backend, f.repo.config.packSize, (n) => present.has(n));
      for (const b of blobs) await c.add(b, await f.backend.load({ type: 'data', name: pack! }, { offset: b.offset, length: b.length }));
      const [p] = await c.finish();
      present.add(p!.pack);
      return p!.pack;
    };
    const first = await copy();
    const second = await copy();
    assert.notEqual(first, pack);
    assert.notEqual(second, first, 'a copy of the same blobs again gets yet another name');
    await f.assertCheckPasses();
  });
});

// The compact in-memory index (MasterIndex over IdTable) against a model: the
// Map of hex ids to location objects it replaced, which says what every
// question means (docs/format.md §15.10: every copy counts, a pending pack's
// blobs are readable but not offered for deduplication). Random packs are
// added live and pending, with duplicates, the same pack twice, several
// copies of a blob and lookups of ids no pack holds; every answer must match.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { IdTable } from '../../src/repo/id-table.js';
import { MasterIndex, checkIndex, decodeIndex, encodeIndex, sameEntry, type BlobLocation, type IndexedPack } from '../../src/repo/index-file.js';
import { BlobType, FLAG_COMPRESSED, type PackedBlob } from '../../src/repo/pack.js';

/** The index as it was: a Map per kind of copy, and a list of the others. */
class ModelIndex {
  private readonly live = new Map<string, BlobLocation>();
  private readonly pending = new Map<string, BlobLocation>();
  private readonly more = new Map<string, BlobLocation[]>();
  readonly packs = new Set<string>();

  addPack(p: IndexedPack): void {
    this.add(p, this.live);
  }

  addPendingPack(p: IndexedPack): void {
    this.add(p, this.pending);
  }

  private add(p: IndexedPack, firsts: Map<string, BlobLocation>): void {
    this.packs.add(p.pack);
    for (const b of p.blobs) {
      const loc = { ...b, pack: p.pack };
      const first = firsts.get(b.id);
      if (!first) {
        firsts.set(b.id, loc);
        continue;
      }
      if (same(first, loc)) continue;
      const l = this.more.get(b.id) ?? [];
      this.more.set(b.id, l);
      if (!l.some((x) => same(x, loc))) l.push(loc);
    }
  }

  copies(id: string): BlobLocation[] {
    const out: BlobLocation[] = [];
    for (const loc of [this.live.get(id), this.pending.get(id), ...(this.more.get(id) ?? [])]) {
      if (loc && !out.some((x) => same(x, loc))) out.push(loc);
    }
    return out;
  }

  hasSeveralCopies(id: string): boolean {
    return this.more.has(id) || (this.live.has(id) && this.pending.has(id));
  }

  lengthsDisagree(id: string): boolean {
    const c = this.copies(id);
    return this.hasSeveralCopies(id) && c.some((l) => l.rawLength !== c[0]!.rawLength);
  }

  has(id: string): boolean {
    return this.live.has(id);
  }

  lookup(id: string): BlobLocation | undefined {
    return this.live.get(id) ?? this.pending.get(id);
  }

  get size(): number {
    return this.live.size;
  }

  entries(): BlobLocation[] {
    return [...this.live.values()];
  }
}

function same(a: BlobLocation, b: BlobLocation): boolean {
  return a.pack === b.pack && sameEntry(a, b);
}

/** A location as a plain object with its fields in one order, for deepEqual. */
function plain(l: BlobLocation | undefined): BlobLocation | undefined {
  return l && { pack: l.pack, id: l.id, type: l.type, flags: l.flags, offset: l.offset, length: l.length, rawLength: l.rawLength };
}

const hexId = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));

/** Few ids, packs and places, so that duplicates, same copies and disagreeing copies are common. */
const world = fc.record({
  ids: fc.uniqueArray(hexId, { minLength: 1, maxLength: 12 }),
  packs: fc.uniqueArray(hexId, { minLength: 1, maxLength: 5 }),
  absent: fc.uniqueArray(hexId, { maxLength: 4 }),
}).chain(({ ids, packs, absent }) => {
  const blob = fc.record({
    id: fc.constantFrom(...ids),
    type: fc.constantFrom(BlobType.Data, BlobType.Tree, BlobType.ImageMap),
    flags: fc.constantFrom(0, FLAG_COMPRESSED),
    offset: fc.constantFrom(0, 100, 2 ** 32 - 1),
    length: fc.constantFrom(1, 100),
    rawLength: fc.constantFrom(0, 100, 2 ** 31),
  });
  const op = fc.record({
    pending: fc.boolean(),
    pack: fc.constantFrom(...packs),
    blobs: fc.array(blob, { maxLength: 6 }),
  });
  return fc.record({
    ids: fc.constant(ids),
    packs: fc.constant(packs),
    absent: fc.constant(absent.filter((a) => !ids.includes(a))),
    ops: fc.array(op, { maxLength: 20 }),
  });
});

describe('MasterIndex', () => {
  it('answers every question as the Map it replaced does', () => {
    fc.assert(
      fc.property(world, ({ ids, packs, absent, ops }) => {
        const index = new MasterIndex();
        const model = new ModelIndex();
        for (const { pending, pack, blobs } of ops) {
          const p: IndexedPack = { pack, blobs: blobs as PackedBlob[] };
          if (pending) {
            index.addPendingPack(p);
            model.addPendingPack(p);
          } else {
            index.addPack(p);
            model.addPack(p);
          }
        }
        // Ids not in any pack, and strings that are not ids (a Map holds no such key either).
        const notIds = ['', 'x', ids[0]!.toUpperCase(), `${ids[0]!.slice(0, 63)}g`, `${ids[0]!}0`, `${ids[0]!.slice(0, 63)}\u0130`];
        for (const id of [...ids, ...absent, ...notIds]) {
          assert.equal(index.has(id), model.has(id), `has ${id}`);
          if (/^[0-9a-f]{64}$/.test(id)) {
            // The same id as bytes, at an odd place in a larger buffer.
            const bytes = Buffer.concat([Buffer.from([7]), Buffer.from(id, 'hex'), Buffer.from([9])]);
            assert.equal(index.hasBytes(bytes, 1), model.has(id), `hasBytes ${id}`);
          }
          assert.deepEqual(plain(index.lookup(id)), plain(model.lookup(id)), `lookup ${id}`);
          assert.equal(index.packOf(id), model.lookup(id)?.pack, `packOf ${id}`);
          assert.deepEqual(index.copies(id).map(plain), model.copies(id).map(plain), `copies ${id}`);
          assert.equal(index.hasSeveralCopies(id), model.hasSeveralCopies(id), `hasSeveralCopies ${id}`);
          assert.equal(index.lengthsDisagree(id), model.lengthsDisagree(id), `lengthsDisagree ${id}`);
        }
        assert.equal(index.size, model.size);
        const byId = (a: BlobLocation | undefined, b: BlobLocation | undefined): number => (a!.id < b!.id ? -1 : 1);
        assert.deepEqual([...index.entries()].map(plain).sort(byId), model.entries().map(plain).sort(byId));
        assert.equal(index.packs.size, model.packs.size);
        for (const p of [...packs, ...absent]) assert.equal(index.packs.has(p), model.packs.has(p), `packs.has ${p}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('fills from index files\' bytes as from their decoded packs, packs marked for deletion as pending', () => {
    fc.assert(
      fc.property(world, fc.integer({ min: 1, max: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), ({ ids, packs, absent, ops }, perFile, marked) => {
        const pending = new Map(packs.filter((_, i) => marked[i]).map((p) => [p, true]));
        const files: Buffer[] = [];
        for (let i = 0; i < ops.length; i += perFile) {
          files.push(encodeIndex({ packs: ops.slice(i, i + perFile).map(({ pack, blobs }) => ({ pack, blobs: blobs as PackedBlob[] })), supersedes: ids.slice(0, i % 3) }));
        }
        const fromBytes = new MasterIndex();
        const decoded = new MasterIndex();
        for (const f of files) {
          fromBytes.addIndexFile(checkIndex(f, 'index'), pending);
          for (const p of decodeIndex(f, 'index').packs) {
            if (pending.has(p.pack)) decoded.addPendingPack(p);
            else decoded.addPack(p);
          }
        }
        for (const id of [...ids, ...absent]) {
          assert.equal(fromBytes.has(id), decoded.has(id), `has ${id}`);
          assert.deepEqual(fromBytes.copies(id).map(plain), decoded.copies(id).map(plain), `copies ${id}`);
        }
        assert.equal(fromBytes.size, decoded.size);
        assert.deepEqual([...fromBytes.entries()].map(plain), [...decoded.entries()].map(plain));
        for (const p of [...packs, ...absent]) assert.equal(fromBytes.packs.has(p), decoded.packs.has(p), `packs.has ${p}`);
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps every one of 50,000 places a blob is claimed at, each once, in the order met', () => {
    // An add-only client can write an index file naming one blob at any number of places
    // (docs/format.md §15.10); every claim counts, and adding them must not cost N² comparisons.
    const id = randomBytes(32).toString('hex');
    const [live, pending, other] = Array.from({ length: 3 }, () => randomBytes(32).toString('hex'));
    const entry = (offset: number, rawLength = 100): PackedBlob => ({ id, type: BlobType.Data, flags: 0, offset, length: 100, rawLength });
    const claimed = Array.from({ length: 50_000 }, (_, i) => entry(i * 7));
    const index = new MasterIndex();
    index.addPendingPack({ pack: pending!, blobs: [entry(5), entry(6)] });
    index.addPack({ pack: live!, blobs: claimed });
    index.addPack({ pack: live!, blobs: claimed.slice().reverse() });
    index.addPendingPack({ pack: pending!, blobs: [entry(6), entry(5)] });
    index.addPack({ pack: other!, blobs: [entry(0, 99)] });

    const want = [
      { ...entry(0), pack: live! },
      { ...entry(5), pack: pending! },
      { ...entry(6), pack: pending! },
      ...claimed.slice(1).map((b) => ({ ...b, pack: live! })),
      { ...entry(0, 99), pack: other! },
    ];
    assert.deepEqual(index.copies(id).map(plain), want.map(plain));
    assert.deepEqual(plain(index.lookup(id)), plain(want[0]));
    assert.equal(index.has(id), true);
    assert.equal(index.hasSeveralCopies(id), true);
    assert.equal(index.lengthsDisagree(id), true, 'the last copy claims another raw length');
    assert.equal(index.size, 1);
    assert.deepEqual([...index.entries()].map(plain), [plain(want[0])]);
  });

  it('refuses an entry the index cannot hold, and a blob id that is not one', () => {
    const pack = randomBytes(32).toString('hex');
    const entry = { id: randomBytes(32).toString('hex'), type: BlobType.Data, flags: 0, offset: 0, length: 1, rawLength: 1 };
    assert.throws(() => new MasterIndex().addPack({ pack, blobs: [{ ...entry, flags: 2 }] }), RangeError);
    assert.throws(() => new MasterIndex().addPack({ pack, blobs: [{ ...entry, id: entry.id.toUpperCase() }] }), /not an id/);
    assert.throws(() => new MasterIndex().addPack({ pack: 'p', blobs: [] }), /not an id/);
  });
});

describe('IdTable', () => {
  it('finds every id it holds across pages and growth, with its words, and none it does not', () => {
    const t = new IdTable(2);
    const ids = Array.from({ length: 20_000 }, () => randomBytes(32).toString('hex'));
    ids.forEach((id, i) => {
      assert.equal(t.add(id), i);
      t.page(i)[t.base(i) + 8] = i;
      t.page(i)[t.base(i) + 9] = 2 ** 32 - 1 - i;
    });
    assert.equal(t.size, ids.length);
    ids.forEach((id, i) => {
      assert.equal(t.find(id), i);
      assert.equal(t.add(id), i, 'adding it again gives the same ordinal');
      assert.equal(t.hexAt(i), id);
      assert.equal(t.page(i)[t.base(i) + 8], i);
      assert.equal(t.page(i)[t.base(i) + 9], 2 ** 32 - 1 - i);
    });
    assert.equal(t.size, ids.length);
    ids.forEach((id, i) => assert.equal(t.findBytes(Buffer.concat([Buffer.alloc(i % 5), Buffer.from(id, 'hex')]), i % 5), i, 'found from its bytes'));
    for (let i = 0; i < 1000; i++) assert.equal(t.find(randomBytes(32).toString('hex')), -1);
    for (let i = 0; i < 1000; i++) assert.equal(t.findBytes(randomBytes(32), 0), -1);
    assert.throws(() => t.findBytes(Buffer.from(ids[0]!, 'hex'), 1), RangeError, 'an id cut short is refused, not read past its end');
    // Ids that differ from a held one in a single word, and in its last bit.
    const near = ids[0]!.slice(0, 56) + (parseInt(ids[0]!.slice(56), 16) ^ 1).toString(16).padStart(8, '0');
    assert.equal(t.find(near), -1);
    assert.equal(t.has(ids[0]!), true);
  });

  it('finds every id after room is made for more, before, between and after adding them', () => {
    const t = new IdTable(0);
    const ids = Array.from({ length: 5000 }, () => randomBytes(32).toString('hex'));
    t.reserve(2000);
    ids.slice(0, 3000).forEach((id) => t.add(id));
    t.reserve(100);
    t.reserve(40_000);
    ids.slice(3000).forEach((id) => t.add(id));
    assert.equal(t.size, ids.length);
    ids.forEach((id, i) => assert.equal(t.find(id), i));
    for (let i = 0; i < 1000; i++) assert.equal(t.find(randomBytes(32).toString('hex')), -1);
  });

  it('hashes under a key of its own: ids built to share a hash whatever the seed do not', () => {
    // The reviewer's family: each id flips the top bit of some of the first 7 words and
    // cancels the difference it leaves in the next word; an unkeyed multiply-xor chain
    // started from a seed gave all 128 the same hash.
    const base = new Uint32Array(randomBytes(32).buffer.slice(0));
    const family = Array.from({ length: 128 }, (_, m) => {
      const w = Uint32Array.from(base);
      let carried = 0;
      for (let i = 0; i < 8; i++) {
        const flip = i < 7 && ((m >> i) & 1) === 1;
        w[i] = base[i]! ^ carried ^ (flip ? 0x80000000 : 0);
        carried = flip ? 0x80010000 : 0;
      }
      return w;
    });
    const hashes = (t: IdTable): Set<number> => new Set(family.map((w) => t['hashWords'](w, 0)));
    assert.ok(hashes(new IdTable(0)).size > 120);
    const id = family[0]!;
    assert.notEqual(new IdTable(0)['hashWords'](id, 0), new IdTable(0)['hashWords'](id, 0), 'two tables hash an id differently');
  });

  it('holds ids that share their first and last words', () => {
    const t = new IdTable(0);
    const ids = Array.from({ length: 5000 }, (_, i) => `${'0'.repeat(24)}${i.toString(16).padStart(16, '0')}${'f'.repeat(24)}`);
    for (const id of ids) t.add(id);
    ids.forEach((id, i) => assert.equal(t.find(id), i));
    assert.equal(t.size, 5000);
  });
});

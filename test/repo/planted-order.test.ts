/**
 * Reading past planted copies: a pack in which a copy failed is tried last
 * for the blobs read after it, so 20 planted packs each holding a bad copy
 * of every blob, listed before the good copies, cost one failed read per
 * pack, not one per blob and pack; any intact copy is still accepted.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { sha256 } from '../../src/core/crypto.js';
import { Repository } from '../../src/repo/repository.js';
import { BlobType, PackWriter } from '../../src/repo/pack.js';
import type { IndexedPack } from '../../src/repo/index-file.js';
import type { Handle, LoadOptions } from '../../src/storage/backend.js';
import { TEST_PASSWORD, memoryRepo } from '../helpers/memory-repo.js';

describe('planted copies', () => {
  it('20 planted packs before the good copies: every blob read, each planted pack read once', async () => {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    const blobs = new Map<string, Buffer>();
    for (let i = 0; i < 5; i++) {
      const data = randomBytes(1000 + i);
      blobs.set((await w.saveBlob(BlobType.Data, data)).id, data);
    }
    await w.flush();
    const good = [...blobs.keys()].map((id) => repo.index.lookup(id)!);
    const planted: IndexedPack[] = [];
    for (let p = 0; p < 20; p++) {
      const pw = new PackWriter();
      for (const l of good) pw.add(BlobType.Data, l.id, l.flags, l.rawLength, randomBytes(l.length));
      const { bytes, blobs: entries } = pw.finish();
      const name = sha256(bytes).toString('hex');
      await backend.save({ type: 'data', name }, bytes);
      planted.push({ pack: name, blobs: entries });
    }
    const loads = new Map<string, number>();
    const load = backend.load.bind(backend);
    backend.load = (h: Handle, opts?: LoadOptions): Promise<Buffer> => {
      if (h.type === 'data') loads.set(h.name, (loads.get(h.name) ?? 0) + 1);
      return load(h, opts);
    };
    const warnings: string[] = [];
    const r = await Repository.open(repo.store, TEST_PASSWORD, { onWarning: (m) => warnings.push(m) });
    for (const p of planted) r.index.addPack(p); // known before the good copies
    for (const l of new Set(good.map((g) => g.pack))) r.index.addPack({ pack: l, blobs: good.filter((g) => g.pack === l) });
    for (const [id, data] of blobs) assert.ok((await r.loadBlob(BlobType.Data, id)).equals(data), id);
    for (const p of planted) assert.equal(loads.get(p.pack), 1, `planted pack ${p.pack} read ${loads.get(p.pack)} times`);
    assert.equal(warnings.length, 20);
  });
});

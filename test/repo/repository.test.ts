// Repository behaviour on a MemoryBackend: init and open, keys, saving and
// loading blobs (dedup, compression, packing), and how damage in storage is
// reported: always a CorruptObjectError naming the object at fault.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import type { Backend, Handle, LoadOptions, ObjectInfo, ObjectType } from '../../src/storage/backend.js';
import { sha256, SEAL_OVERHEAD } from '../../src/core/crypto.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { readConfig } from '../../src/repo/objects.js';
import { BlobType, FLAG_COMPRESSED, PACK_TRAILER_BYTES } from '../../src/repo/pack.js';
import { encodeIndex } from '../../src/repo/index-file.js';
import { BlobNotFoundError, CorruptObjectError, NotARepositoryError, WrongPasswordError } from '../../src/repo/errors.js';
import { encodeTree } from '../../src/repo/tree.js';
import { TEST_PASSWORD, TEST_SCRYPT, memoryRepo } from '../helpers/memory-repo.js';

const SMALL_PACK = 1 << 16;

async function listAll(backend: Backend, type: ObjectType): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of backend.list(type)) out.push(info);
  return out;
}

/** Replaces a stored object's bytes (objects are immutable, so: remove, then save). */
async function replaceObject(backend: Backend, type: ObjectType, name: string, bytes: Buffer): Promise<void> {
  await backend.remove({ type, name });
  await backend.save({ type, name }, bytes);
}

/** Compressible bytes: a short phrase repeated. */
const repetitive = (n: number, phrase = 'holdfast keeps what you give it. '): Buffer => Buffer.alloc(n, phrase);

/** Checks `p` rejects with a CorruptObjectError whose message contains every string of `names`. */
async function rejectsCorrupt(p: Promise<unknown>, ...names: string[]): Promise<CorruptObjectError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CorruptObjectError, `expected CorruptObjectError, got ${String(caught)}`);
  for (const n of names) assert.ok(caught.message.includes(n), `"${caught.message}" does not name ${n}`);
  return caught;
}

describe('Repository: init and open', () => {
  it('init, then open with the right password, gives the same config and master key', async () => {
    const { backend, repo } = await memoryRepo();
    const again = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    assert.deepEqual(again.config, repo.config);
    assert.equal(again.keyId, repo.keyId);
    const data = Buffer.from('same bytes');
    assert.equal(again.blobId(data), repo.blobId(data), 'same id key');
    assert.deepEqual((await readConfig(backend)).config, repo.config);
  });

  it('init records the options in the config', async () => {
    const { backend } = await memoryRepo({ compression: 'max', packSize: SMALL_PACK });
    const config = (await readConfig(backend)).config;
    assert.equal(config.compression, 'max');
    assert.equal(config.packSize, SMALL_PACK);
    assert.equal(config.version, 3);
    assert.match(config.id, /^[0-9a-f]{64}$/);
  });

  it('open with a wrong password fails with WrongPasswordError', async () => {
    const { backend } = await memoryRepo();
    await assert.rejects(Repository.open(await Store.open(backend), 'not the password'), WrongPasswordError);
    await assert.rejects(Repository.open(await Store.open(backend), ''), WrongPasswordError);
  });

  it('open of an empty backend fails with NotARepositoryError naming the location', async () => {
    const backend = new MemoryBackend({ name: 'nothing-here' });
    await assert.rejects(Store.open(backend), (e: unknown) => {
      assert.ok(e instanceof NotARepositoryError, String(e));
      assert.match(e.message, /memory:nothing-here/);
      return true;
    });
    await assert.rejects(readConfig(backend), NotARepositoryError);
  });

  it('a second init on the same backend is refused and changes nothing', async () => {
    const { backend, repo } = await memoryRepo();
    await assert.rejects(Repository.init(backend, 'another password'), /exists already/);
    assert.equal((await listAll(backend, 'key')).length, 1);
    assert.deepEqual((await readConfig(backend)).config, repo.config);
    await assert.rejects(Repository.open(await Store.open(backend), 'another password'), WrongPasswordError);
    await Repository.open(await Store.open(backend), TEST_PASSWORD);
  });

  it(
    'init refuses options its own config decoder would refuse, before writing anything',
    async () => {
      for (const opts of [{ packSize: 4096 }, { packSize: 2 ** 31 }, { chunker: { algorithm: 'fastcdc-2020' as const, minSize: 10, avgSize: 100, maxSize: 50 } }]) {
        const backend = new MemoryBackend();
        await assert.rejects(Repository.init(backend, TEST_PASSWORD, { ...opts, scrypt: TEST_SCRYPT }), JSON.stringify(opts));
        assert.equal(await backend.stat({ type: 'config', name: 'config' }), undefined);
      }
    },
  );

  it('a damaged config is a CorruptObjectError naming the config', async () => {
    const { backend } = await memoryRepo();
    const bytes = await backend.load({ type: 'config', name: 'config' });
    bytes[10] = bytes[10]! ^ 1;
    await replaceObject(backend, 'config', 'config', bytes);
    await rejectsCorrupt(Store.open(backend), 'config');
  });
});

describe('Repository: saving and loading blobs', () => {
  it('saveBlob deduplicates: the second save of the same bytes adds nothing', async () => {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    const data = randomBytes(5000);
    const first = await w.saveBlob(BlobType.Data, data);
    const second = await w.saveBlob(BlobType.Data, Buffer.from(data));
    assert.equal(first.added, true);
    assert.equal(second.added, false);
    assert.equal(second.id, first.id);
    assert.equal(first.id, repo.blobId(data));
    await w.flush();
    const third = await w.saveBlob(BlobType.Data, data);
    assert.equal(third.added, false, 'known from the index after flush');
    await w.flush();
    assert.equal((await listAll(backend, 'data')).length, 1);
    assert.equal(w.stats.blobsAdded, 1);
    assert.equal(w.stats.dataAdded, 5000);
    assert.equal(w.stats.dataAddedStored, 5000 + SEAL_OVERHEAD);
  });

  it('random (incompressible) data is stored uncompressed', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const data = randomBytes(20_000);
    const { id } = await w.saveBlob(BlobType.Data, data);
    await w.flush();
    const loc = repo.index.lookup(id)!;
    assert.equal(loc.flags & FLAG_COMPRESSED, 0);
    assert.equal(loc.rawLength, data.length);
    assert.equal(loc.length, data.length + SEAL_OVERHEAD);
    assert.deepEqual(await repo.loadBlob(BlobType.Data, id), data);
  });

  it('repetitive data is stored compressed, and smaller', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const data = repetitive(100_000);
    const { id } = await w.saveBlob(BlobType.Data, data);
    await w.flush();
    const loc = repo.index.lookup(id)!;
    assert.equal(loc.flags & FLAG_COMPRESSED, FLAG_COMPRESSED);
    assert.equal(loc.rawLength, data.length);
    assert.ok(loc.length < data.length / 10, `stored ${loc.length} bytes for ${data.length}`);
    assert.ok(w.stats.dataAddedStored < w.stats.dataAdded);
    assert.deepEqual(await repo.loadBlob(BlobType.Data, id), data);
  });

  it("compression 'off' never compresses (in the config and per session)", async () => {
    const { repo } = await memoryRepo({ compression: 'off' });
    const w = repo.newWriter();
    const a = await w.saveBlob(BlobType.Data, repetitive(50_000));
    const { repo: other } = await memoryRepo();
    const ow = other.newWriter({ compression: 'off' });
    const b = await ow.saveBlob(BlobType.Tree, repetitive(50_000, '{"nodes":[]}'));
    await w.flush();
    await ow.flush();
    for (const [r, id, type] of [[repo, a.id, BlobType.Data], [other, b.id, BlobType.Tree]] as const) {
      const loc = r.index.lookup(id)!;
      assert.equal(loc.flags, 0);
      assert.equal(loc.length, 50_000 + SEAL_OVERHEAD);
      assert.equal((await r.loadBlob(type, id)).length, 50_000);
    }
  });

  it('loadBlob returns the same bytes after flush and from a freshly opened repository', async () => {
    const { backend, repo } = await memoryRepo({ packSize: SMALL_PACK });
    const w = repo.newWriter();
    const blobs = new Map<string, { type: BlobType; data: Buffer }>();
    for (let i = 0; i < 40; i++) {
      const type = i % 5 === 0 ? BlobType.Tree : BlobType.Data;
      const data = i % 2 === 0 ? randomBytes(i * 300) : repetitive(i * 700, `blob ${i} `);
      const { id } = await w.saveBlob(type, data);
      blobs.set(id, { type, data });
    }
    await w.flush();
    for (const [id, { type, data }] of blobs) assert.deepEqual(await repo.loadBlob(type, id), data);

    const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    assert.equal(fresh.index.size, 0);
    await assert.rejects(fresh.loadBlob(BlobType.Data, [...blobs.keys()][1]!), BlobNotFoundError);
    await fresh.loadIndex();
    assert.equal(fresh.index.size, blobs.size);
    for (const [id, { type, data }] of blobs) assert.deepEqual(await fresh.loadBlob(type, id), data);
  });

  it('loading a blob under the wrong type is refused', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const { id } = await w.saveBlob(BlobType.Data, Buffer.from('file content'));
    await w.flush();
    await rejectsCorrupt(repo.loadBlob(BlobType.Tree, id), id);
    await assert.rejects(repo.loadBlob(BlobType.Data, 'ab'.repeat(32)), BlobNotFoundError);
  });

  it(
    'a data blob and a tree blob with the same bytes are both stored and both load',
    async () => {
      const { backend, repo } = await memoryRepo();
      const w = repo.newWriter();
      const bytes = encodeTree([]); // an empty directory's tree blob
      const data = await w.saveBlob(BlobType.Data, bytes); // a file with exactly that content, saved first
      const tree = await w.saveBlob(BlobType.Tree, bytes);
      await w.flush();
      assert.deepEqual(await repo.loadTree(tree.id), []);
      assert.deepEqual(await repo.loadBlob(BlobType.Data, data.id), bytes);
      const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
      await fresh.loadIndex();
      assert.deepEqual(await fresh.loadTree(tree.id), []);
    },
  );

  it('blob ids are keyed: two repositories give different ids for the same bytes', async () => {
    const { repo: a } = await memoryRepo();
    const aw = a.newWriter();
    const { repo: b } = await memoryRepo();
    const bw = b.newWriter();
    const data = Buffer.from('the same content in two repositories');
    assert.notEqual(a.blobId(data), b.blobId(data));
    assert.notEqual(a.blobId(data), sha256(data).toString('hex'));
    const sa = await aw.saveBlob(BlobType.Data, data);
    const sb = await bw.saveBlob(BlobType.Data, data);
    assert.notEqual(sa.id, sb.id);
  });

  it('many blobs with a small packSize make several packs, each at most packSize + one blob', async () => {
    const { backend, repo } = await memoryRepo({ packSize: SMALL_PACK });
    const w = repo.newWriter();
    const blobSize = 5000;
    const sealedSize = blobSize + SEAL_OVERHEAD;
    for (let i = 0; i < 60; i++) await w.saveBlob(BlobType.Data, randomBytes(blobSize));
    await w.flush();
    const packs = await listAll(backend, 'data');
    assert.ok(packs.length >= 4, `${packs.length} packs`);
    let blobsSeen = 0;
    let fullPacks = 0;
    for (const p of packs) {
      const blobs = await repo.store.readPackHeader(p.name);
      blobsSeen += blobs.length;
      const blobBytes = blobs.reduce((s, b) => s + b.length, 0);
      const headerBytes = 5 + 44 * blobs.length;
      assert.equal(p.size, blobBytes + headerBytes + PACK_TRAILER_BYTES);
      assert.ok(blobBytes <= SMALL_PACK + sealedSize, `pack ${p.name} holds ${blobBytes} bytes of blobs`);
      assert.ok(blobBytes - blobs[blobs.length - 1]!.length < SMALL_PACK, 'a pack is closed as soon as it reaches packSize');
      if (blobBytes >= SMALL_PACK) fullPacks++;
    }
    assert.equal(blobsSeen, 60);
    assert.ok(fullPacks >= packs.length - 1, 'only the last pack may be short');
  });

  it('writes an index every 16 packs as well as at flush, and all of them load', async () => {
    const { backend, repo } = await memoryRepo({ packSize: SMALL_PACK });
    const w = repo.newWriter();
    const ids: string[] = [];
    // one blob of packSize bytes fills a pack: 70 packs
    for (let i = 0; i < 70; i++) ids.push((await w.saveBlob(BlobType.Data, randomBytes(SMALL_PACK))).id);
    await w.flush();
    assert.equal((await listAll(backend, 'data')).length, 70);
    assert.equal((await listAll(backend, 'index')).length, 5);
    const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    await fresh.loadIndex();
    assert.equal(fresh.index.packs.size, 70);
    for (const id of ids) assert.ok(fresh.index.has(id));
  });
});

describe('Repository: damage in storage', () => {
  async function oneBlob(data: Buffer): Promise<{ backend: MemoryBackend; repo: Repository; id: string; pack: string; offset: number; length: number }> {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    await w.saveBlob(BlobType.Data, randomBytes(3000)); // a blob before it, so it does not start at 0
    const { id } = await w.saveBlob(BlobType.Data, data);
    await w.flush();
    const loc = repo.index.lookup(id)!;
    return { backend, repo, id, pack: loc.pack, offset: loc.offset, length: loc.length };
  }

  for (const [label, data] of [['uncompressed', randomBytes(4000)], ['compressed', repetitive(40_000)]] as const) {
    it(`a flipped byte inside a stored pack (${label} blob) → CorruptObjectError naming the pack`, async () => {
      for (const where of ['nonce', 'body', 'tag'] as const) {
        const { backend, repo, id, pack, offset, length } = await oneBlob(data);
        const bytes = await backend.load({ type: 'data', name: pack });
        const i = offset + (where === 'nonce' ? 0 : where === 'body' ? Math.floor(length / 2) : length - 1);
        bytes[i] = bytes[i]! ^ 0x40;
        await replaceObject(backend, 'data', pack, bytes);
        await rejectsCorrupt(repo.loadBlob(BlobType.Data, id), `pack ${pack}`, id);
        const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
        await fresh.loadIndex();
        await rejectsCorrupt(fresh.loadBlob(BlobType.Data, id), `pack ${pack}`);
      }
    });
  }

  it('a truncated pack → CorruptObjectError naming the pack, for blobs and for the header', async () => {
    const { backend, repo, id, pack, offset, length } = await oneBlob(randomBytes(4000));
    const bytes = await backend.load({ type: 'data', name: pack });
    await replaceObject(backend, 'data', pack, bytes.subarray(0, offset + length - 1));
    const e = await rejectsCorrupt(repo.loadBlob(BlobType.Data, id), `pack ${pack}`);
    assert.match(e.message, /truncated/);
    await rejectsCorrupt(repo.store.readPackHeader(pack), `pack ${pack}`);
    await replaceObject(backend, 'data', pack, bytes.subarray(0, 3));
    await rejectsCorrupt(repo.store.readPackHeader(pack), `pack ${pack}`);
    await replaceObject(backend, 'data', pack, Buffer.alloc(0));
    await rejectsCorrupt(repo.store.readPackHeader(pack), `pack ${pack}`);
  });

  it('a missing pack → CorruptObjectError naming the pack', async () => {
    const { backend, repo, id, pack } = await oneBlob(randomBytes(100));
    await backend.remove({ type: 'data', name: pack });
    const e = await rejectsCorrupt(repo.loadBlob(BlobType.Data, id), `pack ${pack}`);
    assert.match(e.message, /missing/);
    await rejectsCorrupt(repo.store.readPackHeader(pack), `pack ${pack}`);
  });

  // One policy for an index file a reader cannot use, whatever is wrong with it: left out, with a warning naming it.
  const LEFT_OUT = (name: string): RegExp => new RegExp(`^index ${name} is damaged: .*; left out of the index .*"holdfast repair index" rebuilds the index from the packs$`);

  it('a flipped byte in an index object → loadIndex leaves it out, warning with its name; its blobs are not found, a writer stores them again', async () => {
    const { backend, id } = await oneBlob(randomBytes(100));
    const [index] = await listAll(backend, 'index');
    const bytes = await backend.load({ type: 'index', name: index!.name });
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 1;
    await replaceObject(backend, 'index', index!.name, bytes);
    const warnings: string[] = [];
    const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD, { onWarning: (w) => warnings.push(w) });
    await fresh.loadIndex();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, LEFT_OUT(index!.name));
    assert.equal(fresh.index.size, 0);
    await assert.rejects(fresh.loadBlob(BlobType.Data, id), BlobNotFoundError);
    // A backup adopts the pack from its header (the authority, §15.10): its blobs are found again, nothing uploaded twice.
    const w = fresh.newWriter();
    assert.equal(await w.indexOrphanPacks(() => undefined), 1);
    assert.equal(fresh.index.size, 2);
    await w.flush();
    assert.equal((await listAll(backend, 'data')).length, 1);
  });

  it('open with loadIndex loads the index beside the key: a damaged index is left out after the right password, the wrong password is refused first', async () => {
    const { backend } = await oneBlob(randomBytes(100));
    const whole = await Repository.open(await Store.open(backend), TEST_PASSWORD, { loadIndex: true });
    assert.equal(whole.index.size, 2, 'both blobs are indexed');
    const [index] = await listAll(backend, 'index');
    const bytes = await backend.load({ type: 'index', name: index!.name });
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 1;
    await replaceObject(backend, 'index', index!.name, bytes);
    await assert.rejects(Repository.open(await Store.open(backend), 'not the password', { loadIndex: true }), WrongPasswordError);
    const warnings: string[] = [];
    const opened = await Repository.open(await Store.open(backend), TEST_PASSWORD, { loadIndex: true, onWarning: (w) => warnings.push(w) });
    assert.equal(opened.index.size, 0);
    assert.match(warnings.join('\n'), LEFT_OUT(index!.name));
  });

  it('an index file that does not parse, stored under its own checksum, is left out as one that fails its checksum is, and so is a refresh\'s', async () => {
    const { backend, repo, id } = await oneBlob(randomBytes(100));
    for (const bytes of [Buffer.from('HFIX\x01garbage'), encodeIndex({ packs: [], supersedes: [] }).subarray(0, 10), Buffer.alloc(0)]) {
      const name = sha256(bytes).toString('hex');
      await backend.save({ type: 'index', name }, bytes);
      const warnings: string[] = [];
      const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD, { onWarning: (w) => warnings.push(w) });
      await fresh.loadIndex();
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, LEFT_OUT(name));
      assert.deepEqual(await fresh.loadBlob(BlobType.Data, id), await repo.loadBlob(BlobType.Data, id), 'the good index file is used');
      await backend.remove({ type: 'index', name });
    }
    const warnings: string[] = [];
    const open = await Repository.open(await Store.open(backend), TEST_PASSWORD, { loadIndex: true, onWarning: (w) => warnings.push(w) });
    const junk = Buffer.from('not an index file');
    const name = sha256(junk).toString('hex');
    await backend.save({ type: 'index', name }, junk);
    assert.deepEqual(await open.refreshIndex(), { read: 0, rebuilt: false });
    assert.match(warnings.join('\n'), LEFT_OUT(name));
  });

  it('a damaged key file is reported when no other key opens', async () => {
    const { backend, repo } = await memoryRepo();
    const bytes = await backend.load({ type: 'key', name: repo.keyId });
    await replaceObject(backend, 'key', repo.keyId, Buffer.concat([bytes, Buffer.from(' ')]));
    await assert.rejects(Repository.open(await Store.open(backend), TEST_PASSWORD), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.includes(`key ${repo.keyId}`), e.message);
      return true;
    });
  });
});

describe('Repository: orphan packs', () => {
  it('packs left without an index are found, indexed, and their blobs not uploaded again', async () => {
    const { backend, repo } = await memoryRepo({ packSize: SMALL_PACK });
    const w = repo.newWriter();
    const blobs: Buffer[] = [];
    for (let i = 0; i < 30; i++) blobs.push(randomBytes(8000));
    const ids: string[] = [];
    for (const b of blobs) ids.push((await w.saveBlob(BlobType.Data, b)).id);
    await w.flush();
    const packs = await listAll(backend, 'data');
    assert.ok(packs.length >= 3);
    // a backup killed after its packs, before its index
    for (const i of await listAll(backend, 'index')) await backend.remove({ type: 'index', name: i.name });

    const next = await Repository.open(await Store.open(backend), TEST_PASSWORD);

    const nw = next.newWriter();
    await next.loadIndex();
    assert.equal(next.index.size, 0);
    const warnings: string[] = [];
    assert.equal(await nw.indexOrphanPacks((m) => warnings.push(m)), packs.length);
    assert.deepEqual(warnings, []);
    assert.equal(next.index.size, blobs.length);
    for (const b of blobs) assert.equal((await nw.saveBlob(BlobType.Data, b)).added, false);
    assert.equal(nw.stats.blobsAdded, 0);
    await nw.flush();
    assert.equal((await listAll(backend, 'data')).length, packs.length, 'no pack uploaded again');
    assert.equal((await listAll(backend, 'index')).length, 1, 'the orphans are indexed at flush');
    assert.equal(await nw.indexOrphanPacks(() => undefined), 0, 'a second scan finds nothing new');

    const third = await Repository.open(await Store.open(backend), TEST_PASSWORD);

    const tw = third.newWriter();
    await third.loadIndex();
    assert.equal(await tw.indexOrphanPacks(() => undefined), 0);
    for (let i = 0; i < blobs.length; i++) assert.deepEqual(await third.loadBlob(BlobType.Data, ids[i]!), blobs[i]);
  });

  it('a damaged orphan pack is reported and skipped', async () => {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    await w.saveBlob(BlobType.Data, randomBytes(100));
    await w.flush();
    for (const i of await listAll(backend, 'index')) await backend.remove({ type: 'index', name: i.name });
    const [pack] = await listAll(backend, 'data');
    const bytes = await backend.load({ type: 'data', name: pack!.name });
    await replaceObject(backend, 'data', pack!.name, bytes.subarray(0, bytes.length - 1));
    const next = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    const nw = next.newWriter();
    const warnings: string[] = [];
    assert.equal(await nw.indexOrphanPacks((m) => warnings.push(m)), 0);
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0]!.includes(pack!.name), warnings[0]!);
  });
});

/** A MemoryBackend that counts the snapshot objects loaded from it. */
class CountingBackend extends MemoryBackend {
  snapshotLoads = 0;
  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    if (h.type === 'snapshot') this.snapshotLoads++;
    return super.load(h, opts);
  }
}

describe('Repository: snapshots listed for their headers', () => {
  /** A snapshot of one data blob and an empty tree, stored by a writer of `repo`; its id and blob list. */
  async function snapshotOf(repo: Repository, host: string): Promise<{ id: string; blobs: string[] }> {
    const w = repo.newWriter();
    const { id: blob } = await w.saveBlob(BlobType.Data, randomBytes(100));
    const tree = await w.saveTree([]);
    await w.flush();
    const now = new Date().toISOString();
    const blobs = [blob, tree].sort();
    const id = await w.saveSnapshot({
      time: now, hostname: host, username: 'u', paths: ['/'], tags: [], tree, blobs,
      summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: now, end: now },
    });
    return { id, blobs };
  }

  it('keeps headers between listings, loads only what another client added, and gives whole snapshots when asked', async () => {
    const backend = new CountingBackend();
    const repo = await Repository.init(backend, TEST_PASSWORD, { scrypt: TEST_SCRYPT });
    const mine = await snapshotOf(repo, 'mine');
    const other = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    const theirs = await snapshotOf(other, 'theirs');

    const headers = await repo.listSnapshots({ blobList: false });
    assert.deepEqual(headers.ok.map((e) => e.snapshot.hostname).sort(), ['mine', 'theirs']);
    assert.equal(backend.snapshotLoads, 1, 'its own snapshot is held, the other client\'s loaded');
    for (const e of headers.ok) assert.throws(() => e.snapshot.blobs, /read for its header: its blob list was not kept/);
    await repo.listSnapshots({ blobList: false });
    assert.equal(backend.snapshotLoads, 1, 'a second listing of headers loads nothing');

    // A caller that reads blob lists gets them whole, loaded again: memory held no list to give.
    const whole = await repo.listSnapshots();
    assert.equal(backend.snapshotLoads, 3);
    const byId = new Map(whole.ok.map((e) => [e.id, e.snapshot.blobs]));
    assert.deepEqual(byId.get(mine.id), mine.blobs);
    assert.deepEqual(byId.get(theirs.id), theirs.blobs);
    assert.deepEqual((await repo.loadSnapshot(mine.id)).blobs, mine.blobs);
    await assert.rejects(repo.loadSnapshot(mine.id, { blobList: false }).then((s) => s.blobs), /blob list was not kept/);

    // A snapshot removed from storage is not listed again from memory.
    await backend.remove({ type: 'snapshot', name: theirs.id });
    assert.deepEqual((await repo.listSnapshots({ blobList: false })).ok.map((e) => e.id), [mine.id]);
  });
});

describe('Repository: keys', () => {
  it('addKey, listKeys, removeKey and what each password opens afterwards', async () => {
    const { backend, repo } = await memoryRepo();
    const newId = await repo.addKey('second password', TEST_SCRYPT);
    const second = await Repository.open(await Store.open(backend), 'second password');
    assert.equal(second.keyId, newId);
    assert.equal(second.config.id, repo.config.id);
    const data = Buffer.from('x');
    assert.equal(second.blobId(data), repo.blobId(data), 'both keys wrap the same master key');

    const keys = await second.listKeys();
    assert.equal(keys.length, 2);
    assert.deepEqual(keys.filter((k) => k.current).map((k) => k.id), [newId]);
    assert.deepEqual(new Set(keys.map((k) => k.id)), new Set([repo.keyId, newId]));
    for (const k of keys) assert.equal(k.file?.kdf.algorithm, 'scrypt');

    await assert.rejects(second.removeKey(newId), /refusing to remove the key in use/);
    await assert.rejects(second.removeKey('ee'.repeat(32)), /no key/);
    await second.removeKey(repo.keyId);
    await assert.rejects(Repository.open(await Store.open(backend), TEST_PASSWORD), WrongPasswordError);
    await Repository.open(await Store.open(backend), 'second password');

    await assert.rejects(second.removeKey(newId, true), /refusing to remove the only key/);
    await assert.rejects(second.removeKey(newId), /refusing/);
    assert.equal((await second.listKeys()).length, 1);
  });

  it('the KDF cost of a key file is chosen by the caller, whatever the environment says', async () => {
    const saved = process.env['HOLDFAST_SCRYPT_N'];
    process.env['HOLDFAST_SCRYPT_N'] = '4096'; // the CLI's variable: the library never reads it
    try {
      const { repo } = await memoryRepo({ scrypt: { N: 2048, r: 8, p: 1 } });
      await repo.addKey('second', { N: 512, r: 8, p: 1 });
      const costs = (await repo.listKeys()).map((k) => [k.current, k.file?.kdf.N]).sort();
      assert.deepEqual(costs, [[false, 512], [true, 2048]]);
      await assert.rejects(repo.addKey('third', { N: 1000, r: 8, p: 1 }), /outside what readers accept/);
    } finally {
      if (saved === undefined) delete process.env['HOLDFAST_SCRYPT_N'];
      else process.env['HOLDFAST_SCRYPT_N'] = saved;
    }
  });

  it('removeKey refuses the last key even when it is not the current one', async () => {
    const { backend, repo } = await memoryRepo();
    const otherId = await repo.addKey('other', TEST_SCRYPT);
    const other = await Repository.open(await Store.open(backend), 'other');
    await other.removeKey(repo.keyId);
    // `repo` still holds the removed key; the only key left is not its current one.
    await assert.rejects(repo.removeKey(otherId), /refusing to remove the only key/);
  });
});

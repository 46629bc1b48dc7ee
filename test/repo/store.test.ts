// The keyless store and the keyed repository on top of it share one damage
// policy: a listing returns what it could read and, apart, why the rest could
// not be read; it never throws on one damaged object and never prints.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeSnapshot, type Snapshot } from '../../src/repo/snapshot.js';
import { ForgedObjectError, CorruptObjectError, NameTakenError } from '../../src/repo/errors.js';
import { listObjects, loadEvery, saveAddressed } from '../../src/repo/objects.js';
import { Repository } from '../../src/repo/repository.js';
import { BlobType } from '../../src/repo/pack.js';
import { Store } from '../../src/repo/store.js';
import { sha256 } from '../../src/core/crypto.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import type { Handle, LoadOptions, OperationOptions } from '../../src/storage/backend.js';
import { TEST_PASSWORD, memoryRepo } from '../helpers/memory-repo.js';

const snapshot = (time: string): Snapshot => ({
  time, hostname: 'h', username: 'u', paths: ['/'], tags: [], tree: '0'.repeat(64), summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: '2026-01-01T00:00:00.000Z', end: '2026-01-01T00:00:00.000Z' }, blobs: [],
});

/** Runs `f` with stdout and stderr captured; returns what was written. */
async function captured(f: () => Promise<void>): Promise<string> {
  let out = '';
  const [o, e] = [process.stdout.write, process.stderr.write];
  const grab = ((chunk: string | Uint8Array): boolean => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = grab;
  process.stderr.write = grab;
  try {
    await f();
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
  return out;
}

describe('store: damage as data', () => {
  it('snapshot listings keep readable snapshots in order and return damaged, junk and forged ones apart, printing nothing', async () => {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    const later = await w.saveSnapshot(snapshot('2030-01-02T00:00:00Z'));
    const earlier = await w.saveSnapshot(snapshot('2030-01-01T00:00:00Z'));
    // Any client that can add objects can store junk under its SHA-256 name, or a snapshot without the MAC.
    const junk = await saveAddressed(backend, 'snapshot', Buffer.from('not a snapshot'));
    const forged = await saveAddressed(backend, 'snapshot', encodeSnapshot(snapshot('2030-01-03T00:00:00Z'), Buffer.alloc(32)));
    // And one whose bytes no longer match their name.
    const bytes = await backend.load({ type: 'snapshot', name: later });
    bytes[bytes.length - 1]! ^= 1;
    const flipped = 'f'.repeat(64);
    await backend.save({ type: 'snapshot', name: flipped }, bytes);

    const store = await Store.open(backend);
    const keyed = await Repository.open(store, TEST_PASSWORD);
    let plain!: Awaited<ReturnType<Store['listSnapshots']>>;
    let withKey!: Awaited<ReturnType<Repository['listSnapshots']>>;
    const printed = await captured(async () => {
      plain = await store.listSnapshots();
      withKey = await keyed.listSnapshots();
    });
    assert.equal(printed, '', 'a listing prints nothing');

    assert.deepEqual(plain.ok.map((s) => s.id), [earlier, later, forged], 'without the key a forged snapshot reads as any other');
    assert.deepEqual([...plain.damaged.keys()].sort(), [flipped, junk].sort());
    for (const e of plain.damaged.values()) assert.ok(e instanceof CorruptObjectError, String(e));

    assert.deepEqual(withKey.ok.map((s) => s.id), [earlier, later]);
    assert.deepEqual([...withKey.damaged.keys()].sort(), [flipped, forged, junk].sort());
    assert.ok(withKey.damaged.get(forged) instanceof ForgedObjectError, 'the caller can tell a forged snapshot from a damaged one');
    keyed.close();
  });

  it('index files and markers: a damaged one is listed apart, the others are read', async () => {
    const { backend, repo } = await memoryRepo();
    const w = repo.newWriter();
    await w.saveBlob(BlobType.Data, Buffer.from('one blob'));
    await w.flush();
    const bad = await saveAddressed(backend, 'index', Buffer.from('junk index'));
    const store = await Store.open(backend);
    const files = await store.loadIndexFiles();
    assert.equal(files.ok.size, 1);
    assert.deepEqual([...files.damaged.keys()], [bad]);
    // The keyed reader leaves it out, as the listing does, and says so (repository.test.ts has the rest).
    const warnings: string[] = [];
    const reader = await Repository.open(store, TEST_PASSWORD, { onWarning: (m) => warnings.push(m) });
    await reader.loadIndex();
    assert.equal(reader.index.size, 1);
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0]!.startsWith(`index ${bad} is damaged: `), warnings[0]!);
  });
});

/** Plants `plant(h, data)` under the name of the next save, just before it (a client that predicted the name), and counts loads. */
class Planting extends WrapperBackend {
  loads = 0;
  constructor(inner: MemoryBackend, private readonly plant: (data: Uint8Array) => Uint8Array) {
    super(inner);
  }

  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await this.inner.save(h, this.plant(data));
    return super.save(h, data, opts);
  }

  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    this.loads++;
    return super.load(h, opts);
  }
}

describe('loadEvery: every object of a type', () => {
  /** Holds each load until the test lets it go; counts loads in flight; removes a name and saves its replacement the first time it is asked for. */
  class Gated extends WrapperBackend {
    inFlight = 0;
    most = 0;
    private readonly held: (() => void)[] = [];
    constructor(inner: MemoryBackend, private readonly replace: Map<string, Buffer>) {
      super(inner);
    }

    override async load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
      this.most = Math.max(this.most, ++this.inFlight);
      try {
        await new Promise<void>((r) => this.held.push(r));
        const replacement = this.replace.get(h.name);
        if (replacement) {
          this.replace.delete(h.name);
          await saveAddressed(this.inner, h.type, replacement);
          await this.inner.remove(h);
        }
        return await super.load(h, opts);
      } finally {
        this.inFlight--;
      }
    }

    release(): void {
      for (const r of this.held.splice(0)) r();
    }
  }

  it('loads as many at once as the backend serves, in the listing\'s order, and lists again for what vanished meanwhile', async () => {
    const inner = new MemoryBackend();
    const bodies = Array.from({ length: 11 }, (_, i) => Buffer.from(`object ${i}`));
    const names = await Promise.all(bodies.map((b) => saveAddressed(inner, 'index', b)));
    const replacement = Buffer.from('the replacement of object 3, written before it was removed');
    const gated = new Gated(inner, new Map([[names[3]!, replacement]]));
    const listed = [...(await listObjects(inner, 'index')).keys()];
    const releasing = setInterval(() => gated.release(), 5);
    try {
      const got = await loadEvery(gated, 'index', async (name) => (await gated.load({ type: 'index', name })).toString());
      assert.equal(gated.most, gated.capabilities.connections, 'loads in flight at most');
      // The first listing's objects in its order, then what the second listing found.
      const again = sha256(replacement).toString('hex');
      assert.deepEqual([...got.keys()], [...listed.filter((n) => n !== names[3]), again]);
      assert.equal(got.get(again), replacement.toString());
      assert.equal(got.get(names[10]!), 'object 10');
    } finally {
      clearInterval(releasing);
    }
  });
});

describe('saveAddressed: a name that exists already', () => {
  const bytes = Buffer.from('an index file, say');
  const name = sha256(bytes).toString('hex');

  it('holding the same bytes (a retry whose answer was lost, an identical object) is saved', async () => {
    const b = new Planting(new MemoryBackend(), (data) => data);
    assert.equal(await saveAddressed(b, 'index', bytes), name);
    assert.ok((await b.inner.load({ type: 'index', name })).equals(bytes));
  });

  it('holding other bytes of the same size is refused with NameTakenError, naming the object', async () => {
    const b = new Planting(new MemoryBackend(), (data) => Buffer.alloc(data.length, 7));
    await assert.rejects(saveAddressed(b, 'index', bytes), (e: unknown) => e instanceof NameTakenError && e.code === 'NAME_TAKEN' && e.message.includes(`index ${name}`) && e.message.includes('other bytes'));
  });

  it('holding another size is refused without reading it (a planted object may be of any size)', async () => {
    const b = new Planting(new MemoryBackend(), () => Buffer.alloc(1 << 20));
    await assert.rejects(saveAddressed(b, 'snapshot', bytes), NameTakenError);
    assert.equal(b.loads, 0);
  });
});

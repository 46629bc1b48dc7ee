/**
 * The append-only wrapper: adds and reads pass, removal of anything but this
 * client's own locks is refused, overwrites stay refused; the repository
 * config carries the mode and `Store.open` applies it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppendOnlyBackend, AppendOnlyError } from '../../src/storage/append-only-backend.js';
import { AlreadyExistsError, OBJECT_TYPES, type Backend } from '../../src/storage/backend.js';
import { DryRunBackend } from '../../src/storage/dry-run-backend.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { RateLimitedBackend } from '../../src/storage/rate-limited-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { decodeConfig, encodeConfig } from '../../src/repo/config.js';
import { CorruptObjectError } from '../../src/repo/errors.js';
import { bytes, handleOf, listAll } from './conformance.js';
import { TEST_SCRYPT } from '../helpers/memory-repo.js';

describe('AppendOnlyBackend', () => {
  it('stores and reads every type, refuses to remove any of them, and never overwrites', async () => {
    const inner = new MemoryBackend();
    const b = new AppendOnlyBackend(inner);
    for (const type of OBJECT_TYPES) {
      const h = handleOf(type, type);
      await inner.save(h, bytes(10)); // someone else's object
      await assert.rejects(b.remove(h), (e: unknown) => e instanceof AppendOnlyError && e.message.includes(`the repository is append-only: ${type === 'config' ? 'config' : `${type}/${h.name}`} cannot be removed`));
      await assert.rejects(b.save(h, bytes(10, 2)), AlreadyExistsError);
      assert.deepEqual(await b.load(h), bytes(10));
      assert.equal((await listAll(b, type)).length, 1);
    }
    const fresh = handleOf('snapshot', 'new');
    await b.save(fresh, bytes(3));
    await assert.rejects(b.remove(fresh), AppendOnlyError, 'not even what this client added itself');
    assert.ok(await inner.stat(fresh));
  });

  it('lets a client remove the lock objects it saved itself, once', async () => {
    const b = new AppendOnlyBackend(new MemoryBackend());
    const own = handleOf('lock', 'mine');
    await b.save(own, bytes(5));
    await b.remove(own);
    assert.equal(await b.stat(own), undefined);
    await b.save(own, bytes(5));
    const other = new AppendOnlyBackend(b.inner);
    await assert.rejects(other.remove(own), AppendOnlyError, 'another client instance may not');
  });

  it('declares itself append-only, and other wrappers pass that on with the rest of the inner capabilities', () => {
    const plain = new LocalBackend('/nonexistent/holdfast-caps');
    assert.equal(plain.capabilities.appendOnly, false);
    const wrapped = new DryRunBackend(new RateLimitedBackend(new FaultBackend(new AppendOnlyBackend(plain)), { uploadBytesPerSecond: 1 }));
    assert.deepEqual(wrapped.capabilities, { ...plain.capabilities, appendOnly: true });
    assert.equal(wrapped.capabilities.localPath, '/nonexistent/holdfast-caps');
    assert.equal(new FaultBackend(plain).capabilities.appendOnly, false);
  });
});

describe('append-only repositories', () => {
  it('the config records the mode; older configs without it are not append-only; a bad value is refused', async () => {
    const b = new MemoryBackend();
    const repo = await Repository.init(b, 'pw', { appendOnly: true, scrypt: TEST_SCRYPT });
    assert.equal(repo.config.appendOnly, true);
    const raw = await b.load({ type: 'config', name: 'config' });
    assert.match(raw.toString('latin1'), /"appendOnly":true/);
    assert.equal(decodeConfig(raw).appendOnly, true);
    const normal = await Repository.init(new MemoryBackend(), 'pw', { scrypt: TEST_SCRYPT });
    assert.equal(normal.config.appendOnly, undefined);
    assert.doesNotMatch(encodeConfig(normal.config, Buffer.alloc(32)).toString('latin1'), /appendOnly/);
    const bad = encodeConfig({ ...normal.config, appendOnly: 'yes' } as never, Buffer.alloc(32));
    assert.throws(() => decodeConfig(bad), CorruptObjectError);
  });

  async function modeOf(b: Backend, opts: Parameters<typeof Store.open>[1] = {}): Promise<boolean> {
    return (await Store.open(b, opts)).backend.capabilities.appendOnly;
  }

  it('Store.open wraps per the config, a self-restricting client, or not for the storage owner', async () => {
    const ao = new MemoryBackend();
    await Repository.init(ao, 'pw', { appendOnly: true, scrypt: TEST_SCRYPT });
    const normal = new MemoryBackend();
    await Repository.init(normal, 'pw', { scrypt: TEST_SCRYPT });
    assert.equal(await modeOf(ao), true);
    assert.equal(await modeOf(ao, { storageOwner: true }), false);
    assert.equal(await modeOf(normal), false);
    assert.equal(await modeOf(normal, { appendOnly: true }), true);
    assert.equal(await modeOf(normal, { appendOnly: true, storageOwner: true }), true, 'a restricted credential stays restricted');
  });

  it('a keyless client of an append-only repository lists snapshots but cannot remove them; a Repository opened on it cannot remove keys', async () => {
    const inner = new MemoryBackend();
    const repo = await Repository.init(inner, 'pw', { appendOnly: true, scrypt: TEST_SCRYPT });
    const id = await repo.newWriter().saveSnapshot({
      time: new Date().toISOString(), hostname: 'h', username: 'u', paths: ['/'], tags: [], tree: '0'.repeat(64), summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: '2026-01-01T00:00:00.000Z', end: '2026-01-01T00:00:00.000Z' }, blobs: [],
    });
    const keyless = await Store.open(inner);
    assert.equal(keyless.appendOnly, true);
    const listed = await keyless.listSnapshots();
    assert.deepEqual(listed.ok.map((s) => s.id), [id]);
    assert.equal(listed.damaged.size, 0, 'every snapshot can be read');
    await assert.rejects(keyless.remove('snapshot', id), AppendOnlyError);
    const opened = await Repository.open(keyless, 'pw');
    await opened.addKey('second', TEST_SCRYPT);
    const other = (await opened.listKeys()).find((k) => !k.current)!;
    await assert.rejects(opened.removeKey(other.id), AppendOnlyError);
    assert.equal((await opened.listKeys()).length, 2);
  });
});

/**
 * The repository layer passes the caller's AbortSignal to every backend call
 * (src/repo: store, repository, objects, lock, snapshot fence) and the jobs
 * pass theirs: a storage call that would take an hour ends as soon as the
 * caller aborts, with the caller's reason. Each case holds one kind of call
 * (a FaultBackend delay of an hour, which only the signal can cut short) and
 * aborts the moment that call is made.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultBackend, type FaultOp } from '../../src/storage/fault-backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import type { Backend, Handle, ListOptions, LoadOptions, ObjectInfo, ObjectType, OperationOptions } from '../../src/storage/backend.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { BlobType } from '../../src/repo/pack.js';
import { acquireLock, listLocks, removeLocks, processIdentity } from '../../src/repo/lock.js';
import { rebuildIndex } from '../../src/jobs/repair/index-rebuilder.js';
import { Pruner } from '../../src/jobs/prune/pruner.js';
import { Checker } from '../../src/jobs/check/checker.js';
import { TEST_PASSWORD, memoryRepo } from '../helpers/memory-repo.js';

const HOUR = 3_600_000;

/** Once armed, calls `trip` at the first call of `op` on objects of `type`; passes every call on. */
class Tripwire extends WrapperBackend {
  tripped = false;
  private armed = false;
  constructor(inner: Backend, private readonly op: FaultOp, private readonly type: ObjectType, private readonly trip: () => void) {
    super(inner);
  }

  /** From now on, trips at the first matching call. */
  arm(): void {
    this.armed = true;
  }

  private check(op: FaultOp, type: ObjectType): void {
    if (!this.armed || this.tripped || op !== this.op || type !== this.type) return;
    this.tripped = true;
    this.trip();
  }

  override save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    this.check('save', h.type);
    return super.save(h, data, opts);
  }

  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    this.check('load', h.type);
    return super.load(h, opts);
  }

  override stat(h: Handle, opts?: OperationOptions): Promise<ObjectInfo | undefined> {
    this.check('stat', h.type);
    return super.stat(h, opts);
  }

  override list(type: ObjectType, opts?: ListOptions): AsyncIterable<ObjectInfo> {
    this.check('list', type);
    return super.list(type, opts);
  }

  override remove(h: Handle, opts?: OperationOptions): Promise<void> {
    this.check('remove', h.type);
    return super.remove(h, opts);
  }
}

/** A repository with one snapshot (one data blob, one tree, one index file). */
async function fixture(): Promise<{ backend: Backend; repo: Repository; blob: string }> {
  const { backend, repo } = await memoryRepo();
  const w = repo.newWriter();
  const { id: blob } = await w.saveBlob(BlobType.Data, Buffer.from('some file content'));
  const tree = await w.saveTree([]);
  await w.flush();
  const now = new Date().toISOString();
  await w.saveSnapshot({
    time: now, hostname: 'h', username: 'u', paths: ['/'], tags: [], tree, blobs: [blob, tree].sort(),
    summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: now, end: now },
  });
  return { backend, repo, blob };
}

/**
 * Runs `call` on a view of `backend` where the first `op` on `type` is held
 * for an hour and the caller aborts as it is made: `call` must reject with
 * the abort's reason, and that call must have been made. `prepare` runs on
 * the view before the hold is set (to open a repository through it).
 */
async function endsWithReason<T = Backend>(
  backend: Backend, op: FaultOp, type: ObjectType,
  call: (t: T, signal: AbortSignal) => Promise<unknown>,
  prepare: (b: Backend) => Promise<T> | T = (b) => b as T,
): Promise<void> {
  const ac = new AbortController();
  const reason = new Error(`stopped at ${op} ${type}`);
  const fault = new FaultBackend(backend);
  const held = new Tripwire(fault, op, type, () => ac.abort(reason));
  const t = await prepare(held);
  fault.inject({ op, type, delayMs: HOUR });
  held.arm();
  await assert.rejects(call(t, ac.signal), (e: unknown) => e === reason);
  assert.ok(held.tripped, `no ${op} of ${type} was made`);
}

describe('an abort ends repository calls held in storage, with its reason', { timeout: 60_000 }, () => {
  it('Store: open, list snapshots, load index files, read a pack header, save, remove', async () => {
    const { backend, repo } = await fixture();
    await endsWithReason(backend, 'load', 'config', (b, signal) => Store.open(b, { signal }));
    const store = (b: Backend): Store => repo.store.withBackend(b);
    await endsWithReason(backend, 'list', 'snapshot', (b, signal) => store(b).listSnapshots({ signal }));
    await endsWithReason(backend, 'load', 'snapshot', (b, signal) => store(b).listSnapshots({ signal }));
    await endsWithReason(backend, 'load', 'index', (b, signal) => store(b).loadIndexFiles({ signal }));
    await endsWithReason(backend, 'list', 'deletion', (b, signal) => store(b).loadMarkers({ signal }));
    const [pack] = (await repo.store.list('data')).keys();
    await endsWithReason(backend, 'load', 'data', (b, signal) => store(b).readPackHeader(pack!, undefined, { signal }));
    await endsWithReason(backend, 'stat', 'data', (b, signal) => store(b).readPackHeader(pack!, undefined, { signal }));
    await endsWithReason(backend, 'save', 'index', (b, signal) => store(b).saveIndex({ packs: [], supersedes: [] }, { signal }));
    await endsWithReason(backend, 'remove', 'snapshot', (b, signal) => store(b).remove('snapshot', 'ab'.repeat(32), { signal }));
  });

  it('Repository: open (key files, and the index loaded with it), load the index, list snapshots, read a blob and a tree', async () => {
    const { backend, repo, blob } = await fixture();
    await endsWithReason(backend, 'list', 'key', (b, signal) => Repository.open(repo.store.withBackend(b), TEST_PASSWORD, { signal }));
    await endsWithReason(backend, 'load', 'key', (b, signal) => Repository.open(repo.store.withBackend(b), TEST_PASSWORD, { signal }));
    await endsWithReason(backend, 'list', 'index', (b, signal) => Repository.open(repo.store.withBackend(b), TEST_PASSWORD, { signal, loadIndex: true }));
    // Opened through the view before the hold: only the call under test meets it.
    const opened = (loadIndex = false) => (b: Backend): Promise<Repository> => Repository.open(repo.store.withBackend(b), TEST_PASSWORD, { loadIndex });
    await endsWithReason(backend, 'list', 'deletion', (r, signal) => r.loadIndex({ signal }), opened());
    await endsWithReason(backend, 'load', 'index', (r, signal) => r.loadIndex({ signal }), opened());
    await endsWithReason(backend, 'load', 'snapshot', (r, signal) => r.listSnapshots({ signal }), opened());
    await endsWithReason(backend, 'list', 'key', (r, signal) => r.listKeys({ signal }), opened());
    await endsWithReason(backend, 'load', 'data', (r, signal) => r.loadBlob(BlobType.Data, blob, { signal }), opened(true));
    const { snapshot } = (await repo.listSnapshots()).ok[0]!;
    await endsWithReason(backend, 'load', 'data', (r, signal) => r.loadTree(snapshot.tree, { signal }), opened(true));
  });

  it('a tree read shared by two callers: the one who started it aborts, the other reads again', async () => {
    const { backend, repo } = await fixture();
    const { snapshot } = (await repo.listSnapshots()).ok[0]!;
    const fault = new FaultBackend(backend);
    const r = await Repository.open(repo.store.withBackend(fault), TEST_PASSWORD, { loadIndex: true });
    fault.inject({ op: 'load', type: 'data', delayMs: HOUR, times: 1 });
    const first = new AbortController();
    const reason = new Error('the first caller stops');
    const a = r.loadTree(snapshot.tree, { signal: first.signal });
    const b = r.loadTree(snapshot.tree, { signal: new AbortController().signal });
    first.abort(reason);
    await assert.rejects(a, (e: unknown) => e === reason);
    assert.deepEqual(await b, []);
  });

  it('a write session commits its snapshot behind the fence with its signal', async () => {
    const { backend, repo } = await fixture();
    const { snapshot } = (await repo.listSnapshots()).ok[0]!;
    await endsWithReason<Repository>(backend, 'list', 'data', (r, signal) => r.newWriter({ signal }).saveSnapshot({ ...snapshot, time: new Date().toISOString() }),
      (b) => Repository.open(repo.store.withBackend(b), TEST_PASSWORD, { loadIndex: true }));
  });

  it('locks: taking one (listing others, writing ours, and no lock left behind), listing and removing them', async () => {
    const { backend } = await fixture();
    const take = (b: Backend, signal: AbortSignal): Promise<unknown> => acquireLock(b, { holder: processIdentity(), exclusive: true, signal });
    await endsWithReason(backend, 'list', 'lock', take);
    await endsWithReason(backend, 'save', 'lock', take);
    assert.deepEqual(await listLocks(backend), [], 'an aborted acquire leaves no lock');
    const other = await acquireLock(backend, { holder: processIdentity(), exclusive: false });
    await endsWithReason(backend, 'load', 'lock', take);
    await endsWithReason(backend, 'load', 'lock', (b, signal) => listLocks(b, { signal }));
    await endsWithReason(backend, 'list', 'lock', (b, signal) => removeLocks(b, { all: true, signal }));
    await other.release();
  });

  it('jobs pass theirs: repair index, prune, check', async () => {
    const { backend, repo } = await fixture();
    await endsWithReason(backend, 'load', 'data', (b, signal) => rebuildIndex(repo.store.withBackend(b), { signal }));
    await endsWithReason(backend, 'list', 'deletion', (b, signal) => new Pruner(repo.store.withBackend(b), { signal }).run());
    await endsWithReason(backend, 'load', 'snapshot', (b, signal) => new Checker(repo.store.withBackend(b), { signal }).run());
  });
});

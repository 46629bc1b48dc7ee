/**
 * One worker budget per process: a backup and a restore running at once on
 * one shared `WorkerPool` both give correct results, and the process never
 * runs more worker threads than the pool's (its OS threads, counted in
 * /proc/self/task every time either job touches storage, never grow past
 * what they were with the pool started, but for the backup's one folder
 * scanner thread). Jobs given no pool start their own, which is what this
 * count catches. A pool starts its threads with its first task (or `warm`):
 * a session opened before holds in every thread once they start.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Archiver } from '../../src/jobs/backup/archiver.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { BLOB_WORKER, PoolSession, WorkerPool } from '../../src/jobs/pool/worker-pool.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import type { Backend, Handle, LoadOptions, OperationOptions } from '../../src/storage/backend.js';
import { WrapperBackend } from '../../src/storage/wrapper-backend.js';
import { BlobType } from '../../src/repo/pack.js';
import type { SealResult, Task } from '../../src/jobs/pool/protocol.js';
import { buildTree, compareTrees, removeTree, tempDir, type Dir } from '../fixtures/tree.js';
import { memoryRepo, TEST_PASSWORD } from '../helpers/memory-repo.js';

/** A repository opened afresh on `backend`, index loaded. */
async function open(backend: Backend): Promise<Repository> {
  const r = await Repository.open(await Store.open(backend), TEST_PASSWORD);
  await r.loadIndex();
  return r;
}

const threads = (): number => readdirSync('/proc/self/task').length;

/** Seals one 100-byte blob of each fill byte through `session`. */
const sealFills = (session: PoolSession<Task>, fills: readonly number[]): Promise<SealResult[]> =>
  Promise.all(fills.map((f) => session.run<SealResult>({ kind: 'seal', type: BlobType.Data, data: Buffer.alloc(100, f) })));

/** Each sealed blob opens with the repository's key to its fill: every thread had the session's secrets. */
function assertOpens(repo: Repository, sealed: readonly SealResult[], fills: readonly number[]): void {
  for (const [i, r] of sealed.entries()) {
    const b = r.blob!;
    const plain = repo.openBlob({ type: b.type, id: b.id, flags: b.flags, offset: 0, length: b.sealed.length, rawLength: b.rawLength }, Buffer.from(b.sealed), `blob ${i}`);
    assert.ok(plain.equals(Buffer.alloc(100, fills[i]!)));
  }
}

/** Counts the process's threads on every storage call. */
class ThreadSampler extends WrapperBackend {
  most = 0;
  samples = 0;
  private sample(): void {
    this.most = Math.max(this.most, threads());
    this.samples++;
  }
  override save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    this.sample();
    return super.save(h, data, opts);
  }
  override load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    this.sample();
    return super.load(h, opts);
  }
}

/** Some small files (batched in the workers), a mid-size one and a large one (chunked). */
const tree = (seed: string): Dir => ({
  kind: 'dir',
  entries: {
    small: { kind: 'dir', entries: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, { kind: 'file', size: 3000 + i, seed: `${seed}${i}` }])) },
    mid: { kind: 'file', size: 600_000, seed: `${seed}mid` },
    large: { kind: 'file', size: 6_000_000, seed: `${seed}large` },
  },
});

describe('one worker pool shared by concurrent jobs', { skip: readdirSync('/proc/self').includes('task') ? false : 'needs /proc/self/task' }, () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('shared-pool');
  });
  after(async () => {
    await removeTree(dir);
  });

  it('a backup and a restore at once on a pool of 2: both correct, never more threads than the pool', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    await mkdir(a);
    await mkdir(b);
    await buildTree(a, tree('a'));
    await buildTree(b, tree('b'));
    const { backend } = await memoryRepo();
    const first = await open(backend);
    const snapA = await new Archiver(first, { paths: [a], parent: null, workers: 1 }).run();

    const pool = new WorkerPool(2);
    try {
      // Every thread up (each ran a task), and the I/O threads of the runtime started, before counting.
      const warm = PoolSession.blobs(first, { pool });
      await Promise.all(Array.from({ length: 8 }, () => warm.run<SealResult>({ kind: 'seal', type: BlobType.Data, data: Buffer.alloc(100, 1) })));
      await warm.close();
      await Promise.all(Array.from({ length: 16 }, () => stat(dir)));
      // A backup without a parent lists folders in a scanner thread (dir-scanner.ts): it waits on lstat, it is not a pool worker.
      const budget = threads() + 1;

      const sampler = new ThreadSampler(backend);
      const backupRepo = await open(sampler);
      const restoreRepo = await open(sampler);
      const target = join(dir, 'restored');
      const [snapB, restored] = await Promise.all([
        new Archiver(backupRepo, { paths: [b], parent: null, pool }).run(),
        new Restorer(restoreRepo, target, { pool, verify: true }).run(snapA.snapshot.tree),
      ]);
      assert.ok(sampler.samples > 10, `storage was used ${sampler.samples} times`);
      assert.ok(sampler.most <= budget, `${sampler.most} threads while the jobs ran, ${budget} with the pool of 2 alone`);
      assert.deepEqual([restored.failed, restored.verifyFailed], [[], []]);
      await compareTrees(join(a), join(target, a), { ignoreRootMetadata: true });

      // The backup made on the shared pool restores to its source.
      const check = await open(backend);
      const again = join(dir, 'restored-b');
      const r = await new Restorer(check, again, { pool }).run((await check.loadSnapshot(snapB.id!)).tree);
      assert.deepEqual(r.failed, []);
      await compareTrees(b, join(again, b), { ignoreRootMetadata: true });
    } finally {
      await pool.close();
    }
  });

  it('starts no thread until the first task, then its threads, each with the sessions opened before', async () => {
    const { backend } = await memoryRepo();
    const repo = await open(backend);
    const before = threads();
    const pool = new WorkerPool(2);
    try {
      const session = PoolSession.blobs(repo, { pool });
      assert.equal(pool.size, 2);
      assert.equal(threads(), before, 'a pool and a session, and no thread yet');
      const fills = [1, 2, 3, 4, 5, 6, 7, 8];
      const sealed = await sealFills(session, fills);
      assert.ok(threads() >= before + 2, `${threads()} threads after the first tasks, ${before} before`);
      assertOpens(repo, sealed, fills);
      await session.close();
    } finally {
      await pool.close();
    }
  });

  it('warm starts the threads at once, and a session opened after them runs on them', async () => {
    const { backend } = await memoryRepo();
    const repo = await open(backend);
    const before = threads();
    const pool = new WorkerPool(2);
    try {
      pool.warm(BLOB_WORKER);
      assert.ok(threads() >= before + 2, `${threads()} threads after warm, ${before} before`);
      const started = threads();
      const session = PoolSession.blobs(repo, { pool });
      const fills = [7, 8, 9, 10];
      const sealed = await sealFills(session, fills);
      assert.equal(threads(), started, 'no thread started for the session');
      assertOpens(repo, sealed, fills);
      await session.close();
    } finally {
      await pool.close();
    }
  });
});

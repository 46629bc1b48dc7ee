/**
 * What one writer counts as stored, when several share an open repository
 * (a long-running process): only packs that a durable index file lists. A
 * writer that is cancelled, never flushed, or whose index file fails to save
 * must not let another writer commit a snapshot that a fresh open of the
 * repository cannot restore; what it stored is adopted by the next session,
 * and a failed index file is written again by the next flush. A backup
 * session started early (its work beside the lock) writes nothing before
 * it holds the lock: refused, it stored nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Archiver, type BackupResult } from '../../src/jobs/backup/archiver.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { backupSession } from '../../src/jobs/sessions/backup-session.js';
import { acquireLock, LockedError, processIdentity } from '../../src/repo/lock.js';
import { BlobType } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import type { Backend } from '../../src/storage/backend.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { TEST_PASSWORD, TEST_SCRYPT } from '../helpers/memory-repo.js';
import { assertSameTree } from '../helpers/restore-check.js';

const me = processIdentity();
/** Small packs: one blob of a test file fills one. */
const PACK = 1 << 16;

async function openRepo(): Promise<{ backend: FaultBackend; repo: Repository }> {
  const backend = new FaultBackend(new MemoryBackend());
  await Repository.init(backend, TEST_PASSWORD, { scrypt: TEST_SCRYPT, packSize: PACK, compression: 'off' });
  const repo = await Repository.open(await Store.open(backend), TEST_PASSWORD);
  await repo.loadIndex();
  return { backend, repo };
}

async function countPacks(backend: Backend): Promise<number> {
  let n = 0;
  for await (const _ of backend.list('data')) n++;
  return n;
}

/** Waits until the writer's pack upload has landed in storage (no clock involved: each turn yields to the upload). */
async function untilPacks(backend: Backend, n: number): Promise<void> {
  for (let turn = 0; turn < 1000; turn++) {
    if (await countPacks(backend) >= n) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`no ${n} pack(s) stored`);
}

describe('RepositoryWriter: what other writers count as stored', () => {
  let dir: string;
  let src: string;
  let content: Buffer;
  let restores = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-writer-'));
    src = join(dir, 'src');
    await mkdir(src);
    // Under the chunker's minimum: the file is one blob, the one a writer stores by itself below.
    content = randomBytes(100_000);
    await writeFile(join(src, 'f.bin'), content);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** A fresh open of the repository (another process, or this one restarted) restores the snapshot byte for byte. */
  async function restoresFromFreshOpen(backend: Backend, r: BackupResult, from = src): Promise<void> {
    const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    await fresh.loadIndex();
    const target = join(dir, `restore-${++restores}`);
    const restored = await new Restorer(fresh, target, { verify: true, workers: 1 }).run(r.snapshot.tree);
    assert.deepEqual(restored.failed, []);
    assertSameTree(from, join(target, from));
    fresh.close();
  }

  for (const end of ['aborted', 'never flushed'] as const) {
    it(`a writer ${end} after storing a pack: another writer stores the blob again, and its snapshot restores from a fresh open`, async () => {
      const { backend, repo } = await openRepo();
      const abort = new AbortController();
      const first = repo.newWriter({ signal: abort.signal });
      const { id } = await first.saveBlob(BlobType.Data, content);
      await untilPacks(backend, 1);
      assert.equal(first.hasBlob(id), true, 'the writer deduplicates against its own stored pack');
      assert.equal(repo.index.has(id), false, 'no index file lists the pack yet: other writers do not see it');

      const r = await new Archiver(repo, { paths: [src], parent: null, workers: 1 }).run();
      assert.ok(r.snapshot.summary.blobsAdded >= 2, 'the file\'s blob and its tree were stored by the second writer');
      if (end === 'aborted') {
        abort.abort(new Error('job cancelled'));
        await assert.rejects(first.flush(), /job cancelled/);
      }
      await restoresFromFreshOpen(backend, r);

      // The next session in the same process adopts the pack the first writer left.
      let adopted = 0;
      await backupSession(repo, { holder: me, machine: me, onOrphansIndexed: (n) => (adopted = n) }, async () => undefined);
      assert.equal(adopted, 1);
      assert.equal(repo.index.copies(id).length, 2, 'both copies of the blob are indexed now');
      repo.close();
    });
  }

  it('a writer whose index file fails to save: another writer\'s snapshot restores from a fresh open, and the next flush writes the index file', async () => {
    const { backend, repo } = await openRepo();
    const first = repo.newWriter();
    const { id } = await first.saveBlob(BlobType.Data, content);
    await untilPacks(backend, 1);
    const r = await new Archiver(repo, { paths: [src], parent: null, workers: 1 }).run();
    await restoresFromFreshOpen(backend, r);

    backend.inject({ op: 'save', type: 'index', times: 1, error: new Error('503 once') });
    await assert.rejects(first.flush(), /503 once/);
    const between = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    await between.loadIndex();
    assert.equal(between.index.copies(id).length, 1, 'only the second writer\'s copy is indexed');
    assert.equal(repo.index.copies(id).length, 1, 'nor does this process count the first writer\'s copy');

    await first.flush();
    const fresh = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    await fresh.loadIndex();
    assert.equal(fresh.index.copies(id).length, 2, 'the second flush wrote the index file the first one failed to');
    assert.equal(repo.index.copies(id).length, 2);
    assert.ok((await fresh.loadBlob(BlobType.Data, id)).equals(content));
    repo.close();
  });

  it('a backup session cancelled after storing packs: the next session in the same process adopts them, and its snapshot restores from a fresh open', async () => {
    const many = join(dir, 'many');
    await mkdir(many);
    // Over the chunker's minimum, so not batched: each file fills a pack or two.
    for (let i = 0; i < 6; i++) await writeFile(join(many, `f${i}.bin`), randomBytes(600_000));
    const { backend, repo } = await openRepo();
    const abort = new AbortController();
    // The cancel comes as the third pack is saved: two are stored by then.
    backend.inject({ op: 'save', type: 'data', after: 2, times: 1, interleave: async () => abort.abort(new Error('job cancelled')) });
    await assert.rejects(backupSession(repo, { holder: me, machine: me, signal: abort.signal }, (signal) => new Archiver(repo, { paths: [many], parent: null, workers: 1, signal }).run()), /job cancelled/);
    const left = await countPacks(backend);
    assert.ok(left >= 2, `${left} packs stored`);

    let adopted = 0;
    const r = await backupSession(repo, { holder: me, machine: me, onOrphansIndexed: (n) => (adopted = n) }, (signal) => new Archiver(repo, { paths: [many], parent: null, workers: 1, signal }).run());
    assert.equal(adopted, left, 'every pack the cancelled session stored is adopted');
    assert.ok(r.snapshot.summary.dataAdded <= 6 * 600_000 - 2 * PACK, 'blobs the cancelled session stored are reused');
    await restoresFromFreshOpen(backend, r, many);
    repo.close();
  });

  it('a backup session started early reads beside the lock and writes nothing before it holds it: refused, it stored nothing; free, it stores a snapshot that restores', async () => {
    const early = join(dir, 'early');
    await mkdir(early);
    // Over the chunker's minimum, under twice it: each file is one or two blobs, each filling a pack.
    for (let i = 0; i < 3; i++) await writeFile(join(early, `f${i}.bin`), randomBytes(600_000));
    const { backend, repo } = await openRepo();
    const repair = await acquireLock(backend, { holder: me, machine: me, exclusive: true, operation: 'repair' });
    let fileDone: () => void = () => undefined;
    const readOne = new Promise<void>((resolve) => (fileDone = resolve));
    // The session's lock looks at the others' once its work has sealed a file (and would have uploaded it), and a hundred turns later.
    backend.inject({
      op: 'list', type: 'lock', times: 1, interleave: async () => {
        await readOne;
        for (let turn = 0; turn < 100; turn++) await new Promise((r) => setImmediate(r));
      },
    });
    const run = (): Promise<BackupResult> => backupSession(repo, { holder: me, machine: me, early: true }, (signal, ready) => new Archiver(repo, { paths: [early], parent: null, workers: 1, signal, ready, onFile: () => fileDone() }).run());
    await assert.rejects(run(), (e: unknown) => e instanceof LockedError && /locked exclusively by repair/.test(e.message));
    assert.equal(await countPacks(backend), 0, 'no pack was uploaded');
    for (const type of ['index', 'snapshot'] as const) for await (const o of backend.list(type)) assert.fail(`${type} ${o.name} was written`);

    await repair.release();
    const r = await run();
    await restoresFromFreshOpen(backend, r, early);
    repo.close();
  });
});

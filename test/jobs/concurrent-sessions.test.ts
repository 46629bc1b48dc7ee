/**
 * One process, one open repository, several jobs at once (issue 15's "done
 * when"), through the library alone: two backups of different folders, each
 * in its own backup session and write session, and a check beside them. Each
 * snapshot's summary counts what its own backup added, exactly what the same
 * backup adds alone in a fresh repository; both restore byte for byte; the
 * check is clean. And an upload error fails only the writer that met it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver, type BackupResult } from '../../src/jobs/backup/archiver.js';
import { Checker } from '../../src/jobs/check/checker.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { backupSession } from '../../src/jobs/sessions/backup-session.js';
import { listLocks, processIdentity } from '../../src/repo/lock.js';
import { BlobType } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { FaultBackend } from '../../src/storage/fault-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { TEST_PASSWORD, TEST_SCRYPT, memoryRepo } from '../helpers/memory-repo.js';
import { assertSameTree } from '../helpers/restore-check.js';

const me = processIdentity();

describe('one repository, several jobs at once', () => {
  let dir: string;
  let srcA: string;
  let srcB: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-sessions-'));
    // Files under the chunker's minimum (one blob each, or batched): the same blobs in any repository.
    srcA = join(dir, 'a');
    srcB = join(dir, 'b');
    await mkdir(join(srcA, 'docs'), { recursive: true });
    await mkdir(srcB);
    for (let i = 0; i < 30; i++) await writeFile(join(srcA, 'docs', `note${i}.txt`), `note ${i} of folder a\n`.repeat(i * 20 + 1));
    await writeFile(join(srcA, 'photo.bin'), randomBytes(300_000));
    await writeFile(join(srcB, 'video.bin'), randomBytes(450_000));
    await writeFile(join(srcB, 'audio.bin'), randomBytes(200_000));
    for (let i = 0; i < 12; i++) await writeFile(join(srcB, `log${i}.txt`), `line ${i} of folder b\n`.repeat(i * 50 + 3));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** Counts as a snapshot summary has them. */
  const added = (r: BackupResult): { blobsAdded: number; dataAdded: number; dataAddedStored: number } => {
    const { blobsAdded, dataAdded, dataAddedStored } = r.snapshot.summary;
    return { blobsAdded, dataAdded, dataAddedStored };
  };

  it('two backups and a check on one open repository: each summary has its own backup\'s bytes, both restore, the check is clean', async () => {
    // Compression off: stored sizes then do not depend on the keyed ids inside tree blobs.
    const aloneA = await new Archiver((await memoryRepo({ compression: 'off' })).repo, { paths: [srcA], parent: null, workers: 1 }).run();
    const aloneB = await new Archiver((await memoryRepo({ compression: 'off' })).repo, { paths: [srcB], parent: null, workers: 1 }).run();
    assert.ok(aloneA.snapshot.summary.blobsAdded > 0 && aloneB.snapshot.summary.blobsAdded > 0);

    const { backend } = await memoryRepo({ compression: 'off' });
    const repo = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    await repo.loadIndex();
    // Both sessions start their backups only once both are inside their sessions.
    let entered = 0;
    let bothIn!: () => void;
    const both = new Promise<void>((resolve) => (bothIn = resolve));
    let locksSeen = 0;
    const backup = (paths: string[]): Promise<BackupResult> => backupSession(repo, { holder: me, machine: me }, async (signal) => {
      if (++entered === 2) bothIn();
      await both;
      locksSeen = Math.max(locksSeen, (await listLocks(repo.backend)).length);
      return new Archiver(repo, { paths, parent: null, workers: 1, signal }).run();
    });
    const [a, b, during] = await Promise.all([
      backup([srcA]),
      backup([srcB]),
      new Checker(repo.store, { keyed: repo, readData: { kind: 'all' } }).run(),
    ]);
    assert.deepEqual(during.errors, [], 'the check beside the backups finds no error');
    assert.equal(locksSeen, 2, 'each session held its own shared lock, both at once');
    assert.deepEqual(await listLocks(repo.backend), [], 'both locks released');

    assert.deepEqual(added(a), added(aloneA), 'backup A counts its own blobs and bytes, as alone');
    assert.deepEqual(added(b), added(aloneB), 'backup B counts its own blobs and bytes, as alone');
    assert.equal((await repo.listSnapshots()).ok.length, 2);

    const after = await new Checker(repo.store, { keyed: repo, readData: { kind: 'all' } }).run();
    assert.deepEqual(after.errors, []);
    assert.deepEqual(after.warnings, []);
    for (const [r, src, name] of [[a, srcA, 'ra'], [b, srcB, 'rb']] as const) {
      const target = join(dir, name);
      const restored = await new Restorer(repo, target, { verify: true, workers: 1 }).run(r.snapshot.tree);
      assert.deepEqual(restored.failed, []);
      assertSameTree(src, join(target, src));
    }
    repo.close();
    repo.close(); // idempotent
  });

  it('an upload error fails the flush of the writer that met it, and no other writer open beside it or after it', async () => {
    const fb = new FaultBackend(new MemoryBackend());
    await Repository.init(fb, TEST_PASSWORD, { scrypt: TEST_SCRYPT, packSize: 1 << 16 });
    const repo = await Repository.open(await Store.open(fb), TEST_PASSWORD);
    await repo.loadIndex();
    const failing = repo.newWriter();
    const beside = repo.newWriter();
    const lost = randomBytes(10_000);
    const kept = randomBytes(10_000);
    await failing.saveBlob(BlobType.Data, lost);
    await beside.saveBlob(BlobType.Data, kept);
    fb.inject({ op: 'save', type: 'data', times: 1, error: new Error('disk on fire') });
    await assert.rejects(failing.flush(), /disk on fire/);
    await assert.rejects(failing.flush(), /disk on fire/, 'the failed writer stays failed');
    await assert.rejects(failing.saveBlob(BlobType.Data, randomBytes(100)), /disk on fire/);
    await beside.flush();
    const next = repo.newWriter();
    const { id, added } = await next.saveBlob(BlobType.Data, lost);
    assert.equal(added, true, 'the blob the failed writer lost is stored again');
    await next.flush();
    assert.equal(next.stats.blobsAdded, 1);
    const fresh = await Repository.open(await Store.open(fb), TEST_PASSWORD);
    await fresh.loadIndex();
    assert.ok((await fresh.loadBlob(BlobType.Data, id)).equals(lost));
    assert.ok((await fresh.loadBlob(BlobType.Data, repo.blobId(kept))).equals(kept));
  });
});

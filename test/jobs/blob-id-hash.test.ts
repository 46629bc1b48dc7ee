/**
 * Blob ids follow the repository's config through the whole pipeline: in a
 * repository made before BLAKE3 ids (no `blobIds` in its config, so
 * HMAC-SHA256), the workers' batches, mid-size chunks and large-file chunks
 * get HMAC-SHA256 ids, check reads every blob and finds them right, and a
 * verified restore gives back the same bytes. A new repository's ids are
 * keyed BLAKE3, so the same files get other ids there.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver } from '../../src/jobs/backup/archiver.js';
import { Checker } from '../../src/jobs/check/checker.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { BlobType } from '../../src/repo/pack.js';
import type { Repository } from '../../src/repo/repository.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import { withoutBlobIdsField } from '../helpers/hmac-repo.js';

describe('blob ids follow the config', () => {
  let dir: string;
  let src: string;
  const files = new Map<string, Buffer>();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-ids-'));
    src = join(dir, 'src');
    await mkdir(join(src, 'small'), { recursive: true });
    for (let i = 0; i < 40; i++) files.set(`small/f${i}`, Buffer.from(`small file ${i}\n`.repeat(i * 13 + 1)));
    files.set('mid.bin', randomBytes(6 << 20));
    files.set('large.bin', randomBytes(40 << 20));
    for (const [name, data] of files) await writeFile(join(src, name), data);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** Backs up `src`, checks every blob by reading it, restores with verify; returns the ids of data blobs written. */
  async function roundTrip(repo: Repository, target: string): Promise<string[]> {
    const r = await new Archiver(repo, { paths: [src], parent: null }).run();
    const report = await new Checker(repo.store, { keyed: repo, readData: { kind: 'all' } }).run();
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.badCopies, []);
    const restored = await new Restorer(repo, target, { verify: true }).run(r.snapshot.tree);
    assert.deepEqual(restored.failed, []);
    assert.deepEqual(restored.verifyFailed, []);
    for (const [name, data] of files) assert.ok((await readFile(join(target, src, name))).equals(data), name);
    const ids: string[] = [];
    for (const id of r.snapshot.blobs) if (repo.index.lookup(id)?.type === BlobType.Data) ids.push(id);
    return ids.sort();
  }

  it('HMAC-SHA256 in a repository made before BLAKE3, keyed BLAKE3 in a new one', async () => {
    const old = await memoryRepo();
    const hmacRepo = await withoutBlobIdsField(old.backend);
    assert.equal(hmacRepo.config.blobIds, 'hmac-sha256');
    const hmacIds = await roundTrip(hmacRepo, join(dir, 'restore-hmac'));
    const idKey = hmacRepo.workerSecrets().id;
    // Every data blob's id is the HMAC of its plaintext, whichever thread made it.
    assert.ok(hmacIds.length > 3);
    for (const id of hmacIds) {
      assert.equal(createHmac('sha256', idKey).update(await hmacRepo.loadBlob(BlobType.Data, id)).digest('hex'), id);
    }

    const fresh = await memoryRepo();
    assert.equal(fresh.repo.config.blobIds, 'blake3');
    const blakeIds = await roundTrip(fresh.repo, join(dir, 'restore-blake3'));
    for (const id of blakeIds) assert.equal(fresh.repo.blobId(await fresh.repo.loadBlob(BlobType.Data, id)), id);
    const freshKey = fresh.repo.workerSecrets().id;
    const someBlob = await fresh.repo.loadBlob(BlobType.Data, blakeIds[0]!);
    assert.notEqual(createHmac('sha256', freshKey).update(someBlob).digest('hex'), blakeIds[0]);
  });
});

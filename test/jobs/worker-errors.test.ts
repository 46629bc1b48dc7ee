/**
 * Errors raised in worker threads reach the main thread as they were
 * thrown (src/jobs/pool/wire-error.ts): their class, code, message and
 * stack, so that the CLI gives them the exit code it gives the same error
 * raised on the main thread, and a restore reports the code of a blob that
 * fails authentication in a worker as reading it on the main thread does.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver } from '../../src/jobs/backup/archiver.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { WorkerPool } from '../../src/jobs/pool/worker-pool.js';
import { WorkerError } from '../../src/jobs/pool/wire-error.js';
import { CorruptObjectError, ForgedObjectError } from '../../src/repo/errors.js';
import { BlobType } from '../../src/repo/pack.js';
import { errorCode } from '../../src/core/errors.js';
import { exitOf } from '../../src/cli/exit-codes.js';
import type { Handle, LoadOptions } from '../../src/storage/backend.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import type { ThrowTask } from '../helpers/throwing-task.js';

const TASK = new URL('../helpers/throwing-task.js', import.meta.url);

describe('errors from worker threads', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-worker-errors-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('keep their class, code, message and stack, and so their exit code', async () => {
    const pool = new WorkerPool(1);
    const session = pool.session<ThrowTask>(TASK, {});
    try {
      const corrupt = await session.run('corrupt').then(() => assert.fail('resolved'), (e: unknown) => e);
      const here = new CorruptObjectError('pack 00ff, blob 11ee', 'authentication failed');
      assert.ok(corrupt instanceof CorruptObjectError);
      assert.equal(corrupt.message, here.message);
      assert.equal(corrupt.name, 'CorruptObjectError');
      assert.equal(corrupt.object, 'pack 00ff, blob 11ee');
      assert.equal(errorCode(corrupt), 'CORRUPT');
      assert.deepEqual(exitOf(corrupt), exitOf(here));
      assert.match(corrupt.stack ?? '', /throwing-task\.js/); // the worker's stack

      const forged = await session.run('forged').then(() => assert.fail('resolved'), (e: unknown) => e);
      assert.ok(forged instanceof ForgedObjectError);
      assert.equal(errorCode(forged), 'FORGED');
      assert.equal(forged.message, new ForgedObjectError('snapshot 22dd', 'it is left out').message);
      assert.deepEqual(exitOf(forged), { code: 1, known: true });

      const enospc = await session.run('enospc').then(() => assert.fail('resolved'), (e: unknown) => e);
      assert.ok(enospc instanceof WorkerError);
      assert.equal((enospc as WorkerError).code, 'ENOSPC');
      assert.equal(enospc.message, 'ENOSPC: no space left on device, write');

      const plain = await session.run('plain').then(() => assert.fail('resolved'), (e: unknown) => e);
      assert.equal((plain as Error).name, 'RangeError');
      assert.deepEqual(exitOf(plain), { code: 1, known: false });
    } finally {
      await session.close();
      await pool.close();
    }
  });

  it('a blob that fails authentication: the restore through the workers reports the code reading it here gives', async () => {
    const src = join(dir, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'f.bin'), randomBytes(100_000));
    const { backend, repo } = await memoryRepo();
    const r = await new Archiver(repo, { paths: [src], parent: null }).run();
    const data = [...r.snapshot.blobs].map((id) => repo.index.lookup(id)!).find((l) => l.type === BlobType.Data)!;
    // Every read of the data pack comes back with one byte changed: the blob fails authentication.
    const load = backend.load.bind(backend);
    backend.load = async (h: Handle, opts?: LoadOptions): Promise<Buffer> => {
      const b = await load(h, opts);
      if (h.type !== 'data' || h.name !== data.pack) return b;
      const c = Buffer.from(b);
      c[c.length >> 1]! ^= 1;
      return c;
    };

    const restored = await new Restorer(repo, join(dir, 'restore'), { workers: 1 }).run(r.snapshot.tree);
    const here = await repo.loadBlob(BlobType.Data, data.id).then(() => assert.fail('resolved'), (e: unknown) => e);
    assert.match((here as Error).message, /authentication failed/);
    assert.equal(restored.failed.length, 1);
    const [failed] = restored.failed;
    assert.match(failed!.path, /f\.bin$/);
    assert.equal(failed!.error, (here as Error).message);
    assert.equal(failed!.code, errorCode(here));
    assert.equal(failed!.code, 'CORRUPT');
  });
});

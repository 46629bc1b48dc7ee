/**
 * Errors reach exit codes through their stable codes (src/core/errors.ts) in
 * one table (src/cli/exit-codes.ts), the README's "Exit codes": each named
 * error class maps to its documented exit code, and the real CLI exits so,
 * with its message and no stack trace (also with HOLDFAST_DEBUG, for an
 * error that has a code).
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ERROR_CODES, errorCode } from '../../src/core/errors.js';
import { EXIT_BY_ERROR_CODE, ExitError, exitOf } from '../../src/cli/exit-codes.js';
import { BlobNotFoundError, CorruptObjectError, ForgedObjectError, NotARepositoryError, RetiredVersionError, UnsupportedVersionError, WrongPasswordError } from '../../src/repo/errors.js';
import { LockLostError, LockedError } from '../../src/repo/lock.js';
import { AppendOnlyError } from '../../src/storage/append-only-backend.js';
import { AlreadyExistsError, NotFoundError, TransientError } from '../../src/storage/backend.js';
import { AuthenticationError } from '../../src/core/crypto.js';
import { PruneRefusedError } from '../../src/jobs/prune/pruner.js';
import { NotAnImageSnapshotError } from '../../src/jobs/image/image-reader.js';
import { BlobsLostError } from '../../src/repo/snapshot-fence.js';
import { CopyRefusedError } from '../../src/jobs/copy/snapshot-copier.js';
import { BadSnapshotNameError, SnapshotNotFoundError } from '../../src/jobs/snapshots/select.js';
import { RetriesExhaustedError } from '../../src/storage/retrying-backend.js';
import { QuotaExceededError } from '../../src/storage/http-backend.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { HookFailedError } from '../../src/jobs/sessions/backup-hooks.js';
import { SnapshotFailedError } from '../../src/sources/fs-snapshots/tools.js';
import { acquireLock, processIdentity } from '../../src/repo/lock.js';
import { BadScratchError } from '../../src/jobs/verify-restore/scratch.js';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

describe('exit codes', () => {
  it('each named error carries its code, and each code its documented exit code', () => {
    const h = { type: 'data' as const, name: 'ab' };
    const cases: [Error, string, number][] = [
      [new WrongPasswordError(), 'WRONG_PASSWORD', 12],
      [new NotARepositoryError('/r'), 'NOT_A_REPOSITORY', 10],
      [new LockedError([], true), 'LOCKED', 11],
      [new LockLostError('gone'), 'LOCK_LOST', 11],
      [new AppendOnlyError(h), 'APPEND_ONLY', 13],
      [new QuotaExceededError('disk safe s is over its hard quota'), 'QUOTA_EXCEEDED', 14],
      [new CorruptObjectError('pack ab', 'short'), 'CORRUPT', 1],
      [new ForgedObjectError('snapshot ab', 'skipped'), 'FORGED', 1],
      [new UnsupportedVersionError('config', 9, 2), 'UNSUPPORTED_VERSION', 1],
      [new RetiredVersionError(1, 2, 'made before'), 'RETIRED_VERSION', 1],
      [new BlobNotFoundError('ab', 'blob'), 'BLOB_NOT_FOUND', 1],
      [new NotFoundError(h), 'NOT_FOUND', 1],
      [new AlreadyExistsError(h), 'ALREADY_EXISTS', 1],
      [new TransientError('503'), 'TRANSIENT', 1],
      [new AuthenticationError('blob ab'), 'AUTHENTICATION', 1],
      [new PruneRefusedError('damaged'), 'PRUNE_REFUSED', 1],
      [new NotAnImageSnapshotError('snapshot ab'), 'NOT_AN_IMAGE_SNAPSHOT', 1],
      [new BlobsLostError(['ab']), 'BLOBS_LOST', 1],
      [new CopyRefusedError('other keys'), 'COPY_REFUSED', 1],
      [new SnapshotNotFoundError('no snapshot matches'), 'SNAPSHOT_NOT_FOUND', 1],
      [new BadSnapshotNameError('"x" is neither "latest" nor a snapshot id'), 'BAD_SNAPSHOT_NAME', 2],
      [new RetriesExhaustedError('save data/ab', 5, 1000, new TransientError('503')), 'RETRIES_EXHAUSTED', 1],
      [new HookFailedError('the before-backup hook failed', 'before-backup'), 'HOOK_FAILED', 16],
      [new SnapshotFailedError('/srv is on ext4, not btrfs'), 'SNAPSHOT_FAILED', 1],
      [new BadScratchError('the scratch folder s is not empty'), 'BAD_TARGET', 1],
    ];
    for (const [e, code, exit] of cases) {
      assert.equal(errorCode(e), code, e.name);
      assert.deepEqual(exitOf(e), { code: exit, known: true }, e.name);
    }
    assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'codes are distinct');
    for (const c of ERROR_CODES) assert.ok([1, 2, 10, 11, 12, 13, 14, 16].includes(EXIT_BY_ERROR_CODE[c]), c);
    // A system error's errno code, or a plain error, is not one of ours: exit 1, a fault.
    const enoent = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    assert.equal(errorCode(enoent), undefined);
    assert.deepEqual(exitOf(enoent), { code: 1, known: false });
    assert.deepEqual(exitOf(new ExitError('bad flag', 2)), { code: 2, known: true });
  });

  describe('through the CLI', () => {
    let s: Sandbox;
    before(async () => {
      s = await Sandbox.create('holdfast-exit-');
      await mkdir(s.path('data'));
      await writeFile(s.path('data', 'f'), 'x');
    });
    after(async () => {
      await s.remove();
    });

    it('no repository 10, wrong password 12, locked 11, append-only 13, a file snapshot given to restore-image 1 (no stack trace even with HOLDFAST_DEBUG)', async () => {
      const debug = { HOLDFAST_DEBUG: '1' };
      failsWith(await s.run(['snapshots'], { env: debug }), 10, /no holdfast repository at/);
      await s.ok(['init']);
      await s.ok(['backup', '-q', s.path('data')]);
      failsWith(await s.run(['snapshots'], { env: { ...debug, HOLDFAST_PASSWORD: 'wrong' } }), 12, /wrong password/);
      const lock = await acquireLock(new LocalBackend(s.repo), { holder: processIdentity(), exclusive: true, operation: 'repair' });
      try {
        // In local time, as every time printed for people (it printed the lock's ISO time in UTC).
        const locked = failsWith(await s.run(['backup', s.path('data')], { env: { ...debug, TZ: 'Asia/Tokyo' } }), 11, /the repository is locked exclusively by repair/);
        const taken = new Date(Date.now() + 9 * 3600_000).toISOString().slice(0, 10);
        assert.match(locked, new RegExp(`taken ${taken} \\d\\d:\\d\\d:\\d\\d, heartbeat`));
      } finally {
        await lock.release();
      }
      failsWith(await s.run(['forget', '--keep-last', '1'], { env: { ...debug, HOLDFAST_APPEND_ONLY: '1' } }), 13, /append-only/);
      const [file] = await snapshotsOf(s);
      failsWith(await s.run(['restore-image', file!.id, '--to', s.path('out.img')], { env: debug }), 1, /is not an image snapshot/);
    });

    it('a repository location that cannot be: 2, a usage error, naming the rule (no stack trace)', async () => {
      const debug = { HOLDFAST_DEBUG: '1' };
      failsWith(await s.run(['-r', 's3:https://127.0.0.1:1/Bad_Bucket', 'snapshots'], { env: debug }), 2, /"Bad_Bucket" is not a valid bucket name/);
      failsWith(await s.run(['-r', 'sftp://host/path', 'snapshots'], { env: debug }), 2, /unknown scheme "sftp:"/);
      failsWith(await s.run(['-r', 'https://127.0.0.1:1/nosafes', 'snapshots'], { env: debug }), 2, /a server's disk safe is https:\/\/HOST:PORT\/safes\/NAME/);
    });
  });
});

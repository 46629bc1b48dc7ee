/**
 * The environment variables the CLI reads and passes down as options
 * (src/cli/environment.ts); nothing below src/cli reads them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableParallelism } from 'node:os';
import { cacheRoot, minGraceMs, scryptParams, workerCount } from '../../src/cli/environment.js';
import { DEFAULT_SCRYPT_PARAMS } from '../../src/core/crypto.js';
import { DEFAULT_MIN_GRACE_MS } from '../../src/repo/deletion-marker.js';
import { ExitError } from '../../src/cli/exit-codes.js';

describe('CLI environment', () => {
  it('HOLDFAST_SCRYPT_N sets N of new key files; a bad value is a usage error', () => {
    assert.deepEqual(scryptParams({ HOLDFAST_SCRYPT_N: '2048' }), { N: 2048, r: 8, p: 1 });
    assert.deepEqual(scryptParams({}), DEFAULT_SCRYPT_PARAMS);
    for (const bad of ['abc', '1000', '0', String(2 ** 23), '-1024']) {
      assert.throws(() => scryptParams({ HOLDFAST_SCRYPT_N: bad }), (e: unknown) => e instanceof ExitError && e.exitCode === 2 && /HOLDFAST_SCRYPT_N/.test(e.message), bad);
    }
  });

  it('HOLDFAST_MIN_GRACE, HOLDFAST_WORKERS and the cache folder', () => {
    assert.equal(minGraceMs({ HOLDFAST_MIN_GRACE: '6s' }), 6000);
    assert.equal(minGraceMs({}), DEFAULT_MIN_GRACE_MS);
    assert.throws(() => minGraceMs({ HOLDFAST_MIN_GRACE: 'soon' }), /HOLDFAST_MIN_GRACE: bad duration/);
    assert.equal(workerCount({ HOLDFAST_WORKERS: '3' }), 3);
    assert.equal(workerCount({ HOLDFAST_WORKERS: '0' }), availableParallelism());
    assert.equal(cacheRoot({ HOLDFAST_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' }), '/c');
    assert.equal(cacheRoot({ XDG_CACHE_HOME: '/x' }), '/x/holdfast');
  });
});

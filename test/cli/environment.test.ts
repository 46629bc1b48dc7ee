/**
 * The environment variables the CLI reads and passes down as options
 * (src/cli/environment.ts); nothing below src/cli reads them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { availableParallelism } from 'node:os';
import { cacheRoot } from '../../src/cli/cache-root.js';
import { httpSettings, minGraceMs, retryForMs, s3Settings, scryptParams, workerCount } from '../../src/cli/environment.js';
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

  it('HOLDFAST_RETRY_FOR bounds the retries; a bad value is a usage error', () => {
    assert.equal(retryForMs({ HOLDFAST_RETRY_FOR: '3s' }), 3000);
    assert.equal(retryForMs({}), undefined);
    assert.throws(() => retryForMs({ HOLDFAST_RETRY_FOR: 'long' }), (e: unknown) => e instanceof ExitError && e.exitCode === 2 && /HOLDFAST_RETRY_FOR: bad duration/.test(e.message));
  });

  it('S3 settings: the access key and region from AWS_*, the CA from --cacert or HOLDFAST_CACERT', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'holdfast-env-'));
    try {
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      await writeFile(join(dir, 'ca.pem'), pem);
      await writeFile(join(dir, 'other.pem'), pem.replace('MIIB', 'MIIC'));
      await writeFile(join(dir, 'not.pem'), 'hello');
      assert.deepEqual(await s3Settings(undefined, {}), {});
      assert.deepEqual(await s3Settings(undefined, { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret', AWS_SESSION_TOKEN: 't', AWS_REGION: 'eu-west-1' }), {
        credentials: { accessKeyId: 'id', secretAccessKey: 'secret', sessionToken: 't' }, region: 'eu-west-1',
      });
      assert.equal((await s3Settings(undefined, { AWS_DEFAULT_REGION: 'us-west-2', AWS_REGION: 'eu-west-1' })).region, 'us-west-2', "restic's variable first");
      assert.equal((await s3Settings(undefined, { HOLDFAST_CACERT: join(dir, 'ca.pem') })).ca, pem);
      assert.equal((await s3Settings(join(dir, 'other.pem'), { HOLDFAST_CACERT: join(dir, 'ca.pem') })).ca, pem.replace('MIIB', 'MIIC'), '--cacert wins');
      const usage = (re: RegExp) => (e: unknown) => e instanceof ExitError && e.exitCode === 2 && re.test(e.message);
      await assert.rejects(s3Settings(undefined, { AWS_ACCESS_KEY_ID: 'id' }), usage(/AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not/));
      await assert.rejects(s3Settings(undefined, { AWS_SECRET_ACCESS_KEY: 's' }), usage(/AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not/));
      await assert.rejects(s3Settings(join(dir, 'missing.pem'), {}), usage(/cannot read the CA certificate .*missing\.pem/));
      await assert.rejects(s3Settings(join(dir, 'not.pem'), {}), usage(/not\.pem holds no PEM certificate/));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('server settings: the token from HOLDFAST_TOKEN, a pin from --fingerprint or HOLDFAST_FINGERPRINT, else the CA', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'holdfast-env-'));
    try {
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      await writeFile(join(dir, 'ca.pem'), pem);
      const pin = `SHA256:${'0a:'.repeat(31)}0a`;
      assert.deepEqual(await httpSettings(undefined, undefined, {}), {});
      assert.deepEqual(await httpSettings(undefined, undefined, { HOLDFAST_TOKEN: 'tok', HOLDFAST_FINGERPRINT: pin }), { token: 'tok', fingerprint: pin });
      assert.equal((await httpSettings('SHA256:' + 'ff'.repeat(32), undefined, { HOLDFAST_FINGERPRINT: pin })).fingerprint, 'SHA256:' + 'ff'.repeat(32), '--fingerprint wins');
      assert.deepEqual(await httpSettings(undefined, join(dir, 'ca.pem'), {}), { ca: pem });
      assert.deepEqual(await httpSettings(pin, join(dir, 'ca.pem'), {}), { fingerprint: pin }, 'a pin asks no CA');
      await assert.rejects(httpSettings('SHA256:abc', undefined, {}), (e: unknown) => e instanceof ExitError && e.exitCode === 2 && /bad fingerprint "SHA256:abc"/.test(e.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

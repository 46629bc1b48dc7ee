/**
 * The S3 backend against a real endpoint: s3rver on 127.0.0.1 over HTTPS with
 * a self-signed certificate (test/helpers/s3rver.ts). The shared conformance
 * suite runs first, each test under a fresh prefix of one bucket; then what
 * only S3 shows: TLS verification, the key layout, multipart uploads and
 * their abort, listing in pages, and keys that are not ours.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'node:https';

import { NotFoundError } from '../../src/storage/backend.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { parseS3Location, type S3Settings } from '../../src/storage/s3-backend-config.js';
import { startS3rver, TEST_BUCKET, type TestS3 } from '../helpers/s3rver.js';
import { backendConformance, bytes, handleOf, hexName, listAll } from './conformance.js';

let s3: TestS3;
let counter = 0;
before(async () => {
  s3 = await startS3rver();
});
after(async () => {
  await s3.close();
});

/** A backend on a prefix no other test uses. */
function fresh(extra: S3Settings = {}): S3Backend {
  return new S3Backend(parseS3Location(s3.locationRest(`repo-${++counter}`)), { ...s3.settings, ...extra });
}

/** A client of the test endpoint that sees the bucket's raw keys. */
function rawClient(): S3Client {
  return new S3Client({
    endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.settings.credentials!,
    requestHandler: { httpsAgent: new Agent({ ca: s3.ca }) },
  });
}

/** Every key of the test bucket under `prefix`, sorted. */
async function rawKeys(prefix: string): Promise<string[]> {
  const client = rawClient();
  try {
    const page = await client.send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key ?? '').sort();
  } finally {
    client.destroy();
  }
}

/** Stores three bytes under `key`, past the backend. */
async function putRaw(key: string): Promise<void> {
  const client = rawClient();
  try {
    await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: key, Body: Buffer.from('abc') }));
  } finally {
    client.destroy();
  }
}

backendConformance('S3Backend (s3rver, HTTPS)', async (o) => fresh({ listPageSize: o.listPageSize }));

describe('S3Backend', () => {
  it('refuses an endpoint whose certificate it does not trust, saying how to trust it', async () => {
    const b = new S3Backend(parseS3Location(s3.locationRest('untrusted')), { credentials: s3.settings.credentials! });
    try {
      await assert.rejects(b.create(), (e: Error) => {
        assert.match(e.message, /TLS certificate is not trusted \(self-signed certificate\).*--cacert FILE/);
        assert.ok(e.message.includes(s3.endpoint), e.message);
        return true;
      });
      await assert.rejects(b.load(handleOf('config')), /not trusted/);
    } finally {
      await b.close();
    }
  });

  it('stores objects under the prefix in the local layout, and lists only what it could load', async () => {
    const prefix = `layout-${++counter}`;
    const b = new S3Backend(parseS3Location(s3.locationRest(`${prefix}/`)), s3.settings);
    await b.create();
    const pack = handleOf('data', 'layout');
    const snap = handleOf('snapshot', 'layout');
    await b.save(pack, bytes(10));
    await b.save(snap, bytes(4));
    await b.save(handleOf('config'), bytes(3));
    assert.deepEqual(await rawKeys(`${prefix}/`), [
      `${prefix}/config`,
      `${prefix}/data/${pack.name.slice(0, 2)}/${pack.name}`,
      `${prefix}/snapshots/${snap.name}`,
    ]);
    // Keys another tool left beside ours: none is an object of the repository.
    const other = hexName('other');
    for (const key of [`data/${other}`, `data/zz/${other}`, `data/${pack.name.slice(0, 2)}/${other}`, `data/${other.slice(0, 2)}/x/${other}`,
      `snapshots/sub/${other}`, `snapshots/.tmp-1`, `snapshots/UPPER`, `snapshotsx/${other}`]) await putRaw(`${prefix}/${key}`);
    assert.deepEqual(await listAll(b, 'data'), [{ name: pack.name, size: 10 }]);
    assert.deepEqual(await listAll(b, 'snapshot'), [{ name: snap.name, size: 4 }]);
    await b.close();
  });

  it('uploads a large object in parts and reads it back whole and in ranges', async () => {
    const b = fresh({ multipartThreshold: 1000, partSize: 300 });
    await b.create();
    const h = handleOf('data', 'parts');
    const data = bytes(2345, 5);
    await b.save(h, data);
    assert.deepEqual(await b.load(h), data);
    assert.deepEqual(await b.load(h, { offset: 299, length: 302 }), data.subarray(299, 601));
    assert.deepEqual(await b.stat(h), { name: h.name, size: 2345 });
    assert.deepEqual(await listAll(b, 'data'), [{ name: h.name, size: 2345 }]);
    await b.close();
  });

  it('an aborted multipart upload leaves no object', async () => {
    const b = fresh({ multipartThreshold: 1000, partSize: 100 });
    await b.create();
    const h = handleOf('data', 'aborted');
    const ac = new AbortController();
    const reason = new Error('stopped by the test');
    const saving = b.save(h, bytes(5000), { signal: ac.signal });
    setImmediate(() => ac.abort(reason));
    await assert.rejects(saving, (e) => e === reason);
    assert.equal(await b.stat(h), undefined);
    assert.deepEqual(await listAll(b, 'data'), []);
    await assert.rejects(b.load(h), NotFoundError);
    await b.close();
  });
});

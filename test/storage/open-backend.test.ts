/**
 * Checks that `openBackend` maps each documented location form to the right
 * backend, and refuses the ones it does not support with a clear message.
 * Nothing here touches the disk: a `LocalBackend` only does so on use.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { LocalBackend } from '../../src/storage/local-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { MemoryRegistry, openBackend } from '../../src/storage/open-backend.js';
import { HttpBackend } from '../../src/storage/http-backend.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { bytes, handleOf } from './conformance.js';
import { errorCode } from '../../src/core/errors.js';

/** Asserts that opening `location` throws an "unsupported repository location" error naming it. */
function assertRefused(location: string, detail: RegExp): void {
  assert.throws(
    () => openBackend(location),
    (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.equal(errorCode(err), 'BAD_LOCATION', err.message);
      assert.ok(err.message.startsWith('unsupported repository location'), err.message);
      assert.ok(err.message.includes(JSON.stringify(location)), err.message);
      assert.match(err.message, detail);
      return true;
    },
  );
}

describe('openBackend', () => {
  describe('memory:', () => {
    const memory = new MemoryRegistry();

    it('opens a fresh, empty in-memory backend each time', async () => {
      const a = openBackend('memory:');
      const b = openBackend('memory:');
      assert.ok(a instanceof MemoryBackend);
      assert.ok(b instanceof MemoryBackend);
      assert.notEqual(a, b);
      assert.equal(a.location, 'memory:');

      const h = handleOf('data', 'fresh');
      await a.save(h, bytes(10));
      assert.equal(await b.stat(h), undefined);
    });

    it('memory:NAME returns the same instance on every call', async () => {
      const a = openBackend('memory:shared-test', { memory });
      const b = openBackend('memory:shared-test', { memory });
      assert.ok(a instanceof MemoryBackend);
      assert.equal(a, b);
      assert.equal(a.location, 'memory:shared-test');

      const h = handleOf('snapshot', 'shared');
      await a.save(h, bytes(7));
      await a.close();
      assert.deepEqual(await openBackend('memory:shared-test', { memory }).load(h), bytes(7));
    });

    it('keeps different names apart', async () => {
      const a = openBackend('memory:apart-one', { memory });
      const b = openBackend('memory:apart-two', { memory });
      assert.notEqual(a, b);
      const h = handleOf('index', 'apart');
      await a.save(h, bytes(3));
      assert.equal(await b.stat(h), undefined);
    });

    it('two registries are independent, and memory:NAME without one is refused', async () => {
      const other = new MemoryRegistry();
      const a = openBackend('memory:shared-test', { memory });
      const b = openBackend('memory:shared-test', { memory: other });
      assert.notEqual(a, b);
      const h = handleOf('key', 'registry');
      await a.save(h, bytes(5));
      assert.equal(await b.stat(h), undefined);
      assert.throws(() => openBackend('memory:shared-test'), /named in-memory repository lives only inside a process that keeps a registry/);
    });

    it('does not share a named instance with memory:', () => {
      assert.notEqual(openBackend('memory:'), openBackend('memory:shared-test', { memory }));
    });
  });

  describe('local folders', () => {
    it('local:/abs opens that folder', () => {
      const root = path.resolve('/srv/holdfast-test/repo');
      const b = openBackend(`local:${root}`);
      assert.ok(b instanceof LocalBackend);
      assert.equal(b.root, root);
      assert.equal(b.location, `local:${root}`);
    });

    it('an absolute path without a scheme is the same as local:', () => {
      const root = path.resolve('/srv/holdfast-test/repo');
      const b = openBackend(root);
      assert.ok(b instanceof LocalBackend);
      assert.equal(b.root, root);
      assert.equal(b.location, `local:${root}`);
    });

    it('resolves a plain relative path against the current directory', () => {
      for (const rel of ['repo', './repo', 'nested/../repo']) {
        const b = openBackend(rel);
        assert.ok(b instanceof LocalBackend, rel);
        assert.equal(b.root, path.join(process.cwd(), 'repo'), rel);
        assert.ok(path.isAbsolute(b.root), rel);
      }
    });

    it('resolves a relative path after local:', () => {
      const b = openBackend('local:rel/repo');
      assert.ok(b instanceof LocalBackend);
      assert.equal(b.root, path.resolve('rel/repo'));
    });

    it('takes a one-letter prefix for a Windows drive, not a scheme', () => {
      const b = openBackend('C:\\backups');
      assert.ok(b instanceof LocalBackend);
      assert.equal(b.root, path.resolve('C:\\backups'));
    });
  });

  describe('s3:', () => {
    it('opens an S3 backend for each of restic\'s forms', async () => {
      for (const [location, canonical] of [
        ['s3:https://127.0.0.1:9000/bucket/some/prefix', 's3:https://127.0.0.1:9000/bucket/some/prefix'],
        ['s3:http://localhost:9000/bucket/', 's3:http://localhost:9000/bucket'],
        ['s3:minio.example:9000/bucket/p', 's3:https://minio.example:9000/bucket/p'],
        ['s3:s3.amazonaws.com/bucket/p', 's3:https://s3.amazonaws.com/bucket/p'],
        ['S3:s3.eu-west-1.amazonaws.com/bucket', 's3:https://s3.eu-west-1.amazonaws.com/bucket'],
      ]) {
        const b = openBackend(location!);
        assert.ok(b instanceof S3Backend, `${location}`);
        assert.equal(b.location, canonical);
        assert.equal(b.capabilities.removeMissingIsError, false);
        await b.close();
      }
    });

    it('refuses an S3 location without a bucket, naming the form', () => {
      assert.throws(() => openBackend('s3:bucket'), (e: Error) => errorCode(e) === 'BAD_LOCATION' && e.message === 'bad S3 location "s3:bucket": it names no bucket (the form is s3:https://host[:port]/bucket[/prefix])');
    });
  });

  describe('https:', () => {
    it('opens a disk safe on a holdfast server, and refuses plain http', async () => {
      const b = openBackend('https://backup.example:8443/safes/web1', { http: { token: 't' } });
      assert.ok(b instanceof HttpBackend);
      assert.equal(b.location, 'https://backup.example:8443/safes/web1');
      await b.close();
      assert.throws(() => openBackend('https://backup.example:8443/safes/web1'), /no token: set HOLDFAST_TOKEN/);
      assertRefused('https://backup.example:8443/web1', /a server's disk safe is https:\/\/HOST:PORT\/safes\/NAME/);
      assertRefused('http://backup.example:8443/safes/web1', /speaks HTTPS only/);
    });
  });

  describe('refused locations', () => {
    it('refuses an unknown scheme with //', () => {
      assertRefused('foo://host/path', /unknown scheme "foo:"/);
    });

    it('names the scheme in lower case and says what is accepted', () => {
      assertRefused('SFTP://host/path', /unknown scheme "sftp:".*local:\/path.*plain path.*s3:https:\/\/host\/bucket/);
    });

    it('refuses an empty location', () => {
      assertRefused('', /empty/);
    });

    it('refuses local: without a path', () => {
      assertRefused('local:', /needs a path/);
    });
  });
});

/**
 * Runs the backend conformance suite against `LocalBackend`, each test in a
 * fresh folder under one temporary directory, then checks what only a real
 * file system can show: the on-disk layout, stray temporary files, and saves
 * that fail.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import { AlreadyExistsError } from '../../src/storage/backend.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { backendConformance, bytes, handleOf, hexName, listAll } from './conformance.js';

let tmp = '';
let counter = 0;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'holdfast-local-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** A folder that does not exist yet, inside the test's temporary directory. */
function freshRoot(): string {
  return path.join(tmp, `repo-${++counter}`);
}

backendConformance('LocalBackend', async (o) => new LocalBackend(freshRoot(), o));

/** Every `.tmp-` file anywhere under `dir`. */
async function tempFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true });
  return entries.filter((e) => path.basename(e).startsWith('.tmp-'));
}

describe('LocalBackend on disk', () => {
  it('uses the documented layout', async () => {
    const root = freshRoot();
    const b = new LocalBackend(root);
    await b.create();
    const subfolders = await fs.readdir(path.join(root, 'data'));
    assert.equal(subfolders.length, 256);
    assert.ok(subfolders.includes('00') && subfolders.includes('ff'));

    const name = hexName('layout');
    await b.save({ type: 'config', name: 'config' }, bytes(1));
    await b.save({ type: 'key', name }, bytes(2));
    await b.save({ type: 'data', name }, bytes(3));
    await b.save({ type: 'index', name }, bytes(4));
    await b.save({ type: 'snapshot', name }, bytes(5));
    await b.save({ type: 'lock', name }, bytes(6));
    assert.equal((await fs.stat(path.join(root, 'config'))).size, 1);
    assert.equal((await fs.stat(path.join(root, 'keys', name))).size, 2);
    assert.equal((await fs.stat(path.join(root, 'data', name.slice(0, 2), name))).size, 3);
    assert.equal((await fs.stat(path.join(root, 'index', name))).size, 4);
    assert.equal((await fs.stat(path.join(root, 'snapshots', name))).size, 5);
    assert.equal((await fs.stat(path.join(root, 'locks', name))).size, 6);
    assert.deepEqual(await tempFiles(root), []);
  });

  it('resolves a relative root', () => {
    const b = new LocalBackend('some/repo');
    assert.equal(b.root, path.resolve('some/repo'));
    assert.equal(b.location, `local:${path.resolve('some/repo')}`);
  });

  it('does not list temporary files left by a crashed writer', async () => {
    const root = freshRoot();
    const b = new LocalBackend(root);
    await b.create();
    const h = handleOf('key', 'real');
    await b.save(h, bytes(4));
    await fs.writeFile(path.join(root, 'keys', '.tmp-abc'), 'partial');
    await fs.writeFile(path.join(root, 'data', 'ab', '.tmp-abc'), 'partial');
    await fs.writeFile(path.join(root, '.tmp-abc'), 'partial');
    assert.deepEqual(await listAll(b, 'key'), [{ name: h.name, size: 4 }]);
    assert.deepEqual(await listAll(b, 'data'), []);
    assert.deepEqual(await listAll(b, 'config'), []);
  });

  it('leaves no temporary file behind when a save is refused', async () => {
    const root = freshRoot();
    const b = new LocalBackend(root);
    await b.create();
    const h = handleOf('data', 'twice');
    await b.save(h, bytes(10));
    await assert.rejects(b.save(h, bytes(20)), AlreadyExistsError);
    assert.deepEqual(await tempFiles(root), []);
  });

  it('fails a save into a folder missing from the repository with a clear error', async () => {
    const b = new LocalBackend(freshRoot());
    await assert.rejects(b.save(handleOf('index', 'nowhere'), bytes(1)), /was the repository created/);
  });

  it(
    'surfaces a write failure (file size limit, like a full disk) and leaves nothing behind',
    { skip: process.platform === 'win32' ? 'needs a POSIX shell for ulimit' : false },
    async () => {
      const root = freshRoot();
      const b = new LocalBackend(root);
      await b.create();
      const h = handleOf('data', 'too-big');
      // A child process whose files may not grow past 8 KiB (ulimit -f counts
      // 512-byte blocks; Node ignores SIGXFSZ, so write() fails with EFBIG).
      const moduleUrl = new URL('../../src/storage/local-backend.js', import.meta.url).href;
      const script = `
        const { LocalBackend } = await import(${JSON.stringify(moduleUrl)});
        const b = new LocalBackend(${JSON.stringify(root)});
        try {
          await b.save(${JSON.stringify(h)}, new Uint8Array(1 << 20));
          console.log('saved');
        } catch (err) {
          console.log(err.code);
        }`;
      const { stdout } = await promisify(execFile)('sh', [
        '-c',
        'ulimit -f 16 && exec "$0" --input-type=module -e "$1"',
        process.execPath,
        script,
      ]);
      assert.equal(stdout.trim(), 'EFBIG');
      assert.deepEqual(await tempFiles(root), []);
      assert.equal(await b.stat(h), undefined);
      assert.deepEqual(await listAll(b, 'data'), []);
    },
  );

  it(
    'fails a save into a read-only folder and leaves nothing behind',
    { skip: process.getuid?.() === 0 ? 'running as root, which ignores folder permissions' : false },
    async () => {
      const root = freshRoot();
      const b = new LocalBackend(root);
      await b.create();
      const keys = path.join(root, 'keys');
      await fs.chmod(keys, 0o500);
      try {
        const h = handleOf('key', 'ro');
        await assert.rejects(b.save(h, bytes(10)), (err: NodeJS.ErrnoException) => err.code === 'EACCES');
        assert.deepEqual(await fs.readdir(keys), []);
        assert.equal(await b.stat(h), undefined);
      } finally {
        await fs.chmod(keys, 0o700);
      }
    },
  );

  it('lists data one subfolder at a time: an object saved in a later subfolder mid-listing is listed', async () => {
    const b = new LocalBackend(freshRoot(), { listPageSize: 1 });
    await b.create();
    await b.save({ type: 'data', name: '00aa' }, bytes(1));
    await b.save({ type: 'data', name: '00ab' }, bytes(1));
    const seen: string[] = [];
    for await (const info of b.list('data')) {
      if (seen.length === 0) await b.save({ type: 'data', name: 'ffaa' }, bytes(1));
      seen.push(info.name);
    }
    assert.deepEqual(seen.sort(), ['00aa', '00ab', 'ffaa']);
    assert.deepEqual(await listAll(b, 'data'), [{ name: '00aa', size: 1 }, { name: '00ab', size: 1 }, { name: 'ffaa', size: 1 }]);
  });

  it('leaves no temporary file behind when a save is aborted midway', async () => {
    const root = freshRoot();
    const b = new LocalBackend(root);
    await b.create();
    for (let turns = 0; turns < 6; turns++) {
      const ac = new AbortController();
      const h = handleOf('data', `aborted-${turns}`);
      const saving = b.save(h, bytes(1 << 20), { signal: ac.signal });
      for (let t = 0; t < turns; t++) await new Promise((r) => setImmediate(r));
      ac.abort(new Error('stop'));
      const saved = await saving.then(() => true, (e: unknown) => (e as Error).message === 'stop' ? false : Promise.reject(e));
      assert.equal((await b.stat(h))?.size, saved ? 1 << 20 : undefined);
      assert.deepEqual(await tempFiles(root), [], `after ${turns} turns`);
    }
  });
});

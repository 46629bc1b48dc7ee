/**
 * The restorer unpacks a pack in segments of 4 MiB, handed to the workers
 * as the walk moves past them, so a pack's blobs can be read in several
 * ranges and a blob needed again after its segment was unpacked is read
 * again. These tests restore through the real workers and compare bytes:
 * a large file whose blobs fill several segments of a pack, small files
 * between, and copies of the large file later in the walk (same blobs,
 * whose segments were unpacked long before).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver } from '../../src/jobs/backup/archiver.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import type { Handle, LoadOptions } from '../../src/storage/backend.js';
import { memoryRepo } from '../helpers/memory-repo.js';

const MiB = 1 << 20;

describe('restore by pack segments', () => {
  let dir: string;
  let src: string;
  const files = new Map<string, Buffer>();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-segments-'));
    src = join(dir, 'src');
    const big = randomBytes(14 * MiB);
    files.set('a/big.bin', big);
    for (let d = 0; d < 30; d++) {
      for (let i = 0; i < 20; i++) files.set(`b${String(d).padStart(2, '0')}/f${i}`, randomBytes(2000 + d * 300 + i * 41));
    }
    files.set('z/copy.bin', big);
    files.set('z/head.bin', big.subarray(0, 5 * MiB));
    for (const [name, data] of files) {
      await mkdir(join(src, name, '..'), { recursive: true });
      await writeFile(join(src, name), data);
    }
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('restores every byte, reading packs in ranges of about a segment', async () => {
    const { backend, repo } = await memoryRepo();
    const r = await new Archiver(repo, { paths: [src], parent: null }).run();
    const reads: { name: string; offset: number; length: number }[] = [];
    const load = backend.load.bind(backend);
    backend.load = async (h: Handle, opts?: LoadOptions): Promise<Buffer> => {
      const b = await load(h, opts);
      if (h.type === 'data') reads.push({ name: h.name, offset: opts?.offset ?? 0, length: b.length });
      return b;
    };
    const target = join(dir, 'restore');
    const restored = await new Restorer(repo, target, { verify: true }).run(r.snapshot.tree);
    assert.deepEqual(restored.failed, []);
    assert.deepEqual(restored.verifyFailed, []);
    for (const [name, data] of files) assert.ok((await readFile(join(target, src, name))).equals(data), name);

    // 14 MiB of incompressible data cannot come back in one read per pack,
    // and no read holds more than a segment plus the blob that crosses its end.
    const largestBlob = Math.max(...[...r.snapshot.blobs].map((id) => repo.index.lookup(id)?.length ?? 0));
    const largest = Math.max(...reads.map((x) => x.length));
    assert.ok(largest <= 4 * MiB + largestBlob, `a read of ${largest} bytes (largest blob ${largestBlob})`);
    const perPack = new Map<string, number>();
    for (const x of reads) perPack.set(x.name, (perPack.get(x.name) ?? 0) + 1);
    assert.ok([...perPack.values()].some((n) => n > 1), 'some pack read in more than one range');
  });

  it('keeps as many segment reads in flight as the backend serves at once, beyond two per worker', async () => {
    const { backend, repo } = await memoryRepo();
    const r = await new Archiver(repo, { paths: [src], parent: null }).run();
    // A backend far away: 8 connections, every read of pack bytes takes a while.
    Object.defineProperty(backend, 'capabilities', { value: { ...backend.capabilities, connections: 8 } });
    let reading = 0;
    let most = 0;
    const load = backend.load.bind(backend);
    backend.load = async (h: Handle, opts?: LoadOptions): Promise<Buffer> => {
      if (h.type !== 'data' || opts?.offset === undefined) return load(h, opts);
      most = Math.max(most, ++reading);
      try {
        await new Promise((resolve) => setTimeout(resolve, 40));
        return await load(h, opts);
      } finally {
        reading--;
      }
    };
    const target = join(dir, 'restore-far');
    const restored = await new Restorer(repo, target, { workers: 2 }).run(r.snapshot.tree);
    assert.deepEqual(restored.failed, []);
    for (const [name, data] of files) assert.ok((await readFile(join(target, src, name))).equals(data), name);
    assert.ok(most > 4, `at most ${most} reads in flight, where two workers unpack two segments each`);
  });
});

/**
 * The changed-block cache file: written whole or not at all. A cache that
 * does not fit on its disk is refused with a clear error, leaves no
 * temporary file, and the cache written before it still loads. The tmpfs
 * case needs root (it mounts one) and says so when skipped.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CbtCache, CBT_ENTRY_BYTES, type CacheKeyring, type CbtHeader } from '../../src/jobs/image/cbt-cache.js';
import { createHmac } from 'node:crypto';

const key = randomBytes(32);
const keys: CacheKeyring = { repositoryId: 'r'.repeat(64), mac: (d) => createHmac('sha256', key).update(d).digest('hex') };
const header = (blocks: number): CbtHeader => ({ repository: keys.repositoryId, snapshot: 's'.repeat(64), source: '/dev/vdb', size: blocks * 65536, blockSize: 65536, fingerprint: 'poly1305' });
const want = (blocks: number): Omit<CbtHeader, 'snapshot'> => {
  const { snapshot: _, ...rest } = header(blocks);
  return rest;
};
const isRoot = process.getuid?.() === 0;

describe('changed-block cache file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-cbt-'));
  });
  after(async () => {
    spawnSync('umount', [join(dir, 'small')], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
  });

  it('loads what it saved, entry for entry', async () => {
    const entries = randomBytes(100 * CBT_ENTRY_BYTES);
    const path = join(dir, 'a', 'image.cbt');
    await CbtCache.fromEntries(header(100), entries).save(path, keys, header(100));
    const { cache, why } = await CbtCache.load(path, keys, want(100));
    assert.equal(why, undefined);
    assert.ok(cache!.entries.equals(entries));
  });

  it('on a disk too small for it: a clear error, no temporary file, and the cache before it still loads', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async () => {
    const small = join(dir, 'small');
    execFileSync('mkdir', ['-p', small]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small]);
    const path = join(small, 'image.cbt');
    const old = randomBytes(1000 * CBT_ENTRY_BYTES);
    await CbtCache.fromEntries(header(1000), old).save(path, keys, header(1000));
    const big = randomBytes(8000 * CBT_ENTRY_BYTES);
    await assert.rejects(CbtCache.fromEntries(header(8000), big).save(path, keys, header(8000)), /ENOSPC/);
    assert.deepEqual(await readdir(small), ['image.cbt'], 'the temporary file is removed');
    const { cache } = await CbtCache.load(path, keys, want(1000));
    assert.ok(cache!.entries.equals(old), 'the cache written before is intact');
  });
});

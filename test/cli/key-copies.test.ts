/**
 * Where the secrets live in memory. The master key is one shared buffer:
 * worker threads see it, not copies of it, so closing the repository zeroes
 * it for them too, and nothing is sealed under the zeroed key. Read from the
 * outside (/proc/<pid>/mem, what a core dump holds) during a running backup,
 * the process holds the chunker seed once, the encryption key once plus what
 * the workers' not yet collected AES contexts hold, and the password, read
 * from a file, not at all.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open, rm, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox } from '../helpers/cli.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import { BlobType } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { PoolSession } from '../../src/jobs/pool/worker-pool.js';
import type { SealResult } from '../../src/jobs/pool/protocol.js';

/** How often each needle occurs in the readable, writable memory of process `pid`. */
async function countInMemory(pid: number, needles: readonly Buffer[]): Promise<number[]> {
  const counts = needles.map(() => 0);
  const mem = await open(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'latin1').split('\n')) {
      const [range, perms] = line.split(' ');
      if (!range || !perms?.startsWith('rw')) continue; // secrets live in writable memory: heap, stacks, anonymous maps
      const [start, end] = range.split('-').map((h) => Number.parseInt(h, 16)) as [number, number];
      for (let at = start; at < end; at += 1 << 24) {
        const chunk = Buffer.alloc(Math.min(1 << 24, end - at));
        let n: number;
        try {
          ({ bytesRead: n } = await mem.read(chunk, 0, chunk.length, at));
        } catch {
          continue; // guard pages and the like
        }
        const view = chunk.subarray(0, n);
        needles.forEach((needle, i) => {
          for (let p = view.indexOf(needle); p >= 0; p = view.indexOf(needle, p + 1)) counts[i]!++;
        });
      }
    }
  } finally {
    await mem.close();
  }
  return counts;
}

describe('the master key in memory', () => {
  it('workers share the one copy: after close they cannot seal, and neither can the repository', async () => {
    const { repo } = await memoryRepo();
    const pool = PoolSession.blobs(repo, { workers: 2 });
    try {
      const seal = (): Promise<SealResult> => pool.run<SealResult>({ kind: 'seal', type: BlobType.Data, data: randomBytes(1000) });
      // Both workers seal while the key is there (tasks go to the least busy worker).
      assert.ok((await Promise.all([seal(), seal()])).every((r) => r.blob !== undefined));
      const secrets = repo.workerSecrets();
      repo.close();
      for (const k of [secrets.encryption, secrets.id, secrets.chunker]) assert.ok(k.every((b) => b === 0), 'close left key bytes');
      await assert.rejects(Promise.all([seal(), seal()]), /the key was wiped/);
      await assert.rejects(repo.newWriter().saveBlob(BlobType.Data, randomBytes(1000)), /the key was wiped/);
      repo.close(); // idempotent
    } finally {
      await pool.close();
    }
  });
});

const procMem = existsSync('/proc/self/mem');

describe('secrets in a running backup, read from its memory', { skip: procMem ? false : 'needs /proc/<pid>/mem' }, () => {
  let s: Sandbox;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  before(async () => {
    s = await Sandbox.create('holdfast-key-copies-');
    await writeFile(s.path('pw'), `${password}\n`);
    await s.ok(['init', '--password-file', s.path('pw')], { env: { HOLDFAST_PASSWORD: undefined } });
  });
  after(async () => {
    await s.remove();
  });

  it('holds the chunker seed once, the encryption key once per sealing thread at most, and the password not at all', async (t) => {
    const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), password);
    const { encryption, chunker } = repo.workerSecrets();
    const fed = s.path('fed');
    // Feeds a few megabytes (so the workers have sealed), says so, and ends once the test has read the memory.
    const running = s.start(['backup', '-q', '--password-file', s.path('pw'), '--stdin-from-command', '--stdin-filename', 'x', '--',
      'sh', '-c', `head -c 4000000 /dev/urandom; touch ${fed}; while [ -e ${fed} ]; do sleep 0.05; done`], { env: { HOLDFAST_PASSWORD: undefined, HOLDFAST_WORKERS: '2' } });
    let counts: number[] | undefined;
    try {
      while (!existsSync(fed)) await sleep(50);
      const needles = [Buffer.from(encryption), Buffer.from(chunker), Buffer.from(password)];
      // Twice, keeping the smaller count: a blob being sealed as memory is read holds a passing copy in its cipher's key schedule.
      const first = await countInMemory(running.child.pid!, needles);
      counts = (await countInMemory(running.child.pid!, needles)).map((n, i) => Math.min(n, first[i]!));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EPERM') throw e;
      t.skip('no ptrace access to /proc/<pid>/mem here');
    } finally {
      await rm(fed, { force: true });
    }
    const r = await running.done;
    assert.equal(r.code, 0, r.stderr);
    if (counts) {
      const [encryptionCopies, chunkerCopies, passwordCopies] = counts as [number, number, number];
      // The shared buffer, plus at most one AES context per worker that sealed with it and that the
      // worker's garbage collector has not freed yet (an AES-256 key schedule starts with the key);
      // before the key was shared, each worker held its own copies on top (5 in all with 2 workers).
      assert.ok(encryptionCopies >= 1 && encryptionCopies <= 1 + 2, `copies of the encryption key: ${encryptionCopies}`);
      assert.equal(chunkerCopies, 1, 'copies of the chunker seed');
      assert.equal(passwordCopies, 0, 'copies of the password');
    }
  });
});

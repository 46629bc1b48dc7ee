/**
 * `copy` and `init --copy-from` between a local repository and one on S3 (a
 * real endpoint: s3rver over HTTPS on loopback), in both directions:
 * local → S3 → local, without the password, each copy restoring byte for
 * byte, and an incremental copy to S3 moving only the new blobs; a copy to
 * S3 killed with SIGKILL half way, then resumed.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { startS3rver, type TestS3 } from '../helpers/s3rver.js';
import { bytes } from '../jobs/gc-fixture.js';
import { initSmall } from './gc-cli.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { parseS3Location } from '../../src/storage/s3-backend-config.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { Store } from '../../src/repo/store.js';
import type { CopyReport } from '../../src/jobs/copy/snapshot-copier.js';
import type { SnakeKeys } from '../../src/core/snake-keys.js';

const SRC_PASSWORD = 'correct horse';
const S3_PASSWORD = 'battery staple';
const BACK_PASSWORD = 'staple horse';

describe('copy between a local repository and S3', () => {
  let s: Sandbox;
  let s3: TestS3;
  let env: Record<string, string | undefined>;
  let tree: string;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-s3-');
    s3 = await startS3rver();
    env = { ...s3.env, HOLDFAST_CACERT: s3.caFile };
    tree = s.path('tree');
    await buildTree(tree, EVERYTHING);
    await s.ok(['init']);
    await s.ok(['backup', '-q', tree]);
  });
  after(async () => {
    await s3.close();
    await removeTree(s.dir);
  });

  async function on(repo: string, args: readonly string[], extra: Record<string, string | undefined>, want = 0): Promise<RunResult> {
    const r = await s.run(['-r', repo, ...args], { env: { ...env, ...extra } });
    if (r.code !== want) throw new Error(`holdfast -r ${repo} ${args.join(' ')} exited ${r.code} (wanted ${want})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  async function copy(from: string, to: string): Promise<SnakeKeys<CopyReport>> {
    const r = await on(to, ['--json', 'copy', '--from-repo', from], { HOLDFAST_PASSWORD: undefined });
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as SnakeKeys<CopyReport>;
  }

  // A missing bucket exited 1 with "(init creates it)".
  it('a source in a bucket or prefix that does not exist exits 10 as a missing local source does, without an init hint', async () => {
    for (const from of [s3.location('nothing-here'), s3.location('nothing-here').replace('holdfast-test', 'nobucket'), s.path('no-such-folder')]) {
      const r = await on(s.repo, ['copy', '--from-repo', from], { HOLDFAST_PASSWORD: undefined }, 10);
      assert.equal(r.stderr, `holdfast: no holdfast repository at ${from} (no config object); the source to copy from must be an existing repository\n`);
    }
  });

  async function restoresFrom(repo: string, password: string, id: string, src: string): Promise<void> {
    const target = s.path(`restored-${Math.random().toString(16).slice(2)}`);
    await on(repo, ['restore', id, '--target', target, '-q'], { HOLDFAST_PASSWORD: password });
    await compareTrees(src, join(target, src));
    await removeTree(target);
  }

  it('local → S3 → local without the password, each copy restoring byte for byte; an incremental copy moves only the new blobs', { timeout: 180_000 }, async () => {
    const remote = s3.location('safe');
    await on(remote, ['init', '--copy-from', s.repo], { HOLDFAST_PASSWORD: S3_PASSWORD, HOLDFAST_FROM_PASSWORD: SRC_PASSWORD });
    const up = await copy(s.repo, remote);
    assert.equal(up.copied.length, 1);
    assert.equal(up.failed.length, 0);
    const [id] = up.copied;
    assert.match((await on(remote, ['check', '--read-data'], { HOLDFAST_PASSWORD: S3_PASSWORD })).stdout, /no errors were found/);
    await restoresFrom(remote, S3_PASSWORD, id!, tree);

    const back = s.path('back');
    await on(back, ['init', '--copy-from', remote], { HOLDFAST_PASSWORD: BACK_PASSWORD, HOLDFAST_FROM_PASSWORD: S3_PASSWORD });
    const down = await copy(remote, back);
    assert.deepEqual(down.copied, [id]);
    assert.equal(down.blobs_copied, up.blobs_copied);
    await restoresFrom(back, BACK_PASSWORD, id!, tree);

    const more = s.path('more');
    await fs.mkdir(more);
    await fs.writeFile(join(more, 'new.bin'), bytes('new on s3', 300_000));
    await s.ok(['backup', '-q', more]);
    const next = await copy(s.repo, remote);
    assert.equal(next.copied.length, 1);
    assert.deepEqual(next.present, [id]);
    assert.ok(next.bytes_copied < 300_000 + 64 * 1024, `${next.bytes_copied} bytes copied for a 300 kB backup`);
    await restoresFrom(remote, S3_PASSWORD, next.copied[0]!, more);
  });

  it('a copy to S3 killed with SIGKILL leaves the bucket clean for check --read-data, and the next copy completes without copying again what was copied', { timeout: 180_000 }, async () => {
    const small = await Sandbox.create('holdfast-copy-s3-kill-');
    try {
      await initSmall(small); // 64 KiB packs and small chunks: a few MB make many packs
      const data = small.path('data');
      await fs.mkdir(data);
      await fs.writeFile(join(data, 'a.bin'), bytes('s3 kill', 2_000_000));
      await small.ok(['backup', '-q', data]);
      const [snapshot] = (await (await Store.open(new LocalBackend(small.repo))).loadSnapshots()).ok.values();
      const total = snapshot!.blobs.length;
      const remote = s3.location('killed');
      await on(remote, ['init', '--copy-from', small.repo], { HOLDFAST_PASSWORD: S3_PASSWORD, HOLDFAST_FROM_PASSWORD: SRC_PASSWORD });
      const bucket = new S3Backend(parseS3Location(s3.locationRest('killed')), s3.settings);
      const packs = async (): Promise<number> => {
        let n = 0;
        for await (const _ of bucket.list('data')) n++;
        return n;
      };
      const { child, done } = s.start(['-r', remote, '--limit-upload', '256', 'copy', '--from-repo', small.repo], { env: { ...env, HOLDFAST_PASSWORD: undefined } });
      // About 31 packs of 64 KiB at 256 KiB/s: caught with 8 or more stored, each holding 2 blobs or more, well before the end.
      while ((await packs()) < 8 && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGKILL');
      assert.equal((await done).signal, 'SIGKILL', 'the copy ended before it was killed');
      assert.match((await on(remote, ['check', '--read-data'], { HOLDFAST_PASSWORD: S3_PASSWORD })).stdout, /no errors were found/);
      const again = await copy(small.repo, remote);
      assert.equal(again.copied.length, 1);
      assert.ok(again.blobs_copied <= total - 16, `after the kill, ${again.blobs_copied} of ${total} blobs copied again: ${JSON.stringify(again)}`);
      await restoresFrom(remote, S3_PASSWORD, again.copied[0]!, data);
      await bucket.close();
    } finally {
      await small.remove();
    }
  });
});

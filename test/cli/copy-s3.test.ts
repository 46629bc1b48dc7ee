/**
 * `copy` and `init --copy-from` between a local repository and one on S3 (a
 * real endpoint: s3rver over HTTPS on loopback), in both directions:
 * local → S3 → local, without the password, each copy restoring byte for
 * byte, and an incremental copy to S3 moving only the new blobs.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { startS3rver, type TestS3 } from '../helpers/s3rver.js';
import { bytes } from '../jobs/gc-fixture.js';
import type { CopyReport } from '../../src/jobs/copy/snapshot-copier.js';

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

  async function copy(from: string, to: string): Promise<CopyReport> {
    const r = await on(to, ['--json', 'copy', '--from-repo', from], { HOLDFAST_PASSWORD: undefined });
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as CopyReport;
  }

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
    assert.equal(down.blobsCopied, up.blobsCopied);
    await restoresFrom(back, BACK_PASSWORD, id!, tree);

    const more = s.path('more');
    await fs.mkdir(more);
    await fs.writeFile(join(more, 'new.bin'), bytes('new on s3', 300_000));
    await s.ok(['backup', '-q', more]);
    const next = await copy(s.repo, remote);
    assert.equal(next.copied.length, 1);
    assert.deepEqual(next.present, [id]);
    assert.ok(next.bytesCopied < 300_000 + 64 * 1024, `${next.bytesCopied} bytes copied for a 300 kB backup`);
    await restoresFrom(remote, S3_PASSWORD, next.copied[0]!, more);
  });
});

/**
 * `backup --before-backup CMD --after-backup CMD --hook-timeout DUR`, run by
 * the real CLI: a failing or overdue before hook skips the backup (exit 16,
 * nothing written) and its process group is ended; the after hook runs
 * however the backup ended (success, skipped, failed, interrupted) and
 * learns how; the hooks' output reaches stderr prefixed with their name.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';

/** The environment an after hook saw, written by `record` into `file`. */
const record = (file: string): string => `printf '%s\\n' "$HOLDFAST_HOOK" "$HOLDFAST_OUTCOME" "$HOLDFAST_SNAPSHOT_ID" "$HOLDFAST_ERROR" "$HOLDFAST_REPOSITORY" "$HOLDFAST_BACKUP_KIND" "$HOLDFAST_PATHS" > ${file}`;

async function seen(file: string): Promise<{ hook: string; outcome: string; snapshot: string; error: string; repository: string; kind: string; paths: string }> {
  const [hook, outcome, snapshot, error, repository, kind, ...paths] = (await fs.readFile(file, 'utf8')).replace(/\n$/, '').split('\n');
  return { hook: hook!, outcome: outcome!, snapshot: snapshot!, error: error!, repository: repository!, kind: kind!, paths: paths.join('\n') };
}

/** Waits until `file` exists (a hook has started). */
async function until(file: string): Promise<void> {
  while (!existsSync(file)) await new Promise((r) => setTimeout(r, 20));
}

/** Whether a process has ended: gone, or a zombie nobody has reaped yet. */
async function ended(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

describe('backup hooks', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create();
    await s.ok(['init']);
    src = s.path('src');
    await fs.mkdir(src);
    await fs.writeFile(s.path('src', 'a.txt'), 'hello\n');
  });
  after(() => s.remove());

  it('a before hook that fails skips the backup with exit code 16 and the reason; the after hook learns it', async () => {
    const out = s.path('after-skipped');
    const r = await s.run(['backup', src, '--before-backup', 'echo checking; echo "not ready" >&2; exit 7', '--after-backup', record(out)]);
    assert.equal(r.code, 16, r.stderr);
    assert.match(r.stderr, /^before-backup: checking$/m);
    assert.match(r.stderr, /^before-backup: not ready$/m);
    assert.match(r.stderr, /the before-backup hook failed \(exit code 7\); the backup was skipped, nothing was written/);
    assert.deepEqual(await snapshotsOf(s), []);
    const a = await seen(out);
    assert.equal(a.hook, 'after-backup');
    assert.equal(a.outcome, 'skipped');
    assert.match(a.error, /exit code 7/);
    assert.equal(a.repository, s.repo);
    assert.equal(a.kind, 'files');
    assert.equal(a.paths, src);
  });

  it('a before hook past its timeout is ended with its process group, and the backup skipped', async () => {
    const pidFile = s.path('background.pid');
    const r = await s.run(['backup', src, '--hook-timeout', '1s', '--before-backup', `sleep 300 & echo $! > ${pidFile}; wait`]);
    assert.equal(r.code, 16, r.stderr);
    assert.match(r.stderr, /the before-backup hook ran past its timeout of 1s and was ended with its process group; the backup was skipped/);
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    assert.ok(await ended(pid), `the hook's background sleep (${pid}) outlived it`);
    assert.deepEqual(await snapshotsOf(s), []);
  });

  it('the after hook learns a success and its snapshot id; its failure after a saved snapshot is exit code 18, not the skip\'s 16', async () => {
    const out = s.path('after-success');
    const r = await s.run(['backup', '-q', src, '--before-backup', 'true', '--after-backup', `${record(out)}; exit 4`]);
    assert.equal(r.code, 18, r.stderr);
    assert.match(r.stderr, /the after-backup hook failed \(exit code 4\); the backup's own outcome stands/);
    const [snap] = await snapshotsOf(s);
    const a = await seen(out);
    assert.equal(a.outcome, 'success');
    assert.equal(a.snapshot, snap!.id);
  });

  it('the after hook runs after a failed backup and learns why', async () => {
    const out = s.path('after-failed');
    const r = await s.run(['backup', '--stdin-from-command', '--stdin-filename', 'dump.sql', '--after-backup', record(out), '--', 'sh', '-c', 'echo partial; exit 9']);
    assert.equal(r.code, 1, r.stderr);
    const a = await seen(out);
    assert.equal(a.outcome, 'failed');
    assert.match(a.error, /exit code 9/);
    assert.equal(a.kind, 'stream');
    assert.equal(a.paths, '/dump.sql');
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`${sig} during the before hook ends the hook's group; the after hook learns "interrupted"`, async () => {
      const started = s.path(`started-${sig}`);
      const pidFile = s.path(`pid-${sig}`);
      const out = s.path(`after-${sig}`);
      const run = s.start(['backup', src, '--before-backup', `sleep 300 & echo $! > ${pidFile}; touch ${started}; wait`, '--after-backup', record(out)]);
      await until(started);
      run.child.kill(sig);
      const r = await run.done;
      assert.equal(r.code, 130, r.stderr);
      assert.equal((await seen(out)).outcome, 'interrupted');
      assert.ok(await ended(Number(await fs.readFile(pidFile, 'utf8'))));
    });
  }

  it('an image backup runs its hooks too', async () => {
    const img = s.path('disk.img');
    await fs.writeFile(img, Buffer.alloc(1 << 20, 7));
    const out = s.path('after-image');
    await s.ok(['backup', '-q', '--image', img, '--after-backup', record(out)]);
    const a = await seen(out);
    assert.equal(a.outcome, 'success');
    assert.equal(a.kind, 'image');
    assert.equal(a.paths, img);
  });
});

/**
 * SIGKILL at random points of a backup and of a prune, round after round
 * (HOLDFAST_KILL_ROUNDS, default 4 each). After every kill: check passes,
 * every snapshot completed before the kill restores byte for byte, and the
 * next run finishes. The kill point is drawn uniformly over the time an
 * unkilled run of the same kind took.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { bytes } from '../jobs/gc-fixture.js';
import { GC_ENV, assertRestores, initSmall, rounds, sleep, snapshotId, start, writeRound } from './gc-cli.js';

/** Nothing runs alongside the prunes here, so a shorter grace keeps the rounds quick. */
const KILL_ENV = { HOLDFAST_MIN_GRACE: '2s' };
const GRACE = '2s';
const GRACE_MS = 2000;

const ROUNDS = rounds('HOLDFAST_KILL_ROUNDS', 4);

/** Runs `args`, killing it after a random time in [0, 1.2 × typical]; returns whether it was killed and how long it ran. */
async function runAndKill(s: Sandbox, args: string[], typicalMs: number, env: Record<string, string>): Promise<{ killed: boolean; ms: number; code: number | null }> {
  const t0 = Date.now();
  const p = start(s, args, env);
  const at = Math.floor(Math.random() * typicalMs * 1.2);
  const timer = setTimeout(() => p.kill('SIGKILL'), at);
  const r = await p.done;
  clearTimeout(timer);
  return { killed: r.signal === 'SIGKILL', ms: Date.now() - t0, code: r.code };
}

async function checkPasses(s: Sandbox, readData = false): Promise<void> {
  const r = await s.run(['check', ...(readData ? ['--read-data'] : [])], { env: KILL_ENV });
  assert.equal(r.code, 0, `check failed after a kill:\n${r.stdout}\n${r.stderr}`);
}

describe(`SIGKILL during backup (${ROUNDS} rounds)`, () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-kill-backup-');
    await initSmall(s);
  });
  after(async () => s.remove());

  it('check passes, completed snapshots restore, the next backup finishes', { timeout: 240_000 }, async (t) => {
    const sources = new Map<string, string>();
    const src0 = s.path('src-0');
    await writeRound(src0, 0, 1_500_000);
    let t0 = Date.now();
    sources.set(snapshotId(await s.ok(['--json', 'backup', src0], { env: GC_ENV })), src0);
    let typical = Date.now() - t0;
    let killedCount = 0;
    for (let r = 1; r <= ROUNDS; r++) {
      const src = s.path(`src-${r}`);
      await writeRound(src, r, 1_500_000);
      await fs.writeFile(join(src, 'extra.bin'), bytes(`extra-${r}`, 1_000_000));
      const run = await runAndKill(s, ['--json', 'backup', src], typical, GC_ENV);
      if (run.killed) killedCount++;
      else assert.equal(run.code, 0);
      // A backup that finished before the kill is a completed snapshot like any other.
      for (const snap of await snapshotsOf(s)) if (!sources.has(snap.id)) sources.set(snap.id, src);
      await checkPasses(s);
      const latest = [...sources].at(-1)!;
      await assertRestores(s, latest[0], latest[1], KILL_ENV);
      t0 = Date.now();
      const next = await s.run(['--json', 'backup', src], { env: GC_ENV });
      assert.equal(next.code, 0, `the backup after a kill failed:\n${next.stderr}`);
      sources.set(snapshotId(next), src);
      typical = Math.max(200, Date.now() - t0);
    }
    await checkPasses(s, true);
    for (const [snap, src] of sources) await assertRestores(s, snap, src, KILL_ENV);
    t.diagnostic(`${killedCount} of ${ROUNDS} backups were killed before they finished`);
  });
});

describe(`SIGKILL during prune (${ROUNDS} rounds)`, () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-kill-prune-');
    await initSmall(s);
  });
  after(async () => s.remove());

  it('check passes, every snapshot restores, the next prune finishes', { timeout: 240_000 }, async (t) => {
    const sources = new Map<string, string>();
    const backup = async (r: number): Promise<void> => {
      const src = s.path(`src-${r}`);
      await writeRound(src, r, 1_000_000);
      sources.set(snapshotId(await s.ok(['--json', 'backup', src], { env: KILL_ENV })), src);
    };
    for (let r = 0; r < 3; r++) await backup(r);
    const prune = ['prune', '--grace', GRACE, '--max-unused', '30'];
    let typical = 500;
    let killedCount = 0;
    for (let r = 3; r < 3 + ROUNDS; r++) {
      await backup(r);
      const [oldest] = sources.keys();
      await s.ok(['forget', oldest!], { env: KILL_ENV });
      sources.delete(oldest!);
      await s.ok(prune, { env: KILL_ENV }); // marks what the forgotten snapshot alone used
      await sleep(GRACE_MS + 100); // due: the killed prune is sweeping when it dies
      const run = await runAndKill(s, prune, typical, KILL_ENV);
      if (run.killed) killedCount++;
      else assert.equal(run.code, 0);
      await checkPasses(s);
      for (const [snap, src] of [...sources].slice(-2)) await assertRestores(s, snap, src, KILL_ENV);
      const t0 = Date.now();
      await s.ok(prune, { env: KILL_ENV });
      typical = Math.max(300, Date.now() - t0);
      await checkPasses(s);
    }
    await sleep(GRACE_MS + 100);
    await s.ok(prune, { env: KILL_ENV });
    await checkPasses(s, true);
    for (const [snap, src] of sources) await assertRestores(s, snap, src, KILL_ENV);
    t.diagnostic(`${killedCount} of ${ROUNDS} prunes were killed before they finished`);
  });
});

/**
 * Backups and prunes running at the same time, as real processes, round
 * after round (HOLDFAST_GC_ROUNDS, default 6). Each round backs up a tree
 * that reuses the content of the round whose snapshot was just forgotten,
 * while forget and prune run alongside with a short grace period, so prune's
 * deletions overlap backups that deduplicate against what it marked (the
 * race of restic issue 3126). At the end every snapshot still there restores
 * byte for byte, and check --read-data passes with and without the key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { GC_ENV, GRACE, GRACE_MS, assertRestores, initSmall, json, rounds, sleep, snapshotId, start, writeRound } from './gc-cli.js';
import type { PruneReport } from '../../src/jobs/prune/pruner.js';
import type { SnakeKeys } from '../../src/core/snake-keys.js';

const ROUNDS = rounds('HOLDFAST_GC_ROUNDS', 6);

describe(`backup and prune concurrently (${ROUNDS} rounds)`, () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-gc-concurrent-');
    await initSmall(s);
  });
  after(async () => s.remove());

  it('every remaining snapshot restores byte for byte, and check --read-data passes', { timeout: 240_000 }, async (t) => {
    const sources = new Map<string, string>(); // snapshot → its source tree
    const forgotten: string[] = [];
    let deleted = 0;
    let marked = 0;
    let copied = 0;
    const prune = async (extra: string[] = []): Promise<void> => {
      const r = await start(s, ['--json', 'prune', '--grace', GRACE, '--max-unused', '30', ...extra]).done;
      assert.equal(r.code, 0, `prune failed:\n${r.stderr}`);
      const rep = json<SnakeKeys<PruneReport>>(r);
      deleted += rep.sweep.packs_deleted;
      marked += rep.mark.unused_packs + rep.mark.repacked_packs;
      copied += rep.sweep.blobs_rescued + rep.mark.blobs_copied;
    };
    for (let r = 0; r < ROUNDS; r++) {
      const src = s.path(`src-${r}`);
      await writeRound(src, r);
      const backup = start(s, ['--json', 'backup', src]);
      // Forget the snapshot before last (its content is what this round's backup reuses), then prune, while the backup runs.
      const side = (async () => {
        await sleep(50 + Math.floor(Math.random() * 250));
        const old = [...sources.keys()].at(-2);
        if (old !== undefined && r % 2 === 0) {
          const f = await start(s, ['forget', old]).done;
          assert.equal(f.code, 0, `forget failed:\n${f.stderr}`);
          sources.delete(old);
          forgotten.push(old);
        }
        await prune();
      })();
      const [b] = await Promise.all([backup.done, side]);
      assert.equal(b.code, 0, `backup of round ${r} failed:\n${b.stderr}`);
      sources.set(snapshotId(b), src);
      if (r % 3 === 2) await sleep(GRACE_MS / 2); // let some markers come due while later backups run
    }
    // Let every marker come due, sweep, and mark what is left; then sweep that too.
    await sleep(GRACE_MS + 200);
    await prune();
    await sleep(GRACE_MS + 200);
    await prune();
    assert.ok(marked > 0, 'prunes marked packs');
    assert.ok(deleted > 0, 'prunes deleted packs');
    const listed = new Set((await snapshotsOf(s)).map((x) => x.id));
    assert.deepEqual([...listed].sort(), [...sources.keys()].sort(), 'exactly the snapshots not forgotten remain');
    for (const [snap, src] of sources) await assertRestores(s, snap, src);
    const keyed = await start(s, ['check', '--read-data']).done;
    assert.equal(keyed.code, 0, `check --read-data failed:\n${keyed.stdout}\n${keyed.stderr}`);
    const keyless = await start(s, ['check', '--read-data'], { ...GC_ENV, HOLDFAST_PASSWORD: undefined }).done;
    assert.equal(keyless.code, 0, `keyless check --read-data failed:\n${keyless.stdout}\n${keyless.stderr}`);
    assert.match(keyless.stdout, /without the key/);
    t.diagnostic(`${ROUNDS} rounds: ${forgotten.length} forgotten, ${marked} packs marked, ${deleted} deleted, ${copied} blobs copied`);
  });
});

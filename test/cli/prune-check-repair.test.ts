/**
 * prune, check and repair through the real CLI:
 *  - without the password, and without even the key files in place: prune
 *    collects garbage and check verifies, then everything restores;
 *  - a flipped byte and a truncated pack: check --read-data names the
 *    snapshot and the files; the undamaged files restore; repair snapshots
 *    --mark-damaged keeps the rest and restore refuses the damaged file;
 *  - repair index after every index file is deleted: everything restores.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { bytes } from '../jobs/gc-fixture.js';
import { GC_ENV, GRACE, GRACE_MS, assertRestores, assertSameTree, initSmall, json, sleep, snapshotId, start } from './gc-cli.js';
import type { CheckReport } from '../../src/jobs/check/checker.js';
import { bucketOf } from '../../src/jobs/check/subset.js';
import type { PruneReport } from '../../src/jobs/prune/pruner.js';
import type { SnakeKeys } from '../../src/core/snake-keys.js';

const KEYLESS = { ...GC_ENV, HOLDFAST_PASSWORD: undefined };

/** Every pack file, with its size. */
async function packFiles(repo: string): Promise<{ path: string; name: string; size: number }[]> {
  const out: { path: string; name: string; size: number }[] = [];
  for (const sub of await fs.readdir(join(repo, 'data'))) {
    for (const name of await fs.readdir(join(repo, 'data', sub))) {
      if (name.startsWith('.')) continue;
      const path = join(repo, 'data', sub, name);
      out.push({ path, name, size: (await fs.stat(path)).size });
    }
  }
  return out;
}

describe('prune and check without the password', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-keyless-');
    await initSmall(s);
  });
  after(async () => s.remove());

  it('prune and check run with no password and no key file; the data then restores', { timeout: 120_000 }, async () => {
    const a = s.path('a');
    const b = s.path('b');
    await fs.mkdir(a);
    await fs.mkdir(b);
    await fs.writeFile(join(a, 'gone.bin'), bytes('gone', 400_000));
    await fs.writeFile(join(b, 'kept.bin'), bytes('kept', 300_000));
    await fs.writeFile(join(b, 'note.txt'), 'kept\n');
    const sa = snapshotId(await s.ok(['--json', 'backup', a], { env: GC_ENV }));
    const sb = snapshotId(await s.ok(['--json', 'backup', b], { env: GC_ENV }));
    await s.ok(['forget', sa], { env: KEYLESS });
    // The server's view: no password, and the key files are not even there.
    await fs.rename(join(s.repo, 'keys'), s.path('keys-away'));
    try {
      const first = json<SnakeKeys<PruneReport>>(await s.ok(['--json', 'prune', '--grace', GRACE], { env: KEYLESS }));
      assert.ok(first.mark.unused_packs > 0);
      const dry = json<SnakeKeys<PruneReport>>(await s.ok(['--json', 'prune', '--grace', GRACE, '--dry-run'], { env: KEYLESS }));
      assert.equal(dry.dry_run, true);
      await sleep(GRACE_MS + 100);
      const dryText = (await s.ok(['prune', '--grace', GRACE, '--dry-run'], { env: KEYLESS })).stdout;
      assert.match(dryText, /^would delete now: [1-9]\d* packs? \(.+\) and \d+ index files? marked at least /m);
      assert.doesNotMatch(dryText, /deleted now|delete \d/);
      const second = json<SnakeKeys<PruneReport>>(await s.ok(['--json', 'prune', '--grace', GRACE], { env: KEYLESS }));
      assert.ok(second.sweep.packs_deleted >= first.mark.unused_packs);
      const check = await s.ok(['check', '--read-data'], { env: KEYLESS });
      assert.match(check.stdout, /no password given/);
      assert.match(check.stdout, /no errors were found/);
      // Without the key, --mark-damaged is refused rather than guessed at.
      const mark = await s.run(['repair', 'snapshots', '--mark-damaged'], { env: KEYLESS });
      assert.equal(mark.code, 2);
    } finally {
      await fs.rename(s.path('keys-away'), join(s.repo, 'keys'));
    }
    await assertRestores(s, sb, b);
    await s.ok(['check', '--read-data'], { env: GC_ENV });
  });

  // It printed only "checked 1 snapshot, …", which reads as a check that did not read by design.
  it('check --read-data-subset n/t of a group with no pack says so', async () => {
    await fs.mkdir(s.path('subset'), { recursive: true });
    await fs.writeFile(s.path('subset', 'f'), bytes(1000, 3));
    await s.ok(['backup', '-q', s.path('subset')], { env: GC_ENV });
    const packs = await packFiles(s.repo);
    const of = packs.length + 1;
    const used = new Set(packs.map((p) => bucketOf(p.name, of)));
    const empty = Array.from({ length: of }, (_, i) => i + 1).find((n) => !used.has(n))!;
    const r = await s.ok(['check', '--read-data-subset', `${empty}/${of}`], { env: KEYLESS });
    assert.match(r.stdout, new RegExp(`^checked .*; read 0 packs \\(group ${empty} of ${of} is empty\\) \\(without the key\\)$`, 'm'));
    const full = await s.ok(['check', '--read-data-subset', `${[...used][0]!}/${of}`], { env: KEYLESS });
    assert.match(full.stdout, /; read [1-9]\d* packs? \(/);
  });

  it('refuses a grace period below the minimum', async () => {
    const r = await s.run(['prune', '--grace', '1s'], { env: KEYLESS });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /shorter than the minimum/);
  });

  it('stops with exit 1 and changes nothing while a blob a snapshot references is in no pack', { timeout: 120_000 }, async () => {
    const victim = (await packFiles(s.repo)).sort((x, y) => y.size - x.size)[0]!;
    await fs.rm(victim.path);
    const objects = async (): Promise<string[]> => (await fs.readdir(s.repo, { recursive: true })).filter((n) => !n.startsWith('locks')).sort();
    const before = await objects();
    const r = await s.run(['prune', '--grace', GRACE], { env: KEYLESS });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /prune refused: \d+ blob\(s\) referenced by snapshots are in no pack .* nothing is deleted/);
    assert.deepEqual(await objects(), before);
    // Once the snapshots that lost data are dealt with, prune runs again.
    await s.ok(['repair', 'snapshots', '--forget-damaged'], { env: KEYLESS });
    await s.ok(['prune', '--grace', GRACE], { env: KEYLESS });
  });
});

describe('damaged packs through the CLI', () => {
  let s: Sandbox;
  let snap: string;
  let src: string;
  let other: string;
  let otherSrc: string;
  before(async () => {
    s = await Sandbox.create('holdfast-damage-');
    await initSmall(s);
    src = s.path('src');
    await fs.mkdir(join(src, 'docs'), { recursive: true });
    await fs.writeFile(join(src, 'victim.bin'), bytes('victim', 200_000));
    await fs.writeFile(join(src, 'docs', 'a.txt'), 'alpha\n'.repeat(100));
    await fs.writeFile(join(src, 'docs', 'b.txt'), 'beta\n'.repeat(100));
    snap = snapshotId(await s.ok(['--json', 'backup', src], { env: GC_ENV }));
    otherSrc = s.path('other');
    await fs.mkdir(otherSrc);
    await fs.writeFile(join(otherSrc, 'o.bin'), bytes('other', 100_000));
    other = snapshotId(await s.ok(['--json', 'backup', otherSrc], { env: GC_ENV }));
  });
  after(async () => s.remove());

  /** The pack holding the start of victim.bin: the first data pack the first backup wrote (the largest, oldest). */
  async function victimPack(): Promise<{ path: string; name: string; size: number }> {
    const before = new Set((await packFiles(s.repo)).map((p) => p.name));
    // Find it by elimination: the pack whose removal makes only victim.bin unreadable.
    for (const p of await packFiles(s.repo)) {
      // Moved out of the repository: a pack left in data/ under another name is one no index lists, which check reads.
      const away = s.path(`away-${p.name}`);
      await fs.rename(p.path, away);
      const r = await s.run(['--json', 'check'], { env: GC_ENV });
      await fs.rename(away, p.path);
      const rep = json<SnakeKeys<CheckReport>>(r);
      if (rep.damaged.length === 1 && rep.damaged[0]!.id === snap && JSON.stringify(rep.damaged[0]!.files) === JSON.stringify([`${src}/victim.bin`]) && !rep.damaged[0]!.dirs?.length) return p;
    }
    throw new Error(`no pack holds victim.bin alone among ${before.size}`);
  }

  it('a flipped byte: check --read-data names the snapshot and file, the rest restores, repair marks it', { timeout: 120_000 }, async () => {
    const pack = await victimPack();
    const buf = await fs.readFile(pack.path);
    buf[100]! ^= 0x01;
    await fs.writeFile(pack.path, buf);

    const r = await s.run(['--json', 'check', '--read-data'], { env: GC_ENV });
    assert.equal(r.code, 1);
    const rep = json<SnakeKeys<CheckReport>>(r);
    assert.equal(rep.damaged.length, 1);
    assert.equal(rep.damaged[0]!.id, snap);
    assert.deepEqual(rep.damaged[0]!.files, [`${src}/victim.bin`]);
    const text = await s.run(['check', '--read-data'], { env: GC_ENV });
    assert.match(text.stdout, new RegExp(`snapshot ${snap.slice(0, 8)} of ${src}`));
    assert.match(text.stdout, new RegExp(`file ${src}/victim.bin`));
    const keyless = json<SnakeKeys<CheckReport>>(await s.run(['--json', 'check', '--read-data'], { env: KEYLESS }));
    assert.equal(keyless.damaged[0]!.id, snap, 'without the key the snapshot is still named');
    assert.equal(keyless.damaged[0]!.certain, false);

    // Restore: the damaged file is reported; everything else is byte for byte.
    const target = s.path('t1');
    const res = await s.run(['restore', snap, '--target', target], { env: GC_ENV });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /victim\.bin/);
    assertSameTree(join(src, 'docs'), join(target, src, 'docs'));
    await assertRestores(s, other, otherSrc);

    // repair snapshots --mark-damaged: the snapshot is kept without the lost data.
    const repair = await s.ok(['repair', 'snapshots', '--mark-damaged', '--read-data'], { env: GC_ENV });
    assert.match(repair.stdout, new RegExp(`file ${src}/victim.bin`));
    const [repaired] = (await snapshotsOf(s)).filter((x) => x.id !== other);
    assert.notEqual(repaired!.id, snap);
    assert.equal(repaired!.incomplete, true);
    const t2 = s.path('t2');
    const res2 = await s.run(['restore', repaired!.id, '--target', t2], { env: GC_ENV });
    assert.equal(res2.code, 1, 'a restore with a damaged file is not a success');
    assert.match(res2.stderr, /victim\.bin: .*marked damaged/);
    await assert.rejects(fs.stat(join(t2, src, 'victim.bin')), 'the damaged file is not written (no zero-fill)');
    assertSameTree(join(src, 'docs'), join(t2, src, 'docs'));
    const dump = await s.run(['dump', repaired!.id, `${src}/victim.bin`], { env: GC_ENV });
    assert.equal(dump.code, 1);
    // The repository is consistent again, and check says which snapshot lacks files; the damaged pack goes with a prune after the grace period.
    const after = await s.ok(['check', '--read-data'], { env: GC_ENV });
    assert.match(after.stdout, new RegExp(`1 snapshot\\(s\\) are incomplete .*: ${repaired!.id.slice(0, 8)}\n`));
    assert.match(after.stdout, /no errors were found/);
    await sleep(GRACE_MS + 100);
    await s.ok(['prune', '--grace', GRACE], { env: GC_ENV });
    await assert.rejects(fs.stat(pack.path), 'the damaged pack was removed');
    await s.ok(['check', '--read-data'], { env: GC_ENV });
    // A new backup of the same tree reads victim.bin again rather than reusing the marked node.
    const again = snapshotId(await s.ok(['--json', 'backup', src], { env: GC_ENV }));
    await assertRestores(s, again, src);
  });

  it('a truncated pack: check names the file; repair index keeps the blobs before the cut; --forget-damaged removes the snapshot', { timeout: 120_000 }, async () => {
    const victim = s.path('victim2');
    await fs.mkdir(victim);
    await fs.writeFile(join(victim, 'big.bin'), bytes('victim2', 300_000));
    await fs.writeFile(join(victim, 'small.txt'), 'small\n');
    const snap2 = snapshotId(await s.ok(['--json', 'backup', victim], { env: GC_ENV }));
    const fresh = (await packFiles(s.repo)).sort((x, y) => y.size - x.size);
    // Truncate each candidate in turn until one damages big.bin alone.
    let hit: { path: string } | undefined;
    for (const p of fresh) {
      const orig = await fs.readFile(p.path);
      await fs.truncate(p.path, Math.floor(p.size / 2));
      const rep = json<SnakeKeys<CheckReport>>(await s.run(['--json', 'check', '--read-data'], { env: GC_ENV }));
      const d = rep.damaged.find((x) => x.id === snap2);
      if (rep.damaged.length === 1 && d && JSON.stringify(d.files) === JSON.stringify([`${victim}/big.bin`])) {
        hit = p;
        break;
      }
      await fs.writeFile(p.path, orig);
    }
    assert.ok(hit, 'a pack of big.bin alone was found');
    const structure = await s.run(['check'], { env: GC_ENV });
    assert.equal(structure.code, 1, 'a truncated pack is seen without reading data');
    // The undamaged file of the same snapshot restores.
    const target = s.path('t3');
    const res = await s.run(['restore', snap2, '--target', target], { env: GC_ENV });
    assert.equal(res.code, 1);
    assert.equal(await fs.readFile(join(target, victim, 'small.txt'), 'utf8'), 'small\n');
    // repair index: the header is gone, the blobs before the cut stay indexed.
    const ri = json<{ unreadable: { salvaged: number }[] }>(await s.run(['--json', 'repair', 'index'], { env: KEYLESS }));
    assert.equal(ri.unreadable.length, 1);
    // --forget-damaged (keyless) removes the snapshot; the others still restore.
    await s.ok(['repair', 'snapshots', '--forget-damaged'], { env: KEYLESS });
    assert.ok(!(await snapshotsOf(s)).some((x) => x.id === snap2));
    await assertRestores(s, other, otherSrc);
    // Nothing references the damaged pack now: prune collects it, and check passes again.
    await s.ok(['prune', '--grace', GRACE], { env: KEYLESS });
    await sleep(GRACE_MS + 100);
    await s.ok(['prune', '--grace', GRACE], { env: KEYLESS });
    await assert.rejects(fs.stat(hit.path));
    await s.ok(['check', '--read-data'], { env: GC_ENV });
  });

  it('repair index after every index file is deleted: everything restores', { timeout: 120_000 }, async () => {
    for (const f of await fs.readdir(join(s.repo, 'index'))) await fs.rm(join(s.repo, 'index', f));
    const broken = await s.run(['restore', other, '--target', s.path('t4')], { env: GC_ENV });
    assert.notEqual(broken.code, 0);
    await s.ok(['repair', 'index'], { env: KEYLESS });
    await assertRestores(s, other, otherSrc);
    for (const x of await snapshotsOf(s)) {
      if (x.id === other) continue;
      const target = s.path(`t5-${x.id.slice(0, 6)}`);
      if (!x.incomplete) {
        await assertRestores(s, x.id, src);
        continue;
      }
      // The snapshot repaired above: everything but the file marked damaged.
      const r = await s.run(['restore', x.id, '--target', target], { env: GC_ENV });
      assert.equal(r.code, 1);
      assert.deepEqual(r.stderr.split('\n').filter((l) => l.startsWith('warning:')).length, 1);
      assertSameTree(join(src, 'docs'), join(target, src, 'docs'));
    }
    await s.ok(['check', '--read-data'], { env: GC_ENV });
  });

  it('an empty pack is described the same way by check and check --read-data', { timeout: 120_000 }, async () => {
    const empty = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    const path = join(s.repo, 'data', empty.slice(0, 2), empty);
    await fs.mkdir(join(s.repo, 'data', empty.slice(0, 2)), { recursive: true });
    await fs.writeFile(path, '');
    try {
      const said: string[] = [];
      for (const args of [['check'], ['check', '--read-data']]) {
        const r = await s.run(args, { env: GC_ENV });
        const line = r.stderr.split('\n').find((l) => l.startsWith(`error: pack ${empty}`));
        assert.ok(line, `${args.join(' ')} names the empty pack: ${r.stderr}`);
        said.push(line);
      }
      assert.equal(said[0], `error: pack ${empty}: header cannot be read: pack ${empty} is damaged: not a pack (0 bytes, shorter than its trailer)`);
      assert.equal(said[1], said[0]);
    } finally {
      await fs.rm(path);
    }
  });
});

describe('prune under --limit-upload interrupted with Ctrl-C', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-prune-int-');
    await initSmall(s);
  });
  after(async () => s.remove());

  // Repacking uploads the live part of a mostly unused pack; at 1 KiB/s the limiter's wait ran to its end before.
  it('ends the wait for upload tokens at once: exit 130, no pack deleted, and the next prune completes', { timeout: 120_000 }, async () => {
    const tree = s.path('tree');
    await fs.mkdir(tree);
    // Twelve files in a row of packs; keeping every third leaves each pack mostly unused, so prune repacks.
    for (let i = 0; i < 12; i++) await fs.writeFile(join(tree, `f${String(i).padStart(2, '0')}.bin`), bytes(`prune under a limit ${i}`, 20_000));
    const first = snapshotId(await start(s, ['--json', 'backup', tree]).done);
    for (let i = 0; i < 12; i++) if (i % 3 !== 0) await fs.rm(join(tree, `f${String(i).padStart(2, '0')}.bin`));
    const second = snapshotId(await start(s, ['--json', 'backup', tree]).done);
    assert.equal((await start(s, ['forget', first]).done).code, 0);
    const before = (await packFiles(s.repo)).map((p) => p.name).sort();
    const { child, done } = s.start(['--limit-upload', '1', 'prune', '--grace', GRACE], { env: GC_ENV });
    while ((await fs.readdir(join(s.repo, 'locks'))).length === 0 && child.exitCode === null) await sleep(20);
    await sleep(1000);
    const killedAt = Date.now();
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /interrupted; the repository is consistent, run prune again/);
    assert.ok(Date.now() - killedAt < 10_000, `the prune took ${Date.now() - killedAt} ms to stop`);
    const after = new Set((await packFiles(s.repo)).map((p) => p.name));
    assert.ok(before.every((p) => after.has(p)), 'no pack was deleted');
    assert.deepEqual(await fs.readdir(join(s.repo, 'locks')), [], 'the lock is released');
    assert.equal((await start(s, ['prune', '--grace', GRACE]).done).code, 0);
    await assertRestores(s, second, tree);
  });
});

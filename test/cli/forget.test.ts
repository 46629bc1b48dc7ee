/**
 * `holdfast forget` through the real CLI: it removes exactly the snapshot
 * objects the policy removes (and no data), needs no password, explains
 * every decision in --dry-run, takes ids, refuses bad options with exit 2,
 * does not run beside an exclusive lock, and is not blocked by an unreadable
 * object a client stored in snapshots/.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { acquireLock, processIdentity } from '../../src/repo/lock.js';
import { AppendOnlyBackend } from '../../src/storage/append-only-backend.js';

const TZ = 'UTC';
const NOPW = { HOLDFAST_PASSWORD: undefined, TZ };

describe('holdfast forget', () => {
  let s: Sandbox;
  let data: string;
  const times = ['2024-03-01 09:00:00', '2024-03-01 18:00:00', '2024-03-02 09:00:00', '2024-03-03 09:00:00', '2024-03-03 12:00:00'];

  /** A fresh repository with the five snapshots above (host h) and one of host g. */
  async function fresh(): Promise<void> {
    await s.remove().catch(() => undefined);
    s = await Sandbox.create('holdfast-forget-');
    data = s.path('data');
    await mkdir(data);
    await writeFile(`${data}/f`, 'x');
    await s.ok(['init']);
    for (const t of times) await s.ok(['backup', '-q', '--time', t, '--host', 'h', data], { env: { TZ } });
    await s.ok(['backup', '-q', '--time', '2024-01-01 00:00:00', '--host', 'g', '--tag', 'keep', data], { env: { TZ } });
  }

  before(async () => {
    s = await Sandbox.create('holdfast-forget-');
    await fresh();
  });
  after(async () => {
    await s.remove();
  });

  const timesOf = async (): Promise<string[]> => (await snapshotsOf(s)).map((x) => `${x.hostname} ${x.time.slice(0, 16)}`).sort();

  it('dry run: shows each group and every snapshot with keep or remove and why, and removes nothing', async () => {
    const r = await s.ok(['forget', '--dry-run', '--keep-daily', '2'], { env: NOPW });
    assert.match(r.stdout, /applying policy: keep 2 daily snapshots/);
    assert.match(r.stdout, /snapshots of host h, paths \S+\/data: keep 2, remove 3/);
    assert.match(r.stdout, /snapshots of host g, paths \S+\/data: keep 1, remove 0/);
    assert.match(r.stdout, /2024-03-03 12:00:00 +h +keep +daily snapshot/);
    assert.match(r.stdout, /2024-03-03 09:00:00 +h +remove +daily: a newer snapshot of the same day is kept/);
    assert.match(r.stdout, /2024-03-01 18:00:00 +h +remove +daily: count used up/);
    assert.match(r.stdout, /would remove 3 snapshots \(dry run/);
    assert.equal((await timesOf()).length, 6);
  });

  it('--json gives restic\'s shape plus every decision', async () => {
    const r = await s.ok(['forget', '--dry-run', '--json', '--keep-last', '1', '--group-by', 'host'], { env: NOPW });
    const groups = JSON.parse(r.stdout) as { host: string; paths: null; tags: null; keep: { time: string }[]; remove: unknown[]; reasons: { matches: string[] }[]; decisions: { action: string; reasons: string[] }[] }[];
    assert.deepEqual(groups.map((g) => [g.host, g.paths, g.tags, g.keep.length, g.remove.length]), [['g', null, null, 1, 0], ['h', null, null, 1, 4]]);
    assert.equal(groups[1]!.keep[0]!.time, '2024-03-03T12:00:00.000Z');
    assert.deepEqual(groups[1]!.reasons[0]!.matches, ['last snapshot']);
    assert.deepEqual(groups[1]!.decisions.map((d) => d.action), ['keep', 'remove', 'remove', 'remove', 'remove']);
  });

  it('removes the snapshot objects the policy removes, without a password, and leaves data and index alone', async () => {
    const before = { data: await readdir(s.path('repo', 'index')), snaps: await readdir(s.path('repo', 'snapshots')) };
    const r = await s.ok(['forget', '--keep-daily', '2', '--keep-tag', 'keep'], { env: NOPW });
    assert.match(r.stdout, /removed 3 snapshots/);
    assert.deepEqual(await timesOf(), ['g 2024-01-01T00:00', 'h 2024-03-02T09:00', 'h 2024-03-03T12:00']);
    assert.equal((await readdir(s.path('repo', 'snapshots'))).length, before.snaps.length - 3);
    assert.deepEqual(await readdir(s.path('repo', 'index')), before.data);
    assert.deepEqual(await readdir(s.path('repo', 'locks')), [], 'its lock is released');
    const again = await s.ok(['forget', '--keep-daily', '2', '--keep-tag', 'keep'], { env: NOPW });
    assert.match(again.stdout, /removed 0 snapshots/);
    await s.ok(['restore', 'latest', '--host', 'h', '--target', s.path('restored')]);
  });

  it('removes snapshots named by id prefix; --prune collects right after, without the password', async () => {
    const list = await snapshotsOf(s);
    const victim = list.find((x) => x.hostname === 'g')!;
    const r = await s.ok(['forget', '--prune', victim.id.slice(0, 10)], { env: NOPW });
    assert.match(r.stdout, new RegExp(`removed snapshot ${victim.id.slice(0, 8)}`));
    assert.match(r.stdout, /marked now: /);
    assert.ok(!(await snapshotsOf(s)).some((x) => x.id === victim.id));
    await s.ok(['forget', victim.id.slice(0, 10)], { env: NOPW }, 1);
  });

  it('--prune --grace gives prune its grace period; one under the minimum removes nothing (exit 2)', async () => {
    const before = (await timesOf()).length;
    const short = await s.run(['forget', '--keep-last', '1', '--prune', '--grace', '1m'], { env: NOPW });
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /--grace 1m is shorter than the minimum of 10m/);
    assert.equal((await timesOf()).length, before, 'nothing was forgotten');
    assert.equal((await s.run(['forget', '--keep-last', '1', '--grace', '2h'], { env: NOPW })).code, 2, '--grace without --prune');
    const r = await s.ok(['forget', '--json', '--group-by', 'host', '--keep-last', '1', '--prune', '--grace', '2h'], { env: NOPW });
    const prune = JSON.parse(r.stdout.trim().split('\n').pop()!) as { grace_seconds: number };
    assert.equal(prune.grace_seconds, 7200);
  });

  // On main: "this frees … when a prune runs after T", though a plain prune then waited its own 1h.
  it('--prune --grace says that the prune that deletes needs the same --grace', async () => {
    const p = s.path('grace-data');
    await mkdir(p);
    for (const content of ['first version\n', 'second version\n']) {
      await writeFile(`${p}/f`, content);
      await s.ok(['backup', '-q', '--host', 'p', p]);
    }
    const r = await s.ok(['forget', '--host', 'p', '--keep-last', '1', '--prune', '--grace', '10m'], { env: NOPW });
    const at = /this frees \S+ \S+ when a prune with --grace 10m runs after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d); a prune without --grace waits 1h from now\n/.exec(r.stdout);
    assert.ok(at, r.stdout);
    const plain = await s.ok(['prune'], { env: NOPW });
    // Markers of the tests before wait too: this one's is the one due 50 minutes after the time printed.
    const dues = [...plain.stdout.matchAll(/waiting: marker \w+ becomes deletable at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(grace period not over\)/g)].map((m) => Date.parse(m[1]!) - Date.parse(at[1]!));
    assert.ok(dues.includes(50 * 60_000), `a plain prune does not count 1h from the marker:\n${plain.stdout}`);
    assert.ok(!dues.includes(0), plain.stdout);
    // In time order (they were in the order of the markers' names).
    assert.deepEqual(dues, [...dues].sort((a, b) => a - b), plain.stdout);
  });

  it('with no policy removes nothing; unlimited counts work', async () => {
    await fresh();
    const r = await s.ok(['forget'], { env: NOPW });
    assert.match(r.stdout, /no policy was given/);
    const u = await s.ok(['forget', '--keep-daily', 'unlimited'], { env: NOPW });
    assert.match(u.stdout, /removed 2 snapshots/); // the older ones of 03-01 and 03-03
    assert.equal((await timesOf()).length, 4);
  });

  it('refuses bad options with exit code 2', async () => {
    for (const args of [
      ['--keep-daily', '-2'], ['--keep-daily', 'x'], ['--keep-within', '5'], ['--keep-within', '-1d'], ['--group-by', 'user', '--keep-last', '1'],
      ['--keep-last', '1', 'abcdef12'], ['zz'],
    ]) {
      const r = await s.run(['forget', ...args], { env: NOPW });
      assert.equal(r.code, 2, `forget ${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal((await timesOf()).length, 4);
  });

  it('waits for no one in a dry run, but does not remove beside an exclusive lock (exit 11)', async () => {
    const lock = await acquireLock(new LocalBackend(s.repo), { holder: processIdentity(), exclusive: true, operation: 'prune' });
    try {
      await s.ok(['forget', '--dry-run', '--keep-last', '1'], { env: NOPW });
      const r = await s.run(['forget', '--keep-last', '1'], { env: NOPW });
      assert.equal(r.code, 11, r.stderr);
      assert.match(r.stderr, /locked exclusively by prune/);
      assert.equal((await timesOf()).length, 4);
    } finally {
      await lock.release();
    }
  });
});

describe('holdfast forget and prune, with junk a client stored in snapshots/', () => {
  let s: Sandbox;
  let junk: string;

  before(async () => {
    s = await Sandbox.create('holdfast-forget-junk-');
    const data = s.path('data');
    await mkdir(data);
    await writeFile(`${data}/f`, 'content that must survive');
    await s.ok(['init']);
    for (const t of ['2024-03-01 09:00:00', '2024-03-02 09:00:00', '2024-03-03 09:00:00']) await s.ok(['backup', '-q', '--time', t, data], { env: { TZ } });
    // Any client that can add objects can store any bytes under their SHA-256 name.
    const bytes = randomBytes(100);
    junk = createHash('sha256').update(bytes).digest('hex');
    await new AppendOnlyBackend(new LocalBackend(s.repo)).save({ type: 'snapshot', name: junk }, bytes);
  });
  after(async () => {
    await s.remove();
  });

  const stored = async (): Promise<string[]> => readdir(s.path('repo', 'snapshots'));

  it('keyless forget by policy leaves it out with a warning naming it, and applies the policy to the others', async () => {
    const dry = await s.ok(['forget', '--dry-run', '--keep-last', '1'], { env: NOPW });
    assert.match(dry.stderr, new RegExp(`snapshot ${junk} is damaged.*left out of the policy: neither kept nor removed.*holdfast forget ${junk}`));
    assert.match(dry.stdout, /keep 1, remove 2/);
    assert.match(dry.stdout, /would remove 2 snapshots/);
    const r = await s.ok(['forget', '--keep-last', '1'], { env: NOPW });
    assert.match(r.stderr, new RegExp(`snapshot ${junk} `));
    assert.match(r.stdout, /removed 2 snapshots/);
    assert.deepEqual((await stored()).sort(), [junk, (await snapshotsOf(s))[0]!.id].sort());
  });

  it('keyless prune refuses while it is there, and says how to proceed; forget ID removes it, and prune then runs', async () => {
    const refused = await s.run(['prune'], { env: NOPW });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`1 snapshot\\(s\\) cannot be read.*snapshot ${junk} is damaged`));
    assert.match(refused.stderr, new RegExp(`holdfast forget ${junk}`));
    const r = await s.ok(['forget', junk.slice(0, 12)], { env: NOPW });
    assert.match(r.stdout, new RegExp(`removed snapshot ${junk.slice(0, 8)}`));
    assert.ok(!(await stored()).includes(junk));
    await s.ok(['prune'], { env: NOPW });
    await s.ok(['restore', 'latest', '--target', s.path('restored')]);
    assert.equal(await readFile(join(s.path('restored'), s.path('data'), 'f'), 'utf8'), 'content that must survive');
  });
});

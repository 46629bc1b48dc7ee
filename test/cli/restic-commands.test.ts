/**
 * The commands and flags restic users look for, in restic's spelling:
 * version, snapshots --latest, tag, cat, find, -v and shell completion.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

describe('restic\'s commands and flags', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-restic-');
    for (const d of ['a', 'b']) {
      mkdirSync(s.path(d, 'sub'), { recursive: true });
      writeFileSync(s.path(d, 'sub', 'notes.txt'), `notes of ${d}`);
      writeFileSync(s.path(d, 'other.bin'), d);
    }
    await s.ok(['init']);
    for (const t of ['2024-01-01 10:00:00', '2024-01-02 10:00:00', '2024-01-03 10:00:00']) await s.ok(['backup', '-q', '--time', t, s.path('a')]);
    await s.ok(['backup', '-q', '--time', '2024-01-01 12:00:00', s.path('b')]);
  });
  after(() => s.remove());

  it('version prints the version of package.json, also as JSON', async () => {
    const r = await s.ok(['version']);
    assert.match(r.stdout, /^holdfast 0\.\d+\.\d+ \(node v\d+\.\d+\.\d+, linux\/\w+\)\n$/);
    const j = JSON.parse((await s.ok(['--json', 'version'])).stdout) as { version: string };
    assert.equal(j.version, (await s.ok(['--version'])).stdout.trim());
  });

  it('snapshots --latest N: the newest N of each host and paths', async () => {
    const all = await snapshotsOf(s);
    const r = await s.ok(['snapshots', '--json', '--latest', '1']);
    const latest = JSON.parse(r.stdout) as { time: string; paths: string[] }[];
    assert.deepEqual(latest.map((x) => x.paths[0]), [s.path('b'), s.path('a')]);
    assert.equal(latest[1]!.time, all.filter((x) => x.paths[0] === s.path('a')).pop()!.time);
    assert.equal(JSON.parse((await s.ok(['snapshots', '--json', '--latest', '2'])).stdout).length, 3);
    assert.match((await s.ok(['snapshots', '--latest', '1'])).stdout, /^2 snapshots$/m);
    failsWith(await s.run(['snapshots', '--latest', '0']), 2, /--latest "0"/);
  });

  it('tag --add/--remove/--set rewrites the snapshots chosen (new object, old one removed); they stay authentic', async () => {
    const before = await snapshotsOf(s);
    const r = await s.ok(['tag', '--add', 'web,prod', '--path', s.path('a')]);
    assert.match(r.stdout, /modified 3 snapshots/);
    let now = await snapshotsOf(s);
    assert.equal(now.length, before.length);
    const ofA = now.filter((x) => x.paths[0] === s.path('a'));
    assert.deepEqual(ofA.map((x) => x.tags), [['web', 'prod'], ['web', 'prod'], ['web', 'prod']]);
    assert.ok(ofA.every((x) => !before.some((b) => b.id === x.id)), 'each changed snapshot has a new id');
    assert.deepEqual(now.map((x) => x.time), before.map((x) => x.time), 'times are kept');
    await s.ok(['check']); // the new objects carry valid MACs

    const newest = ofA[2]!;
    await s.ok(['tag', '--remove', 'prod', newest.id.slice(0, 8)]);
    now = await snapshotsOf(s);
    assert.deepEqual(now.find((x) => x.time === newest.time)!.tags, ['web']);
    assert.match((await s.ok(['tag', '--add', 'web', '--tag', 'web'])).stdout, /no snapshots were modified/);
    await s.ok(['tag', '--set', '', '--tag', 'web']);
    assert.ok((await snapshotsOf(s)).every((x) => x.tags.length === 0));
    failsWith(await s.run(['tag', '--set', 'x', '--add', 'y']), 2, /--set replaces the tags/);
    failsWith(await s.run(['tag']), 2, /give --add, --remove or --set/);
  });

  it('tag is refused by an append-only client before anything is written (exit 13)', async () => {
    const before = await snapshotsOf(s);
    const r = await s.run(['tag', '--add', 'x'], { env: { HOLDFAST_APPEND_ONLY: '1' } });
    failsWith(r, 13, /append-only: tag/);
    assert.deepEqual(await snapshotsOf(s), before);
  });
});

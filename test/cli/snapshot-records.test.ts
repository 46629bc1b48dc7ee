/**
 * The CLI's records of the snapshot headers it authenticated
 * (`<cache>/<repository id>/snapshots`, src/repo/snapshot-headers.ts), from
 * the attacker's side: a snapshot forgotten and pruned by another machine
 * whose name an add-only client then fills with other bytes is not taken as
 * the parent (the parent is read whole), and the temporary files of a write
 * killed before its rename do not pile up.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';

describe('snapshot header records in the CLI\'s cache', () => {
  let s: Sandbox;
  let records: string;
  before(async () => {
    s = await Sandbox.create('holdfast-records-');
    await s.ok(['init']);
    mkdirSync(s.path('data'));
    writeFileSync(s.path('data', 'a'), 'first');
  });
  after(() => s.remove());

  const backup = async (env: Record<string, string> = {}): Promise<{ id: string; stderr: string; stdout: string }> => {
    const r = await s.ok(['backup', '--host', 'h', s.path('data')], { env });
    return { id: /snapshot ([0-9a-f]{8}) saved/.exec(r.stdout)![1]!, stderr: r.stderr, stdout: r.stdout };
  };

  it('a parent forgotten elsewhere whose name now holds other bytes is skipped with a warning, and the older one used', async () => {
    const first = await backup();
    writeFileSync(s.path('data', 'a'), 'second');
    const second = await backup();
    const id = readdirSync(s.path('cache')).find((n) => /^[0-9a-f]{64}$/.test(n))!;
    records = s.path('cache', id, 'snapshots');
    assert.ok(existsSync(records), 'the records are kept');
    const full = readdirSync(s.path('repo', 'snapshots')).find((n) => n.startsWith(second.id))!;
    // Another machine (its own cache) forgets the second; an add-only client then puts a byte under its name.
    await s.ok(['forget', second.id], { env: { HOLDFAST_CACHE_DIR: s.path('other-cache') } });
    assert.ok(!existsSync(s.path('repo', 'snapshots', full)));
    writeFileSync(s.path('repo', 'snapshots', full), 'x');
    writeFileSync(s.path('data', 'a'), 'third');
    const third = await backup();
    assert.match(third.stderr, new RegExp(`skipping snapshot ${second.id}[0-9a-f]*: `));
    assert.match(third.stdout, new RegExp(`using parent snapshot ${first.id}`));
    const restored = s.path('restored');
    await s.ok(['restore', third.id, '--target', restored]);
    assert.ok(existsSync(join(restored, s.path('data', 'a'))));
  });

  it('temporary files left by a write killed before its rename are removed by a later write once old; recent ones are left', async () => {
    const dir = join(records, '..');
    const stale = join(dir, '.snapshots.0123456789ab.tmp');
    const recent = join(dir, '.snapshots.ba9876543210.tmp');
    writeFileSync(stale, 'left by a killed write');
    writeFileSync(recent, 'a write under way');
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(stale, hourAgo, hourAgo);
    writeFileSync(s.path('data', 'b'), 'another file');
    await backup();
    assert.ok(!existsSync(stale));
    assert.ok(existsSync(recent));
  });
});

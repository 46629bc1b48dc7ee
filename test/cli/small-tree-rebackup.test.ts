/**
 * A re-backup of a small tree lists its folders on the main thread
 * (InlineLister: the parent held at most INLINE_LISTING_ENTRIES entries),
 * where the first backup listed them in the scan worker: the snapshots must
 * hold the same tree either way, with what changed between them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { assertRestores } from '../helpers/restore-check.js';

describe('a re-backup of a small tree, its folders listed on the main thread', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-small-rebackup-');
    for (let d = 0; d < 5; d++) {
      mkdirSync(s.path('src', `d${d}`, 'deep', 'er'), { recursive: true });
      for (let f = 0; f < 20; f++) writeFileSync(s.path('src', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(f + 1));
      writeFileSync(s.path('src', `d${d}`, 'deep', 'er', 'leaf.log'), `leaf ${d}`);
    }
    symlinkSync('../d0/f1.txt', s.path('src', 'd1', 'link'));
    await s.ok(['init']);
  });
  after(() => s.remove());

  it('stores what changed and restores the tree as it is, names in order', async () => {
    await s.ok(['backup', '-q', '--exclude', '*.log', s.path('src')]);
    writeFileSync(s.path('src', 'd2', 'deep', 'new.txt'), 'new');
    rmSync(s.path('src', 'd3', 'f7.txt'));
    renameSync(s.path('src', 'd4'), s.path('src', 'd9'));
    writeFileSync(s.path('src', 'd0', 'f3.txt'), 'changed content');
    utimesSync(s.path('src', 'd1', 'f5.txt'), new Date('2030-01-01'), new Date('2030-01-01'));
    const r = await s.ok(['backup', '--json', '--exclude', '*.log', s.path('src')]);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    assert.deepEqual([summary['files_new'], summary['files_changed']], [21, 2]);
    const src = s.path('src');
    const names = (await s.ok(['ls', 'latest'])).stdout.split('\n').filter((l) => l.startsWith(`${src}/`)).map((l) => l.slice(src.length + 1));
    assert.deepEqual(names, [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    assert.ok(names.includes('d2/deep/new.txt') && names.includes('d9/f0.txt') && names.includes('d1/link'));
    assert.ok(!names.includes('d3/f7.txt') && !names.some((n) => n.startsWith('d4/') || n.endsWith('.log')));
    rmSync(s.path('src', 'd0', 'deep', 'er', 'leaf.log'));
    for (const d of [1, 2, 3, 9]) rmSync(s.path('src', `d${d}`, 'deep', 'er', 'leaf.log'));
    await assertRestores(s, 'latest', src);
  });
});

/**
 * The counts of `backup --json`'s summary line that restic's has too:
 * folders new, changed and unmodified against the parent snapshot, and the
 * data and tree blobs added, on a tree where each is known. `snapshots
 * --json` gives the stored summary under the same names, the text summary
 * its `Dirs:` line.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';

const COUNTS = ['dirs_new', 'dirs_changed', 'dirs_unmodified', 'total_dirs_processed', 'data_blobs', 'tree_blobs', 'blobs_added'] as const;

describe('backup --json summary: folders and blobs', () => {
  let s: Sandbox;
  let root: string;
  /** The folders from `/` down to the backed-up folder, which the snapshot records too (the root `/` is not counted). */
  let above: number;
  /** Of those, the folders above the sandbox. */
  let outside: number;

  before(async () => {
    s = await Sandbox.create();
    await s.ok(['init']);
    root = s.path('src', 't');
    above = root.split('/').filter((x) => x !== '').length;
    outside = dirname(s.dir).split('/').filter((x) => x !== '').length;
    // Small files only, a few bytes in all: each backup's new content is one batch, one data blob.
    for (const d of ['a', 'b', 'c']) await mkdir(join(root, d), { recursive: true });
    await writeFile(join(root, 'a', 'f'), 'one');
    await writeFile(join(root, 'b', 'g'), 'two');
    await writeFile(join(root, 'top'), 'three');
  });
  after(() => removeTree(s.dir));

  /** The summary's counts, from `backup --json`; checks that `snapshots --json` stored the same. */
  async function backup(): Promise<number[]> {
    const r = await s.ok(['backup', '--json', root]);
    const line = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'])).stdout) as { id: string; summary: Record<string, unknown> }[];
    const stored = snaps.find((x) => x.id === line['snapshot_id'])!.summary;
    const counts = COUNTS.map((k) => line[k] as number);
    assert.deepEqual(COUNTS.map((k) => stored[k]), counts, 'snapshots --json gives the stored summary under the same names');
    return counts;
  }

  it('counts every folder new, then changed or unmodified against the parent, and the blobs added by type', async () => {
    // Every folder new; a tree for each and for `/`.
    assert.deepEqual(await backup(), [above + 3, 0, 0, above + 3, 1, above + 4, above + 5]);
    // b's file changes and d is new: b, t and the folders above it change (a parent's tree names its child's tree); a and c do not.
    await writeFile(join(root, 'b', 'g'), 'TWO');
    await mkdir(join(root, 'd'));
    await writeFile(join(root, 'd', 'h'), 'four');
    assert.deepEqual(await backup(), [1, above + 1, 2, above + 4, 1, above + 3, above + 4]);
    // Nothing changed: every folder unmodified, nothing added. Except above the sandbox: other processes change /tmp, whose node the root's tree holds.
    const [dirsNew, changed, unmodified, processed, data, trees, added] = await backup();
    assert.ok(changed! <= outside && trees! <= outside + 1, `only the trees above the sandbox may be new: ${changed} folders changed, ${trees} trees added`);
    assert.deepEqual([dirsNew, unmodified, processed, data, added], [0, above + 4 - changed!, above + 4, 0, trees]);
    // The text summary says the same.
    await writeFile(join(root, 'c', 'e'), 'five');
    assert.match((await s.ok(['backup', root])).stdout, new RegExp(`^Dirs: +0 new, ${above + 1} changed, 3 unchanged$`, 'm'));
  });
});

/**
 * The paths and options that choose what a file backup takes, restic's way:
 * missing paths, --files-from, the exclude rules, --dry-run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from '../fixtures/tree.js';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

/** The names of the objects of one type in the sandbox's repository. */
const objects = async (s: Sandbox, type: string): Promise<string[]> => (await readdir(join(s.repo, type), { recursive: true, withFileTypes: true }))
  .filter((e) => e.isFile()).map((e) => e.name).sort();

describe('backup: what is backed up', () => {
  let s: Sandbox;

  before(async () => {
    s = await Sandbox.create();
    await s.ok(['init']);
    await mkdir(s.path('a', 'sub'), { recursive: true });
    await writeFile(s.path('a', 'f'), 'f');
    await writeFile(s.path('a', 'sub', 'g'), 'g');
  });
  after(() => removeTree(s.dir));

  it('refuses, with exit 1 and nothing written, when no path given exists', async () => {
    const before = await Promise.all(['data', 'index', 'snapshots', 'locks'].map((t) => objects(s, t)));
    const r = await s.run(['backup', s.path('typo'), s.path('other-typo')]);
    failsWith(r, 1, /none of the paths given exists/);
    assert.match(r.stderr, /typo does not exist, skipping/);
    assert.deepEqual(await Promise.all(['data', 'index', 'snapshots', 'locks'].map((t) => objects(s, t))), before);
    assert.equal((await snapshotsOf(s)).length, 0);
  });

  it('skips a path that does not exist, backs up the others, and exits 3', async () => {
    const r = await s.run(['backup', s.path('a'), s.path('typo')]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /typo does not exist, skipping/);
    const [snap] = await snapshotsOf(s);
    assert.deepEqual(snap!.paths, [s.path('a')]);
    const ls = (await s.ok(['ls', 'latest'])).stdout;
    assert.match(ls, /\/a\/sub\/g$/m);
  });
});

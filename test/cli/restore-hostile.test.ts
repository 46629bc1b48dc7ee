/**
 * Restores of snapshots no backup writes, forged through the repository API:
 * file sizes that disagree with their content, damaged listings, and a tree
 * nested thousands of folders deep. Each is reported for what it is, and
 * everything else in the snapshot is still restored.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { errorLines } from '../helpers/cli-errors.js';
import { Forge } from '../helpers/forge.js';

describe('a file whose size disagrees with its content', () => {
  let s: Sandbox;
  let snap: string;
  const good = Buffer.from('a legitimate file\n');
  before(async () => {
    s = await Sandbox.create('holdfast-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const small = await f.data(Buffer.from('fourteen bytes'));
    const big = await f.data(Buffer.alloc(100_000, 0x61));
    const goodId = await f.data(good);
    snap = await f.snapshot(await f.tree([
      f.file('giga', 1 << 30, [small]),
      f.file('tera', 8 * 2 ** 40, [small]),
      f.file('short', 5, [big]),
      f.file('holey', 10, [3, small]),
      f.file('ok.txt', good.length, [goodId]),
    ]));
  });
  after(() => s.remove());

  it('is reported as damaged and not restored; the rest is restored, exit 1', async () => {
    const target = s.path('t');
    const r = await s.run(['restore', snap, '--target', target]);
    assert.equal(r.code, 1, r.stderr);
    const lines = errorLines(r);
    assert.match(lines[0]!, /restore INCOMPLETE/);
    for (const [name, declared, holds] of [['giga', 1 << 30, 14], ['tera', 8 * 2 ** 40, 14], ['short', 5, 100_000], ['holey', 10, 17]] as const) {
      assert.match(r.stderr, new RegExp(`/${name}: .*declares ${declared} bytes but its content holds ${holds}`), r.stderr);
      await assert.rejects(fs.lstat(join(target, name)), `${name} was restored`);
    }
    assert.deepEqual(await fs.readFile(join(target, 'ok.txt')), good);
  });
});

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
import type { TreeNode } from '../../src/repo/tree.js';

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

describe('a snapshot with damaged folders', () => {
  let s: Sandbox;
  let snap: string;
  const bytes = (name: string): Buffer => Buffer.from(`the content of ${name}\n`);
  before(async () => {
    s = await Sandbox.create('holdfast-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const file = async (name: string): Promise<TreeNode> => f.file(name, bytes(name).length, [await f.data(bytes(name))]);
    const dataId = await f.data(Buffer.from('a data blob, not a listing'));
    snap = await f.snapshot(await f.tree([
      f.dir('a', await f.tree([await file('ok.txt')])),
      f.dir('b-missing', 'ab'.repeat(32)),
      f.dir('c-data', dataId),
      f.dir('d-garbage', await f.rawTree(Buffer.from('neither JSON nor a binary listing'))),
      f.dir('e', await f.tree([f.dir('inner-missing', 'cd'.repeat(32)), await file('kept.txt')])),
      await file('z.txt'),
    ]));
  });
  after(() => s.remove());

  it('restores everything else, lists each damaged folder with its cause, exit 1', async () => {
    const target = s.path('t');
    const r = await s.run(['restore', snap, '--target', target]);
    assert.equal(r.code, 1, r.stderr);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /restore INCOMPLETE: 4 path\(s\)/);
    assert.doesNotMatch(r.stderr, /worker pool is closed/);
    const listed = r.stderr.slice(r.stderr.indexOf('holdfast: '));
    assert.match(listed, new RegExp(`/b-missing: its listing cannot be read \\(tree ${'ab'.repeat(32)} is not in the repository index\\)`));
    assert.match(listed, /\/c-data: its listing cannot be read \(tree \w+ is damaged: indexed as type 0\)/);
    assert.match(listed, /\/d-garbage: its listing cannot be read \(.*is damaged/);
    assert.match(listed, /\/e\/inner-missing: its listing cannot be read/);
    for (const name of ['a/ok.txt', 'e/kept.txt', 'z.txt']) assert.deepEqual(await fs.readFile(join(target, name)), bytes(name.split('/').pop()!));
    for (const dir of ['b-missing', 'c-data', 'd-garbage', 'e/inner-missing']) assert.deepEqual(await fs.readdir(join(target, dir)), []);
  });
});

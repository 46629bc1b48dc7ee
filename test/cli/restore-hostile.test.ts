/**
 * Restores of snapshots no backup writes, forged through the repository API:
 * file sizes that disagree with their content, damaged listings, and a tree
 * nested thousands of folders deep. Each is reported for what it is, and
 * everything else in the snapshot is still restored.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, Sandbox } from '../helpers/cli.js';
import { errorLines } from '../helpers/cli-errors.js';
import { FORGED_MTIME, Forge } from '../helpers/forge.js';
import { removeTree } from '../fixtures/tree.js';
import { PathShortener } from '../../src/sources/posix.js';
import { encodeTree, type TreeNode } from '../../src/repo/tree.js';

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

describe('a tree nested 4,000 folders deep (a path of 204 KB)', { skip: existsSync('/usr/bin/time') ? false : 'needs GNU time (Debian: apt-get install time)' }, () => {
  const DEPTH = 4000;
  const NAME = 'd'.repeat(50);
  let s: Sandbox;
  let snap: string;
  const bottom = Buffer.from('at the bottom\n');
  before(async () => {
    s = await Sandbox.create('holdfast-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    let tree = await f.tree([f.file('bottom.txt', bottom.length, [await f.data(bottom)])]);
    for (let i = 0; i < DEPTH; i++) tree = await f.tree([f.dir(NAME, tree)]);
    snap = await f.snapshot(tree);
  });
  after(() => removeTree(s.dir));

  it('restores with memory linear in the depth (it kept every folder\'s path: 778 MB)', async () => {
    const target = s.path('t');
    // GNU time prints the child's peak resident set (KB) as the last line of stderr.
    const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, CLI, 'restore', snap, '--target', target], { env: { ...process.env, ...s.env() }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const maxRssMiB = Number(r.stderr.trim().split('\n').pop()) / 1024;
    assert.ok(maxRssMiB < 450, `peak RSS ${maxRssMiB.toFixed(0)} MiB`);
    const long = new PathShortener();
    try {
      const deepest = Buffer.from(`${target}${`/${NAME}`.repeat(DEPTH)}`);
      assert.deepEqual(await fs.readFile(await long.short(Buffer.concat([deepest, Buffer.from('/bottom.txt')]))), bottom);
      for (const dir of [deepest, Buffer.from(`${target}/${NAME}`)]) {
        const st = await fs.lstat(await long.short(dir), { bigint: true });
        assert.equal(st.mtimeNs, FORGED_MTIME, 'a folder\'s mtime was not restored');
        assert.equal(st.mode & 0o7777n, 0o755n);
      }
    } finally {
      await long.close();
    }
  });
});

describe('a listing of 2,000 nodes of one name, reached by 3 folders (the attack: 4.26 M nodes, 50 folders)', () => {
  let s: Sandbox;
  let snap: string;
  const good = Buffer.from('kept\n');
  before(async () => {
    s = await Sandbox.create('holdfast-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    // As the attacker's script: the same fifo "a" over and over, in a binary listing.
    const node = encodeTree([{ ...f.file('a', 0, []), type: 'fifo', content: undefined }]);
    const body = node.subarray(9);
    const dup = Buffer.concat([node.subarray(0, 9), ...Array.from({ length: 2000 }, () => body)]);
    dup.writeUInt32LE(2000, 5);
    const dupId = await f.rawTree(dup);
    snap = await f.snapshot(await f.tree([
      f.dir('d1', dupId), f.dir('d2', dupId), f.dir('d3', dupId),
      f.file('ok.txt', good.length, [await f.data(good)]),
    ]));
  });
  after(() => s.remove());

  it('is refused once per folder as a damaged listing, not once per node; the rest is restored, exit 1', async () => {
    const target = s.path('t');
    const r = await s.run(['restore', snap, '--target', target]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /restore INCOMPLETE: 3 path\(s\)/);
    for (const d of ['d1', 'd2', 'd3']) assert.match(r.stderr, new RegExp(`/${d}: its listing cannot be read \\(tree \\w+ is damaged: the name of node 1 is a duplicate or out of order\\)`));
    assert.ok(r.stderr.split('\n').length < 20, `${r.stderr.split('\n').length} lines of stderr`);
    assert.deepEqual(await fs.readFile(join(target, 'ok.txt')), good);
  });
});

describe('a listing of 1,500 names with a "/" in them', () => {
  let s: Sandbox;
  let snap: string;
  before(async () => {
    s = await Sandbox.create('holdfast-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const names = Array.from({ length: 1500 }, (_, i) => `x/${String(i).padStart(4, '0')}`);
    snap = await f.snapshot(await f.tree(names.map((n) => ({ ...f.file(n, 0, []), type: 'fifo', content: undefined }))));
  });
  after(() => s.remove());

  it('prints the first 1,000 warnings and a count of the rest; restore lists the first 1,000 refused paths and counts them all', async () => {
    const r = await s.run(['restore', snap, '--target', s.path('t')]);
    assert.equal(r.code, 1, r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning: '));
    assert.equal(warnings.length, 1001);
    assert.equal(warnings[1000], 'warning: 500 more warnings not shown');
    assert.match(r.stderr, /restore INCOMPLETE: 1500 path\(s\) not restored correctly:\n/);
    const listed = r.stderr.slice(r.stderr.indexOf('restore INCOMPLETE')).split('\n').slice(1).filter((l) => l !== '');
    assert.equal(listed.length, 1001);
    assert.equal(listed[0], '  /x/0000: refused: name contains "/"');
    assert.equal(listed[1000], '  … and 500 more');
    const ls = await s.run(['ls', snap]);
    assert.deepEqual(ls.stderr.split('\n').filter((l) => l.startsWith('warning: ')).length, 1001);
  });
});

/**
 * The snapshot browser's comparison, zip writer and search (web/src/zk/
 * compare.ts, zip.ts, search.ts) on a safe the CLI wrote, read through the
 * zero-knowledge reader:
 * two backups with a file added, one removed, one rewritten and one only
 * touched give exactly the first three, and the folder nobody changed is
 * never read; a folder's zip extracts with `unzip` and Python's zipfile to
 * the original bytes, its CRCs checked, with and without ZIP64 fields; a
 * name deep in the tree is found with its folder, a non-match finds nothing,
 * an aborted search stops.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { FolderSafeSource } from '../helpers/folder-safe-source.js';
import { compareTrees, nodeChanged, previousSnapshot, type Change } from '../../web/src/zk/compare.js';
import type { TreeNode } from '../../web/src/zk/format.js';
import { ZkSafe } from '../../web/src/zk/safe.js';
import { nameMatcher, searchNames, type Found } from '../../web/src/zk/search.js';
import { crc32, zipOf } from '../../web/src/zk/zip.js';

const node = (name: string, over: Partial<TreeNode> = {}): TreeNode => ({
  nameBytes: Buffer.from(name), name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0n, ctime: 0n, links: 1, size: 1,
  content: [{ kind: 'blob', id: 'a'.repeat(64) }], damaged: false, ...over,
});

it('an entry changed is one whose type, size, mode, link target or content ids differ; times and owners aside', () => {
  const a = node('x');
  assert.equal(nodeChanged(a, node('x', { mtime: 5n, uid: 7 })), false);
  assert.equal(nodeChanged(a, node('x', { content: [{ kind: 'blob', id: 'b'.repeat(64) }] })), true);
  assert.equal(nodeChanged(a, node('x', { size: 2 })), true);
  assert.equal(nodeChanged(a, node('x', { mode: 0o600 })), true);
  assert.equal(nodeChanged(node('l', { type: 'symlink', target: Buffer.from('a') }), node('l', { type: 'symlink', target: Buffer.from('b') })), true);
  assert.equal(nodeChanged(a, node('x', { content: [{ kind: 'slice', id: 'a'.repeat(64), offset: 0, length: 1 }] })), true);
});

it('the previous snapshot is the newest older one of the same host and paths, else the newest older one', () => {
  const snap = (id: string, time: string, paths = ['/srv'], hostname = 'web1') => ({ id, time, hostname, paths });
  const all = [snap('a', '2026-01-01'), snap('b', '2026-01-02', ['/etc']), snap('c', '2026-01-03'), snap('d', '2026-01-04')];
  assert.equal(previousSnapshot(all, all[3]!)?.id, 'c');
  assert.equal(previousSnapshot(all, all[2]!)?.id, 'a');
  assert.equal(previousSnapshot(all, all[1]!)?.id, 'a');
  assert.equal(previousSnapshot(all, all[0]!), undefined);
});

it('a name matches when it holds every word of the query, case aside; an empty query matches nothing', () => {
  const m = nameMatcher('  Report 2026 ');
  assert.equal(m('report-2026.pdf'), true);
  assert.equal(m('2026 REPORT'), true);
  assert.equal(m('report-2025.pdf'), false);
  assert.equal(nameMatcher('   ')('anything'), false);
  assert.equal(nameMatcher('É')('caf\u0065\u0301'), true, 'Unicode forms aside (NFC)');
});

it('crc32 is zip\'s CRC-32, continued across parts', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(Buffer.from('6789'), crc32(Buffer.from('12345'))), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

describe('comparing two snapshots and zipping a folder of a safe the CLI wrote', () => {
  let s: Sandbox;
  const src = (...p: string[]): string => s.path('src', ...p);
  let safe: ZkSafe;
  const listed: string[] = [];

  before(async () => {
    s = await Sandbox.create('holdfast-zk-compare-');
    await fs.mkdir(src('still', 'deeper'), { recursive: true });
    await fs.mkdir(src('docs'), { recursive: true });
    await fs.writeFile(src('still', 'deeper', 'same.txt'), 'never changes\n');
    await fs.writeFile(src('docs', 'changed.txt'), 'first version\n');
    await fs.writeFile(src('docs', 'touched.txt'), 'same bytes, new time\n');
    await fs.writeFile(src('gone.txt'), 'removed before the second backup\n');
    await fs.writeFile(src('big.bin'), Buffer.from(Array.from({ length: 300_000 }, (_, i) => `${i}\n`).join('')));
    await fs.symlink('docs/changed.txt', src('link'));
    await s.ok(['init']);
    await s.ok(['backup', src()]);
    await fs.writeFile(src('docs', 'changed.txt'), 'second version\n');
    await fs.utimes(src('docs', 'touched.txt'), new Date('2030-01-01'), new Date('2030-01-01'));
    await fs.rm(src('gone.txt'));
    await fs.writeFile(src('added.txt'), 'new in the second backup\n');
    await s.ok(['backup', src()]);
    const opened = await ZkSafe.open(new FolderSafeSource(s.repo), 'correct horse');
    // The safe, with a record of every tree the comparison lists.
    safe = new Proxy(opened, {
      get(target, prop) {
        if (prop === 'list') return (id: string, where: string) => { listed.push(where); return target.list(id, where); };
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  });
  after(() => s.remove());

  it('lists exactly the file added, the one removed and the one rewritten, and never reads the folder nobody changed', async () => {
    const [first, second] = await safe.snapshots();
    assert.equal(previousSnapshot([first!, second!], second!)?.id, first!.id);
    const parts = src().split('/').filter((p) => p !== '');
    const before = await safe.folderTree(first!, parts);
    const after = await safe.folderTree(second!, parts);
    listed.length = 0;
    const changes: Change[] = [];
    for await (const c of compareTrees(safe, before, after)) changes.push(c);
    assert.deepEqual(changes.map((c) => `${c.kind} ${c.path.join('/')}`), ['added added.txt', 'changed docs/changed.txt', 'removed gone.txt']);
    assert.deepEqual(listed.sort(), ['/', '/', '/docs/', '/docs/'], 'the unchanged folder still/ (and still/deeper/) is skipped by its subtree id');
    const none: Change[] = [];
    for await (const c of compareTrees(safe, after, after)) none.push(c);
    assert.deepEqual(none, []);
    const all: Change[] = [];
    for await (const c of compareTrees(safe, undefined, after)) all.push(c);
    assert.deepEqual(all.map((c) => `${c.kind} ${c.path.join('/')}`), ['added added.txt', 'added big.bin', 'added docs', 'added link', 'added still'], 'a folder new on one side is one entry');
  });

  it('finds a name deep in the tree with its folder, nothing for a name that is not there, and stops when aborted', async () => {
    const snap = (await safe.snapshots())[1]!;
    const tree = await safe.folderTree(snap, src().split('/').filter((p) => p !== ''));
    const found: Found[] = [];
    for await (const f of searchNames(safe, tree, 'SAME')) found.push(f);
    assert.deepEqual(found, [{ folder: ['still', 'deeper'], name: 'same.txt', type: 'file', size: 14 }]);
    const txt: string[] = [];
    for await (const f of searchNames(safe, tree, '.txt', { limit: 2 })) txt.push(f.name);
    assert.equal(txt.length, 2, 'at most the limit');
    for await (const f of searchNames(safe, tree, 'no-such-name')) assert.fail(`found ${f.name}`);
    const stop = new AbortController();
    stop.abort(new Error('a newer query'));
    await assert.rejects(async () => {
      for await (const f of searchNames(safe, tree, 'a', { signal: stop.signal })) assert.fail(`found ${f.name} after the abort`);
    }, /a newer query/);
  });

  for (const zip64 of [false, true]) {
    it(`zips a folder that unzip and Python's zipfile extract to the original bytes, CRCs checked${zip64 ? ' (ZIP64 fields everywhere)' : ''}`, async () => {
      const snap = (await safe.snapshots())[1]!;
      const tree = await safe.folderTree(snap, src().split('/').filter((p) => p !== ''));
      const parts: Uint8Array[] = [];
      for await (const b of zipOf(safe, tree, Buffer.from('src'), { zip64 })) parts.push(b);
      const file = s.path(`src${zip64 ? '64' : ''}.zip`);
      await fs.writeFile(file, Buffer.concat(parts));
      const test = spawnSync('unzip', ['-tq', file]);
      assert.equal(test.status, 0, test.stdout.toString() + test.stderr.toString());
      const out = s.path(`unzipped${zip64 ? '64' : ''}`);
      const x = spawnSync('unzip', ['-q', file, '-d', out]);
      assert.equal(x.status, 0, x.stderr.toString());
      for (const f of ['added.txt', 'big.bin', 'docs/changed.txt', 'docs/touched.txt', 'still/deeper/same.txt']) {
        assert.deepEqual(await fs.readFile(join(out, 'src', f)), await fs.readFile(src(f)), f);
      }
      assert.equal(await fs.readlink(join(out, 'src', 'link')), 'docs/changed.txt');
      assert.equal((await fs.stat(join(out, 'src', 'docs', 'touched.txt'))).mtime.toISOString(), '2030-01-01T00:00:00.000Z');
      const py = spawnSync('python3', ['-c', `
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
for i in z.infolist(): print(i.filename, i.file_size, i.compress_type)
`, file]);
      assert.equal(py.status, 0, py.stderr.toString());
      const entries = py.stdout.toString().trim().split('\n').sort();
      assert.deepEqual(entries, [
        'src/ 0 0', 'src/added.txt 25 0', `src/big.bin ${(await fs.stat(src('big.bin'))).size} 0`, 'src/docs/ 0 0', 'src/docs/changed.txt 15 0',
        'src/docs/touched.txt 21 0', 'src/link 16 0', 'src/still/ 0 0', 'src/still/deeper/ 0 0', 'src/still/deeper/same.txt 14 0',
      ]);
    });
  }
});

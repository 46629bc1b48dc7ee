/**
 * The browser's zero-knowledge reader (web/src/zk) on safes the CLI wrote:
 * the key derived from the password, snapshots, trees and file bytes opened,
 * decompressed and checked by the reader's own code, compared with holdfast's
 * `ls` and `restore`; a wrong password, a tampered blob and hostile trees
 * refused.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { largestPack, Sandbox } from '../helpers/cli.js';
import { Forge } from '../helpers/forge.js';
import { FolderSafeSource } from '../helpers/folder-safe-source.js';
import { DamagedError, WrongPasswordError } from '../../web/src/zk/errors.js';
import type { TreeNode } from '../../web/src/zk/format.js';
import { showPath, ZkSafe } from '../../web/src/zk/safe.js';
import { tarOf } from '../../web/src/zk/tar.js';

async function bytesOf(safe: ZkSafe, node: TreeNode, what: string): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const b of safe.fileBytes(node, what)) parts.push(b);
  return Buffer.concat(parts);
}

describe('the zero-knowledge reader on a safe the CLI wrote', () => {
  let s: Sandbox;
  const src = (...p: string[]): string => s.path('src', ...p);
  // A file over half the chunker's maxSize is chunked alone; text compresses, so its blobs are zstd frames.
  const big = Buffer.from(Array.from({ length: 400_000 }, (_, i) => `line ${i} of a file the browser reads\n`).join(''));
  let snapshotId = '';

  before(async () => {
    s = await Sandbox.create('holdfast-zk-');
    await fs.mkdir(src('docs', 'deep'), { recursive: true });
    await fs.writeFile(src('docs', 'a.txt'), 'alpha\n');
    await fs.writeFile(src('docs', 'deep', 'b.txt'), 'bravo '.repeat(1000));
    await fs.writeFile(src('docs', 'empty'), '');
    await fs.writeFile(src('big.log'), big);
    // A file of zeros between data: a hole in its content list.
    await fs.writeFile(src('holey.bin'), Buffer.concat([Buffer.alloc(8 << 20), Buffer.from('end')]));
    await fs.symlink('docs/a.txt', src('link'));
    await fs.chmod(src('docs', 'a.txt'), 0o640);
    await s.ok(['init']);
    await s.ok(['backup', src()]);
    snapshotId = (JSON.parse((await s.ok(['snapshots', '--json'])).stdout) as { id: string }[])[0]!.id;
  });
  after(() => s.remove());

  it('lists what holdfast ls lists, and reads the bytes holdfast restore writes', async () => {
    const safe = await ZkSafe.open(new FolderSafeSource(s.repo), 'correct horse');
    const snaps = await safe.snapshots();
    assert.deepEqual(snaps.map((x) => x.id), [snapshotId]);
    const ls = (await s.ok(['ls', '--json', snapshotId])).stdout.trim().split('\n').map((l) => JSON.parse(l) as { path: string; type: string; mode: number; uid: number; gid: number; user?: string; size: number; mtime: string });
    const seen: typeof ls = [];
    const files = new Map<string, TreeNode>();
    for await (const { path, node } of safe.walk(snaps[0]!.tree)) {
      const p = showPath(path);
      seen.push({
        path: p, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid, ...(node.user === undefined ? {} : { user: node.user }),
        size: node.size, mtime: new Date(Number(node.mtime / 1_000_000n)).toISOString(),
      });
      if (node.type === 'file') files.set(p, node);
    }
    const pick = (e: (typeof ls)[number]): unknown => ({ path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, user: e.user, size: e.size, mtime: e.mtime });
    assert.deepEqual(seen.map(pick), ls.map(pick));

    const target = s.path('restored');
    await s.ok(['restore', snapshotId, '--target', target]);
    assert.ok(files.size >= 5);
    for (const [p, node] of files) {
      const mine = await bytesOf(safe, node, p);
      assert.deepEqual(mine, await fs.readFile(join(target, p)), p);
    }
    assert.deepEqual(await bytesOf(safe, files.get(`${src()}/big.log`)!, 'big.log'), big);
  });

  it('makes a tar of a folder that tar extracts to what restore writes', async () => {
    const safe = await ZkSafe.open(new FolderSafeSource(s.repo), 'correct horse');
    const snap = (await safe.snapshots())[0]!;
    const tree = await safe.folderTree(snap, src().split('/').filter((p) => p !== ''));
    const parts: Uint8Array[] = [];
    for await (const b of tarOf(safe, tree, Buffer.from('src'))) parts.push(b);
    const tarFile = s.path('src.tar');
    await fs.writeFile(tarFile, Buffer.concat(parts));
    const out = s.path('untarred');
    await fs.mkdir(out);
    const r = spawnSync('tar', ['-xf', tarFile, '-C', out]);
    assert.equal(r.status, 0, r.stderr.toString());
    const listed = spawnSync('tar', ['-tf', tarFile]).stdout.toString().trim().split('\n').sort();
    assert.deepEqual(listed, ['src/', 'src/big.log', 'src/docs/', 'src/docs/a.txt', 'src/docs/deep/', 'src/docs/deep/b.txt', 'src/docs/empty', 'src/holey.bin', 'src/link']);
    for (const f of ['big.log', 'holey.bin', 'docs/a.txt', 'docs/deep/b.txt', 'docs/empty']) assert.deepEqual(await fs.readFile(join(out, 'src', f)), await fs.readFile(src(f)), f);
    assert.equal(await fs.readlink(join(out, 'src', 'link')), 'docs/a.txt');
    assert.equal((await fs.stat(join(out, 'src', 'docs', 'a.txt'))).mode & 0o777, 0o640);
  });

  it('refuses a wrong password by name, and reads nothing', async () => {
    const source = new FolderSafeSource(s.repo);
    await assert.rejects(ZkSafe.open(source, 'correct horse battery'), (e) => e instanceof WrongPasswordError && /wrong password/.test(e.message));
    assert.deepEqual(source.ranges, []);
  });

  it('refuses a blob changed in storage: the file\'s bytes are not given, the error says damaged', async () => {
    const pack = await largestPack(s);
    const bytes = await fs.readFile(pack);
    bytes.writeUInt8(bytes[1000]! ^ 0x01, 1000);
    await fs.chmod(pack, 0o600);
    await fs.writeFile(pack, bytes);
    const safe = await ZkSafe.open(new FolderSafeSource(s.repo), 'correct horse');
    const root = (await safe.snapshots())[0]!.tree;
    let bigNode: TreeNode | undefined;
    for await (const { path, node } of safe.walk(root)) if (showPath(path) === `${src()}/big.log`) bigNode = node;
    const got: Uint8Array[] = [];
    await assert.rejects(async () => {
      for await (const b of safe.fileBytes(bigNode!, 'big.log')) got.push(b);
    }, (e) => e instanceof DamagedError && /fails authentication/.test(e.message));
    assert.equal(got.length, 0, 'the damaged blob is the first: nothing of the file was given');
  });
});

describe('the zero-knowledge reader on hostile trees', () => {
  let s: Sandbox;
  let snap = '';
  let huge = '';
  let overfull = '';
  before(async () => {
    s = await Sandbox.create('holdfast-zk-hostile-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const data = await f.data(Buffer.from('secret\n'));
    const inner = await f.tree([f.file('x', 7, [data])]);
    // A tree claiming 2^32 − 1 nodes, and one claiming a million it cannot hold.
    const count = (n: number): Buffer => Buffer.concat([Buffer.from('HFTR\x01'), Buffer.from(new Uint32Array([n]).buffer)]);
    huge = await f.rawTree(count(0xffffffff));
    overfull = await f.rawTree(Buffer.concat([count(1_000_000), Buffer.alloc(1000)]));
    snap = await f.snapshot(await f.tree([
      f.file('ok.txt', 7, [data]),
      f.file('a/b', 7, [data]),
      f.file('..', 7, [data]),
      f.file('.', 7, [data]),
      f.file('n'.repeat(256), 7, [data]),
      f.dir('up..', inner),
      f.dir('../../etc', inner),
      f.dir('huge', huge),
      f.dir('overfull', overfull),
    ]));
  });
  after(() => s.remove());

  it('refuses names with / or .., ., and over 255 bytes: never listed, never a path; counts that cannot be are damage', async () => {
    const warnings: string[] = [];
    const safe = await ZkSafe.open(new FolderSafeSource(s.repo), 'correct horse', { onWarning: (m) => warnings.push(m) });
    const root = (await safe.snapshot(snap)).tree;
    const { entries, refused } = await safe.list(root, '/');
    assert.deepEqual(entries.map((e) => e.name).sort(), ['huge', 'ok.txt', 'overfull', 'up..']);
    assert.equal(refused.length, 5);
    assert.ok(warnings.some((w) => /holds a \//.test(w)) && warnings.some((w) => /the name "\.\."/.test(w)) && warnings.some((w) => /longer than 255 bytes/.test(w)), warnings.join('\n'));
    const paths: string[] = [];
    await assert.rejects(async () => {
      for await (const { path } of safe.walk(root)) paths.push(showPath(path));
    }, (e) => e instanceof DamagedError && /more than a tree may hold/.test(e.message));
    for (const p of paths) assert.ok(!p.split('/').slice(1).some((c) => c === '..' || c === '.' || c === ''), p);
    await assert.rejects(safe.tree(huge), (e) => e instanceof DamagedError && /more than a tree may hold/.test(e.message));
    await assert.rejects(safe.tree(overfull), (e) => e instanceof DamagedError && /cannot fit/.test(e.message));
  });
});

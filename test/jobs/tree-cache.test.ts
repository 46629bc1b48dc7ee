/**
 * The agent's tree cache (src/jobs/backup/tree-cache.ts): a backup given the
 * trees of its parent in memory loads none of them, and makes exactly the
 * trees a backup that loads them makes. Each change below, made deep in the
 * tree (a file's mode, owner, mtime or size, an entry added, removed or
 * renamed, a folder's mode), must give its folder and every folder above it
 * a new tree: a reused stale subtree would make the backed-up folder's tree
 * differ from the one the backup without the cache makes, and the restore
 * differ from the source.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, chmod, lchown, lstat, mkdir, mkdtemp, readdir, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver, type BackupResult } from '../../src/jobs/backup/archiver.js';
import { TreeCache } from '../../src/jobs/backup/tree-cache.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import type { Repository } from '../../src/repo/repository.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import { assertSameTree } from '../helpers/restore-check.js';

async function backup(repo: Repository, src: string, parent: BackupResult | undefined, trees?: TreeCache, dryRun = false): Promise<BackupResult> {
  return new Archiver(repo, {
    paths: [src], parent: parent ? { id: parent.id!, snapshot: parent.snapshot } : null, ...(trees ? { trees } : {}), ...(dryRun ? { dryRun } : {}),
  }).run();
}

/** The id of the tree of folder `path` in the snapshot whose root tree is `root`. */
async function treeAt(repo: Repository, root: string, path: string): Promise<string> {
  let tree = root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    const n = (await repo.loadTree(tree)).find((x) => x.name.toString() === part);
    assert.ok(n?.subtree, `${path} is in the snapshot`);
    tree = n.subtree;
  }
  return tree;
}

/** Type, mode, owner, size and mtime of every entry below `root` (to the millisecond; folders' mtimes left out: a restore sets them last). */
async function metadataOf(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const st = await lstat(join(root, rel));
    out[rel || '.'] = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isFile() ? st.size : ''} ${st.isDirectory() ? '' : Math.floor(st.mtimeMs)}`;
    if (st.isDirectory()) for (const n of (await readdir(join(root, rel))).sort()) await walk(join(rel, n));
  };
  await walk('');
  return out;
}

describe('the tree cache of a long-running process', () => {
  let dir: string;
  let restores = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-tree-cache-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** A tree four folders deep, with siblings at every level that do not change. */
  async function makeTree(src: string): Promise<string> {
    const deep = join(src, 'a', 'b', 'c');
    await mkdir(deep, { recursive: true });
    for (const d of [src, join(src, 'a'), join(src, 'a', 'b'), deep]) {
      await writeFile(join(d, 'same.txt'), `unchanged in ${d}\n`);
      await mkdir(join(d, 'side'), { recursive: true });
      await writeFile(join(d, 'side', 'x.txt'), 'a sibling folder\n');
    }
    for (let i = 0; i < 5; i++) await writeFile(join(deep, `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
    await symlink('f0.txt', join(deep, 'link'));
    return deep;
  }

  /** Restores `r` and checks bytes and metadata against `src`. */
  async function assertRestored(repo: Repository, r: BackupResult, src: string): Promise<void> {
    const target = join(dir, `restored-${++restores}`);
    await new Restorer(repo, target, { privileged: process.getuid?.() === 0 }).run(r.snapshot.tree);
    assertSameTree(src, join(target, src));
    assert.deepEqual(await metadataOf(join(target, src)), await metadataOf(src));
  }

  it('a change deep in the tree gives new trees up to the backed-up folder, the same as without the cache', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'src');
    const deep = await makeTree(src);
    const cache = new TreeCache();
    let prev = await backup(repo, src, undefined, cache);
    assert.ok(cache.size >= 9, `the first backup's trees are kept (${cache.size})`);
    const root = process.getuid?.() === 0;
    const changes: [string, () => Promise<void>][] = [
      ['mode', () => chmod(join(deep, 'f1.txt'), 0o600)],
      ['mtime', () => utimes(join(deep, 'f2.txt'), new Date('2019-05-06T07:08:09Z'), new Date('2019-05-06T07:08:09Z'))],
      ['size', () => appendFile(join(deep, 'f3.txt'), 'one more line\n')],
      ['an entry added', () => writeFile(join(deep, 'new.txt'), 'added\n')],
      ['an entry removed', () => unlink(join(deep, 'f4.txt'))],
      ['an entry renamed', () => rename(join(deep, 'f0.txt'), join(deep, 'g0.txt'))],
      ['a link\'s owner', async () => (root ? lchown(join(deep, 'link'), 1234, 5678) : chmod(join(deep, 'f1.txt'), 0o640))],
      ['a folder\'s mode', () => chmod(join(src, 'a', 'b', 'side'), 0o700)],
    ];
    for (const [what, change] of changes) {
      await change();
      const cached = await backup(repo, src, prev, cache);
      assert.equal(cached.trees!.misses, 0, `${what}: no parent tree loaded`);
      assert.ok(cached.trees!.hits >= 9, `${what}: the parent's trees came from memory (${cached.trees!.hits})`);
      const loaded = await backup(repo, src, prev);
      // The folders above src (the temporary folder) change as other processes work in them: src's tree is the one compared.
      const tree = await treeAt(repo, cached.snapshot.tree, src);
      assert.equal(tree, await treeAt(repo, loaded.snapshot.tree, src), `${what}: the same tree as a backup that loads its parent's trees`);
      assert.notEqual(tree, await treeAt(repo, prev.snapshot.tree, src), `${what}: a new tree`);
      await assertRestored(repo, cached, src);
      prev = cached;
    }
  });

  it('keeps the last snapshot\'s trees over a dry run, and a bound leaves the rest to be loaded', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'bounded');
    const deep = await makeTree(src);
    const cache = new TreeCache();
    const first = await backup(repo, src, undefined, cache);
    await appendFile(join(deep, 'f3.txt'), 'changed\n');
    await backup(repo, src, first, cache, true);
    const after = await backup(repo, src, first, cache);
    assert.equal(after.trees!.misses, 0, 'the dry run did not replace the trees of the last snapshot');
    assert.ok(after.trees!.hits >= 9);

    const small = new TreeCache(4);
    await backup(repo, src, undefined, small);
    assert.ok(small.size > 0 && small.size < 9, `only what the bound allows is kept (${small.size})`);
    await appendFile(join(deep, 'f2.txt'), 'changed\n');
    const parent = await backup(repo, src, after);
    const bounded = await backup(repo, src, after, small);
    assert.ok(bounded.trees!.misses > 0, 'trees past the bound are loaded');
    const plain = await backup(repo, src, after);
    const tree = await treeAt(repo, plain.snapshot.tree, src);
    assert.equal(await treeAt(repo, bounded.snapshot.tree, src), tree);
    assert.equal(await treeAt(repo, parent.snapshot.tree, src), tree);
    await assertRestored(repo, bounded, src);
  });
});

/**
 * Small files are stored in batches: one blob per batch, each file a slice
 * of it with a keyed fingerprint that proves its bytes and lets a later
 * backup keep the content of a file that was only touched. Mid-size files
 * are chunked whole by a worker. These tests run the real archiver (worker
 * threads included) against an in-memory repository and read every file
 * back from its slices; damage to a batch's blob is named file by file by
 * check and repair, and a slice outside its blob is refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archiver, type BackupResult } from '../../src/jobs/backup/archiver.js';
import { BlobType } from '../../src/repo/pack.js';
import type { Repository } from '../../src/repo/repository.js';
import { contentBlobs, contentBytes, entryBlob, type TreeNode } from '../../src/repo/tree.js';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { Checker } from '../../src/jobs/check/checker.js';
import { repairSnapshots } from '../../src/jobs/repair/snapshot-repairer.js';
import { memoryRepo } from '../helpers/memory-repo.js';

/** Every file node below a tree, by path relative to `base`. */
async function fileNodes(repo: Repository, tree: string, prefix = ''): Promise<Map<string, TreeNode>> {
  const out = new Map<string, TreeNode>();
  for (const n of await repo.loadTree(tree)) {
    const p = `${prefix}/${n.name.toString()}`;
    if (n.type === 'dir') for (const [k, v] of await fileNodes(repo, n.subtree!, p)) out.set(k, v);
    else if (n.type === 'file') out.set(p, n);
  }
  return out;
}

async function bytesOf(repo: Repository, n: TreeNode): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of contentBytes(n.content ?? [], (id) => repo.loadBlob(BlobType.Data, id), n.name.toString())) parts.push(b);
  return Buffer.concat(parts);
}

/** The nodes of the files under `dir` in a snapshot, keyed by their path below `dir`. */
async function filesUnder(repo: Repository, r: Pick<BackupResult, 'snapshot'>, dir: string): Promise<Map<string, TreeNode>> {
  const all = await fileNodes(repo, r.snapshot.tree);
  return new Map([...all].filter(([p]) => p.startsWith(`${dir}/`)).map(([p, n]) => [p.slice(dir.length + 1), n]));
}

/** A backup, and the data bytes it added to the repository. */
async function backup(repo: Repository, paths: string[], parent?: BackupResult): Promise<BackupResult & { added: number }> {
  const r = await new Archiver(repo, { paths, parent: parent ? { id: parent.id!, snapshot: parent.snapshot } : null }).run();
  return { ...r, added: r.snapshot.summary.dataAdded };
}

describe('small files share chunks', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-small-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('a folder of small files becomes few blobs, and every file reads back from its slices', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'a');
    await mkdir(join(src, 'sub'), { recursive: true });
    const want = new Map<string, Buffer>();
    for (let i = 0; i < 300; i++) {
      const kind = i % 10;
      const data = kind === 0 ? Buffer.alloc(0) : kind === 1 ? Buffer.alloc(5000 + i) : kind < 5 ? Buffer.from(`line ${i}\n`.repeat(i * 7)) : randomBytes(100 + i * 97);
      const name = `${i % 2 ? 'sub/' : ''}f${String(i).padStart(3, '0')}`;
      want.set(name, data);
      await writeFile(join(src, name), data);
    }
    const r = await backup(repo, [src]);
    const nodes = await filesUnder(repo, r, src);
    assert.equal(nodes.size, want.size);
    const blobs = new Set<string>();
    for (const [name, n] of nodes) {
      assert.deepEqual(await bytesOf(repo, n), want.get(name), name);
      for (const c of n.content ?? []) if (entryBlob(c)) blobs.add(entryBlob(c)!);
      if (n.size > 0) assert.match(n.fingerprint ?? '', /^[0-9a-f]{32}$/, `${name} has a fingerprint`);
    }
    assert.ok(blobs.size < want.size / 20, `${want.size} files in ${blobs.size} blobs`);
    assert.ok([...nodes.values()].some((n) => n.content?.some((c) => typeof c === 'object')), 'content lists hold slices');
    assert.deepEqual(nodes.get('sub/f001')!.content, [5001], 'an all-zero file is a hole');
    assert.deepEqual(nodes.get('f000')!.content, [], 'an empty file has no content');
  });

  it('a touched file keeps its content through its fingerprint; a changed one is stored again', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'b');
    await mkdir(src);
    for (let i = 0; i < 50; i++) await writeFile(join(src, `f${i}`), randomBytes(3000 + i));
    const first = await backup(repo, [src]);
    const later = new Date(Date.now() + 60_000);
    for (let i = 0; i < 50; i++) await utimes(join(src, `f${i}`), later, later);
    await writeFile(join(src, 'f7'), randomBytes(3007));
    const second = await backup(repo, [src], first);
    const a = await filesUnder(repo, first, src);
    const b = await filesUnder(repo, second, src);
    assert.equal(second.snapshot.summary!.filesChanged, 50, 'every file was read again (its mtime changed)');
    for (let i = 0; i < 50; i++) {
      const name = `f${i}`;
      assert.deepEqual(await bytesOf(repo, b.get(name)!), await readFile(join(src, name)), name);
      if (i === 7) assert.notEqual(b.get(name)!.fingerprint, a.get(name)!.fingerprint);
      else assert.deepEqual(b.get(name)!.content, a.get(name)!.content, `${name} keeps its slices`);
    }
    const blobsOf = (m: Map<string, TreeNode>): Set<string> => new Set([...m.values()].flatMap((n) => contentBlobs(n.content ?? [])));
    const before = blobsOf(a);
    const fresh = [...blobsOf(b)].filter((id) => !before.has(id));
    assert.deepEqual(fresh, contentBlobs(b.get('f7')!.content!), 'only the changed file is new data');
    assert.equal(repo.index.lookup(fresh[0]!)?.rawLength, 3007);
  });

  it('the same files behind another one in another folder make the same chunks after the first batch', async () => {
    const { repo } = await memoryRepo({ compression: 'off' });
    const a = join(dir, 'c1');
    const b = join(dir, 'c2');
    await mkdir(a);
    await mkdir(b);
    await writeFile(join(b, '0-first'), randomBytes(300_000));
    for (let i = 0; i < 600; i++) {
      const data = randomBytes(40_000);
      await writeFile(join(a, `f${String(i).padStart(3, '0')}`), data);
      await writeFile(join(b, `f${String(i).padStart(3, '0')}`), data);
    }
    const first = await backup(repo, [a]);
    const second = await backup(repo, [b]);
    assert.ok(first.added > 20_000_000);
    assert.ok(second.added < first.added / 2, `the copy behind one more file added ${second.added} of ${first.added} bytes`);
    const nodes = await filesUnder(repo, second, b);
    assert.deepEqual(await bytesOf(repo, nodes.get('f599')!), await readFile(join(b, 'f599')));
  });

  it('copies of a small file (16 KiB or more) among other files in other folders are stored once per worker, and all read back', async () => {
    const src = join(dir, 'copies');
    const shared = [0, 1, 2, 3, 4].map((i) => randomBytes((16 << 10) + i * 1000));
    const want = new Map<string, Buffer>();
    let unique = 0;
    for (const d of ['a', 'b', 'c', 'd']) {
      for (let i = 0; i < 25; i++) {
        const data = randomBytes(500 + i * 37);
        unique += data.length;
        want.set(`${d}/u${String(i).padStart(2, '0')}`, data);
      }
      shared.forEach((data, i) => want.set(`${d}/${d}-copy-${i}`, data));
      // A second copy in the same folder: the same batch.
      want.set(`${d}/${d}-copy-again`, shared[0]!);
    }
    for (const [name, data] of want) {
      await mkdir(join(src, name, '..'), { recursive: true });
      await writeFile(join(src, name), data);
    }
    const sharedBytes = shared.reduce((n, b) => n + b.length, 0);
    for (const workers of [1, 2]) {
      const { repo } = await memoryRepo();
      const r = await new Archiver(repo, { paths: [src], parent: null, workers }).run();
      const nodes = await filesUnder(repo, r, src);
      assert.equal(nodes.size, want.size);
      for (const [name, n] of nodes) assert.deepEqual(await bytesOf(repo, n), want.get(name), name);
      // The data blobs the files read from hold each unique file once and each shared one at most once per worker.
      const blobs = new Set([...nodes.values()].flatMap((n) => contentBlobs(n.content!)));
      const stored = [...blobs].reduce((sum, id) => sum + repo.index.lookup(id)!.rawLength, 0);
      if (workers === 1) assert.equal(stored, unique + sharedBytes);
      else assert.ok(stored >= unique + sharedBytes && stored <= unique + 2 * sharedBytes, `${workers} workers stored ${stored} bytes`);
    }
  });

  it('a mid-size file is chunked whole by a worker: zero chunks are holes, and a touched copy stores nothing new', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'd');
    await mkdir(src);
    const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(20 << 20), randomBytes(3 << 20)]);
    await writeFile(join(src, 'mid.bin'), data);
    const first = await backup(repo, [src]);
    const node = (await filesUnder(repo, first, src)).get('mid.bin')!;
    assert.deepEqual(await bytesOf(repo, node), data);
    assert.ok(node.content!.some((c) => typeof c === 'number' && c >= 4 << 20), `a hole in ${JSON.stringify(node.content)}`);
    assert.ok(node.content!.every((c) => typeof c !== 'object'), 'whole chunks, no slices');
    const later = new Date(Date.now() + 60_000);
    await utimes(join(src, 'mid.bin'), later, later);
    const second = await backup(repo, [src], first);
    assert.deepEqual((await filesUnder(repo, second, src)).get('mid.bin')!.content, node.content);
    assert.equal(second.snapshot.summary!.filesChanged, 1, 'the file was read again');
    const old = new Set(first.snapshot.blobs);
    const added = second.snapshot.blobs.filter((id) => !old.has(id));
    assert.ok(added.length > 0 && added.every((id) => repo.index.lookup(id)?.type === BlobType.Tree), 'only trees are new');
  });

  it('a slice outside its blob is damage: restore names the file and leaves nothing of it; dump refuses it', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const { id } = await w.saveBlob(BlobType.Data, Buffer.from('0123456789'));
    const base = { type: 'file' as const, mode: 0o644, uid: process.getuid!(), gid: process.getgid!(), mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1 };
    const nodes: TreeNode[] = [
      { ...base, name: Buffer.from('good'), size: 4, content: [{ blob: id, offset: 2, length: 4 }] },
      { ...base, name: Buffer.from('bad'), size: 8, content: [{ blob: id, offset: 6, length: 8 }] },
    ];
    const tree = await w.saveTree(nodes);
    await w.flush();
    const target = join(dir, 'out');
    const r = await new Restorer(repo, target).run(tree);
    assert.deepEqual(r.failed.map((f) => f.path), ['/bad']);
    assert.match(r.failed[0]!.error, /slice 6\+8 lies outside its 10 bytes/);
    assert.equal(await readFile(join(target, 'good'), 'utf8'), '2345');
    await assert.rejects(stat(join(target, 'bad')), 'nothing is left of the damaged file');
    await assert.rejects(bytesOf(repo, nodes[1]!), /lies outside its 10 bytes/);
  });

  it('owners and device nodes are restored only when the caller says the process may (privileged), whoever runs it', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const { id } = await w.saveBlob(BlobType.Data, Buffer.from('owned'));
    const base = { mode: 0o644, uid: 12345, gid: 23456, mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1 };
    const tree = await w.saveTree([
      { ...base, type: 'chardev', name: Buffer.from('null'), size: 0, rdev: 259n },
      { ...base, type: 'file', name: Buffer.from('f'), size: 5, content: [id] },
    ]);
    await w.flush();
    const plain = join(dir, 'unprivileged');
    const r = await new Restorer(repo, plain).run(tree);
    assert.deepEqual(r.failed.map((f) => [f.path, f.error]), [['/null', 'device nodes can only be restored as root']]);
    assert.deepEqual([(await stat(join(plain, 'f'))).uid, (await stat(join(plain, 'f'))).gid], [process.getuid!(), process.getgid!()]);
    if (process.getuid!() !== 0) return;
    const owned = join(dir, 'privileged');
    const p = await new Restorer(repo, owned, { privileged: true }).run(tree);
    assert.deepEqual(p.failed, []);
    const st = await stat(join(owned, 'f'));
    assert.deepEqual([st.uid, st.gid], [12345, 23456]);
    assert.ok((await stat(join(owned, 'null'))).isCharacterDevice());
  });

  it('a damaged batch blob: check names every file of the batch, mark-damaged marks exactly those, the rest restores', async () => {
    const { backend, repo } = await memoryRepo();
    const src = join(dir, 'e');
    await mkdir(join(src, 'big'), { recursive: true });
    await mkdir(join(src, 'small'));
    const big = randomBytes(5 << 20);
    await writeFile(join(src, 'big', 'file.bin'), big);
    for (let i = 0; i < 20; i++) await writeFile(join(src, 'small', `f${i}`), `small file ${i}\n`.repeat(i + 1));
    const r = await backup(repo, [src]);
    const nodes = await filesUnder(repo, r, src);
    const batch = entryBlob(nodes.get('small/f0')!.content![0]!)!;
    const loc = repo.index.lookup(batch)!;
    // Flip a byte inside the batch's blob only: its pack fails its checksum, and with the key only that blob is lost.
    const h = { type: 'data' as const, name: loc.pack };
    const packBytes = Buffer.from(await backend.load(h));
    packBytes[loc.offset + 20]! ^= 0x40;
    await backend.remove(h);
    await backend.save(h, packBytes);
    const plain = repo.store;
    const report = await new Checker(plain, { keyed: repo, readData: { kind: 'all' } }).run();
    assert.deepEqual(report.lostBlobs, [batch]);
    const expected = [...nodes.keys()].filter((p) => p.startsWith('small/')).map((p) => `${src}/${p}`).sort();
    assert.deepEqual([...report.damaged[0]!.files!].sort(), expected);
    const repaired = await repairSnapshots(plain, { mode: 'mark', keyed: repo, readData: { kind: 'all' } });
    const fixed = repaired.rewritten[0]!.to;
    const after = await filesUnder(repo, { snapshot: await repo.loadSnapshot(fixed) }, src);
    assert.deepEqual([...after].filter(([, n]) => n.damaged).map(([p]) => `${src}/${p}`).sort(), expected);
    assert.deepEqual(await bytesOf(repo, after.get('big/file.bin')!), big);
  });

  it('a hard link read in the same backup shares the first name\'s content instead of storing its bytes again', async () => {
    const { repo } = await memoryRepo();
    const src = join(dir, 'f');
    await mkdir(join(src, 'links'), { recursive: true });
    await writeFile(join(src, 'a'), randomBytes(10_000));
    await link(join(src, 'a'), join(src, 'links', 'b'));
    await writeFile(join(src, 'c'), randomBytes(5_000));
    const r = await backup(repo, [src]);
    const nodes = await filesUnder(repo, r, src);
    assert.deepEqual(nodes.get('links/b')!.content, nodes.get('a')!.content);
    assert.equal(nodes.get('links/b')!.fingerprint, nodes.get('a')!.fingerprint);
    const blobs = new Set([...nodes.values()].flatMap((n) => contentBlobs(n.content!)));
    const stored = [...blobs].reduce((sum, id) => sum + repo.index.lookup(id)!.rawLength, 0);
    assert.equal(stored, 15_000, 'the linked bytes are in the repository once');
    assert.deepEqual(await bytesOf(repo, nodes.get('links/b')!), await readFile(join(src, 'a')));
  });
});

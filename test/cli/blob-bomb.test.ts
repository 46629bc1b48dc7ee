/**
 * Decompression bombs in a repository: blobs sealed by someone with the key
 * (a compromised client) that declare more bytes than the format allows for
 * their type and inflate from a few KB. `restore`, `ls` and `check
 * --read-data` refuse them by name before inflating, restore the rest, and
 * never print a stack.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { STACK } from '../helpers/cli-errors.js';
import { zstdBomb } from '../helpers/zstd-bomb.js';
import { seal } from '../../src/core/crypto.js';
import { MAX_RAW_LENGTH } from '../../src/repo/blob-codec.js';
import { BlobType, FLAG_COMPRESSED, blobAad } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { encodeTree, type TreeNode } from '../../src/repo/tree.js';
import { LocalBackend } from '../../src/storage/local-backend.js';

describe('decompression bombs', () => {
  let s: Sandbox;
  let dataSnapshot: string;
  let treeSnapshot: string;
  let dataBomb: string;
  let treeBomb: string;
  const good = Buffer.from('a legitimate file\n');

  before(async () => {
    s = await Sandbox.create('holdfast-bomb-');
    await s.ok(['init']);
    const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), s.env()['HOLDFAST_PASSWORD']!);
    const w = repo.newWriter();
    const key = repo.workerSecrets().encryption;
    const blobs: string[] = [];
    /** Seals `frame` as a compressed blob of `type` that claims `rawLength` bytes, under a made-up id. */
    const bomb = async (type: BlobType, rawLength: number, frame: Buffer, label: string): Promise<string> => {
      const id = repo.blobId(Buffer.from(label), type);
      await w.addPrepared({ type, id, flags: FLAG_COMPRESSED, rawLength, sealed: seal(key, frame, blobAad(type, FLAG_COMPRESSED, rawLength, id)) });
      blobs.push(id);
      return id;
    };
    // 128 KiB more than each type may hold, and nothing in the frame's header to give it away.
    const over = (type: BlobType): number => MAX_RAW_LENGTH[type] + 128 * 1024;
    dataBomb = await bomb(BlobType.Data, over(BlobType.Data), zstdBomb(over(BlobType.Data), { declare: false }), 'data bomb');
    treeBomb = await bomb(BlobType.Tree, over(BlobType.Tree), zstdBomb(over(BlobType.Tree), { declare: false }), 'tree bomb');
    const goodId = (await w.saveBlob(BlobType.Data, good)).id;
    blobs.push(goodId);
    const meta = { mode: 0o644, uid: process.getuid!(), gid: process.getgid!(), mtime: 1_700_000_000_000_000_000n, ctime: 1_700_000_000_000_000_000n, device: 1n, links: 1 };
    const okFile: TreeNode = { ...meta, name: Buffer.from('ok.txt'), type: 'file', inode: 3n, size: good.length, content: [goodId] };
    const snapshotOf = async (nodes: TreeNode[]): Promise<string> => {
      const root = (await w.saveBlob(BlobType.Tree, encodeTree(nodes))).id;
      await w.flush();
      const now = new Date().toISOString();
      return w.saveSnapshot({
        time: now, hostname: 'mallory', username: 'mallory', paths: ['/'], tags: [], tree: root, blobs: [...blobs, root],
        summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: now, end: now },
      });
    };
    dataSnapshot = await snapshotOf([{ ...meta, name: Buffer.from('bomb.bin'), type: 'file', inode: 1n, size: over(BlobType.Data), content: [dataBomb] }, okFile]);
    treeSnapshot = await snapshotOf([{ ...meta, name: Buffer.from('bomb.dir'), type: 'dir', mode: 0o755, inode: 2n, size: 0, subtree: treeBomb }, okFile]);
  });
  after(async () => {
    await s.remove();
  });

  it('restore refuses a data bomb by name, restores the rest and fails', async () => {
    const target = s.path('target');
    const r = await s.run(['restore', dataSnapshot, '--target', target]);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, STACK);
    assert.match(r.stderr, new RegExp(`/bomb.bin: .*blob ${dataBomb} is damaged: declares ${MAX_RAW_LENGTH[BlobType.Data] + 131072} bytes, more than data blobs may hold \\(${MAX_RAW_LENGTH[BlobType.Data]}\\)`));
    assert.deepEqual(await fs.readFile(s.path('target', 'ok.txt')), good);
  });

  it('restore and ls refuse a tree bomb by name', async () => {
    const treeBombMessage = new RegExp(`tree ${treeBomb} is damaged: declares \\d+ bytes, more than tree blobs may hold \\(${MAX_RAW_LENGTH[BlobType.Tree]}\\)`);
    for (const args of [['restore', treeSnapshot, '--target', s.path('target2')], ['ls', treeSnapshot, '/bomb.dir']]) {
      const r = await s.run(args);
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stderr, STACK);
      assert.match(r.stderr, treeBombMessage);
    }
  });

  it('check --read-data reports both bombs by name', async () => {
    const r = await s.run(['check', '--read-data']);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stderr, STACK);
    const all = r.stdout + r.stderr;
    assert.match(all, new RegExp(`blob ${dataBomb}: declares \\d+ bytes, more than data blobs may hold`));
    assert.match(all, new RegExp(`blob ${treeBomb}: declares \\d+ bytes, more than tree blobs may hold`));
  });
});

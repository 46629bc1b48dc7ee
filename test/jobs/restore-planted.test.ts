/**
 * A restore raced by someone who can write into the target: between the
 * restore making room for a file and writing it, a hard link to a file
 * outside the target, or a FIFO with a reader, is put where the file goes.
 * The restore must refuse each (reported, not restored) and write nothing
 * through it: the file outside keeps its bytes, the FIFO gets none. The
 * planting happens in `onRestored` of the sibling walked just before (the
 * walk reports a symlink as soon as it made it), so the race is won every time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants, linkSync, mkdtempSync, openSync, readSync, closeSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Restorer } from '../../src/jobs/restore/restorer.js';
import { BlobType } from '../../src/repo/pack.js';
import type { TreeNode } from '../../src/repo/tree.js';
import { memoryRepo } from '../helpers/memory-repo.js';

const MTIME = 1_700_000_000_000_000_000n;
const OUTSIDE = Buffer.from('a file outside the target, never to be touched\n');

function node(name: string, extra: Partial<TreeNode> & Pick<TreeNode, 'type'>): TreeNode {
  return { name: Buffer.from(name), mode: 0o644, size: 0, uid: process.getuid!(), gid: process.getgid!(), mtime: MTIME, ctime: MTIME, device: 1n, inode: 0n, links: 1, ...extra };
}

describe('restore into a target someone writes into meanwhile', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-planted-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a hard link or FIFO put where a file goes; nothing outside is written', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const piece = (await w.saveBlob(BlobType.Data, Buffer.from('hostile piece one\n'))).id;
    const piece2 = (await w.saveBlob(BlobType.Data, Buffer.from('hostile piece two\n'))).id;
    const whole = (await w.saveBlob(BlobType.Data, Buffer.from('hostile whole file\n'))).id;
    const two = { type: 'file' as const, size: 36, content: [piece, piece2] };
    const one = { type: 'file' as const, size: 19, content: [whole] };
    // Walked in this order: each symlink's onRestored plants for the file after it.
    const inner = await w.saveTree([
      node('a', { type: 'symlink', target: Buffer.from('x') }),
      node('b', two), // created by the walk: a hard link is there first
      node('c', one), // created by a worker: a hard link is there first
      node('f', one), // created by a worker: a FIFO with a reader is there first
      node('g', two), // created by the walk, then swapped for a hard link before a worker writes its pieces
      node('h', { type: 'symlink', target: Buffer.from('x') }),
    ]);
    const tree = await w.saveTree([node('d', { type: 'dir', mode: 0o755, subtree: inner })]);
    await w.flush();

    const target = join(dir, 't');
    const outside = (name: string): string => join(dir, `outside-${name}`);
    for (const name of ['b', 'c', 'g']) writeFileSync(outside(name), OUTSIDE);
    let reader = -1;
    const plant = (path: string): void => {
      const d = join(target, 'd');
      if (path === '/d/a') {
        linkSync(outside('b'), join(d, 'b'));
        linkSync(outside('c'), join(d, 'c'));
        execFileSync('mkfifo', [join(d, 'f')]);
        reader = openSync(join(d, 'f'), constants.O_RDONLY | constants.O_NONBLOCK);
      } else if (path === '/d/h') {
        unlinkSync(join(d, 'g'));
        linkSync(outside('g'), join(d, 'g'));
      }
    };
    const r = await new Restorer(repo, target, { onRestored: plant }).run(tree);

    assert.deepEqual(r.failed.map((f) => f.path).sort(), ['/d/b', '/d/c', '/d/f', '/d/g']);
    for (const f of r.failed) assert.match(f.error, f.path === '/d/b' ? /EEXIST/ : /refused: not the regular file this restore created/, f.path);
    for (const name of ['b', 'c', 'g']) assert.deepEqual(readFileSync(outside(name)), OUTSIDE, `outside-${name} was written through`);
    const got = Buffer.alloc(64);
    let n = 0;
    try {
      n = readSync(reader, got);
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'EAGAIN');
    }
    closeSync(reader);
    assert.equal(got.subarray(0, n).toString(), '', 'bytes were written into the FIFO');
  });
});

/**
 * A restore raced by someone who can write into the target: between the
 * restore making room for a file and writing it, a hard link to a file
 * outside the target, or a FIFO with a reader, is put where the file goes.
 * The restore must refuse each (reported, not restored) and write nothing
 * through it: the file outside keeps its bytes, the FIFO gets none. Or a
 * folder the restore is filling is swapped for a symlink to a folder outside:
 * nothing may be created in it, and its mode must stay. The planting happens
 * in `onRestored` of the sibling walked just before (the walk reports a
 * symlink as soon as it made it), so the race is won every time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readSync, closeSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
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
      node('g', two), // created by the walk and held open, then swapped for a hard link before a worker writes its pieces
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

    // 'g' is written into the file the walk created and holds open: the hard link put at its name gets nothing.
    assert.deepEqual(r.failed.map((f) => f.path).sort(), ['/d/b', '/d/c', '/d/f']);
    for (const f of r.failed) assert.match(f.error, f.path === '/d/b' ? /EEXIST/ : /refused: something was put where the file goes while the restore ran/, f.path);
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

  it('refuses a folder swapped for a symlink while it is filled: nothing is created, written or chmodded through it', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const piece = (await w.saveBlob(BlobType.Data, Buffer.from('piece one\n'))).id;
    const piece2 = (await w.saveBlob(BlobType.Data, Buffer.from('piece two\n'))).id;
    const whole = (await w.saveBlob(BlobType.Data, Buffer.from('a whole file\n'))).id;
    const inner = await w.saveTree([
      node('a', { type: 'symlink', target: Buffer.from('x') }), // its onRestored swaps /d for a symlink
      node('b', { type: 'file', size: 20, content: [piece, piece2] }), // created by the walk
      node('c', { type: 'file', size: 13, content: [whole] }), // created by a worker
      node('e', { type: 'dir', mode: 0o755, subtree: await w.saveTree([node('f', { type: 'file', size: 13, content: [whole] })]) }),
      node('p', { type: 'fifo', mode: 0o600 }),
      node('s', { type: 'symlink', target: Buffer.from('/etc/passwd') }),
    ]);
    const tree = await w.saveTree([node('d', { type: 'dir', mode: 0o751, subtree: inner })]);
    await w.flush();

    const target = join(dir, 'swap');
    const outside = join(dir, 'outside-folder');
    mkdirSync(outside, { mode: 0o700 });
    writeFileSync(join(outside, 'keep'), OUTSIDE);
    const plant = (path: string): void => {
      if (path !== '/d/a') return;
      renameSync(join(target, 'd'), join(target, 'd-moved'));
      symlinkSync(outside, join(target, 'd'));
    };
    const r = await new Restorer(repo, target, { onRestored: plant }).run(tree);

    assert.deepEqual(r.failed.map((f) => f.path).sort(), ['/d/b', '/d/c', '/d/e', '/d/p', '/d/s']);
    for (const f of r.failed) assert.match(f.error, /ELOOP: a symbolic link is on the way/, f.path);
    assert.deepEqual(readdirSync(outside), ['keep'], 'something was created through the symlink');
    assert.deepEqual(readFileSync(join(outside, 'keep')), OUTSIDE);
    assert.equal(statSync(outside).mode & 0o7777, 0o700, 'the folder outside was chmodded through the symlink');
    assert.deepEqual(readdirSync(join(target, 'd-moved')), ['a']);
  });

  it('refuses a file of the racer\'s own put where a file goes, and a folder swapped for a hard link to a file outside: nothing is read or changed through them', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const SECRET = Buffer.from('root-only content\n');
    const whole = (await w.saveBlob(BlobType.Data, SECRET)).id;
    const half = (await w.saveBlob(BlobType.Data, Buffer.from('root-only'))).id;
    const half2 = (await w.saveBlob(BlobType.Data, Buffer.from(' content\n'))).id;
    const inner = await w.saveTree([
      node('a', { type: 'symlink', target: Buffer.from('x') }), // its onRestored plants 'k'
      node('k', { type: 'file', mode: 0o600, size: SECRET.length, content: [whole] }), // written by a worker
      node('m', { type: 'file', mode: 0o600, size: SECRET.length, content: [half, half2] }), // created by the walk
      node('n', { type: 'symlink', target: Buffer.from('x') }), // its onRestored swaps 'm' for a file of the racer's
      node('x', { type: 'dir', mode: 0o777, subtree: await w.saveTree([]), xattrs: [{ name: Buffer.from('user.planted'), value: Buffer.from('1') }] }),
      node('z', { type: 'symlink', target: Buffer.from('x') }), // its onRestored swaps folder 'x' for a hard link to a file outside
    ]);
    const tree = await w.saveTree([node('d', { type: 'dir', mode: 0o755, subtree: inner })]);
    await w.flush();

    const target = join(dir, 'own');
    const victim = join(dir, 'victim');
    writeFileSync(victim, OUTSIDE, { mode: 0o600 });
    const held: Record<string, number> = {};
    const plant = (path: string): void => {
      const d = join(target, 'd');
      if (path === '/d/a') {
        writeFileSync(join(d, 'k'), '');
        held['k'] = openSync(join(d, 'k'), constants.O_RDWR);
      } else if (path === '/d/n') {
        unlinkSync(join(d, 'm'));
        writeFileSync(join(d, 'm'), '');
        held['m'] = openSync(join(d, 'm'), constants.O_RDWR);
      } else if (path === '/d/z') {
        renameSync(join(d, 'x'), join(d, 'x-moved'));
        linkSync(victim, join(d, 'x'));
      }
    };
    const warnings: string[] = [];
    const r = await new Restorer(repo, target, { onRestored: plant, onWarning: (p, m) => warnings.push(`${p}: ${m}`) }).run(tree);

    // 'm' is written into the file the walk created and holds open; the racer's file at its name gets nothing.
    assert.deepEqual(r.failed.map((f) => f.path).sort(), ['/d/k']);
    for (const f of r.failed) assert.match(f.error, /refused: something was put where the file goes while the restore ran/, f.path);
    for (const name of ['k', 'm']) {
      const got = Buffer.alloc(64);
      const n = readSync(held[name]!, got, 0, got.length, 0);
      closeSync(held[name]!);
      assert.equal(got.subarray(0, n).toString(), '', `the racer's ${name} received the snapshot's bytes`);
    }
    assert.ok(warnings.some((m) => m.startsWith('/d/x: cannot restore metadata')), warnings.join('\n'));
    assert.equal(statSync(victim).mode & 0o7777, 0o600, 'the file outside was chmodded through the hard link');
    assert.deepEqual(readFileSync(victim), OUTSIDE);
    assert.equal(execFileSync('getfattr', ['--absolute-names', '-d', victim], { encoding: 'utf8' }).includes('user.planted'), false, 'an attribute was set on the file outside');
  });

  it('with targetNoSymlinks (an agent\'s restores), a symlink on the way to the target is refused: nothing is made or written through it', async () => {
    const { repo } = await memoryRepo();
    const w = repo.newWriter();
    const blob = (await w.saveBlob(BlobType.Data, Buffer.from('a file\n'))).id;
    const tree = await w.saveTree([node('f', { type: 'file', size: 7, content: [blob] })]);
    await w.flush();
    const outside = join(dir, 'outside-target');
    mkdirSync(outside, { mode: 0o700 });
    symlinkSync(outside, join(dir, 'linked'));
    await assert.rejects(new Restorer(repo, join(dir, 'linked', 'restored'), { targetNoSymlinks: true }).run(tree), { code: 'ELOOP' });
    assert.deepEqual(readdirSync(outside), [], 'something was made through the symlink');
    const r = await new Restorer(repo, join(dir, 'real', 'restored'), { targetNoSymlinks: true }).run(tree);
    assert.equal(r.progress.files, 1);
    assert.equal(readFileSync(join(dir, 'real', 'restored', 'f'), 'utf8'), 'a file\n');
  });
});

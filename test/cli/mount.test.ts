/**
 * `holdfast mount` through the real CLI and the kernel's FUSE: the EVERYTHING
 * fixture is backed up, mounted, and every file under the mount is compared
 * with the original (bytes, type, mode, owner, size, mtime to the
 * millisecond, link count, device numbers, symlink targets, folder listings);
 * random ranges are read concurrently; the mount must be read-only and go
 * away on SIGTERM, on an unmount from outside, and when the process is
 * killed.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, open, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { join } from 'node:path';
import { EVERYTHING, NON_UTF8_NAME, buildTree, pseudoRandomBytes, removeTree, showPath } from '../fixtures/tree.js';
import { Sandbox, snapshotsOf, type Started } from '../helpers/cli.js';
import { PathShortener } from '../../src/sources/posix.js';

const noFuse = !existsSync('/dev/fuse') ? 'no /dev/fuse on this machine'
  : spawnSync('fusermount', ['-V']).error ? 'fusermount is not installed (Debian package fuse)'
  : false;

/** Mount points in /proc/self/mountinfo. */
async function mounted(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
}

/** Waits until the process printed `line` on stdout (or ended, which fails). */
function waitFor(p: Started, line: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (line.test(out)) {
        p.child.stdout!.off('data', onData);
        resolve();
      }
    };
    p.child.stdout!.on('data', onData);
    void p.done.then((r) => reject(new Error(`mount ended before printing ${line}: exit ${r.code}\n${r.stdout}${r.stderr}`)));
  });
}

/**
 * Compares the tree at `orig` with the one at `seen` (the mount), recursing
 * through folders; names that are not valid UTF-8 must be missing from the
 * mount, and so must symlinks whose target is not. Returns how many
 * entries were compared.
 */
async function compareWithMount(orig: Buffer, seen: Buffer, paths: PathShortener): Promise<number> {
  const o = await lstat(await paths.short(orig), { bigint: true });
  const m = await lstat(await paths.short(seen), { bigint: true });
  const what = showPath(orig);
  assert.equal(m.mode, o.mode, `${what}: type and mode`);
  assert.equal(m.uid, o.uid, `${what}: uid`);
  assert.equal(m.gid, o.gid, `${what}: gid`);
  assert.equal(m.mtimeNs, (o.mtimeNs / 1_000_000n) * 1_000_000n, `${what}: mtime to the millisecond`);
  if (o.isDirectory()) {
    const names = (await readdir(await paths.short(orig), { encoding: 'buffer' })).sort(Buffer.compare);
    const shown = (await readdir(await paths.short(seen), { encoding: 'buffer' })).sort(Buffer.compare);
    const showable: Buffer[] = [];
    for (const name of names) {
      const path = await paths.short(Buffer.concat([orig, Buffer.from('/'), name]));
      const target = (await lstat(path)).isSymbolicLink() ? await readlink(path, { encoding: 'buffer' }) : undefined;
      if (isUtf8(name) && (target === undefined || isUtf8(target))) showable.push(name);
    }
    assert.deepEqual(shown.map(String), showable.map(String), `${what}: listing`);
    let n = 1;
    for (const name of shown) n += await compareWithMount(Buffer.concat([orig, Buffer.from('/'), name]), Buffer.concat([seen, Buffer.from('/'), name]), paths);
    return n;
  }
  assert.equal(m.size, o.size, `${what}: size`);
  assert.equal(m.nlink, o.nlink, `${what}: link count`);
  assert.equal(m.rdev, o.rdev, `${what}: device numbers`);
  if (o.isSymbolicLink()) {
    assert.deepEqual(await readlink(await paths.short(seen), { encoding: 'buffer' }), await readlink(await paths.short(orig), { encoding: 'buffer' }), `${what}: target`);
  } else if (o.isFile()) {
    assert.ok((await readFile(await paths.short(seen))).equals(await readFile(await paths.short(orig))), `${what}: bytes`);
  }
  return 1;
}

// The timeout only keeps a hung mount from holding up the whole run.
describe('mount', { skip: noFuse, timeout: 300_000 }, () => {
  let s: Sandbox;
  let src: string;
  let mnt: string;
  let image: Buffer;
  let snaps: Awaited<ReturnType<typeof snapshotsOf>>;
  let running: Started | undefined;
  const start = (): Started => (running = s.start(['mount', mnt]));

  before(async () => {
    s = await Sandbox.create();
    src = s.path('src');
    mnt = s.path('mnt');
    await buildTree(src, EVERYTHING);
    await mkdir(mnt);
    // A raw image: random blocks with a run of zeros between them.
    image = Buffer.concat([pseudoRandomBytes('image', 300_000), Buffer.alloc(200_000), pseudoRandomBytes('image tail', 100_001)]);
    await writeFile(s.path('disk.raw'), image);
    await s.ok(['init']);
    await s.ok(['backup', '--host', 'alpha', '--tag', 'first', '--time', '2024-01-02 03:04:05', src]);
    await s.ok(['backup', '--host', 'beta', '--time', '2024-01-02 03:04:05', src]);
    await s.ok(['backup', '--host', 'beta', '--image', s.path('disk.raw'), '--block-size', '64K']);
    snaps = await snapshotsOf(s);
  });
  // A test that failed halfway leaves no mount for the next one.
  afterEach(async () => {
    if (running?.child.exitCode === null && running.child.signalCode === null) {
      running.child.kill('SIGKILL');
      await running.done;
    }
    running = undefined;
    if ((await mounted()).includes(mnt)) spawnSync('fusermount', ['-uz', mnt]);
  });
  after(async () => {
    await removeTree(s.dir);
  });

  it('shows every snapshot as restic does, with the bytes and metadata of the originals, read-only, until SIGTERM', async () => {
    const p = start();
    await waitFor(p, /mounted 3 snapshots/);
    assert.deepEqual((await readdir(mnt)).sort(), ['hosts', 'ids', 'snapshots', 'tags']);

    // The two file snapshots share a time to the second: the later gets "-1".
    const [first, second, img] = snaps;
    const time = new Date(first!.time).toISOString().replace(/\.\d{3}Z$/, 'Z');
    assert.deepEqual((await readdir(join(mnt, 'snapshots'))).sort(), [time, `${time}-1`, new Date(img!.time).toISOString().replace(/\.\d{3}Z$/, 'Z'), 'latest'].sort());
    assert.deepEqual((await readdir(join(mnt, 'ids'))).sort(), snaps.map((x) => x.id.slice(0, 8)).sort());
    assert.deepEqual((await readdir(join(mnt, 'hosts'))).sort(), ['alpha', 'beta']);
    assert.deepEqual((await readdir(join(mnt, 'tags'))).sort(), ['first']);
    assert.equal(await readlink(join(mnt, 'hosts', 'beta', 'latest')), new Date(img!.time).toISOString().replace(/\.\d{3}Z$/, 'Z'));
    assert.equal(await readlink(join(mnt, 'tags', 'first', 'latest')), time);

    // Every file of the first snapshot against the original; the one not valid UTF-8 is left out, and said so.
    const paths = new PathShortener();
    try {
      const n = await compareWithMount(Buffer.from(src), Buffer.from(join(mnt, 'tags', 'first', 'latest', src)), paths);
      assert.ok(n > 40, `compared ${n} entries`);
      await compareWithMount(Buffer.from(src), Buffer.from(join(mnt, 'ids', second!.id.slice(0, 8), src)), paths);
    } finally {
      await paths.close();
    }

    // The image snapshot's folder holds the image.
    assert.deepEqual(await readdir(join(mnt, 'ids', img!.id.slice(0, 8))), ['image.raw']);
    assert.ok((await readFile(join(mnt, 'ids', img!.id.slice(0, 8), 'image.raw'))).equals(image));

    // Random ranges, many at once, across chunk and blob boundaries and the holes of the sparse file.
    for (const rel of ['sizes/3m-random.bin', 'sparse-64m.img']) {
      const orig = await readFile(join(src, rel));
      const fh = await open(join(mnt, 'snapshots', `${time}-1`, src, rel));
      try {
        let seed = 1;
        const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
        await Promise.all(Array.from({ length: 64 }, async () => {
          const offset = rand(orig.length);
          const length = 1 + rand(300_000);
          const buf = Buffer.alloc(length);
          const { bytesRead } = await fh.read(buf, 0, length, offset);
          assert.ok(buf.subarray(0, bytesRead).equals(orig.subarray(offset, offset + length)), `${rel} at ${offset}+${length}`);
        }));
      } finally {
        await fh.close();
      }
    }

    await assert.rejects(writeFile(join(mnt, 'snapshots', 'latest', 'new'), 'x'), { code: 'EROFS' });
    await assert.rejects(writeFile(join(mnt, 'tags', 'first', 'latest', src, 'sizes', 'text.txt'), 'x'), { code: 'EROFS' });

    p.child.kill('SIGTERM');
    const r = await p.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`/names/${NON_UTF8_NAME.toString()}: not shown \\(name is not valid UTF-8\\)`));
    assert.match(r.stderr, /\/links\/to-non-utf8: not shown \(symlink target is not valid UTF-8\)/);
    assert.ok(!(await mounted()).includes(mnt), 'unmounted');
    assert.deepEqual(await readdir(join(s.repo, 'locks')), [], 'lock released');
  });

  it('ends by itself when unmounted from outside', async () => {
    const p = start();
    await waitFor(p, /press Ctrl-C/);
    assert.equal(spawnSync('fusermount', ['-u', mnt]).status, 0);
    const r = await p.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /unmounted from outside/);
    assert.deepEqual(await readdir(join(s.repo, 'locks')), []);
  });

  it('leaves no mount behind when killed', async () => {
    const p = start();
    await waitFor(p, /press Ctrl-C/);
    p.child.kill('SIGKILL');
    await p.done;
    // libfuse's helper (auto_unmount) unmounts once it sees the process gone; wait for that (30 s is only a safety net).
    for (let i = 0; (await mounted()).includes(mnt); i++) {
      assert.ok(i < 600, 'still mounted 30 s after the process was killed');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(await readdir(mnt), []);
  });

  it('refuses a mount point that is missing or not empty, with a plain message', async () => {
    const missing = await s.run(['mount', s.path('nowhere')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^holdfast: mount point .*nowhere: does not exist\n$/);
    const full = await s.run(['mount', src]);
    assert.equal(full.code, 1);
    assert.match(full.stderr, /^holdfast: mount point .*src is not empty\n$/);
  });
});

/**
 * `ls` and `dump` on the command line: deep trees with bounded memory and
 * waiting for slow readers, quiet exits when the reader goes away, and tar
 * streams that keep every mode, time and name byte (read back with GNU tar),
 * and dump and ls naming on stderr the snapshot `latest` or a prefix resolved to.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type Started } from '../helpers/cli.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { encodeTree, type TreeNode } from '../../src/repo/tree.js';
import { Forge } from '../helpers/forge.js';
import { localIso } from '../../src/core/local-time.js';

const META = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000_000_000_000n, ctime: 0n, inode: 1n, device: 1n, links: 1, size: 0 };

/** Saves a snapshot whose tree is a chain of folders `depth` deep, each named `name`. */
async function saveChain(s: Sandbox, depth: number, name: string): Promise<void> {
  const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), 'correct horse');
  await repo.loadIndex();
  const w = repo.newWriter();
  let tree = await w.saveTree([]);
  const blobs = [tree];
  for (let i = 0; i < depth; i++) {
    tree = await w.saveTree([{ ...META, name: Buffer.from(name), type: 'dir', subtree: tree } satisfies TreeNode]);
    blobs.push(tree);
  }
  await w.flush();
  const t = new Date().toISOString();
  await w.saveSnapshot({
    time: t, hostname: 'deep', username: 'u', paths: ['/deep'], tags: [], tree, blobs,
    summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: depth, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: t, end: t },
  });
}

/** Reads the child's stdout one chunk per few milliseconds: a reader far slower than the writer. */
function readSlowly(started: Started): void {
  const out = started.child.stdout!;
  out.on('data', () => {
    out.pause();
    setTimeout(() => out.resume(), 1);
  });
}

describe('ls and dump of a tree 1,200 folders deep', () => {
  const depth = 1200;
  const name = 'n'.repeat(30);
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-lsdump-');
    await s.ok(['init']);
    await saveChain(s, depth, name);
  });
  after(() => s.remove());

  it('ls waits for a slow reader instead of holding its 22 MB listing in a 16 MB heap', async () => {
    const started = s.start(['ls', 'latest'], { env: { NODE_OPTIONS: '--max-old-space-size=16' } });
    readSlowly(started);
    const r = await started.done;
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, depth);
    assert.equal(lines[depth - 1], `/${name}`.repeat(depth));
  });

  for (const args of [['ls', 'latest'], ['dump', 'latest', '/']]) {
    it(`${args[0]} ends quietly when its reader goes away (| head)`, async () => {
      const started = s.start(args);
      started.child.stdout!.once('data', () => started.child.stdout!.destroy());
      const r = await started.done;
      // Nothing but the line naming the snapshot `latest` resolved to.
      assert.equal(r.stderr.replace(/^(listing|dumping) snapshot \w{8} of \/deep at .*\n/, ''), '');
      assert.equal(r.signal, 'SIGPIPE', `exit ${r.code}, signal ${r.signal}`);
    });
  }

  it('dump writes the tar stream at the reader\'s pace, in a 16 MB heap', async () => {
    const started = s.start(['dump', 'latest', '/'], { env: { NODE_OPTIONS: '--max-old-space-size=16' } });
    readSlowly(started);
    const r = await started.done;
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    const tar = spawnSync('tar', ['-tf', '-'], { input: r.stdoutBytes, maxBuffer: 1 << 28 });
    assert.equal(tar.status, 0, tar.stderr.toString());
    const names = tar.stdout.toString().split('\n').filter(Boolean);
    assert.equal(names.length, depth);
    assert.equal(names[depth - 1], `${`${name}/`.repeat(depth)}`);
  });
});

/** A time in ns rounded down to whole seconds (tar's precision here). */
const wholeSeconds = (ns: bigint): bigint => (ns >= 0n ? ns : ns - 999_999_999n) / 1_000_000_000n * 1_000_000_000n;

describe('dump as tar keeps what the snapshot holds (read back with GNU tar)', () => {
  let s: Sandbox;
  const b = (...parts: (string | Buffer)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
  before(async () => {
    s = await Sandbox.create('holdfast-tar-');
    const src = b(s.path('src'));
    mkdirSync(src);
    writeFileSync(b(src, '/shadow'), 'root:$6$secret\n');
    chmodSync(b(src, '/shadow'), 0o000);
    writeFileSync(b(src, '/future'), 'from 2100');
    utimesSync(b(src, '/future'), 4_102_542_245, 4_102_542_245); // 2100-01-02 03:04:05 UTC: past 2^32 s, where 32-bit times turn negative
    writeFileSync(b(src, '/old'), 'from 1960');
    utimesSync(b(src, '/old'), -304_103_511, -304_103_511); // 1960-05-13, before the epoch
    const latin1 = b('caf', Buffer.from([0xe9]), '-latin1');
    writeFileSync(b(src, '/', latin1), 'not UTF-8');
    mkdirSync(b(src, '/dir', Buffer.from([0xff, 0xfe])));
    symlinkSync(latin1, b(src, '/link', Buffer.from([0xe9])));
    writeFileSync(b(src, '/', 'L'.repeat(150)), 'a name longer than ustar\'s 100 bytes');
    chmodSync(b(src, '/', 'L'.repeat(150)), 0o4751);
    await s.ok(['init']);
    await s.ok(['backup', s.path('src')]);
  });
  after(() => s.remove());

  it('modes (000 and setuid), times before 1970 and after 2038, and names that are not UTF-8', async () => {
    const tar = await s.ok(['dump', 'latest', s.path('src')]);
    const out = s.path('out');
    mkdirSync(out);
    const x = spawnSync('tar', ['--numeric-owner', '-xpf', '-', '-C', out], { input: tar.stdoutBytes });
    assert.equal(x.status, 0, x.stderr.toString());
    const listing = spawnSync('tar', ['--numeric-owner', '-tvf', '-'], { input: tar.stdoutBytes }).stdout.toString();
    assert.match(listing, /^---------- 0\/0 .* \S*\/src\/shadow$/m);
    const src = b(s.path('src'));
    const back = b(join(out, s.path('src')));
    const names = readdirSync(src, { encoding: 'buffer' }).sort(Buffer.compare);
    assert.deepEqual(readdirSync(back, { encoding: 'buffer' }).sort(Buffer.compare), names);
    for (const name of names) {
      const [a, c] = [lstatSync(b(src, '/', name), { bigint: true }), lstatSync(b(back, '/', name), { bigint: true })];
      const what = name.toString('latin1');
      assert.equal(c.mode, a.mode, `${what}: mode ${c.mode.toString(8)}, wanted ${a.mode.toString(8)}`);
      assert.equal(c.mtimeNs, wholeSeconds(a.mtimeNs), `${what}: mtime`);
      if (a.isFile()) assert.deepEqual(readFileSync(b(back, '/', name)), readFileSync(b(src, '/', name)), what);
      if (a.isSymbolicLink()) assert.deepEqual(readlinkSync(b(back, '/', name), { encoding: 'buffer' }), readlinkSync(b(src, '/', name), { encoding: 'buffer' }), what);
    }
  });
});

describe('times for people are local time, in snapshots and ls -l alike', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-tz-');
    mkdirSync(s.path('src'));
    writeFileSync(s.path('src', 'f'), 'x');
    utimesSync(s.path('src', 'f'), 1_709_647_200, 1_709_647_200); // 2024-03-05 14:00:00 UTC
    await s.ok(['init']);
    await s.ok(['backup', '--time', '2024-03-05 14:15:16', s.path('src')], { env: { TZ: 'UTC' } });
  });
  after(() => s.remove());

  it('TZ=Asia/Tokyo (UTC+9) shows both nine hours on; --json stays UTC', async () => {
    const env = { TZ: 'Asia/Tokyo' };
    assert.match((await s.ok(['snapshots'], { env })).stdout, /^\S+ +2024-03-05 23:15:16 /m);
    assert.match((await s.ok(['ls', '-l', 'latest', s.path('src', 'f')], { env })).stdout, / 2024-03-05 23:00:00 \S+\/src\/f$/m);
    assert.match((await s.ok(['ls', '--json', 'latest', s.path('src', 'f')], { env })).stdout, /"mtime":"2024-03-05T14:00:00.000Z"/);
  });
});

describe('ls of a snapshot with one damaged listing (a node whose size is over 2^53)', () => {
  let s: Sandbox;
  let snap: string;
  before(async () => {
    s = await Sandbox.create('holdfast-ls-damaged-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const bad = encodeTree([f.file('big', 1, [])]);
    // The high half of the size (header 9 bytes, then 2 + 3 + 1 + 1 + 2 + 4 + 4 + 5 × 8 before the size): 2^62.
    bad.writeUInt32LE(0x4000_0000, 9 + 57 + 4);
    const ok = Buffer.from('ok\n');
    snap = await f.snapshot(await f.tree([
      f.dir('bad', await f.rawTree(bad)),
      f.dir('good', await f.tree([f.file('ok.txt', ok.length, [await f.data(ok)])])),
      f.file('z.txt', ok.length, [await f.data(ok)]),
    ]));
  });
  after(() => s.remove());

  it('ls -l lists everything else, names the damaged folder and exits 1 (it printed nothing)', async () => {
    const r = await s.run(['ls', '-l', snap]);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => l.split(' ').pop()), ['/bad', '/good', '/good/ok.txt', '/z.txt']);
    assert.match(r.stderr, /warning: \/bad: its listing cannot be read \(tree \w+ is damaged: .*size/);
    assert.match(r.stderr, /holdfast: ls INCOMPLETE: 1 path\(s\)/);
  });
});

describe('dump of a snapshot with names a restore refuses', () => {
  let s: Sandbox;
  let snap: string;
  const ok = Buffer.from('ok\n');
  before(async () => {
    s = await Sandbox.create('holdfast-dump-unsafe-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const okId = await f.data(ok);
    snap = await f.snapshot(await f.tree(['.', '..', 'a/b', 'n\0ul', 'ok.txt'].map((n) => f.file(n, ok.length, [okId]))));
  });
  after(() => s.remove());

  it('writes the rest, warns about each and exits as restore does (1; it exited 0 with a tar silently short)', async () => {
    const restore = await s.run(['restore', snap, '--target', s.path('t')]);
    assert.equal(restore.code, 1, restore.stderr);
    const r = await s.run(['dump', snap, '/']);
    assert.equal(r.code, restore.code, r.stderr);
    for (const why of ['name is "."', 'name is ".."', 'name contains "/"', 'name contains a NUL byte']) assert.match(r.stderr, new RegExp(`skipped \\(${why.replace(/[.]/g, '\\.')}\\)`));
    assert.match(r.stderr, /holdfast: dump INCOMPLETE: 4 path\(s\)/);
    const listing = spawnSync('tar', ['-tf', '-'], { input: r.stdoutBytes });
    assert.equal(listing.status, 0, listing.stderr.toString());
    assert.deepEqual(listing.stdout.toString().split('\n').filter(Boolean), ['ok.txt']);
  });
});

describe('dump and ls say which snapshot they read', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-dump-which-');
    await s.ok(['init']);
    mkdirSync(s.path('src'));
    writeFileSync(s.path('src', 'f'), 'first');
    await s.ok(['backup', '--host', 'one', s.path('src')]);
    writeFileSync(s.path('src', 'f'), 'second');
    await s.ok(['backup', '--host', 'two', s.path('src')]);
  });
  after(() => s.remove());

  it('name on stderr the snapshot latest or an id prefix resolved to, with its time; stdout is the data alone; not with --quiet or --json', async () => {
    const [first, second] = (await snapshotsOf(s)).sort((a, b) => a.time.localeCompare(b.time));
    const line = (doing: string, x: typeof first): string => `${doing} snapshot ${x!.id.slice(0, 8)} of ${s.path('src')} at ${localIso(x!.time)} (${x!.hostname})\n`;
    const latest = await s.ok(['dump', 'latest', s.path('src', 'f')]);
    assert.equal(latest.stdout, 'second');
    assert.equal(latest.stderr, line('dumping', second));
    const byPrefix = await s.ok(['dump', first!.id.slice(0, 6), s.path('src', 'f')]);
    assert.equal(byPrefix.stdout, 'first');
    assert.equal(byPrefix.stderr, line('dumping', first));
    const ls = await s.ok(['ls', first!.id.slice(0, 6), s.path('src', 'f')]);
    assert.equal(ls.stdout, `${s.path('src', 'f')}\n`);
    assert.equal(ls.stderr, line('listing', first));
    for (const flag of ['--quiet', '--json']) {
      const r = await s.ok([flag, 'dump', 'latest', s.path('src', 'f')]);
      assert.deepEqual([r.stdout, r.stderr], ['second', ''], flag);
      assert.equal((await s.ok([flag, 'ls', 'latest'])).stderr, '', flag);
    }
  });
});

/**
 * `listDirStats` (native/walk.cc) against Node's own calls: the same names in
 * bytewise order and, for each, what `lstat` reports, for every file type;
 * failures worded as Node words them, for a whole folder and by entry.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs, lstatSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FolderEntries, childPath, errorOf, listDirStats, listedEntries, toEntryStat, type ListedEntry, type ReadError } from '../../src/sources/file-tree.js';

const isRoot = process.getuid?.() === 0;
const nobody = { uid: 65534, gid: 65534 };
const FILE_TREE = fileURLToPath(new URL('../../src/sources/file-tree.js', import.meta.url));

/** What Node's readdir and lstat say of a folder, in the shape `listedEntries` gives. */
function byNode(dir: Buffer): ListedEntry[] | { error: ReadError } {
  let names: Buffer[];
  try {
    names = readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare);
  } catch (e) {
    return { error: errorOf(e) };
  }
  return names.map((name) => {
    try {
      return { name, st: toEntryStat(lstatSync(childPath(dir, name), { bigint: true })) };
    } catch (e) {
      return { name, error: errorOf(e) };
    }
  });
}

function listed(dir: Buffer): ListedEntry[] | { error: ReadError } {
  const l = listDirStats(dir);
  return 'error' in l ? l : listedEntries(new FolderEntries(l));
}

describe('listDirStats', () => {
  let root: string;
  let socket: Server;
  const p = (...parts: string[]): string => join(root, ...parts);

  before(async () => {
    root = await fs.mkdtemp(join(tmpdir(), 'holdfast-listdir-'));
    await fs.mkdir(p('all'));
    await fs.writeFile(p('all', 'file'), 'some bytes');
    await fs.link(p('all', 'file'), p('all', 'hard link'));
    await fs.mkdir(p('all', 'dir'), { mode: 0o750 });
    await fs.writeFile(p('all', 'dir', 'inside'), '');
    await fs.symlink('file', p('all', 'symlink'));
    await fs.symlink('nowhere', p('all', 'dangling'));
    await fs.symlink('dir', p('all', 'dir link'));
    assert.equal(spawnSync('mkfifo', [p('all', 'fifo')]).status, 0);
    socket = createServer();
    await new Promise<void>((resolve) => socket.listen(p('all', 'socket'), resolve));
    if (isRoot) {
      // A container may refuse mknod: the test then covers the other types.
      spawnSync('mknod', [p('all', 'chardev'), 'c', '1', '3']);
      spawnSync('mknod', [p('all', 'blockdev'), 'b', '7', '200']);
    }
    // Names that sort differently as bytes and as text, one not UTF-8.
    for (const name of ['B', 'a', 'ä', 'é', 'Z~']) await fs.writeFile(p('all', name), name);
    await fs.writeFile(Buffer.concat([Buffer.from(p('all')), Buffer.from([0x2f, 0x6e, 0xff, 0xfe, 0x80])]), 'not UTF-8');
    await fs.writeFile(p('all', 'old'), '');
    // Before 1970, to the nanosecond: a negative time with a positive fraction.
    assert.equal(spawnSync('touch', ['-d', '1969-12-30 12:00:00.123456789 UTC', p('all', 'old')]).status, 0);
    await fs.writeFile(p('all', 'setuid'), '', { mode: 0o4755 });
    await fs.chmod(p('all', 'setuid'), 0o4755);
    await fs.mkdir(p('empty'));
  });

  after(async () => {
    await new Promise((resolve) => socket.close(resolve));
    await fs.rm(root, { recursive: true, force: true });
  });

  it('lists every file type as lstat reports it, names in byte order, not UTF-8 ones included', () => {
    const dir = Buffer.from(p('all'));
    const got = listed(dir);
    assert.deepEqual(got, byNode(dir));
    assert.ok(Array.isArray(got));
    const types = new Set(got.map((e) => e.st?.type));
    for (const t of ['file', 'dir', 'symlink', 'fifo', 'socket'] as const) assert.ok(types.has(t), `no ${t} listed`);
    assert.ok(got.some((e) => e.name.equals(Buffer.from([0x6e, 0xff, 0xfe, 0x80]))), 'the name that is not UTF-8 is missing');
    assert.ok(got.find((e) => e.name.toString() === 'old')!.st!.mtime < 0n, 'a time before 1970');
  });

  it('lists device files as lstat reports them', (t) => {
    if (!isRoot) return t.skip('needs root to make device files');
    if (readdirSync(p('all')).filter((n) => n.endsWith('dev')).length < 2) return t.skip('this machine refuses mknod');
    const got = listed(Buffer.from(p('all')));
    assert.ok(Array.isArray(got));
    assert.equal(got.find((e) => e.name.toString() === 'chardev')!.st!.rdev, lstatSync(p('all', 'chardev'), { bigint: true }).rdev);
    assert.equal(got.find((e) => e.name.toString() === 'blockdev')!.st!.type, 'blockdev');
  });

  it('lists an empty folder and the root, and hands over arrays that can be transferred', () => {
    assert.deepEqual(listed(Buffer.from(p('empty'))), []);
    // The root's own entries change as other processes work (/tmp's times): names and types are compared.
    const shape = (l: ListedEntry[] | { error: ReadError }): unknown => ('error' in l ? l : l.map((e) => [e.name.toString('latin1'), e.st?.type]));
    assert.deepEqual(shape(listed(Buffer.from('/'))), shape(byNode(Buffer.from('/'))));
    const l = listDirStats(Buffer.from(p('all')));
    assert.ok(!('error' in l));
    const buffers = [l.names.buffer, l.ends.buffer, l.fields.buffer] as ArrayBuffer[];
    structuredClone(buffers, { transfer: buffers });
    assert.deepEqual(buffers.map((b) => b.byteLength), [0, 0, 0], 'not detached: a view of a shared pool');
  });

  it('reports a folder it cannot list as Node does', () => {
    for (const dir of [p('missing'), p('all', 'file'), p('all', 'dangling')]) {
      const got = listDirStats(Buffer.from(dir));
      assert.ok('error' in got, dir);
      assert.deepEqual(got, byNode(Buffer.from(dir)), dir);
    }
    assert.equal((listDirStats(Buffer.from(p('missing'))) as { error: ReadError }).error.code, 'ENOENT');
    // A symlink to a folder is followed, as Node's readdir follows it.
    const throughLink = listed(Buffer.from(p('all', 'dir link')));
    assert.deepEqual(throughLink, byNode(Buffer.from(p('all', 'dir link'))));
    assert.deepEqual(Array.isArray(throughLink) && throughLink.map((e) => e.name.toString()), ['inside']);
  });

  it('run by a user who may not read: the folder refused as a whole, or its entries refused by index', async (t) => {
    if (!isRoot) return t.skip('needs root to run the listing as another user');
    if (spawnSync('setpriv', ['--version']).status !== 0) return t.skip('setpriv is not installed');
    await fs.chmod(root, 0o755);
    await fs.mkdir(p('closed'), { mode: 0o700 });
    await fs.writeFile(p('closed', 'secret'), '');
    // Readable but not searchable: readdir works, each lstat is refused.
    await fs.mkdir(p('unsearchable'));
    for (const name of ['one', 'two', 'three']) await fs.writeFile(p('unsearchable', name), name);
    await fs.chmod(p('unsearchable'), 0o744);
    const script = `
      import { FolderEntries, errorOf, listDirStats, listedEntries } from ${JSON.stringify(FILE_TREE)};
      import { readdirSync, lstatSync } from 'node:fs';
      const out = {};
      for (const dir of process.argv.slice(1)) {
        const l = listDirStats(Buffer.from(dir));
        const node = {};
        try { node.names = readdirSync(dir).sort(); node.errors = node.names.map((n) => { try { lstatSync(dir + '/' + n); return null; } catch (e) { return errorOf(e); } }); }
        catch (e) { node.error = errorOf(e); }
        out[dir] = { native: 'error' in l ? l : listedEntries(new FolderEntries(l)).map((e) => ({ name: e.name.toString(), error: e.error ?? null, hasStat: e.st !== undefined })), node };
      }
      console.log(JSON.stringify(out));`;
    const r = spawnSync('setpriv', [`--reuid=${nobody.uid}`, `--regid=${nobody.gid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', script, p('closed'), p('unsearchable')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, { native: { error?: ReadError } & { name: string; error: ReadError | null; hasStat: boolean }[]; node: { error?: ReadError; names?: string[]; errors?: (ReadError | null)[] } }>;

    const closed = out[p('closed')]!;
    assert.equal(closed.native.error?.code, 'EACCES');
    assert.deepEqual(closed.native.error, closed.node.error);

    const unsearchable = out[p('unsearchable')]!;
    assert.deepEqual(unsearchable.native.map((e) => e.name), ['one', 'three', 'two']);
    assert.deepEqual(unsearchable.native.map((e) => e.name), unsearchable.node.names);
    assert.deepEqual(unsearchable.native.map((e) => e.error), unsearchable.node.errors);
    for (const e of unsearchable.native) {
      assert.equal(e.error?.code, 'EACCES', e.name);
      assert.equal(e.hasStat, false, e.name);
    }
  });
});

/**
 * The addon's xattr calls (native/xattr.cc) and the reader and writer on top
 * of them (src/sources/xattrs.ts), checked against getfattr/setfattr: names
 * and values as bytes, lists and values past the first try's 4 KiB (the
 * path that asks for the size again), and errors named as Node names them.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fs, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { native } from '../../src/sources/native.js';
import { XattrReader, writeXattrs, xattrDifference } from '../../src/sources/xattrs.js';

const hasTools = spawnSync('sh', ['-c', 'command -v getfattr && command -v setfattr']).status === 0;

describe('extended attributes through the addon', () => {
  // tmpfs takes values and lists far larger than ext4's one block per inode.
  let dir: string;
  let skip: string | undefined;
  before(() => {
    dir = mkdtempSync('/dev/shm/holdfast-xattr-');
    writeFileSync(join(dir, 'probe'), '');
    try {
      native.lsetxattr(Buffer.from(join(dir, 'probe')), Buffer.from('user.probe'), Buffer.alloc(0));
    } catch (e) {
      skip = `/dev/shm takes no user.* attributes here (${(e as NodeJS.ErrnoException).code})`;
    }
    if (!hasTools) skip = 'getfattr and setfattr are not installed (apt-get install attr)';
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads and writes names and values as bytes, on a path that is not UTF-8, as getfattr sees them', (t) => {
    if (skip) return t.skip(skip);
    const path = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x66, 0xff, 0xfe])]);
    writeFileSync(path, 'x');
    const name = Buffer.from([0x75, 0x73, 0x65, 0x72, 0x2e, 0xe9, 0xff]); // "user." then bytes that are not UTF-8
    const value = Buffer.from([0, 0xff, 1, 0xfe]);
    native.lsetxattr(path, name, value);
    assert.deepEqual(native.llistxattr(path), [name]);
    assert.deepEqual(native.lgetxattr(path, name), value);
    // A name that is not UTF-8 cannot be an argument of Node's: printf spells it.
    const seen = execFileSync('bash', ['-c', String.raw`getfattr -d -m - -e hex "$(printf 'f\xff\xfe')"`], { cwd: dir, encoding: 'latin1' });
    assert.match(seen, /=0x00ff01fe$/m);
    native.lremovexattr(path, name);
    assert.deepEqual(native.llistxattr(path), []);
  });

  it('reads a value and a list of names longer than the first try (4 KiB) whole', (t) => {
    if (skip) return t.skip(skip);
    const path = join(dir, 'large');
    writeFileSync(path, '');
    const big = Buffer.alloc(20_000, 0x61);
    execFileSync('setfattr', ['-n', 'user.big', '-v', big.toString(), path]);
    const names = Array.from({ length: 30 }, (_, i) => `user.${'n'.repeat(200)}${i}`);
    for (const n of names) execFileSync('setfattr', ['-n', n, '-v', 'v', path]);
    const p = Buffer.from(path);
    assert.deepEqual(native.lgetxattr(p, Buffer.from('user.big')), big);
    assert.deepEqual(native.llistxattr(p).map((b) => b.toString()).sort(), ['user.big', ...names].sort());
    const read = new XattrReader().read(p, 1n)!;
    assert.deepEqual(read.map((x) => x.name.toString()), ['user.big', ...names].sort());
  });

  it('names errors as Node does: ENODATA, EPERM for user.* on a symlink, ENOTSUP where the file system has none; a path must be a Buffer without NUL', (t) => {
    if (skip) return t.skip(skip);
    const file = Buffer.from(join(dir, 'errors'));
    writeFileSync(file, '');
    assert.throws(() => native.lgetxattr(file, Buffer.from('user.none')), { code: 'ENODATA', syscall: 'lgetxattr' });
    assert.throws(() => native.lremovexattr(file, Buffer.from('user.none')), { code: 'ENODATA', syscall: 'lremovexattr' });
    const link = join(dir, 'link');
    symlinkSync('errors', link);
    assert.throws(() => native.lsetxattr(Buffer.from(link), Buffer.from('user.x'), Buffer.from('1')), { code: 'EPERM' });
    assert.deepEqual(native.llistxattr(file), [], 'the symlink was not followed');
    assert.throws(() => native.lsetxattr(Buffer.from('/proc/self/status'), Buffer.from('user.x'), Buffer.from('1')), { code: 'ENOTSUP' });
    assert.throws(() => native.llistxattr(Buffer.from(join(dir, 'missing'))), { code: 'ENOENT', syscall: 'llistxattr' });
    assert.throws(() => native.llistxattr('/tmp' as unknown as Buffer), /path must be a Buffer/);
    assert.throws(() => native.llistxattr(Buffer.from('/tmp\0/x')), /must not contain a NUL byte/);
  });

  it('writeXattrs sets the list given and, with clear, removes the others; it reports what is refused and writes the rest', async (t) => {
    if (skip) return t.skip(skip);
    const path = join(dir, 'write');
    await fs.writeFile(path, '');
    execFileSync('setfattr', ['-n', 'user.old', '-v', 'x', path]);
    const want = [{ name: Buffer.from('user.a'), value: Buffer.from('1') }, { name: Buffer.from('user.b'), value: Buffer.alloc(0) }];
    assert.deepEqual(writeXattrs(path, want, false), []);
    assert.deepEqual(native.llistxattr(Buffer.from(path)).map(String).sort(), ['user.a', 'user.b', 'user.old']);
    assert.deepEqual(writeXattrs(path, want, true), []);
    assert.deepEqual(new XattrReader().read(path, 1n), want);
    const refused = writeXattrs(path, [{ name: Buffer.from('bogus.ns'), value: Buffer.from('1') }, { name: Buffer.from('user.c'), value: Buffer.from('3') }], true);
    assert.deepEqual(refused.map((r) => [r.name.toString(), r.code]), [['bogus.ns', 'ENOTSUP']]);
    assert.deepEqual(new XattrReader().read(path, 1n)?.map((x) => x.name.toString()), ['user.c']);
    assert.equal(writeXattrs(path, undefined, true).length, 0);
    assert.equal(new XattrReader().read(path, 1n), undefined);
  });

  it('xattrDifference names what differs from the snapshot\'s attributes: a value, one missing, one extra; refused names are left aside', async (t) => {
    if (skip) return t.skip(skip);
    const path = join(dir, 'compare');
    await fs.writeFile(path, '');
    const x = (name: string, value: string) => ({ name: Buffer.from(name), value: Buffer.from(value) });
    execFileSync('setfattr', ['-n', 'user.a', '-v', '1', path]);
    execFileSync('setfattr', ['-n', 'user.b', '-v', '2', path]);
    assert.equal(xattrDifference(path, [x('user.a', '1'), x('user.b', '2')]), undefined);
    assert.equal(xattrDifference(path, [x('user.a', '1'), x('user.b', 'two')]), 'restored extended attribute user.b differs from the snapshot\'s');
    assert.equal(xattrDifference(path, [x('user.a', '1'), x('user.b', '2'), x('user.c', '3')]), 'extended attribute user.c was not restored');
    assert.equal(xattrDifference(path, [x('user.a', '1')]), 'restored extended attributes the snapshot does not have: user.b');
    assert.equal(xattrDifference(path, undefined), 'restored extended attributes the snapshot does not have: user.a, user.b');
    assert.equal(xattrDifference(path, [x('user.a', '1'), x('user.c', '3')], [Buffer.from('user.b'), Buffer.from('user.c')]), undefined, 'what the target refused was warned of already');
  });
});

/**
 * Round trips through the real CLI: every kind of file and metadata in the
 * EVERYTHING fixture is backed up and restored, and the restored tree is
 * compared with the original, bytes and metadata.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, chmod, chown, readFile, rm, writeFile, mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';

const isRoot = process.getuid?.() === 0;

describe('backup and restore round trip', () => {
  let s: Sandbox;
  let src: string;

  before(async () => {
    s = await Sandbox.create();
    src = s.path('src');
    await buildTree(src, EVERYTHING);
    await s.ok(['init']);
  });
  after(async () => {
    await removeTree(s.dir);
  });

  it('restores every file type and all metadata exactly', async () => {
    const b = await s.ok(['backup', src]);
    assert.match(b.stdout, /snapshot [0-9a-f]{8} saved/);
    const target = s.path('restore-1');
    const r = await s.ok(['restore', 'latest', '--target', target, '--verify']);
    assert.match(r.stdout, /all match the snapshot/);
    await compareTrees(src, join(target, src));
  });

  // The restorer creates files and folders with their final mode and owner
  // when it can (a probe file measures what creating gives in the target);
  // these restores take the other paths: a umask that takes bits away, a
  // setgid target of another group, and files and folders already there.
  it('restores every mode and owner whatever the umask', async () => {
    for (const umask of [0o077, 0o000]) {
      const target = s.path(`restore-umask-${umask.toString(8)}`);
      const old = process.umask(umask);
      try {
        await s.ok(['restore', 'latest', '--target', target]);
      } finally {
        process.umask(old);
      }
      await compareTrees(src, join(target, src));
    }
  });

  it('restores owners and modes into a setgid target of another group', { skip: isRoot ? false : 'needs root to give the target another group' }, async () => {
    const target = s.path('restore-setgid');
    await mkdir(target);
    await chown(target, 0, 4321);
    await chmod(target, 0o2775);
    await s.ok(['restore', 'latest', '--target', target]);
    await compareTrees(src, join(target, src));
  });

  it('restores files over an earlier restore whose modes and owners were changed', async () => {
    const target = s.path('restore-over');
    const sizes = join(src, 'sizes');
    await s.ok(['restore', 'latest', '--target', target, '--include', sizes]);
    const text = join(target, sizes, 'text.txt');
    await chmod(text, 0o604);
    await chmod(dirname(text), 0o711);
    if (isRoot) await chown(text, 4321, 4321);
    await s.ok(['restore', 'latest', '--target', target, '--include', sizes]);
    await compareTrees(sizes, join(target, sizes));
  });

  it('an unchanged re-backup reads no file again and stores nothing new', async () => {
    const r = await s.ok(['backup', '--json', src]);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    assert.equal(summary['message_type'], 'summary');
    assert.equal(summary['files_new'], 0);
    assert.equal(summary['files_changed'], 0);
    assert.ok(summary['files_unmodified']! > 5);
    assert.equal(summary['bytes_read'], 0);
    // The restore above created a folder next to src, so the trees of the
    // folders above src (/, /tmp, the sandbox) changed; nothing else may.
    assert.ok(summary['blobs_added']! <= src.split('/').length - 1, `added ${summary['blobs_added']} blobs`);
    const snaps = await snapshotsOf(s);
    assert.equal(snaps.length, 2);
    assert.equal((snaps[1] as unknown as { parent: string }).parent, snaps[0]!.id);
  });

  it('a changed file is read again, the rest is not, and the new snapshot restores exactly', async () => {
    await appendFile(join(src, 'small.txt'), 'one more line\n').catch(async () => {
      await writeFile(join(src, 'small.txt'), 'new file\n');
    });
    await writeFile(join(src, 'added.bin'), Buffer.alloc(100_000, 7));
    const r = await s.ok(['backup', '--json', src]);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    assert.ok(summary['files_new']! + summary['files_changed']! >= 1);
    assert.ok(summary['bytes_read']! < 1_000_000, `read ${summary['bytes_read']} bytes for a small change`);
    const target = s.path('restore-2');
    const restored = await s.ok(['--json', 'restore', 'latest', '--target', target]);
    await compareTrees(src, join(target, src));
    const rs = JSON.parse(restored.stdout.trim().split('\n').pop()!) as Record<string, number>;
    assert.equal(rs['dirs_restored'], summary['total_dirs_processed'], 'a backup and its restore count the same folders');
    const diff = await s.ok(['diff', (await snapshotsOf(s))[1]!.id.slice(0, 8), 'latest']);
    assert.match(diff.stdout, /\+\s+.*added\.bin/);
  });

  it('restores only what --include names, with the folders above it', async () => {
    const target = s.path('restore-3');
    await mkdir(target);
    await s.ok(['restore', 'latest', '--target', target, '--include', join(src, 'added.bin')]);
    assert.deepEqual(await readFile(join(target, src, 'added.bin')), await readFile(join(src, 'added.bin')));
    await assert.rejects(stat(join(target, src, 'small.txt')));
  });

  it('dump writes a file to stdout and a folder as a tar stream', async () => {
    const file = await s.ok(['dump', 'latest', join(src, 'added.bin')]);
    assert.deepEqual(file.stdoutBytes, await readFile(join(src, 'added.bin')));
    const tar = await s.ok(['dump', 'latest', src]);
    assert.ok(tar.stdoutBytes.length > 100_000);
    assert.ok(tar.stdoutBytes.includes(Buffer.from('added.bin')));
  });

  it('ls lists the files of a snapshot, ls -l their modes', async () => {
    const ls = await s.ok(['ls', 'latest', src]);
    assert.ok(ls.stdout.split('\n').includes(join(src, 'added.bin')));
    const long = await s.ok(['ls', '-l', 'latest', src]);
    assert.match(long.stdout, /^-rwsr-xr-x /m);
  });

  it('stats reports sizes and ratios', async () => {
    const r = await s.ok(['stats', '--json']);
    const st = JSON.parse(r.stdout) as Record<string, number>;
    assert.equal(st['snapshots_count'], 3);
    assert.ok(st['dedup_ratio']! > 2, `dedup ratio ${st['dedup_ratio']}`);
    assert.ok(st['total_stored_size']! > 0 && st['total_stored_size']! <= st['repository_size']!);
    assert.equal(st['missing_blobs'], 0);
  });
});

describe('snapshot selection and metadata', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create();
    await mkdir(s.path('a'));
    await writeFile(s.path('a', 'f'), 'a');
    await mkdir(s.path('b'));
    await writeFile(s.path('b', 'f'), 'b');
    await s.ok(['init']);
  });
  after(async () => {
    await rm(s.dir, { recursive: true, force: true });
  });

  it('records --host, --tag and --time, and `latest` honours the filters', async () => {
    await s.ok(['backup', '--host', 'alpha', '--tag', 'daily,web', '--time', '2024-03-05 14:15:16', s.path('a')]);
    await s.ok(['backup', '--host', 'beta', s.path('b')]);
    const snaps = await snapshotsOf(s);
    assert.equal(snaps.length, 2);
    const alpha = snaps.find((x) => x.hostname === 'alpha')!;
    assert.deepEqual(alpha.tags, ['daily', 'web']);
    assert.deepEqual(alpha.paths, [s.path('a')]);
    assert.equal(new Date(alpha.time).getTime(), new Date(2024, 2, 5, 14, 15, 16).getTime());
    for (const key of ['id', 'time', 'hostname', 'paths', 'tags']) assert.ok(key in alpha);
    const viaHost = await s.ok(['dump', 'latest', '--host', 'alpha', join(s.path('a'), 'f')]);
    assert.equal(viaHost.stdout, 'a');
    const viaTag = await s.ok(['ls', 'latest', '--tag', 'web']);
    assert.match(viaTag.stdout, /\/a\/f$/m);
    const viaPrefix = await s.ok(['dump', alpha.id.slice(0, 6), join(s.path('a'), 'f')]);
    assert.equal(viaPrefix.stdout, 'a');
  });

  it('excludes by pattern, by file and caches', async () => {
    await writeFile(s.path('a', 'skip.tmp'), 'x');
    await mkdir(s.path('a', 'cache'));
    await writeFile(s.path('a', 'cache', 'CACHEDIR.TAG'), 'Signature: 8a477f597d28d172789f06886806bc55\n');
    await writeFile(s.path('a', 'cache', 'blob'), 'cached');
    await mkdir(s.path('a', 'cache', 'sub', 'deeper'), { recursive: true });
    await writeFile(s.path('a', 'cache', 'sub', 'deeper', 'blob'), 'cached');
    await mkdir(s.path('a', 'skipdir', 'sub'), { recursive: true });
    await writeFile(s.path('a', 'skipdir', 'sub', 'file'), 'x');
    await mkdir(s.path('a', 'zz', 'after'), { recursive: true });
    await writeFile(s.path('a', 'zz', 'after', 'kept'), 'kept');
    await writeFile(s.path('a', 'list-excluded'), 'x');
    await writeFile(s.path('excludes.txt'), '# comment\nlist-excluded\n');
    await s.ok(['backup', '--exclude', '*.tmp', '--exclude', 'skipdir', '--exclude-file', s.path('excludes.txt'), '--exclude-caches', s.path('a')]);
    const ls = (await s.ok(['ls', 'latest', '--path', s.path('a')])).stdout;
    assert.doesNotMatch(ls, /skip\.tmp/);
    assert.doesNotMatch(ls, /list-excluded/);
    assert.doesNotMatch(ls, /cache\/blob/);
    assert.doesNotMatch(ls, /cache\/sub/);
    assert.doesNotMatch(ls, /skipdir/);
    // Folders after the skipped ones are all there.
    assert.match(ls, /\/a\/zz\/after\/kept$/m);
    assert.match(ls, /cache\/CACHEDIR\.TAG/);
    assert.match(ls, /\/a\/f$/m);
  });

  it('a stream backed up from stdin dumps back identical', async () => {
    const data = Buffer.alloc(3_000_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
    await s.ok(['backup', '--stdin', '--stdin-filename', 'db.sql'], { input: data });
    const out = await s.ok(['dump', 'latest', '--path', '/db.sql', '/db.sql']);
    assert.deepEqual(out.stdoutBytes, data);
  });
});

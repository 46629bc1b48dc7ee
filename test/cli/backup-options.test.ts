/**
 * The paths and options that choose what a file backup takes, restic's way:
 * missing paths, --files-from, the exclude rules, --dry-run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { removeTree } from '../fixtures/tree.js';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

/** Every file in the sandbox's repository, with its size and mtime. */
const everything = async (s: Sandbox): Promise<string[]> => {
  const out: string[] = [];
  for (const e of await readdir(s.repo, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    const st = await stat(p);
    out.push(`${p} ${st.size} ${st.mtimeMs}`);
  }
  return out.sort();
};

/** The names of the objects of one type in the sandbox's repository. */
const objects = async (s: Sandbox, type: string): Promise<string[]> => (await readdir(join(s.repo, type), { recursive: true, withFileTypes: true }))
  .filter((e) => e.isFile()).map((e) => e.name).sort();

describe('backup: what is backed up', () => {
  let s: Sandbox;

  before(async () => {
    s = await Sandbox.create();
    await s.ok(['init']);
    await mkdir(s.path('a', 'sub'), { recursive: true });
    await writeFile(s.path('a', 'f'), 'f');
    await writeFile(s.path('a', 'sub', 'g'), 'g');
  });
  after(() => removeTree(s.dir));

  it('refuses, with exit 1 and nothing written, when no path given exists', async () => {
    const before = await Promise.all(['data', 'index', 'snapshots', 'locks'].map((t) => objects(s, t)));
    const r = await s.run(['backup', s.path('typo'), s.path('other-typo')]);
    failsWith(r, 1, /none of the paths given exists/);
    assert.match(r.stderr, /typo does not exist, skipping/);
    assert.deepEqual(await Promise.all(['data', 'index', 'snapshots', 'locks'].map((t) => objects(s, t))), before);
    assert.equal((await snapshotsOf(s)).length, 0);
  });

  it('skips a path that does not exist, backs up the others, and exits 3', async () => {
    const r = await s.run(['backup', s.path('a'), s.path('typo')]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /typo does not exist, skipping/);
    const [snap] = await snapshotsOf(s);
    assert.deepEqual(snap!.paths, [s.path('a')]);
    const ls = (await s.ok(['ls', 'latest'])).stdout;
    assert.match(ls, /\/a\/sub\/g$/m);
  });

  /** The paths in the latest snapshot below `root` (relative), files and folders. */
  const listed = async (root: string): Promise<string[]> => (await s.ok(['ls', 'latest'])).stdout.split('\n')
    .filter((l) => l.startsWith(`${root}/`)).map((l) => l.slice(root.length + 1)).sort();

  it('takes paths from --files-from (globs, comments), --files-from-verbatim and --files-from-raw', async () => {
    const root = s.path('from');
    await mkdir(join(root, 'x1'), { recursive: true });
    await mkdir(join(root, 'x2'));
    await mkdir(join(root, 'y'));
    await mkdir(join(root, 'star*'));
    await writeFile(join(root, 'x1', 'f'), '1');
    await writeFile(join(root, 'x2', 'f'), '2');
    await writeFile(join(root, 'y', 'f'), 'y');
    await writeFile(join(root, 'star*', 'f'), '*');
    await writeFile(join(root, 'raw name\n'), 'raw');
    await writeFile(s.path('globs.txt'), `# a comment\n\n  ${root}/x*  \n${root}/nothing-*\n`);
    await writeFile(s.path('verbatim.txt'), `${root}/star*\n`);
    await writeFile(s.path('raw.bin'), `${root}/raw name\n\0`);
    const r = await s.ok(['backup', '--files-from', s.path('globs.txt'), '--files-from-verbatim', s.path('verbatim.txt'), '--files-from-raw', '-'], { input: `${root}/y\0` });
    assert.match(r.stderr, /pattern ".*nothing-\*" does not match any files, skipping/);
    const [snap] = (await snapshotsOf(s)).slice(-1);
    assert.deepEqual(snap!.paths, [join(root, 'star*'), join(root, 'x1'), join(root, 'x2'), join(root, 'y')]);
    assert.deepEqual(await listed(root), ['star*', 'star*/f', 'x1', 'x1/f', 'x2', 'x2/f', 'y', 'y/f']);
    const raw = await s.ok(['backup', '--files-from-raw', s.path('raw.bin')]);
    assert.equal(raw.code, 0, raw.stderr);
    // A name with a newline, which only a NUL-separated list can give.
    assert.equal((await s.ok(['dump', 'latest', join(root, 'raw name\n')])).stdout, 'raw');
    failsWith(await s.run(['backup', '--files-from-raw', '-'], { input: `${root}/y` }), 2, /not ended by a NUL byte/);
    failsWith(await s.run(['backup', '--files-from', s.path('no-such-list')]), 2, /cannot read --files-from .*no-such-list/);
  });

  it('leaves out by --iexclude and --iexclude-file, ignoring case', async () => {
    const root = s.path('ix');
    await mkdir(join(root, 'Build', 'deep'), { recursive: true });
    await writeFile(join(root, 'Build', 'deep', 'f'), 'b');
    await writeFile(join(root, 'keep.txt'), 'k');
    await writeFile(join(root, 'DROP.LOG'), 'd');
    await writeFile(join(root, 'Other.Tmp'), 't');
    await writeFile(s.path('ipatterns.txt'), '# comment\n*.tmp\n');
    await s.ok(['backup', '--iexclude', 'build', '--iexclude', '*.log', '--iexclude-file', s.path('ipatterns.txt'), '--exclude', 'KEEP.TXT', root]);
    assert.deepEqual(await listed(root), ['keep.txt']);
  });

  it('leaves out files larger than --exclude-larger-than, folders and smaller files stay', async () => {
    const root = s.path('sizes');
    await mkdir(join(root, 'big-folder'), { recursive: true });
    await writeFile(join(root, 'big-folder', 'small'), Buffer.alloc(1024, 1));
    await writeFile(join(root, 'large'), Buffer.alloc(1025, 2));
    await writeFile(join(root, 'at-limit'), Buffer.alloc(1024, 3));
    await s.ok(['backup', '--exclude-larger-than', '1k', root]);
    assert.deepEqual(await listed(root), ['at-limit', 'big-folder', 'big-folder/small']);
    // A path given that is too large is left out too.
    await s.ok(['backup', '--exclude-larger-than', '1K', join(root, 'large'), join(root, 'at-limit')]);
    assert.deepEqual(await listed(root), ['at-limit']);
    failsWith(await s.run(['backup', '--exclude-larger-than', '1x', root]), 2, /bad --exclude-larger-than "1x"/);
  });

  it('keeps only the tag file of a folder tagged for --exclude-if-present, with and without a header', async () => {
    const root = s.path('tags');
    for (const d of ['plain', 'headed', 'wrong-header', 'cache']) await mkdir(join(root, d, 'sub', 'deeper'), { recursive: true });
    for (const d of ['plain', 'headed', 'wrong-header', 'cache']) await writeFile(join(root, d, 'sub', 'deeper', 'f'), d);
    await writeFile(join(root, 'plain', '.nobackup'), '');
    await writeFile(join(root, 'headed', 'TAG'), 'holdfast: skip me\nmore');
    await writeFile(join(root, 'wrong-header', 'TAG'), 'something else');
    await writeFile(join(root, 'cache', 'CACHEDIR.TAG'), 'Signature: 8a477f597d28d172789f06886806bc55\n');
    await mkdir(join(root, 'zz'));
    await writeFile(join(root, 'zz', 'after'), 'z');
    await s.ok(['backup', '--exclude-if-present', '.nobackup', '--exclude-if-present', 'TAG:holdfast: skip', '--exclude-caches', root]);
    assert.deepEqual(await listed(root), [
      'cache', 'cache/CACHEDIR.TAG', 'headed', 'headed/TAG', 'plain', 'plain/.nobackup',
      'wrong-header', 'wrong-header/TAG', 'wrong-header/sub', 'wrong-header/sub/deeper', 'wrong-header/sub/deeper/f', 'zz', 'zz/after',
    ]);
  });

  it('--dry-run reads and chunks everything, reports what a backup would add, and writes nothing', async () => {
    const root = s.path('dry');
    await mkdir(root);
    await writeFile(join(root, 'old'), Buffer.alloc(200_000, 7));
    await s.ok(['backup', root]);
    await writeFile(join(root, 'new'), randomBytes(300_000));
    const before = await everything(s);
    const text = await s.ok(['backup', '--dry-run', root]);
    assert.match(text.stdout, /^Would add: +[\d.]+ KiB \([\d.]+ KiB stored\)$/m);
    assert.match(text.stdout, /dry run: nothing was written/);
    assert.doesNotMatch(text.stdout, /snapshot [0-9a-f]+ saved/);
    const json = await s.ok(['backup', '-n', '--json', root]);
    const dry = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(dry['dry_run'], true);
    assert.equal(dry['snapshot_id'], undefined);
    await s.ok(['backup', '-n', '--stdin', '--stdin-filename', 'x'], { input: randomBytes(100_000) });
    assert.deepEqual(await everything(s), before);
    // What the dry run said would be added is what a real backup adds.
    const real = JSON.parse((await s.ok(['backup', '--json', root])).stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(dry['files_new'], 1);
    assert.equal(dry['files_unmodified'], 1);
    for (const k of ['files_new', 'files_changed', 'files_unmodified', 'data_added', 'blobs_added', 'total_bytes_processed']) assert.equal(dry[k], real[k], k);
    assert.ok((real['data_added'] as number) >= 300_000);
    failsWith(await s.run(['backup', '--dry-run', '--image', join(root, 'old')]), 2, /--dry-run does not work with --image/);
  });

  it('--force reads every file again, yet keeps the parent: recorded, and unchanged files counted as unchanged', async () => {
    const root = s.path('forced');
    await mkdir(join(root, 'd'), { recursive: true });
    await writeFile(join(root, 'small'), 'small\n');
    await writeFile(join(root, 'd', 'mid'), randomBytes(700_000));
    await writeFile(join(root, 'd', 'other'), randomBytes(20_000));
    const summary = (r: { stdout: string }): Record<string, unknown> => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    const first = summary(await s.ok(['backup', '--json', root]));
    const again = summary(await s.ok(['backup', '--json', '--force', root]));
    assert.deepEqual([again['files_new'], again['files_changed'], again['files_unmodified']], [0, 0, 3]);
    assert.equal(again['bytes_read'], 720_006, 'every file was read again');
    await writeFile(join(root, 'd', 'other'), randomBytes(20_000));
    const third = summary(await s.ok(['backup', '--json', '--force', root]));
    assert.deepEqual([third['files_new'], third['files_changed'], third['files_unmodified']], [0, 1, 2]);
    const snaps = await snapshotsOf(s);
    const parentOf = (id: unknown): string | undefined => (snaps.find((x) => x.id === id) as { parent?: string } | undefined)?.parent;
    assert.equal(parentOf(again['snapshot_id']), first['snapshot_id']);
    assert.equal(parentOf(third['snapshot_id']), again['snapshot_id']);
  });

  // A lower bound on the time only: a slow machine makes it longer, never shorter.
  it('--limit-upload and --limit-download hold a backup and a restore to the rate (KiB/s)', async () => {
    const root = s.path('limited');
    await mkdir(root);
    const data = randomBytes(192 * 1024);
    await writeFile(join(root, 'f'), data);
    let t = performance.now();
    await s.ok(['--limit-upload', '64', 'backup', root]);
    // The bucket starts with a second's worth (64 KiB): the other 128 KiB take 2 s.
    assert.ok(performance.now() - t >= 2000, `the backup took ${performance.now() - t} ms`);
    t = performance.now();
    await s.ok(['--limit-download', '64', 'restore', 'latest', '--target', s.path('limited-restore')]);
    assert.ok(performance.now() - t >= 2000, `the restore took ${performance.now() - t} ms`);
    assert.deepEqual(await readFile(join(s.path('limited-restore'), root, 'f')), data);
    failsWith(await s.run(['--limit-upload', '1.5', 'snapshots']), 2, /bad --limit-upload "1.5"/);
  });
});


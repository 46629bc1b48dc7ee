/**
 * `holdfast verify-restore` of image snapshots, through the real CLI: an
 * ext4 image made by `mkfs.ext4 -d` verifies clean (e2fsck through the FUSE
 * view, every file read); an image whose file system was damaged before the
 * backup (debugfs `clri` of a file's inode) reports e2fsck's finding and
 * exit 17; a partitioned disk is checked per partition, at its offset, and a
 * partition holding no ext file system is listed, not checked. No mount and
 * no scratch folder is left behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { pseudoRandomBytes } from '../fixtures/tree.js';
import { debugfs, makeDisk, makeExtImage, missingTools } from './ext-images.js';

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;
const skip = missingTools('mkfs.ext4', 'debugfs', 'e2fsck', 'sfdisk', 'mkswap') ?? (existsSync('/dev/fuse') ? undefined : 'needs FUSE (/dev/fuse)');

interface Fs {
  path: string; kind?: string; offset: number; size: number; checked: boolean; reason?: string;
  e2fsck?: { status: string; exit_code?: number; output?: string; reason?: string };
  files: number; bytes: number; failed: { path: string; error: string }[]; restorable: boolean;
}
interface Result { kind: string; restorable: boolean; filesystems: Fs[] }

const parse = (r: RunResult): Result => JSON.parse(r.stdout) as Result;

/** Mount points of holdfast FUSE file systems now in the system's mount table. */
async function holdfastMounts(): Promise<string[]> {
  return (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => l.startsWith('holdfast'));
}

describe('verify-restore of image snapshots', { skip, timeout: 180_000 }, () => {
  let s: Sandbox;
  let src: string;
  let image: string;
  /** Regular files in the tree (and so in the image). */
  const FILES = 25;

  before(async () => {
    s = await Sandbox.create('holdfast-verify-image-');
    src = s.path('src');
    await mkdir(join(src, 'docs'), { recursive: true });
    for (let i = 0; i < FILES - 1; i++) await writeFile(join(src, 'docs', `f${i}.txt`), `file ${i}\n`.repeat(50 * (i + 1)));
    await writeFile(join(src, 'big.bin'), pseudoRandomBytes('big', 3_000_000));
    image = s.path('fs.img');
    await makeExtImage(image, src, '16M');
    await s.ok(['init']);
  });
  after(() => s.remove());

  it('an ext4 image verifies clean: e2fsck through the FUSE view, every file read; nothing is left mounted', async () => {
    await s.ok(['backup', '-q', '--image', image]);
    const scratch = s.path('scratch');
    const r = parse(await s.ok(['--json', 'verify-restore', 'latest', '--scratch', scratch]));
    assert.equal(r.kind, 'image');
    assert.equal(r.restorable, true, JSON.stringify(r));
    assert.equal(r.filesystems.length, 1);
    const f = r.filesystems[0]!;
    assert.deepEqual([f.path, f.kind, f.offset, f.size, f.checked], ['/', 'ext4', 0, 16 << 20, true]);
    assert.equal(f.files, FILES);
    assert.ok(f.bytes > 3_000_000, String(f.bytes));
    assert.deepEqual(f.failed, []);
    if (asRoot) assert.deepEqual(f.e2fsck, { status: 'clean', exit_code: 0 });
    else assert.equal(f.e2fsck?.status, 'skipped');
    assert.equal(existsSync(scratch), false);
    assert.deepEqual(await holdfastMounts(), []);
    const t = await s.ok(['verify-restore', 'latest']);
    assert.match(t.stdout, asRoot ? /^ {2}\/ \(ext4, 16\.0 MiB at byte 0\): e2fsck found it clean; 25 files \(.*\) read$/m : /e2fsck skipped: .*needs root/, t.stdout);
    assert.match(t.stdout, /^restorable: 1 file system checked in [\d.]+ s$/m, t.stdout);
  });

  it('an image whose file system was damaged before the backup: e2fsck\'s finding, exit 17', { skip: asRoot ? undefined : 'e2fsck runs through FUSE, which needs root here' }, async () => {
    const bad = s.path('bad.img');
    await copyFile(image, bad);
    // The inode of docs/f7.txt is cleared: its directory entry now names a free inode.
    await debugfs(bad, 'clri /docs/f7.txt');
    await s.ok(['backup', '-q', '--image', bad]);
    const r = await s.run(['verify-restore', 'latest']);
    assert.equal(r.code, 17, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^ {2}\/ \(ext4, .*\): e2fsck FOUND ERRORS \(exit 4\)/m, r.stdout);
    assert.match(r.stdout, /^ {4}\| Entry 'f7\.txt' in \/docs \(\d+\) has deleted\/unused inode \d+/m, r.stdout);
    assert.match(r.stdout, /^NOT RESTORABLE: 1 of 1 file system failed: \/$/m, r.stdout);
    const j = parse(await s.run(['--json', 'verify-restore', 'latest']));
    const f = j.filesystems[0]!;
    assert.equal(j.restorable, false);
    assert.equal(f.e2fsck?.status, 'damaged');
    assert.equal(f.e2fsck?.exit_code, 4);
    assert.match(f.e2fsck?.output ?? '', /f7\.txt/);
    // The reader meets the same damage.
    assert.deepEqual(f.failed.map((x) => x.path), ['/docs/f7.txt']);
    assert.deepEqual(await holdfastMounts(), []);
  });

  it('as another user than root: e2fsck is skipped, saying why, and every file is still read', { skip: asRoot ? undefined : 'needs root to run the CLI as nobody' }, async () => {
    await s.ok(['backup', '-q', '--image', image]);
    await chmod(s.dir, 0o755);
    await run('chmod', ['-R', 'a+rX', s.repo]);
    const r = await s.run(['--json', 'verify-restore', 'latest'], { asUser: { uid: 65534, gid: 65534 }, env: { HOLDFAST_CACHE_DIR: s.path('nobody-cache') }, cwd: s.dir });
    assert.equal(r.code, 0, r.stderr);
    const f = parse(r).filesystems[0]!;
    assert.equal(f.e2fsck?.status, 'skipped');
    assert.match(f.e2fsck?.reason ?? '', /mounting FUSE needs root/);
    assert.equal(f.files, FILES);
    assert.equal(f.restorable, true);
  });

  it('a damaged pack of an image snapshot: the file whose block it holds is named, exit 17', async () => {
    const repo = s.path('repo-damaged');
    await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: repo } });
    await s.ok(['backup', '-q', '--image', image], { env: { HOLDFAST_REPOSITORY: repo } });
    // The largest pack holds the image's blocks, most of them big.bin's (incompressible, where metadata compresses to little).
    const packs = (await run('find', [join(repo, 'data'), '-type', 'f', '-printf', '%s %p\\n'])).stdout.trim().split('\n').map((l) => l.split(' ') as [string, string]);
    const [size, pack] = packs.sort((a, b) => Number(b[0]) - Number(a[0]))[0]!;
    const bytes = await readFile(pack);
    bytes[Math.floor(Number(size) / 2)]! ^= 0xff;
    await writeFile(pack, bytes);
    const r = await s.run(['--json', 'verify-restore', 'latest'], { env: { HOLDFAST_REPOSITORY: repo } });
    assert.equal(r.code, 17, r.stderr);
    const f = parse(r).filesystems[0]!;
    assert.equal(f.restorable, false);
    assert.deepEqual(f.failed.map((x) => x.path), ['/big.bin']);
    assert.match(f.failed[0]!.error, /is damaged: authentication failed/);
  });

  it('Ctrl-C while e2fsck reads the image: exit 130, e2fsck ended, the FUSE view unmounted, the scratch removed', { skip: asRoot ? undefined : 'e2fsck runs through FUSE, which needs root here' }, async () => {
    await s.ok(['backup', '-q', '--image', image]);
    const scratch = s.path('scratch-int');
    // At 64 KiB/s each 128 KiB block of the image takes 2 s to fetch: e2fsck is still reading when it is interrupted.
    const started = s.start(['--limit-download', '64', 'verify-restore', 'latest', '--scratch', scratch]);
    const e2fsckOf = async (): Promise<string> => (await run('pgrep', ['-f', `e2fsck -fn ${scratch}/`]).catch(() => ({ stdout: '' }))).stdout.trim();
    while ((await e2fsckOf()) === '') {
      assert.equal(started.child.exitCode, null, 'verify-restore ended before e2fsck ran');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await holdfastMounts()).filter((l) => l.includes(scratch)).length, 1);
    started.child.kill('SIGINT');
    const r = await started.done;
    assert.equal(r.code, 130, `signal ${r.signal}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /^holdfast: interrupted: the restore test did not complete/m);
    assert.equal(await e2fsckOf(), '');
    assert.deepEqual((await holdfastMounts()).filter((l) => l.includes(scratch)), []);
    assert.equal(existsSync(scratch), false);
  });

  it('a partitioned disk: each ext partition checked at its offset; a swap partition listed, not checked', async () => {
    const swap = s.path('swap.img');
    await writeFile(swap, Buffer.alloc(4 << 20));
    await run('mkswap', ['-q', swap]);
    const disk = s.path('disk.img');
    const offsets = await makeDisk(disk, 'gpt', [
      { sizeMiB: 16, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', image },
      { sizeMiB: 4, type: '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F', image: swap },
    ]);
    await s.ok(['backup', '-q', '--image', disk]);
    const r = parse(await s.ok(['--json', 'verify-restore', 'latest']));
    assert.equal(r.restorable, true, JSON.stringify(r));
    const [p1, p2] = r.filesystems;
    assert.deepEqual([p1!.path, p1!.kind, p1!.offset, p1!.checked, p1!.files], ['/p1', 'ext4', offsets[0], true, FILES]);
    if (asRoot) assert.equal(p1!.e2fsck?.status, 'clean');
    assert.deepEqual([p2!.path, p2!.kind, p2!.offset, p2!.checked], ['/p2', 'swap', offsets[1], false]);
    assert.match(p2!.reason ?? '', /only ext2\/3\/4 file systems are checked/);
    assert.deepEqual(await holdfastMounts(), []);
  });
});

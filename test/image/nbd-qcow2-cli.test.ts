/**
 * Image backups from NBD exports and qcow2 files through the real CLI, with
 * the real qemu tools: an ext4 image (mkfs.ext4 -d) exported by qemu-nbd
 * over TCP and a unix socket, backed up, restored byte for byte and its
 * files read out of the snapshot; the same disk as a qcow2 file, whose
 * persistent dirty bitmaps make an incremental read only the clusters written
 * (qemu-io), restored with --format qcow2 and compared by qemu-img compare;
 * a bitmap removed, or left in-use by a qemu-nbd killed with the file open,
 * gives a full read and still a correct snapshot.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { freePort } from '../helpers/listening-child.js';
import { makeTree, mkExt4, qcow2Bitmaps, sh } from './images.js';
import { firstBlockOf, missingTools } from '../image-files/ext-images.js';
import { acquireLock, processIdentity } from '../../src/repo/lock.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { qcow2FileDisk } from '../../src/sources/image/nbd-input.js';

type Summary = Record<string, unknown> & {
  bytes_read: number; blocks_changed: number; blocks_unchanged: number; blocks_unused: number; blocks_zero: number; blocks: number;
  format?: string; dirty_bitmap?: string; read_since?: string; filesystems: { type: string; understood: boolean }[];
};
const summaryOf = (r: RunResult): Summary => JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;


/** Starts qemu-nbd in the background (--fork: it returns once it listens); returns its pid. */
function qemuNbd(pidFile: string, args: string[]): number {
  sh('qemu-nbd', ['--fork', '--pid-file', pidFile, '--persistent', ...args]);
  return Number(spawnSync('cat', [pidFile]).stdout.toString().trim());
}


describe('NBD and qcow2 image sources through the CLI', { skip: missingTools('mkfs.ext4', 'debugfs', 'qemu-img', 'qemu-nbd', 'qemu-io'), timeout: 240_000 }, () => {
  let s: Sandbox;
  let raw: string;
  let tmp: string;
  const pids: number[] = [];
  const env = (): Record<string, string> => ({ TMPDIR: tmp });
  const ok = (args: string[], want = 0): Promise<RunResult> => s.ok(args, { env: env() }, want);
  const run = (args: string[]): Promise<RunResult> => s.run(args, { env: env() });
  /** Nothing of a private qemu-nbd is left: its socket folder is removed. */
  const noQemuLeft = async (): Promise<void> => assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('holdfast-nbd-')), []);

  before(async () => {
    s = await Sandbox.create('holdfast-nbd-cli-');
    tmp = s.path('tmp');
    await mkdir(tmp);
    await makeTree(s.path('tree'));
    raw = s.path('raw.img');
    mkExt4(raw, 32, s.path('tree'), ['-b', '4096']);
    await s.ok(['init']);
  });
  after(async () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await s.remove();
  });

  it('backs up an ext4 disk exported over nbd:// and nbd+unix://, restores it byte for byte, and reads its files', async () => {
    const port = await freePort();
    pids.push(qemuNbd(s.path('tcp.pid'), ['--read-only', '-f', 'raw', '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), raw]));
    const uri = `nbd://127.0.0.1:${port}/disk`;
    const first = summaryOf(await ok(['backup', '--json', '--image', uri]));
    assert.deepEqual(first.filesystems.map((f) => [f.type, f.understood]), [['ext4', true]]);
    assert.ok(first.blocks_unused > 0, 'blocks no file system uses are skipped over NBD as for files');
    await ok(['restore-image', 'latest', '--to', s.path('tcp.img')]);
    assert.ok((await readFile(s.path('tcp.img'))).equals(await readFile(raw)), 'restored image equals the exported one');
    const listing = (await ok(['ls', 'latest', '/etc/app'])).stdout;
    assert.match(listing, /conf-39\.txt/);
    const dumped = (await ok(['dump', 'latest', '/var/lib/db/data.bin'])).stdoutBytes;
    assert.ok(dumped.equals(await readFile(s.path('tree', 'var', 'lib', 'db', 'data.bin'))));
    const snaps = JSON.parse((await ok(['snapshots', '--json'])).stdout) as { paths: string[] }[];
    assert.deepEqual(snaps.map((x) => x.paths), [[uri]], 'the snapshot names the URI, not a path made of it');

    const sock = s.path('nbd.sock');
    pids.push(qemuNbd(s.path('unix.pid'), ['--read-only', '-f', 'raw', '-x', 'disk', '--socket', sock, raw]));
    await ok(['backup', '--image', `nbd+unix:///disk?socket=${sock}`]);
    await ok(['restore-image', 'latest', '--to', s.path('unix.img')]);
    assert.ok((await readFile(s.path('unix.img'))).equals(await readFile(raw)));

    const refused = await run(['backup', '--image', `nbd://127.0.0.1:${port}/nosuch`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot open nbd:\/\/127\.0\.0\.1:\d+\/nosuch: the NBD server .* has no export "nosuch"/);
    const tls = await run(['backup', '--image', `nbds://127.0.0.1:${port}/disk`]);
    assert.equal(tls.code, 1);
    assert.match(tls.stderr, /TLS \(nbds\) is not supported/);
  });

  describe('a qcow2 disk with persistent dirty bitmaps', () => {
    let disk: string;
    let first: Summary;
    let fileBlock: number;
    let logBlock: number;
    const write = (pattern: number, offset: number, length: number): void => {
      sh('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x${pattern.toString(16)} ${offset} ${length}`, disk]);
    };
    const restoredEqual = async (name: string): Promise<void> => {
      await ok(['restore-image', 'latest', '--format', 'qcow2', '--to', s.path(name), '--verify']);
      sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', disk, s.path(name)]);
    };

    before(async () => {
      disk = s.path('disk.qcow2');
      sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
      fileBlock = await firstBlockOf(raw, '/var/lib/db/data.bin');
      logBlock = await firstBlockOf(raw, '/var/lib/db/log.txt');
    });

    it('the first backup reads the virtual disk and adds a bitmap; restore --format qcow2 writes an equal qcow2', async () => {
      first = summaryOf(await ok(['backup', '--json', '--block-size', '64K', '--image', disk]));
      assert.equal(first.format, 'qcow2');
      assert.match(first.dirty_bitmap!, /^holdfast-[0-9a-f]{16}-1$/);
      assert.equal(first.read_since, undefined);
      assert.deepEqual(qcow2Bitmaps(disk), { [first.dirty_bitmap!]: ['auto'] });
      assert.ok(first.blocks_unused > 0 && first.blocks_zero > 0, 'unused blocks and unallocated clusters are not read');
      await noQemuLeft();
      await restoredEqual('first.qcow2');
      await writeFile(s.path('taken.qcow2'), 'something');
      const refused = await run(['restore-image', 'latest', '--format', 'qcow2', '--to', s.path('taken.qcow2')]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /exists and holds 9 bytes; pass --force/);
      assert.equal(await readFile(s.path('taken.qcow2'), 'utf8'), 'something');
    });

    it('the next backup reads only the clusters written since, and the restore equals the disk', async () => {
      write(0xab, fileBlock * 4096, 8192);
      const second = summaryOf(await ok(['backup', '--json', '--image', disk]));
      assert.equal(second.read_since, first.dirty_bitmap);
      assert.match(second.dirty_bitmap!, /-2$/);
      assert.equal(second.bytes_read, 65536, 'one 64 KiB block read: the one written');
      assert.equal(second.blocks_changed, 1);
      assert.deepEqual(qcow2Bitmaps(disk), { [second.dirty_bitmap!]: ['auto'] }, 'the old bitmap is removed once the snapshot is saved');
      await noQemuLeft();
      await restoredEqual('second.qcow2');
      const dumped = (await ok(['dump', 'latest', '/var/lib/db/data.bin'])).stdoutBytes;
      assert.ok(dumped.subarray(0, 8192).equals(Buffer.alloc(8192, 0xab)));
    });

    it('scattered writes are read together into one slot of the backup, each block into its place', async () => {
      // Pieces of two files, apart from each other: their blocks share a slot of the backup, not the disk's order of bytes.
      const pieces = [fileBlock * 4096 + (1 << 20), logBlock * 4096, fileBlock * 4096 + (128 << 10), fileBlock * 4096 + (2 << 20) + 4096];
      pieces.forEach((o, i) => write(0x11 * (i + 1), o, 4096));
      const touched = new Set(pieces.flatMap((o) => [Math.floor(o / 65536), Math.floor((o + 4095) / 65536)]));
      const third = summaryOf(await ok(['backup', '--json', '--image', disk]));
      assert.match(third.read_since!, /-2$/);
      assert.equal(third.bytes_read, touched.size * 65536, 'only the blocks written are read');
      assert.equal(third.blocks_changed, touched.size);
      await noQemuLeft();
      await restoredEqual('scattered.qcow2');
    });

    it('beside an exclusive lock, an incremental (which opens the disk while the lock is taken) writes nothing and leaves the bitmaps as they were', async () => {
      const before = qcow2Bitmaps(disk);
      const snapshots = (await readdir(s.path('repo', 'snapshots'))).sort();
      const lock = await acquireLock(new LocalBackend(s.repo), { holder: processIdentity(), exclusive: true, operation: 'repair' });
      try {
        write(0x5c, fileBlock * 4096, 4096);
        const r = await run(['backup', '--json', '--image', disk]);
        assert.equal(r.code, 11, r.stderr);
        assert.match(r.stderr, /locked exclusively by repair/);
      } finally {
        await lock.release();
      }
      assert.deepEqual(qcow2Bitmaps(disk), before, 'the bitmap it added is removed; the parent\'s stays');
      assert.deepEqual((await readdir(s.path('repo', 'snapshots'))).sort(), snapshots);
      await noQemuLeft();
    });

    it('a bitmap name a snapshot records is never given again: a backup from an older parent does not take over the newer snapshot\'s bitmap', async () => {
      const snaps = (JSON.parse((await ok(['snapshots', '--json'])).stdout) as { id: string; time: string }[]).sort((a, b) => a.time.localeCompare(b.time));
      const [older, newest] = [snaps[snaps.length - 2]!.id, snaps[snaps.length - 1]!.id];
      write(0x71, fileBlock * 4096, 4096);
      // From the older parent, whose bitmap the newest's commit removed: a full read, under a name above the newest's.
      const b = summaryOf(await ok(['backup', '--json', '--parent', older, '--image', disk]));
      assert.match(b.dirty_bitmap!, /-4$/, 'above -3, which the newest snapshot records and the disk holds');
      write(0x72, logBlock * 4096, 4096);
      // From the newest: its bitmap was removed by the backup above, so every block is read, and the write of 0x71 is in it.
      const r = await ok(['backup', '--json', '--parent', newest, '--image', disk]);
      assert.match(r.stderr, /dirty bitmap holdfast-[0-9a-f]{16}-3 is no longer in the file; reading every block/);
      assert.match(summaryOf(r).dirty_bitmap!, /-5$/);
      await restoredEqual('older-parent.qcow2');
    });

    it('a disk that cannot be opened after its bitmap was added does not keep that bitmap', async () => {
      const before = qcow2Bitmaps(disk);
      await assert.rejects(qcow2FileDisk(disk).open('holdfast-test-added', 'holdfast-no-such-bitmap'), /qemu-nbd|bitmap/);
      assert.deepEqual(qcow2Bitmaps(disk), before);
    });

    it('a removed bitmap gives a full read, still correct', async () => {
      for (const b of Object.keys(qcow2Bitmaps(disk))) sh('qemu-img', ['bitmap', '--remove', disk, b]);
      write(0xcd, logBlock * 4096, 4096);
      const r = await ok(['backup', '--json', '--image', disk]);
      assert.match(r.stderr, /dirty bitmap holdfast-[0-9a-f]{16}-5 is no longer in the file; reading every block/);
      const full = summaryOf(r);
      assert.equal(full.read_since, undefined);
      assert.equal(full.bytes_read, first.bytes_read, 'every used block with data is read again');
      assert.deepEqual(Object.keys(qcow2Bitmaps(disk)), [full.dirty_bitmap]);
      await restoredEqual('third.qcow2');
    });

    it('a bitmap left in-use by a qemu killed with the file open gives a full read, still correct', async () => {
      const sock = s.path('rw.sock');
      const pid = qemuNbd(s.path('rw.pid'), ['-f', 'qcow2', '--socket', sock, disk]);
      pids.push(pid);
      sh('qemu-io', ['-f', 'raw', '-c', `write -P 0xee ${fileBlock * 4096 + 65536} 4096`, `nbd+unix:///?socket=${sock}`]);
      process.kill(pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 200));
      const [name] = Object.keys(qcow2Bitmaps(disk));
      assert.ok(qcow2Bitmaps(disk)[name!]!.includes('in-use'), 'the crash left the bitmap in-use');
      const r = await ok(['backup', '--json', '--image', disk]);
      assert.match(r.stderr, /is marked in-use .*reading every block/);
      const full = summaryOf(r);
      assert.equal(full.bytes_read, first.bytes_read);
      await restoredEqual('fourth.qcow2');
      const dumped = (await ok(['dump', 'latest', '/var/lib/db/data.bin'])).stdoutBytes;
      assert.ok(dumped.subarray(65536, 65536 + 4096).equals(Buffer.alloc(4096, 0xee)), 'the write the crashed qemu made is in the snapshot');
      // The next incremental trusts the new bitmap again.
      write(0x11, logBlock * 4096, 512);
      const next = summaryOf(await ok(['backup', '--json', '--image', disk]));
      assert.equal(next.read_since, full.dirty_bitmap);
      assert.equal(next.bytes_read, 65536);
      await restoredEqual('fifth.qcow2');
      await rm(s.path('rw.sock'), { force: true });
    });
  });
});

/**
 * Backups of a running VM's disk through QMP with a real qemu-system-x86_64
 * (no guest: `-machine none`, the 64 MiB qcow2 disk attached as a drive; the
 * "guest's" writes made with the monitor's qemu-io). A first backup reads
 * the whole disk and adds a persistent dirty bitmap; an incremental reads
 * only the clusters written since, and writes made after its point in time
 * are not in it; a backup that fails removes what it added; a backup killed
 * outright leaves the VM running, and the
 * next one removes what it left and succeeds; a VM without the bitmap gives
 * a full read. Every restore is compared byte for byte with the disk as it
 * was when its backup started, kept in the test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { memoryRepo } from '../helpers/memory-repo.js';
import { startVm, type TestVm, type VmBlockNode } from '../helpers/qemu-vm.js';
import { missingTools } from '../image-files/ext-images.js';
import type { QmpClient } from '../../src/sources/image/qmp-client.js';
import { qmpDisk } from '../../src/sources/image/qmp-disk.js';
import { withBitmapRotation } from '../../src/jobs/image/qcow2-bitmaps.js';
import { ImageBackup, type ImageBackupResult } from '../../src/jobs/image/image-backup.js';
import { openImageSnapshot } from '../../src/jobs/image/image-reader.js';

const DISK_BYTES = 64 << 20;
const K64 = 65536;
const OPEN_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'qmp-open-main.js');

type Summary = { bytes_read: number; blocks_changed: number; blocks: number; format?: string; dirty_bitmap?: string; read_since?: string };
const summaryOf = (r: RunResult): Summary => JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;

describe('backups of a running VM\'s disk through QMP', { skip: missingTools('qemu-system-x86_64', 'qemu-img'), timeout: 240_000 }, () => {
  let s: Sandbox;
  let vm: TestVm;
  let qmp: QmpClient;
  let source: string;
  let model: Buffer;
  let write: TestVm['write'];
  let bitmaps: TestVm['bitmaps'];
  const ok = (args: string[]): Promise<RunResult> => s.ok(args);

  /** Nothing a backup adds is left in the VM or beside its disk. */
  const nothingLeft = async (): Promise<void> => {
    assert.deepEqual(await qmp.execute('query-block-exports'), []);
    assert.deepEqual(await qmp.execute('query-block-jobs'), []);
    const nodes = await qmp.execute<VmBlockNode[]>('query-named-block-nodes', { flat: true });
    assert.deepEqual(nodes.map((n) => n['node-name']).filter((n) => n.startsWith('holdfast-')), []);
    assert.ok(Object.keys(await bitmaps()).every((b) => !b.startsWith('holdfast-tmp-')), 'no temporary bitmap');
    assert.deepEqual((await readdir(s.dir)).filter((n) => n.includes('holdfast-')), [], 'no fleecing image, no NBD socket');
  };
  const restoredEqual = async (expected: Buffer, name: string): Promise<void> => {
    await ok(['restore-image', 'latest', '--to', s.path(name)]);
    assert.ok((await readFile(s.path(name))).equals(expected), 'the restored disk is the disk as it was when the backup started');
  };

  before(async () => {
    s = await Sandbox.create('holdfast-qmp-');
    vm = await startVm(s.dir, DISK_BYTES);
    ({ qmp, source, model } = vm);
    write = (p, o, l) => vm.write(p, o, l);
    bitmaps = () => vm.bitmaps();
    await write(0x5a, 0, 4 << 20);
    await write(0x6b, 32 << 20, 1 << 20);
    await ok(['init']);
  });
  after(async () => {
    await vm?.stop();
    await s.remove();
  });

  let first: Summary;
  it('a first backup reads the whole disk at one instant, adds a persistent bitmap, and leaves nothing behind', async () => {
    first = summaryOf(await ok(['backup', '--json', '--block-size', '64K', '--image', source]));
    assert.equal(first.format, 'qcow2');
    assert.match(first.dirty_bitmap!, /^holdfast-[0-9a-f]{16}-1$/);
    assert.equal(first.read_since, undefined);
    assert.equal(first.bytes_read, 5 << 20, 'what the guest wrote; the clusters never written read as zeros without reading');
    assert.deepEqual(await bitmaps(), { [first.dirty_bitmap!]: true });
    await nothingLeft();
    await restoredEqual(model, 'first.img');
    const snaps = JSON.parse((await ok(['snapshots', '--json'])).stdout) as { paths: string[] }[];
    assert.deepEqual(snaps.map((x) => x.paths), [[source]]);
  });

  it('an incremental reads only the clusters written since; what the guest writes after its point in time is not in it', async () => {
    // On a repository of its own, in process, to write between the point in time and the read.
    const { repo } = await memoryRepo();
    const backup = (parent: ImageBackupResult | null, during?: () => Promise<void>): Promise<ImageBackupResult> => withBitmapRotation(
      qmpDisk(source), repo.config.id, parent?.snapshot.image, parent?.snapshot.image?.bitmap !== undefined ? [parent.snapshot.image.bitmap] : [], (m) => assert.fail(m), (e) => e as Error,
      async (input, qcow2) => {
        await during?.();
        return new ImageBackup(repo, { input, paths: [source], blockSize: K64, qcow2, parent, workers: 1 }).run();
      },
    );
    const full = await backup(null);
    await write(0x11, 1 << 20, K64);
    await write(0x22, 10 << 20, K64);
    await write(0x33, (40 << 20) + K64, 2 * K64);
    const atStart = Buffer.from(model);
    const incremental = await backup(full, async () => {
      await write(0x44, 1 << 20, K64);
      await write(0x55, 50 << 20, K64);
    });
    const img = incremental.snapshot.image!;
    assert.equal(img.readSince, full.snapshot.image!.bitmap);
    assert.equal(img.counts.changed, 4, 'the four clusters written before the point in time');
    assert.equal(img.counts.bytesRead, 4 * K64, 'and nothing else is read');
    const reader = openImageSnapshot(repo, incremental.snapshot);
    assert.ok((await reader.read(0, DISK_BYTES)).equals(atStart), 'the snapshot is the disk at the point in time, not after the writes made during the backup');
    const after = await bitmaps();
    assert.equal(after[img.bitmap!], true, 'the new bitmap records from the point in time');
    assert.equal(after[full.snapshot.image!.bitmap!], undefined, 'the parent\'s bitmap is removed once the snapshot is saved');
    await nothingLeft();
  });

  it('a backup that fails after its point in time removes what it added to the VM and its new bitmap, keeping the parent\'s', async () => {
    const before = await bitmaps();
    const { repo } = await memoryRepo();
    await assert.rejects(withBitmapRotation(qmpDisk(source), repo.config.id, undefined, [], () => undefined, (e) => e as Error, async (input) => {
      assert.equal((await input.random!.read(0, K64))[0], 0x5a, 'it was reading the disk');
      throw new Error('the repository went away');
    }), /the repository went away/);
    assert.deepEqual(await bitmaps(), before);
    await nothingLeft();
  });

  it('a backup killed outright leaves the VM running; the next one removes what it left and reads only what changed', async () => {
    const killed = spawn(process.execPath, [OPEN_MAIN, source, first.dirty_bitmap!.replace(/1$/, '2'), first.dirty_bitmap!], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = await once(killed.stdout!, 'data') as [Buffer];
    assert.equal(line.toString(), 'open\n');
    assert.equal((await qmp.execute<unknown[]>('query-block-exports')).length, 1, 'it was reading from its export');
    killed.kill('SIGKILL');
    await once(killed, 'exit');
    const status = await qmp.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'prelaunch', 'the VM is still there, as it was');

    const atStart = Buffer.from(model);
    const next = summaryOf(await ok(['backup', '--json', '--block-size', '64K', '--image', source]));
    assert.equal(next.read_since, first.dirty_bitmap);
    assert.equal(next.dirty_bitmap, first.dirty_bitmap!.replace(/1$/, '3'), 'a name above the one the killed backup left, never that one again');
    // Since the first backup: 1M (twice), 10M, 40M+64K (two clusters), 50M.
    assert.equal(next.blocks_changed, 5);
    assert.equal(next.bytes_read, 5 * K64);
    assert.deepEqual(Object.keys(await bitmaps()).filter((b) => b.startsWith(next.dirty_bitmap!.replace(/3$/, ''))), [next.dirty_bitmap], 'the parent\'s and the killed backup\'s are removed');
    await nothingLeft();
    await restoredEqual(atStart, 'after-kill.img');
  });

  it('a VM without the bitmap gives a full read, still correct', async () => {
    for (const b of Object.keys(await bitmaps())) await qmp.execute('block-dirty-bitmap-remove', { node: 'drive0', name: b });
    await write(0x66, 60 << 20, K64);
    const r = await ok(['backup', '--json', '--block-size', '64K', '--image', source]);
    assert.match(r.stderr, /dirty bitmap holdfast-[0-9a-f]{16}-3 is no longer in the file; reading every block/);
    const full = summaryOf(r);
    assert.equal(full.read_since, undefined);
    assert.equal(full.bytes_read, (5 << 20) + 5 * K64, 'every cluster with data is read again');
    assert.deepEqual(Object.keys(await bitmaps()), [full.dirty_bitmap]);
    await nothingLeft();
    await restoredEqual(model, 'full.img');
  });

  it('a VM that is not there, or a drive it does not have, fails with the reason and no snapshot', async () => {
    const gone = await s.run(['backup', '--image', `qmp:${s.path('nothing.qmp')}#drive0`]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /cannot open qmp:.*nothing\.qmp#drive0: cannot reach the QMP socket/);
    const nodrive = await s.run(['backup', '--image', source.replace(/#drive0$/, '#drive9')]);
    assert.equal(nodrive.code, 1);
    assert.match(nodrive.stderr, /has no drive or block node called drive9 \(query-block lists drive0\)/);
    const bad = await s.run(['backup', '--image', 'qmp:relative.qmp#drive0']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /bad VM disk source "qmp:relative\.qmp#drive0"/);
  });
});

/**
 * The pieces of the snapshot providers that do not need btrfs: the freeze
 * (`whileFrozen` on a real ext4 loop mount: frozen while the snapshot is
 * taken, thawed after it, also when it fails, and at its bound when it
 * takes too long), the names of leftovers and their owners, and the LVM
 * provider up to the point where it needs device-mapper (finding the
 * logical volume from a mount, the commands it runs, a volume group's
 * leftovers); the rest skips with the reason where device-mapper is missing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { whileFrozen } from '../../src/sources/fs-snapshots/freeze.js';
import { withFsSnapshots } from '../../src/sources/fs-snapshots/fs-snapshots.js';
import { logicalVolumeOf, lvmCommands, lvmLeftovers, mountHolding, splitDmName } from '../../src/sources/fs-snapshots/lvm.js';
import { ownerOf, ownerRunning, snapshotName } from '../../src/sources/fs-snapshots/tools.js';
import { Sandbox } from '../helpers/cli.js';
import { loopSkip, mountLoopFs, type LoopFs } from '../helpers/loop-fs.js';

/** Whether the file system at `mountPoint` is frozen: freezing it again is refused (EBUSY) only then. */
function frozen(mountPoint: string): boolean {
  const r = spawnSync('fsfreeze', ['--freeze', mountPoint], { encoding: 'utf8' });
  if (r.status === 0) {
    spawnSync('fsfreeze', ['--unfreeze', mountPoint]);
    return false;
  }
  assert.match(r.stderr, /busy/i);
  return true;
}

describe('fsfreeze around a snapshot (ext4 on a loop device)', { skip: loopSkip('ext4') }, () => {
  let s: Sandbox;
  let disk: LoopFs;
  before(async () => {
    s = await Sandbox.create();
    disk = mountLoopFs(s.dir, 'ext4', 32);
  });
  after(async () => {
    disk?.unmount();
    await s.remove();
  });

  it('is frozen while the snapshot is taken and thawed after', async () => {
    const warnings: string[] = [];
    const during = await whileFrozen(disk.mountPoint, 10_000, () => Promise.resolve(frozen(disk.mountPoint)), (m) => warnings.push(m));
    assert.equal(during, true);
    assert.equal(frozen(disk.mountPoint), false);
    await fs.writeFile(join(disk.mountPoint, 'after'), 'writable\n');
    assert.deepEqual(warnings, []);
  });

  it('is thawed when the snapshot fails, and the failure goes on', async () => {
    await assert.rejects(whileFrozen(disk.mountPoint, 10_000, () => {
      assert.equal(frozen(disk.mountPoint), true);
      return Promise.reject(new Error('lvcreate: no space left in the volume group'));
    }, () => undefined), /no space left/);
    assert.equal(frozen(disk.mountPoint), false);
  });

  it('is thawed at its bound when the snapshot takes longer, with a warning', async () => {
    const warnings: string[] = [];
    // A write blocks on a frozen file system: it completes once the bound thaws it.
    await whileFrozen(disk.mountPoint, 300, () => fs.writeFile(join(disk.mountPoint, 'blocked'), 'waited\n'), (m) => warnings.push(m));
    assert.equal(await fs.readFile(join(disk.mountPoint, 'blocked'), 'utf8'), 'waited\n');
    assert.equal(frozen(disk.mountPoint), false);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /was thawed after 0\.3s, before its snapshot was taken: the snapshot is only crash-consistent/);
  });

  it('--fs-snapshot lvm on a file system that is not on LVM: an error, nothing frozen; auto reads it in place', async () => {
    const dir = join(disk.mountPoint, 'data');
    await fs.mkdir(dir, { recursive: true });
    assert.equal(await logicalVolumeOf(dir), undefined);
    const warnings: string[] = [];
    await assert.rejects(withFsSnapshots([dir], { kind: 'lvm', host: 'h', stateDir: s.path('state'), freeze: true, onWarning: (m) => warnings.push(m) }, () => Promise.resolve()),
      (e: Error) => e.name === 'SnapshotFailedError' && /is on ext4, not on an LVM logical volume: --fs-snapshot lvm cannot snapshot it/.test(e.message));
    assert.equal(frozen(disk.mountPoint), false);
    const views = await withFsSnapshots([dir], { kind: 'auto', host: 'h', stateDir: s.path('state'), onWarning: (m) => warnings.push(m) }, (v) => Promise.resolve(v));
    assert.deepEqual(views, []);
    assert.match(warnings.at(-1)!, /no snapshot \(its file system, ext4, is neither btrfs nor on an LVM logical volume\); read in place/);
  });
});

describe('snapshot names', () => {
  it('name their host, process and time; another host\'s, or a foreign name, have no owner here', () => {
    const name = snapshotName('web-1.example', 4242, 1_700_000_000_000);
    assert.equal(name, 'holdfast-snapshot-web_1.example-4242-1700000000000');
    assert.deepEqual(ownerOf(`.${name}`, 'web-1.example'), { pid: 4242, time: 1_700_000_000_000 });
    assert.equal(ownerOf(name, 'web-2.example'), undefined);
    assert.equal(ownerOf('holdfast-snapshot-web_1.example', 'web-1.example'), undefined);
  });

  it('a leftover is one whose owner is gone, or whose pid started after the snapshot (reused)', async () => {
    assert.equal(await ownerRunning({ pid: process.pid, time: Date.now() }), true);
    assert.equal(await ownerRunning({ pid: process.ppid, time: Date.now() }), true);
    // The parent process started before this test: a "snapshot" from a year before it names a reused pid.
    assert.equal(await ownerRunning({ pid: process.ppid, time: Date.now() - 365 * 86_400_000 }), false);
    assert.equal(await ownerRunning({ pid: 2 ** 22 + 1, time: Date.now() }), false);
  });
});

describe('LVM up to device-mapper', () => {
  it('splits device-mapper names of LVM, whose dashes are doubled', () => {
    assert.deepEqual(splitDmName('vg0-root'), { vg: 'vg0', lv: 'root' });
    assert.deepEqual(splitDmName('my--vg-data--lv'), { vg: 'my-vg', lv: 'data-lv' });
    assert.deepEqual(splitDmName('a--b--c-d'), { vg: 'a-b-c', lv: 'd' });
    assert.equal(splitDmName('nodash'), undefined);
    assert.equal(splitDmName('only--doubled'), undefined);
  });

  it('finds the mount of the volume holding a path: the longest mount point above it', () => {
    const mounts = [
      { dev: '253:0', mountPoint: '/', fsType: 'ext4' },
      { dev: '253:1', mountPoint: '/srv', fsType: 'xfs' },
      { dev: '253:1', mountPoint: '/srv/data', fsType: 'xfs' },
      { dev: '253:2', mountPoint: '/srv/data/db', fsType: 'ext4' },
    ];
    assert.deepEqual(mountHolding(mounts, '253:1', '/srv/data/www'), { mountPoint: '/srv/data', fsType: 'xfs' });
    assert.deepEqual(mountHolding(mounts, '253:1', '/srv/database'), { mountPoint: '/srv', fsType: 'xfs' });
    assert.deepEqual(mountHolding(mounts, '253:0', '/etc'), { mountPoint: '/', fsType: 'ext4' });
    assert.equal(mountHolding(mounts, '253:9', '/srv'), undefined);
  });

  it('builds the commands: lvcreate of the origin, a read-only mount (nouuid for XFS), umount, lvremove', () => {
    const ext4 = lvmCommands({ vg: 'vg0', lv: 'srv', mountPoint: '/srv', fsType: 'ext4' }, 'holdfast-snapshot-h-1-2', '/run/holdfast/fs-snapshots/holdfast-snapshot-h-1-2');
    assert.deepEqual(ext4.create, ['lvcreate', '--snapshot', '--name', 'holdfast-snapshot-h-1-2', '--extents', '10%ORIGIN', 'vg0/srv']);
    assert.deepEqual(ext4.mount, ['mount', '-t', 'ext4', '-o', 'ro', '/dev/vg0/holdfast-snapshot-h-1-2', '/run/holdfast/fs-snapshots/holdfast-snapshot-h-1-2']);
    assert.deepEqual(ext4.unmount, ['umount', '/run/holdfast/fs-snapshots/holdfast-snapshot-h-1-2']);
    assert.deepEqual(ext4.remove, ['lvremove', '--yes', 'vg0/holdfast-snapshot-h-1-2']);
    const xfs = lvmCommands({ vg: 'vg0', lv: 'db', mountPoint: '/db', fsType: 'xfs' }, 'n', '/m', '2G');
    assert.deepEqual(xfs.create, ['lvcreate', '--snapshot', '--name', 'n', '--size', '2G', 'vg0/db']);
    assert.deepEqual(xfs.mount.slice(3, 5), ['-o', 'ro,nouuid']);
  });

  const noVg = loopSkip('ext4') || (spawnSync('vgcreate', ['--version']).error ? 'lvm2 is not installed' : false);
  it('lists a volume group\'s leftovers with lvs (a real volume group on a loop device)', { skip: noVg }, async () => {
    const s = await Sandbox.create();
    const image = s.path('pv.img');
    execFileSync('truncate', ['-s', '16M', image]);
    const loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    const vg = `holdfasttest${process.pid}`;
    try {
      execFileSync('pvcreate', ['-q', loop], { stdio: 'ignore' });
      execFileSync('vgcreate', ['-q', vg, loop], { stdio: 'ignore' });
      assert.deepEqual(await lvmLeftovers(vg, 'h'), []);
      await assert.rejects(lvmLeftovers(`${vg}-none`, 'h'), /lvs --noheadings -o lv_name holdfasttest\d+-none: .*not found/is);
    } finally {
      spawnSync('vgremove', ['-q', '-f', vg], { stdio: 'ignore' });
      spawnSync('pvremove', ['-q', loop], { stdio: 'ignore' });
      spawnSync('losetup', ['-d', loop]);
      await s.remove();
    }
  });

  // The kernel's device-mapper registers this misc device (/dev/mapper/control may exist without it: lvm2 makes the node).
  const dm = existsSync('/proc/misc') && readFileSync('/proc/misc', 'utf8').includes('device-mapper');
  const noDm = noVg || (dm ? false : 'the kernel has no device-mapper (not in /proc/misc): no logical volume can be made, activated or snapshotted here');
  it('snapshots a mounted logical volume, frozen, reads it and removes it', { skip: noDm }, async () => {
    const s = await Sandbox.create();
    const image = s.path('pv.img');
    execFileSync('truncate', ['-s', '64M', image]);
    const loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    const vg = `holdfasttest${process.pid}`;
    const mnt = s.path('mnt');
    try {
      execFileSync('pvcreate', ['-q', loop], { stdio: 'ignore' });
      execFileSync('vgcreate', ['-q', vg, loop], { stdio: 'ignore' });
      execFileSync('lvcreate', ['-q', '-L', '32M', '-n', 'data', vg], { stdio: 'ignore' });
      execFileSync('mkfs.ext4', ['-q', `/dev/${vg}/data`], { stdio: 'ignore' });
      await fs.mkdir(mnt);
      execFileSync('mount', [`/dev/${vg}/data`, mnt]);
      await fs.writeFile(join(mnt, 'f'), 'before\n');
      const warnings: string[] = [];
      const read = await withFsSnapshots([mnt], { kind: 'lvm', host: 'h', stateDir: s.path('state'), freeze: true, onWarning: (m) => warnings.push(m) }, async ([v]) => {
        await fs.writeFile(join(mnt, 'f'), 'after\n');
        return fs.readFile(join(v!.view, 'f'), 'utf8');
      });
      assert.equal(read, 'before\n');
      assert.deepEqual(warnings, []);
      assert.deepEqual(await lvmLeftovers(vg, 'h'), []);
      assert.equal(execFileSync('lvs', ['--noheadings', '-o', 'lv_name', vg], { encoding: 'utf8' }).trim(), 'data');
    } finally {
      spawnSync('umount', [mnt]);
      spawnSync('vgremove', ['-q', '-f', vg], { stdio: 'ignore' });
      spawnSync('pvremove', ['-q', loop], { stdio: 'ignore' });
      spawnSync('losetup', ['-d', loop]);
      await s.remove();
    }
  });
});

/**
 * Image-backup jobs of VM disks through a real agent and server: a qcow2
 * file gets a persistent dirty bitmap on its first backup, the next job
 * reads only the clusters written since (qemu-io) and rotates the bitmap,
 * and the restore (`restore-image --format qcow2`) equals the disk by
 * `qemu-img compare`; a running VM's disk named by its QMP socket
 * (`qmp:SOCKET#drive0`, qemu-system-x86_64 with no guest) likewise, the
 * restore equal to the disk as the guest wrote it; an NBD export (qemu-nbd on loopback) is backed up by
 * the agent as a backup proxy and restores byte for byte; an export that
 * is not there fails the job; a source that is neither a path nor an NBD
 * URI is refused by the server.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Sandbox, type Started } from '../helpers/cli.js';
import { freePort } from '../helpers/listening-child.js';
import { writeRandom } from '../helpers/random-file.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { missingTools } from '../image-files/ext-images.js';
import { qcow2Bitmaps, sh } from '../image/images.js';
import { startVm } from '../helpers/qemu-vm.js';



describe('image-backup jobs of qcow2 files and NBD exports', { skip: missingTools('qemu-img', 'qemu-nbd', 'qemu-io') }, () => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let agent: Started;
  let raw: string;
  let nbdPid: number | undefined;

  before(async () => {
    s = await Sandbox.create('holdfast-agent-images-');
    t = await setUp(`sqlite:${s.path('server.sqlite')}`);
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'hv1');
    raw = s.path('disk.raw');
    await writeRandom(raw, 4 * 1024 * 1024);
    agent = startAgent(s, m);
  });
  after(async () => {
    if (nbdPid !== undefined) spawnSync('kill', ['-9', String(nbdPid)]);
    agent.child.kill('SIGTERM');
    await agent.done;
    await t.stop();
    await s.remove();
  });

  it('rotates a qcow2 file\'s dirty bitmaps: the incremental reads only what was written, and restores equal', { timeout: 120_000 }, async () => {
    const disk = s.path('vm.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
    const first = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [disk] }));
    assert.equal(first.state, 'succeeded', first.error ?? '');
    const a = first.result!['snapshots'][0];
    assert.equal(a.format, 'qcow2');
    assert.match(a.dirty_bitmap, /^holdfast-[0-9a-f]{16}-1$/);
    assert.equal(a.read_since, undefined);
    assert.deepEqual(qcow2Bitmaps(disk), { [a.dirty_bitmap]: ['auto'] });

    sh('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 1048576 4096', disk]);
    const second = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [disk] }));
    assert.equal(second.state, 'succeeded', second.error ?? '');
    const b = second.result!['snapshots'][0];
    assert.equal(b.read_since, a.dirty_bitmap, 'read what the first backup\'s bitmap marks');
    assert.match(b.dirty_bitmap, /-2$/);
    assert.equal(b.blocks_changed, 1);
    assert.deepEqual(qcow2Bitmaps(disk), { [b.dirty_bitmap]: ['auto'] }, 'the old bitmap is removed once the snapshot is saved');
    await s.ok(['restore-image', b.snapshot_id, '--format', 'qcow2', '--to', s.path('restored.qcow2')], { env: m.repoEnv });
    sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', disk, s.path('restored.qcow2')]);
  });

  it('backs up a running VM\'s disk through its QMP socket, the incremental reading only what the guest wrote', { timeout: 120_000, skip: missingTools('qemu-system-x86_64') }, async () => {
    const vm = await startVm(await mkdtemp(s.path('vm-')), 16 << 20);
    try {
      await vm.write(0x5a, 0, 1 << 20);
      const first = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [vm.source] }));
      assert.equal(first.state, 'succeeded', first.error ?? '');
      const a = first.result!['snapshots'][0];
      assert.equal(a.format, 'qcow2');
      // Generations count above every bitmap the repository's snapshots name (the qcow2 file's above: -1, -2).
      assert.match(a.dirty_bitmap, /^holdfast-[0-9a-f]{16}-3$/);
      await vm.write(0xab, 8 << 20, 4096);
      const second = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [vm.source] }));
      assert.equal(second.state, 'succeeded', second.error ?? '');
      const b = second.result!['snapshots'][0];
      assert.equal(b.read_since, a.dirty_bitmap);
      assert.equal(b.blocks_changed, 1);
      assert.deepEqual(await vm.bitmaps(), { [b.dirty_bitmap]: true });
      await s.ok(['restore-image', b.snapshot_id, '--to', s.path('vm-restored.raw')], { env: m.repoEnv });
      assert.ok((await readFile(s.path('vm-restored.raw'))).equals(vm.model), 'the VM\'s disk comes back byte for byte');
    } finally {
      await vm.stop();
    }
  });

  it('backs up an NBD export as a backup proxy, restored byte for byte; an export that is not there fails the job', { timeout: 120_000 }, async () => {
    const port = await freePort();
    sh('qemu-nbd', ['--fork', '--pid-file', s.path('nbd.pid'), '--persistent', '--read-only', '-f', 'raw', '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), raw]);
    nbdPid = Number((await readFile(s.path('nbd.pid'), 'utf8')).trim());
    const j = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [`nbd://127.0.0.1:${port}/disk`] }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    await s.ok(['restore-image', j.result!['snapshots'][0].snapshot_id as string, '--to', s.path('restored.raw')], { env: m.repoEnv });
    assert.ok((await readFile(s.path('restored.raw'))).equals(await readFile(raw)), 'the export comes back byte for byte');

    const gone = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [`nbd://127.0.0.1:${port}/nothing`] }));
    assert.equal(gone.state, 'failed');
    assert.match(gone.error!, /cannot open nbd:\/\/127\.0\.0\.1:\d+\/nothing/);

    const refused = await t.call('POST', `/api/v1/machines/${m.id}/jobs`, { body: { kind: 'image-backup', spec: { sources: ['ftp://127.0.0.1/disk'] } } });
    assert.equal(refused.status, 400);
  });
});

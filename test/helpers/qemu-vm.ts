/**
 * A running VM for the tests of VM disk backups: qemu-system-x86_64 with no
 * guest (`-S -nodefaults -display none -machine none`), a qcow2 disk
 * attached as drive `drive0`, and two QMP sockets: `vm.qmp` for the backup
 * (its source is `qmp:DIR/vm.qmp#drive0`) and `test.qmp`, held by the test.
 * The "guest's" writes go through the monitor's qemu-io, and the helper
 * keeps the bytes they leave on the disk to compare restores with.
 *
 *   const vm = await startVm(dir, 64 << 20);
 *   await vm.write(0x5a, 0, 65536);   … holdfast backup --image vm.source …
 *   await vm.stop();
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { QmpClient } from '../../src/sources/image/qmp-client.js';

/** A block node as query-block and query-named-block-nodes describe it (what the tests read). */
export interface VmBlockNode {
  'node-name': string;
  'dirty-bitmaps'?: { name?: string; recording: boolean }[];
}

export interface TestVm {
  /** The backup source: `qmp:DIR/vm.qmp#drive0`. */
  readonly source: string;
  /** The test's own QMP connection. */
  readonly qmp: QmpClient;
  /** The disk's bytes as the guest wrote them. */
  readonly model: Buffer;
  /** A guest write of `length` bytes of `pattern` at `offset`. */
  write(pattern: number, offset: number, length: number): Promise<void>;
  /** The drive's dirty bitmaps: name → recording. */
  bitmaps(): Promise<Record<string, boolean>>;
  /** Quits the VM; idempotent. */
  stop(): Promise<void>;
}

const isSocket = async (p: string): Promise<boolean> => (await stat(p).catch(() => undefined))?.isSocket() === true;

/** Makes `DIR/disk.qcow2` of `size` bytes and starts a VM with it (see the module comment). */
export async function startVm(dir: string, size: number): Promise<TestVm> {
  const disk = join(dir, 'disk.qcow2');
  const run = (cmd: string, args: string[]): Promise<void> => new Promise((resolve, reject) => {
    spawn(cmd, args, { stdio: 'inherit' }).once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(size)]);
  const vm = spawn('qemu-system-x86_64', [
    '-S', '-nodefaults', '-display', 'none', '-machine', 'none',
    '-drive', `file=${disk},if=none,id=drive0,format=qcow2`,
    '-qmp', `unix:${join(dir, 'vm.qmp')},server=on,wait=off`,
    '-qmp', `unix:${join(dir, 'test.qmp')},server=on,wait=off`,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = once(vm, 'exit');
  while (!(await isSocket(join(dir, 'test.qmp')) && await isSocket(join(dir, 'vm.qmp')))) {
    if (vm.exitCode !== null) throw new Error(`qemu-system-x86_64 exited ${vm.exitCode}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const qmp = await QmpClient.connect(join(dir, 'test.qmp'));
  const model = Buffer.alloc(size);
  return {
    source: `qmp:${join(dir, 'vm.qmp')}#drive0`,
    qmp,
    model,
    async write(pattern, offset, length) {
      const out = await qmp.execute<string>('human-monitor-command', { 'command-line': `qemu-io drive0 "write -P 0x${pattern.toString(16)} ${offset} ${length}"` });
      if (out.trim()) throw new Error(`qemu-io: ${out}`);
      model.fill(pattern, offset, offset + length);
    },
    async bitmaps() {
      const [d] = await qmp.execute<{ inserted: VmBlockNode }[]>('query-block');
      return Object.fromEntries((d!.inserted['dirty-bitmaps'] ?? []).map((b) => [b.name ?? '(unnamed)', b.recording]));
    },
    async stop() {
      if (vm.exitCode !== null) return;
      await qmp.execute('quit').catch(() => undefined);
      await exited;
      await qmp.close();
    },
  };
}

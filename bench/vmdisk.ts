// VM-disk benchmark (issue 19 §2), run at the end of the image scenario
// (`BENCH_IMAGE=vmdisk` runs it alone): a qcow2 disk backed up incrementally
// through its persistent dirty bitmap, beside a full read of the same disk and
// beside restic backing the disk up as a raw image; then the same disk attached
// to a running VM and backed up through its QMP socket.
//
//   the disk: BENCH_VMDISK_SIZE of ext4, the corpus plus data files filling it to
//   70 % (bench/vmdisk-disk.ts, built once and cached); the change: 40 MiB in
//   640 pieces of 64 KiB inside the data files, written with qemu-io.
//
//   restic: the raw disk copied → first backup → the change → incremental;
//           the copy and its repository removed (space: each is most of the disk)
//   holdfast: the disk converted to qcow2 → first backup (adds the bitmap) →
//           the change → incremental (only the dirty clusters) → the bitmap
//           removed → full read of the same disk (the fallback, with the
//           changed-block cache) → a plain full read of it (nbdcopy from
//           qemu-nbd to null:) → restore-image to stdout, its SHA-256 compared
//           with the disk's
//   running VM: qemu-system-x86_64 -machine none with the qcow2 as drive0, a
//           fresh repository → first backup (qmp:SOCKET#drive0) → the change
//           written by the VM (QMP human-monitor-command qemu-io) → incremental;
//           the VM stopped however the run ends
//
// Before each timed step the page cache is dropped and the step's input read
// once (bench/corpus.ts prepareStep): the disk, the tool's cache, its
// repository but for the packs. The load average is printed beside each step:
// the machine is shared.
//
// Targets from the issue: the incremental ≤ 5 % of the time of a full read, and
// ≤ 0.1× restic's incremental of the raw image.
//
// Environment:
//   BENCH_VMDISK        0: skip
//   BENCH_VMDISK_SIZE   disk size (default 4G, the image scenario's, which holds the Linux tree; the issue's size is 20G)
//   BENCH_IMAGE_TOOLS   holdfast,restic (default both), as for the image scenario: without restic its rows are not run
//   BENCH_VMDISK_VM     0: skip the running VM's rows

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { QmpClient } from '../src/sources/image/qmp-client.js';
import { prepareStep } from './corpus.js';
import { capture, findInPath, runMeasured, shellQuote, type Cmd, type RunResult } from './measure.js';
import { HOLDFAST_MAIN, PASSWORD, TOOLS } from './tools.js';
import { CHANGE_BYTES, FILL_SHARE, changeExtents, filledDisk, must, type Extent } from './vmdisk-disk.js';

export interface VmDiskOptions {
  benchDir: string;
  /** The raw ext4 image of the corpus of this size (bench/image.ts). */
  baseImage: (size: number) => Promise<string>;
  timeoutSec: number;
  parseSize: (s: string) => number;
}

/** Writes a pattern over `extents` of `disk` with qemu-io, in batches of commands. */
async function rewrite(disk: string, format: 'raw' | 'qcow2', extents: readonly Extent[]): Promise<void> {
  for (let i = 0; i < extents.length; i += 200) {
    const cmds = extents.slice(i, i + 200).flatMap((e) => ['-c', `write -P 0x5a ${e.offset} ${e.length}`]);
    await must('qemu-io', ['-f', format, ...cmds, disk], 'qemu-io write');
  }
}

/** A VM with `disk` as drive0: the backup's QMP socket and the bench's own. */
interface Vm {
  readonly source: string;
  /** The guest writing `pattern` over `extents`. */
  write(pattern: number, extents: readonly Extent[]): Promise<void>;
  /** Quits the VM (killed if it does not go); idempotent. */
  stop(): Promise<void>;
}

const isSocket = async (p: string): Promise<boolean> => (await stat(p).catch(() => undefined))?.isSocket() === true;

async function startVm(disk: string, dir: string): Promise<Vm> {
  const backupSocket = join(dir, 'vm.qmp');
  const benchSocket = join(dir, 'bench.qmp');
  const vm = spawn('qemu-system-x86_64', [
    '-S', '-nodefaults', '-display', 'none', '-machine', 'none',
    '-drive', `file=${disk},if=none,id=drive0,format=qcow2`,
    '-qmp', `unix:${backupSocket},server=on,wait=off`,
    '-qmp', `unix:${benchSocket},server=on,wait=off`,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  // The bench's process.exit (an interrupt, an error) must not leave the VM running.
  const kill = (): void => {
    vm.kill('SIGKILL');
  };
  process.on('exit', kill);
  const exited = once(vm, 'exit');
  let qmp: QmpClient | undefined;
  const stop = async (): Promise<void> => {
    if (vm.exitCode === null && vm.signalCode === null) {
      await qmp?.execute('quit').catch(() => undefined);
      if (!qmp) vm.kill('SIGKILL');
      const t = setTimeout(kill, 30_000);
      await exited;
      clearTimeout(t);
    }
    await qmp?.close();
    process.off('exit', kill);
  };
  try {
    while (!(await isSocket(backupSocket) && await isSocket(benchSocket))) {
      if (vm.exitCode !== null) throw new Error(`qemu-system-x86_64 exited ${vm.exitCode}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    qmp = await QmpClient.connect(benchSocket);
  } catch (e) {
    await stop();
    throw e;
  }
  const monitor = qmp;
  return {
    source: `qmp:${backupSocket}#drive0`,
    async write(pattern, extents) {
      for (const e of extents) {
        const out = await monitor.execute<string>('human-monitor-command', { 'command-line': `qemu-io drive0 "write -P 0x${pattern.toString(16)} ${e.offset} ${e.length}"` });
        if (out.trim()) throw new Error(`qemu-io in the VM: ${out.trim()}`);
      }
    },
    stop,
  };
}

/** The SHA-256 of what `cmd` writes to stdout. */
async function sha256Of(cmd: Cmd): Promise<string> {
  const r = await capture('sh', ['-c', `${shellQuote([cmd.file, ...cmd.args])} | sha256sum`], { timeoutMs: 7_200_000, ...(cmd.env ? { env: cmd.env } : {}) });
  if (r.code !== 0) throw new Error(`${cmd.file} | sha256sum failed: ${r.stderr.trim()}`);
  return r.stdout.split(' ')[0]!;
}

async function removeBitmaps(qcow2: string): Promise<void> {
  for (const b of JSON.parse(await must('qemu-img', ['info', '--output=json', qcow2], 'qemu-img info'))['format-specific'].data.bitmaps ?? []) {
    await must('qemu-img', ['bitmap', '--remove', qcow2, b.name], 'qemu-img bitmap --remove');
  }
}

const load = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');
const fmtS = (r: RunResult | undefined): string => (r ? (r.ok ? `${r.seconds.toFixed(2)} s` : 'FAILED') : '-');
const GiB = (n: number): string => `${(n / 2 ** 30).toFixed(1)} GiB`;
/** The timed steps in the results' table: name, label. */
const ROWS: readonly (readonly [string, string])[] = [
  ['restic-full', '[restic] first backup of the raw disk'],
  ['restic-incremental', '[restic] incremental of the raw disk'],
  ['holdfast-full', '[holdfast] first backup (adds the bitmap)'],
  ['holdfast-incremental', '[holdfast] incremental (dirty bitmap)'],
  ['holdfast-fullread', '(a) [holdfast] full read, bitmap removed'],
  ['plain-fullread', '(b) nbdcopy of the disk to null:'],
  ['vm-full', '[running VM] first backup'],
  ['vm-incremental', '[running VM] incremental (dirty bitmap)'],
];

/** Runs the VM-disk rows; returns the number of problems. */
export async function runVmDiskBench(o: VmDiskOptions): Promise<number> {
  if (process.env['BENCH_VMDISK'] === '0') return 0;
  const size = o.parseSize(process.env['BENCH_VMDISK_SIZE'] ?? '4G');
  console.log(`\nVM-disk benchmark: ${(size / 2 ** 30).toFixed(0)} GiB qcow2 disk, file system ${(FILL_SHARE * 100).toFixed(0)} % used, incremental through its dirty bitmap beside full reads and restic backing up the raw disk; then the same disk in a running VM`);
  const missing = ['qemu-img', 'qemu-nbd', 'qemu-io', 'debugfs', 'nbdcopy', 'qemu-system-x86_64'].filter((t) => !findInPath(t));
  if (missing.length > 0) {
    console.log(`  skipped: ${missing.join(', ')} not found (apt-get install -y qemu-utils e2fsprogs libnbd-bin qemu-system-x86)`);
    return 1;
  }
  if (process.getuid?.() !== 0) {
    console.log('  skipped: not root (the disk is filled through a loop mount, and each step starts from a dropped page cache)');
    return 1;
  }
  const disk = await filledDisk(join(o.benchDir, 'vmdisk'), await o.baseImage(size), size);
  const extents = await changeExtents(disk);
  const changed = extents.reduce((a, e) => a + e.length, 0);
  console.log(`  disk: ${GiB(disk.usedBytes)} of ${GiB(disk.fsBytes)} in use (the corpus and ${disk.files.length} data files, half incompressible, half log text); the change: ${(changed / 2 ** 20).toFixed(1)} MiB in ${extents.length} extents (${CHANGE_BYTES / 2 ** 20} MiB asked)`);
  console.log(`  load average at the start: ${load()}`);
  const work = join(o.benchDir, 'work', 'vmdisk');
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'logs'), { recursive: true });
  const qcow2 = join(work, 'vm.qcow2');
  const raw = join(work, 'vm.img');
  const resticAsked = (process.env['BENCH_IMAGE_TOOLS'] ?? 'holdfast,restic').split(',').map((t) => t.trim()).includes('restic');
  const restic = resticAsked && findInPath('restic') !== null;
  const withVm = process.env['BENCH_VMDISK_VM'] !== '0';
  const problems: string[] = [];
  const steps = new Map<string, RunResult & { load: number[] }>();
  const dirOf = (t: string): string => join(work, t);
  const env = (t: string): Record<string, string> => t.startsWith('holdfast')
    ? { HOLDFAST_REPOSITORY: join(dirOf(t), 'repo'), HOLDFAST_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(dirOf(t), 'cache') }
    : { RESTIC_REPOSITORY: join(dirOf(t), 'repo'), RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(dirOf(t), 'cache') };
  const hf = (t: string, args: string[]): Cmd => ({ file: process.execPath, args: [HOLDFAST_MAIN, ...args], env: env(t) });
  const rs = (args: string[]): Cmd => ({ file: 'restic', args, env: env('restic') });
  /** A timed step of tool `t` reading `input`, after prepareStep. */
  const run = async (name: string, label: string, t: string, input: string, c: Cmd): Promise<RunResult> => {
    const tool = t.startsWith('holdfast') ? TOOLS.holdfast : t === 'restic' ? TOOLS.restic : undefined;
    await prepareStep(
      { whole: [input, join(dirOf(t), 'cache')], metadataOf: join(dirOf(t), 'repo') },
      tool?.code() ?? [],
      () => (tool ? tool.probe() : capture(c.file, ['--version'])),
    );
    const before = loadavg();
    const r = { ...(await runMeasured(c, join(work, 'logs', name), o.timeoutSec)), load: before };
    steps.set(name, r);
    console.log(`  ${label}: ${r.ok ? `${r.seconds.toFixed(2)} s` : `FAILED (exit ${r.exitCode}) ${r.stderrTail}`} (load ${before.map((x) => x.toFixed(1)).join(' ')})`);
    if (!r.ok) problems.push(`${name} failed: ${r.stderrTail}`);
    return r;
  };
  const untimed = async (c: Cmd, what: string): Promise<void> => {
    const r = await capture(c.file, c.args, { timeoutMs: 600_000, ...(c.env ? { env: c.env } : {}) });
    if (r.code !== 0) throw new Error(`${what} failed: ${(r.stderr || r.error || '').trim()}`);
  };
  const summary = async (name: string): Promise<{ bytes_read?: number; total_duration?: number }> => {
    const r = steps.get(name);
    if (!r?.ok) return {};
    // holdfast's --json summary; the other tools print text.
    const last = (await readFile(r.stdoutFile, 'utf8')).trim().split('\n').pop() ?? '';
    return last.startsWith('{') ? JSON.parse(last) as { bytes_read?: number; total_duration?: number } : {};
  };

  try {
    if (restic) {
      await must('cp', ['--sparse=always', disk.raw, raw], 'cp of the disk');
      await untimed(rs(['init', '--repository-version', '2']), 'restic init');
      await run('restic-full', '[restic] first backup of the raw disk', 'restic', raw, rs(['backup', '--host', 'bench', raw]));
      await rewrite(raw, 'raw', extents);
      await run('restic-incremental', '[restic] incremental of the raw disk', 'restic', raw, rs(['backup', '--host', 'bench', raw]));
      await rm(raw, { force: true });
      await rm(dirOf('restic'), { recursive: true, force: true });
    } else if (resticAsked) {
      problems.push('restic not found: the restic rows are not run');
    }

    await must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk.raw, qcow2], 'qemu-img convert');
    await untimed(hf('holdfast', ['init']), 'holdfast init');
    await run('holdfast-full', '[holdfast] first backup (full read, adds the bitmap)', 'holdfast', qcow2, hf('holdfast', ['backup', '--json', '--host', 'bench', '--image', qcow2]));
    await rewrite(qcow2, 'qcow2', extents);
    await run('holdfast-incremental', '[holdfast] incremental (dirty bitmap)', 'holdfast', qcow2, hf('holdfast', ['backup', '--json', '--host', 'bench', '--image', qcow2]));
    await removeBitmaps(qcow2);
    await run('holdfast-fullread', '[holdfast] full read of the same disk (bitmap removed: the changed-block cache)', 'holdfast', qcow2, hf('holdfast', ['backup', '--json', '--host', 'bench', '--image', qcow2]));
    const nbd = ['[', 'qemu-nbd', '--read-only', '-f', 'qcow2', qcow2, ']'];
    await run('plain-fullread', 'plain full read (nbdcopy from qemu-nbd -f qcow2 to null:)', 'nbdcopy', qcow2, { file: 'nbdcopy', args: ['--', ...nbd, 'null:'] });
    if (steps.get('holdfast-fullread')?.ok) {
      const [restored, source] = [await sha256Of(hf('holdfast', ['restore-image', 'latest', '--to', '-'])), await sha256Of({ file: 'nbdcopy', args: ['--', ...nbd, '-'] })];
      console.log(`  restore-image of the last snapshot: ${restored === source ? 'the disk\'s bytes (SHA-256 of restore-image --to - and of nbdcopy of the disk equal)' : 'DIFFERS from the disk'}`);
      if (restored !== source) problems.push(`restore-image differs from the disk (SHA-256 ${restored}, the disk ${source})`);
    }
    await rm(dirOf('holdfast'), { recursive: true, force: true });

    if (withVm) {
      const vmDir = join(work, 'vm');
      await mkdir(vmDir, { recursive: true });
      const vm = await startVm(qcow2, vmDir);
      try {
        await untimed(hf('holdfast-vm', ['init']), 'holdfast init');
        await run('vm-full', '[holdfast, running VM] first backup (qmp:…#drive0, adds the bitmap)', 'holdfast-vm', qcow2, hf('holdfast-vm', ['backup', '--json', '--host', 'bench', '--image', vm.source]));
        await vm.write(0xa5, extents);
        await run('vm-incremental', '[holdfast, running VM] incremental after the VM wrote the change', 'holdfast-vm', qcow2, hf('holdfast-vm', ['backup', '--json', '--host', 'bench', '--image', vm.source]));
      } finally {
        await vm.stop();
      }
    }
  } finally {
    // The copies and repositories are most of the disk's size each; the logs stay.
    for (const p of [raw, qcow2, dirOf('restic'), dirOf('holdfast'), dirOf('holdfast-vm')]) await rm(p, { recursive: true, force: true });
  }

  const inc = await summary('holdfast-incremental');
  const vmInc = await summary('vm-incremental');
  const h = steps.get('holdfast-incremental');
  const table = [['', 'time', 'the job alone', 'read', 'load before']];
  for (const [name, label] of ROWS) {
    const s = steps.get(name);
    const j = await summary(name);
    table.push([label, fmtS(s), j.total_duration === undefined ? '' : `${j.total_duration.toFixed(2)} s`, j.bytes_read === undefined ? '' : j.bytes_read < 2 ** 30 ? `${(j.bytes_read / 2 ** 20).toFixed(1)} MiB` : GiB(j.bytes_read), s ? s.load[0]!.toFixed(1) : '']);
  }
  const ratio = (a: RunResult | undefined, b: RunResult | undefined): number | null => (a?.ok && b?.ok && b.seconds > 0 ? a.seconds / b.seconds : null);
  const verdict = (x: number | null, t: number): string => (x === null ? '-' : `${x.toFixed(3)} (≤ ${t.toFixed(2)}: ${x <= t ? 'met' : 'MISSED'})`);
  console.log(`\nVM-disk results (${(size / 2 ** 30).toFixed(0)} GiB disk, ${GiB(disk.usedBytes)} in use; one run each; load average now ${load()}):\n`);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) console.log(`  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ')}`);
  console.log('');
  console.log(`  incremental / (a) holdfast's full read: ${verdict(ratio(h, steps.get('holdfast-fullread')), 0.05)}`);
  console.log(`  incremental / (b) nbdcopy's full read:  ${verdict(ratio(h, steps.get('plain-fullread')), 0.05)}`);
  console.log(`  incremental / restic's incremental:     ${verdict(ratio(h, steps.get('restic-incremental')), 0.1)}`);
  console.log(`  running VM's incremental / (a):         ${verdict(ratio(steps.get('vm-incremental'), steps.get('holdfast-fullread')), 0.05)}`);
  if (inc.bytes_read !== undefined) console.log(`  holdfast's incremental read ${(inc.bytes_read / 2 ** 20).toFixed(1)} MiB, the VM's ${((vmInc.bytes_read ?? 0) / 2 ** 20).toFixed(1)} MiB, for ${(changed / 2 ** 20).toFixed(1)} MiB written`);
  if (problems.length > 0) console.log(`\nVM-disk problems:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  await writeFile(join(o.benchDir, `vmdisk-results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify({
    size, usedBytes: disk.usedBytes, fsBytes: disk.fsBytes, changedBytes: changed, steps: Object.fromEntries(steps), problems,
  }, null, 2)}\n`);
  return problems.length;
}

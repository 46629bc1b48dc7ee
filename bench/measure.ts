// Process measurement helpers for the benchmark: run a child under GNU time
// (wall clock from process.hrtime, peak RSS from `/usr/bin/time -f '%e %M'`),
// plus cheap filesystem statistics (tree walk, du).

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, fstatSync } from 'node:fs';
import { lstat, readFile, readdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface Cmd {
  file: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
}

export interface RunResult {
  command: string;
  cwd: string | null;
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  spawnError: string | null;
  /** Wall-clock seconds measured with process.hrtime around the child. */
  seconds: number;
  /** Elapsed seconds as reported by GNU time (cross-check only). */
  timeSeconds: number | null;
  /** Peak resident set size in KiB (GNU time %M), null if unavailable. */
  maxRssKiB: number | null;
  stdoutFile: string;
  stderrFile: string;
  stderrTail: string;
}

const active = new Set<ChildProcess>();

/** Kill every child (process group) we started; used on SIGINT/SIGTERM. */
export function killActiveChildren(): void {
  for (const child of active) {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

let gnuTimeOk: boolean | null = null;

/** True if /usr/bin/time is GNU time with -f/-o support. */
export async function haveGnuTime(): Promise<boolean> {
  if (gnuTimeOk !== null) return gnuTimeOk;
  if (!existsSync(GNU_TIME)) return (gnuTimeOk = false);
  const r = await capture(GNU_TIME, ['-f', '%e %M', 'true']);
  gnuTimeOk = r.code === 0 && /^[\d.]+ \d+\s*$/m.test(r.stderr);
  return gnuTimeOk;
}

export function shellQuote(args: string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function findInPath(name: string): string | null {
  if (name.includes('/')) return existsSync(name) ? name : null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** Last `maxLines` non-empty lines of a (possibly large) file. */
export function tailFile(path: string, maxLines = 12, maxBytes = 8192): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const lines = buf
      .toString('utf8')
      .split(/\r?\n|\r/)
      .filter((l) => l.trim() !== '');
    return lines.slice(-maxLines).join('\n');
  } finally {
    closeSync(fd);
  }
}

/** The record of a command before it ran (or of one that never will). */
export function blankRun(command: string, cwd: string | null, stdoutFile: string, stderrFile: string): RunResult {
  return {
    command, cwd, ok: false, exitCode: null, signal: null, timedOut: false, spawnError: null,
    seconds: 0, timeSeconds: null, maxRssKiB: null, stdoutFile, stderrFile, stderrTail: '',
  };
}

/**
 * Run a command with stdout/stderr going to log files (`<logPrefix>.stdout`,
 * `.stderr`), stdin closed, in its own process group. Never throws for a
 * failing command: the result says what happened.
 */
export async function runMeasured(cmd: Cmd, logPrefix: string, timeoutSec: number): Promise<RunResult> {
  const useTime = await haveGnuTime();
  const timeFile = `${logPrefix}.time`;
  const stdoutFile = `${logPrefix}.stdout`;
  const stderrFile = `${logPrefix}.stderr`;
  const file = useTime ? GNU_TIME : cmd.file;
  const args = useTime ? ['-f', '%e %M', '-o', timeFile, cmd.file, ...cmd.args] : cmd.args;
  const outFd = openSync(stdoutFile, 'w');
  const errFd = openSync(stderrFile, 'w');
  const result = blankRun(shellQuote([cmd.file, ...cmd.args]), cmd.cwd ?? null, stdoutFile, stderrFile);
  // Dirty pages left by whatever ran before (the working copy's `cp -a`, the
  // previous tool's repository) are written back now, untimed, instead of
  // competing with the next tool for the disk and the CPU.
  await capture('sync', [], { timeoutMs: 600_000 });
  const start = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: cmd.cwd,
        env: { ...process.env, ...cmd.env },
        stdio: ['ignore', outFd, errFd],
        detached: true, // own process group, so a timeout can kill the whole tree
      });
    } catch (e) {
      result.spawnError = String(e);
      resolve();
      return;
    }
    active.add(child);
    let timer: NodeJS.Timeout | undefined;
    if (timeoutSec > 0) {
      timer = setTimeout(() => {
        result.timedOut = true;
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }, timeoutSec * 1000);
    }
    child.on('error', (e) => {
      result.spawnError = String(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      active.delete(child);
      result.exitCode = code;
      result.signal = signal;
      resolve();
    });
  });
  result.seconds = Number(process.hrtime.bigint() - start) / 1e9;
  closeSync(outFd);
  closeSync(errFd);
  if (useTime) {
    try {
      const lines = (await readFile(timeFile, 'utf8')).split('\n').filter((l) => l.trim() !== '');
      const m = /^([\d.]+) (\d+)$/.exec(lines[lines.length - 1] ?? '');
      if (m) {
        result.timeSeconds = Number(m[1]);
        result.maxRssKiB = Number(m[2]);
      }
    } catch {
      // time file missing (spawn failed)
    }
  }
  result.ok = result.exitCode === 0 && !result.timedOut && result.spawnError === null;
  let tail = tailFile(stderrFile);
  if (result.spawnError) tail = `${tail}\n${result.spawnError}`.trim();
  if (result.timedOut) tail = `${tail}\n[bench] killed after ${timeoutSec}s timeout`.trim();
  result.stderrTail = tail;
  return result;
}

/** Run a short command capturing its output in memory (versions, probes, du). */
export function capture(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; error: string | null }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let error: string | null = null;
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: opts.cwd,
        env: { ...process.env, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: opts.timeoutMs ?? 60_000,
      });
    } catch (e) {
      resolve({ code: null, stdout, stderr, error: String(e) });
      return;
    }
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => (error = String(e)));
    child.on('close', (code) => resolve({ code, stdout, stderr, error }));
  });
}

/**
 * CPU seconds (user + system) of process `pid` so far, from /proc; with
 * `children`, those of its children that ended and were waited for too (an
 * sshd's finished sessions). 0 where it cannot be read.
 */
export async function processCpuSeconds(pid: number | undefined, children = false): Promise<number> {
  if (pid === undefined) return 0;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name (which may hold spaces): utime, stime, cutime, cstime are the 14th to 17th of the line.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, children ? 15 : 13).map(Number);
  return f.reduce((a, b) => a + b, 0) / 100 || 0;
}

/** Apparent size in bytes of a directory tree (`du -sb`), null if it fails. */
export async function duBytes(path: string): Promise<number | null> {
  if (!existsSync(path)) return null;
  const r = await capture('du', ['-sb', path], { timeoutMs: 600_000 });
  const m = /^(\d+)\s/.exec(r.stdout);
  return r.code === 0 && m ? Number(m[1]) : null;
}

export interface TreeStats {
  files: number;
  dirs: number;
  symlinks: number;
  other: number;
  /** Sum of regular file sizes (each name counted). */
  bytes: number;
}

export interface FileEntry {
  path: string;
  size: number;
  nlink: number;
}

/** What differs between a source tree and a restored one (files, symlinks, bytes), or null. */
export function treeDifference(expected: TreeStats, actual: TreeStats): string | null {
  const diffs = (['files', 'symlinks', 'bytes'] as const).filter((k) => expected[k] !== actual[k]).map((k) => `${k}: source ${expected[k]}, restored ${actual[k]}`);
  return diffs.length === 0 ? null : diffs.join('; ');
}

/**
 * Walk a tree without following symlinks. Directory entries are visited in
 * sorted order, so `files` is deterministic for a given tree.
 */
export async function walkTree(root: string): Promise<{ stats: TreeStats; files: FileEntry[] }> {
  const stats: TreeStats = { files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0 };
  const files: FileEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const regular = entries.filter((e) => e.isFile());
    const sizes = await Promise.all(regular.map((e) => lstat(join(dir, e.name))));
    regular.forEach((e, i) => {
      const st = sizes[i];
      if (!st) return;
      stats.files++;
      stats.bytes += st.size;
      files.push({ path: join(dir, e.name), size: st.size, nlink: st.nlink });
    });
    for (const e of entries) {
      if (e.isDirectory()) {
        stats.dirs++;
        await walk(join(dir, e.name));
      } else if (e.isSymbolicLink()) {
        stats.symlinks++;
      } else if (!e.isFile()) {
        stats.other++;
      }
    }
  };
  await walk(root);
  return { stats, files };
}

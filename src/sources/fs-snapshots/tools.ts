/**
 * The system tools the snapshot providers call (btrfs, lvcreate, mount,
 * fsfreeze, …), run without a shell, and what they share: the owner of a
 * snapshot by its name, so that the next run finds what a killed one left.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { ErrorCode } from '../../core/errors.js';

/** A file-system snapshot could not be taken, or a path's file system has none: nothing was backed up. */
export class SnapshotFailedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'SNAPSHOT_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotFailedError';
  }
}

/** Runs `argv` (no shell); resolves to its stdout, rejects with its stderr in the message. */
export function runTool(argv: readonly string[]): Promise<string> {
  const [file, ...args] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout);
        return;
      }
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${file} is not installed` : (stderr.trim() || err.message);
      reject(new Error(`${argv.join(' ')}: ${why}`));
    });
  });
}

/** The prefix of every snapshot holdfast makes: leftovers are found by it. */
export const SNAPSHOT_PREFIX = 'holdfast-snapshot-';

/** Characters a name of ours keeps from the host name (LVM's names allow no others). */
const safeHost = (host: string): string => host.replace(/[^A-Za-z0-9+_.]/g, '_');

/** The name of a snapshot this process makes now: prefix, host, pid, time in ms. */
export function snapshotName(host: string, pid: number, now: number): string {
  return `${SNAPSHOT_PREFIX}${safeHost(host)}-${pid}-${now}`;
}

/** The owner of a snapshot name of this host (pid and time), or undefined for another host's or no name of ours. */
export function ownerOf(name: string, host: string): { pid: number; time: number } | undefined {
  const at = name.indexOf(SNAPSHOT_PREFIX);
  if (at < 0) return undefined;
  const m = /^(.*)-(\d+)-(\d+)$/.exec(name.slice(at + SNAPSHOT_PREFIX.length));
  if (!m || m[1] !== safeHost(host)) return undefined;
  return { pid: Number(m[2]), time: Number(m[3]) };
}

/**
 * Whether the process that made a snapshot at `time` may still be running:
 * its pid is alive and started before the snapshot (a pid reused since
 * started later). A leftover is a snapshot whose owner is not running.
 */
export async function ownerRunning(owner: { pid: number; time: number }): Promise<boolean> {
  if (owner.pid === process.pid) return true;
  let stat: string;
  let uptime: string;
  try {
    stat = await readFile(`/proc/${owner.pid}/stat`, 'utf8');
    uptime = await readFile('/proc/uptime', 'utf8');
  } catch {
    return false;
  }
  // Field 22, after the command name in parentheses: the start time in clock ticks since boot (USER_HZ, 100 on Linux).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z') return false;
  const startTicks = Number(fields[19]);
  const startedAt = Date.now() - Number(uptime.split(' ')[0]) * 1000 + (startTicks / 100) * 1000;
  // A second of slack for the rounding of uptime.
  return startedAt <= owner.time + 1000;
}

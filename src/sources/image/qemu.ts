/**
 * qcow2 disks through qemu's own tools: `qemu-img info` (virtual size,
 * persistent dirty bitmaps and their flags), `qemu-img bitmap` (add, remove),
 * `qemu-img create`/`convert`, and `qemu-nbd`, run as a child process that
 * exports the virtual disk read-only on a private unix socket for the NBD
 * client (nbd-client.ts). Nothing here parses qcow2 itself: qemu is the one
 * reader of its format.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ErrorCode } from '../../core/errors.js';
import type { NbdTarget } from './nbd-client.js';

/** The first four bytes of a qcow2 file. */
export const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');
/** How long qemu-nbd may take to listen. */
const SERVE_TIMEOUT_MS = 30_000;

/** A qemu tool failed (or is not installed). */
export class QemuError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'QEMU_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'QemuError';
  }
}

/** Runs a qemu tool; its stderr is the error. */
async function qemu(tool: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { maxBuffer: 64 << 20 }, (e, stdout, stderr) => {
      if (!e) return resolve(stdout);
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${tool} is not installed (Debian: apt-get install qemu-utils)` : `${tool} ${args.join(' ')} failed: ${stderr.trim() || e.message}`;
      reject(new QemuError(why));
    });
  });
}

/** True when `path` is a file that starts with the qcow2 magic. */
export async function isQcow2(path: string): Promise<boolean> {
  // Non-blocking: a FIFO would hang the open until a writer comes.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return false;
  try {
    const b = Buffer.alloc(4);
    // A folder or a device that cannot be read is not qcow2: opening it as an image says why.
    const { bytesRead } = await fh.read(b, 0, 4, 0).catch(() => ({ bytesRead: 0 }));
    return bytesRead === 4 && b.equals(QCOW2_MAGIC);
  } finally {
    await fh.close();
  }
}

/** A persistent dirty bitmap of a qcow2 file, as `qemu-img info` reports it. */
export interface Qcow2Bitmap {
  readonly name: string;
  readonly granularity: number;
  /** `auto` (enabled: it records writes), `in-use` (an open, or a crash: not to be trusted). */
  readonly flags: readonly string[];
}

/** What `qemu-img info` says of a qcow2 file. */
export interface Qcow2Info {
  readonly virtualSize: number;
  readonly clusterSize: number;
  readonly bitmaps: readonly Qcow2Bitmap[];
  /** A backing file: the virtual disk then includes it. */
  readonly backingFile?: string;
}

/** `qemu-img info` of a qcow2 file (refused when the file is open read-write elsewhere, as by a running VM). */
export async function qcow2Info(path: string): Promise<Qcow2Info> {
  const out = await qemu('qemu-img', ['info', '--output=json', '-f', 'qcow2', path]);
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(out) as Record<string, unknown>;
  } catch {
    throw new QemuError(`qemu-img info ${path} printed no JSON`);
  }
  const data = ((j['format-specific'] as Record<string, unknown> | undefined)?.['data'] ?? {}) as Record<string, unknown>;
  const bitmaps = Array.isArray(data['bitmaps']) ? data['bitmaps'] as Record<string, unknown>[] : [];
  return {
    virtualSize: Number(j['virtual-size']),
    clusterSize: Number(j['cluster-size'] ?? 65536),
    bitmaps: bitmaps.map((b) => ({ name: String(b['name']), granularity: Number(b['granularity']), flags: Array.isArray(b['flags']) ? (b['flags'] as unknown[]).map(String) : [] })),
    ...(typeof j['backing-filename'] === 'string' ? { backingFile: j['backing-filename'] } : {}),
  };
}

/** Adds an enabled persistent dirty bitmap: from now on qemu marks every cluster written. */
export async function addBitmap(path: string, name: string): Promise<void> {
  await qemu('qemu-img', ['bitmap', '--add', '--enable', '-f', 'qcow2', path, name]);
}

/** Removes a persistent dirty bitmap. */
export async function removeBitmap(path: string, name: string): Promise<void> {
  await qemu('qemu-img', ['bitmap', '--remove', '-f', 'qcow2', path, name]);
}

/** Creates an empty qcow2 file of `size` virtual bytes. */
export async function createQcow2(path: string, size: number): Promise<void> {
  await qemu('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(size)]);
}

/** Converts a raw image to a qcow2 file (zero blocks are not allocated). */
export async function convertRawToQcow2(raw: string, out: string): Promise<void> {
  await qemu('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, out]);
}

/**
 * `qemu-img compare`: undefined when the two disks read the same, else the
 * first byte offset where they differ.
 */
export async function compareImages(a: string, aFormat: 'raw' | 'qcow2', b: string, bFormat: 'raw' | 'qcow2'): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', ['compare', '-f', aFormat, '-F', bFormat, a, b], (e, stdout, stderr) => {
      if (!e) return resolve(undefined);
      // Exit 1: the images differ ("Content mismatch at offset N!").
      const m = /offset (\d+)/.exec(stdout);
      if ((e as { code?: unknown }).code === 1 && m) return resolve(Number(m[1]));
      reject(new QemuError(`qemu-img compare ${a} ${b} failed: ${stderr.trim() || stdout.trim() || e.message}`));
    });
  });
}

/** A running `qemu-nbd` that exports one disk read-only on a private unix socket. */
export interface QemuNbdServer {
  readonly target: NbdTarget;
  /** Why qemu-nbd failed (with its message), or undefined while it runs or after it ended normally. */
  ended(): QemuError | undefined;
  /** Like `ended`, waiting up to `ms` for it to end (a client that failed: did the server fail first?). */
  endedWithin(ms: number): Promise<QemuError | undefined>;
  /** Ends qemu-nbd and removes its socket folder; idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `qemu-nbd --read-only -f FORMAT --socket TMP/nbd.sock FILE` (with
 * `-B BITMAP`: the bitmap's dirty clusters as the `qemu:dirty-bitmap:BITMAP`
 * meta context). Without `--persistent`, qemu-nbd ends when its one client
 * disconnects, so a holdfast killed outright leaves no server behind once
 * its socket closes; `stop` ends it in every other case.
 */
export async function serveQemuNbd(file: string, opts: { format: 'qcow2' | 'raw'; bitmap?: string }): Promise<QemuNbdServer> {
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-nbd-'));
  const socket = join(dir, 'nbd.sock');
  const args = ['--read-only', '-f', opts.format, '--socket', socket, '--shared', '1', ...(opts.bitmap ? ['-B', opts.bitmap] : []), file];
  let child: ChildProcess;
  let stderr = '';
  /** Why it failed (an exit other than 0, a signal we did not send, no binary). */
  let failed: string | undefined;
  let running = true;
  try {
    child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw new QemuError(`cannot start qemu-nbd: ${(e as Error).message}`);
  }
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const gone = new Promise<void>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      running = false;
      failed = e.code === 'ENOENT' ? 'qemu-nbd is not installed (Debian: apt-get install qemu-utils)' : e.message;
      resolve();
    });
    // 'close', not 'exit': its stderr is read to the end by then.
    child.once('close', (code, signal) => {
      running = false;
      if (code !== 0 && !stopped) failed ??= `exited with ${signal ?? code}`;
      resolve();
    });
  });
  // Ending with 0 is no failure: without --persistent it ends when its client disconnects.
  const ended = (): QemuError | undefined => (failed === undefined ? undefined : new QemuError(`qemu-nbd ${file} ${failed}: ${stderr.trim() || 'no message'}`));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (running) child.kill('SIGTERM');
    await gone;
    await rm(dir, { recursive: true, force: true });
  };
  // Ready once its socket exists (a probe connection would use up the one client qemu-nbd serves); the client retries a refused connect.
  const deadline = Date.now() + SERVE_TIMEOUT_MS;
  for (;;) {
    const gone = ended() ?? (running ? undefined : new QemuError(`qemu-nbd ${file} ended before it listened: ${stderr.trim() || 'no message'}`));
    if (gone) {
      await stop();
      throw gone;
    }
    if ((await stat(socket).catch(() => undefined))?.isSocket()) break;
    if (Date.now() > deadline) {
      await stop();
      throw new QemuError(`qemu-nbd did not listen on ${socket} within ${SERVE_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const endedWithin = async (ms: number): Promise<QemuError | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    return ended();
  };
  return { target: { socket, exportName: '' }, ended, endedWithin, stop };
}

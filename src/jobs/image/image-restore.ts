/**
 * Restoring an image snapshot onto an image file, a block device, or a
 * stream (stdout): bare-metal recovery.
 *
 *   target = file:   truncated, then only stored blocks are written (holes
 *                    stay holes: the file is sparse), then ftruncate(size)
 *            device: must be at least the image size (checked before any
 *                    write) and not mounted; every block is written, holes as
 *                    zeros (a used disk is not zero); the rest of a larger
 *                    disk is left alone
 *            stream: every byte in order, holes as zeros
 *   blocks are loaded a few at a time ahead of the writer (parallel loads,
 *   bounded memory), written in order; fdatasync at the end
 *   --verify: read the target back; every stored block must have its keyed
 *   id again, every hole must read as zeros
 */
import { constants, promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { splitRdev } from '../../sources/posix.js';
import { blockDeviceSize, devNo, mountsOf } from '../../sources/image/block-devices.js';
import { openImageSnapshot, type ImageSnapshotReader } from './image-reader.js';

/** The target cannot take the image (too small, mounted, not writable as such). */
export class RestoreTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestoreTargetError';
  }
}

export interface ImageRestoreOptions {
  /** A path, or `-` for `stdout`. */
  readonly target: string;
  readonly verify?: boolean;
  /** Where `-` writes (default process.stdout). */
  readonly stdout?: Writable;
  /** Blocks loaded ahead of the writer (default 8). */
  readonly readAhead?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: ImageRestoreProgress) => void;
  readonly onWarning?: (message: string) => void;
}

export interface ImageRestoreProgress {
  bytes: number;
  total: number;
}

export interface ImageRestoreResult {
  readonly kind: 'file' | 'blockdev' | 'stream';
  readonly size: number;
  /** Bytes of stored blocks written. */
  readonly bytesWritten: number;
  /** Blocks that were holes. */
  readonly holes: number;
  /** Size of the target device, when it is one. */
  readonly targetSize?: number;
  /** With --verify: blocks whose read-back bytes differ. */
  readonly verifyFailed?: number[];
}

interface Sink {
  readonly kind: ImageRestoreResult['kind'];
  readonly targetSize?: number;
  /** Writes bytes at a position (in order for streams). */
  write(buf: Buffer, position: number): Promise<void>;
  /** Writes a hole (zeros, or nothing for a sparse file). */
  hole(length: number, position: number): Promise<void>;
  finish(size: number): Promise<void>;
  close(): Promise<void>;
}

async function writeFully(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    if (bytesWritten === 0) throw new Error('write returned 0 bytes');
    done += bytesWritten;
  }
}

function streamSink(out: Writable, blockSize: number): Sink {
  let failed: Error | undefined;
  out.on('error', (e: Error) => {
    failed ??= (e as NodeJS.ErrnoException).code === 'EPIPE' ? new Error('the reader of stdout went away (broken pipe); the restore is NOT complete') : e;
  });
  const zeros = Buffer.alloc(blockSize);
  const put = async (b: Buffer): Promise<void> => {
    if (failed) throw failed;
    if (!out.write(b)) {
      await new Promise<void>((res, rej) => {
        const onDrain = (): void => {
          out.off('error', onErr);
          res();
        };
        const onErr = (e: Error): void => {
          out.off('drain', onDrain);
          rej(failed ?? e);
        };
        out.once('drain', onDrain);
        out.once('error', onErr);
      });
    }
    if (failed) throw failed;
  };
  return {
    kind: 'stream',
    write: (buf) => put(buf),
    hole: async (length) => {
      for (let n = length; n > 0; n -= zeros.length) await put(zeros.subarray(0, Math.min(n, zeros.length)));
    },
    finish: async () => {
      if (failed) throw failed;
      if (out === process.stdout) return;
      await new Promise<void>((res) => out.end(res));
    },
    close: async () => undefined,
  };
}

async function openTarget(target: string, size: number, blockSize: number, out: Writable): Promise<Sink> {
  if (target === '-') return streamSink(out, blockSize);
  let st;
  try {
    st = await fsp.stat(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st?.isDirectory()) throw new RestoreTargetError(`${target} is a folder; give an image file name or a block device`);
  if (st?.isBlockDevice()) {
    const { major, minor } = splitRdev(st.rdev);
    const dev = devNo(major, minor);
    const devSize = await blockDeviceSize(dev);
    if (devSize === undefined) throw new RestoreTargetError(`cannot find the size of ${target} in /sys/dev/block`);
    if (devSize < size) throw new RestoreTargetError(`${target} holds ${devSize} bytes, the image needs ${size}: the target is too small; nothing was written`);
    const mounts = await mountsOf({ blockDevice: dev });
    if (mounts.length > 0) throw new RestoreTargetError(`${target} is in use (${mounts.map((m) => `${m.device} mounted on ${m.mountPoint}`).join(', ')}); unmount it first; nothing was written`);
    const fh = await fsp.open(target, constants.O_WRONLY | constants.O_EXCL);
    const zeros = Buffer.alloc(blockSize);
    return {
      kind: 'blockdev',
      targetSize: devSize,
      write: (buf, position) => writeFully(fh, buf, position),
      hole: async (length, position) => writeFully(fh, length === zeros.length ? zeros : Buffer.alloc(length), position),
      finish: async () => fh.datasync(),
      close: () => fh.close(),
    };
  }
  if (st?.isCharacterDevice() || st?.isFIFO()) {
    const fh = await fsp.open(target, 'w');
    const sink = streamSink(fh.createWriteStream(), blockSize);
    return { ...sink, close: () => fh.close().catch(() => undefined) };
  }
  const fh = await fsp.open(target, 'w', 0o600);
  return {
    kind: 'file',
    write: (buf, position) => writeFully(fh, buf, position),
    hole: async () => undefined,
    finish: async (n) => {
      await fh.truncate(n);
      await fh.datasync();
    },
    close: () => fh.close(),
  };
}

export class ImageRestore {
  private readonly reader: ImageSnapshotReader;

  constructor(private readonly repo: Repository, private readonly snapshot: Snapshot, private readonly opts: ImageRestoreOptions) {
    this.reader = openImageSnapshot(repo, snapshot, { cacheBytes: 0 });
  }

  async run(): Promise<ImageRestoreResult> {
    const r = this.reader;
    const { size, blockSize, blocks } = r;
    if (this.opts.verify && this.opts.target === '-') throw new RestoreTargetError('--verify cannot read back stdout; restore to a file or a device to verify');
    const sink = await openTarget(this.opts.target, size, blockSize, this.opts.stdout ?? process.stdout);
    let bytesWritten = 0;
    let holes = 0;
    try {
      const ahead = Math.max(1, this.opts.readAhead ?? 8);
      const loads = new Map<number, Promise<Buffer | null>>();
      const load = (b: number): void => {
        if (b < blocks && !loads.has(b)) {
          const p = r.loadBlock(b);
          p.catch(() => undefined);
          loads.set(b, p);
        }
      };
      for (let b = 0; b < Math.min(blocks, ahead); b++) load(b);
      for (let b = 0; b < blocks; b++) {
        this.opts.signal?.throwIfAborted();
        load(b + ahead);
        const bytes = await loads.get(b)!;
        loads.delete(b);
        const pos = b * blockSize;
        if (bytes === null) {
          holes++;
          await sink.hole(r.blockLength(b), pos);
        } else {
          await sink.write(bytes, pos);
          bytesWritten += bytes.length;
        }
        this.opts.onProgress?.({ bytes: pos + r.blockLength(b), total: size });
      }
      await sink.finish(size);
    } finally {
      await sink.close();
    }
    const result: ImageRestoreResult = { kind: sink.kind, size, bytesWritten, holes, ...(sink.targetSize !== undefined ? { targetSize: sink.targetSize } : {}) };
    if (!this.opts.verify) return result;
    return { ...result, verifyFailed: await this.verify() };
  }

  /** Reads the target back; returns the blocks that differ. */
  private async verify(): Promise<number[]> {
    const r = this.reader;
    const failed: number[] = [];
    const fh = await fsp.open(this.opts.target, 'r');
    try {
      const chunkBlocks = Math.max(1, Math.floor((8 << 20) / r.blockSize));
      const buf = Buffer.alloc(chunkBlocks * r.blockSize);
      const zeros = Buffer.alloc(r.blockSize);
      for (let b0 = 0; b0 < r.blocks; b0 += chunkBlocks) {
        this.opts.signal?.throwIfAborted();
        const n = Math.min(chunkBlocks, r.blocks - b0);
        const length = Math.min(n * r.blockSize, r.size - b0 * r.blockSize);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(buf, got, length - got, b0 * r.blockSize + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        for (let i = 0; i < n; i++) {
          const b = b0 + i;
          const len = r.blockLength(b);
          const start = i * r.blockSize;
          if (start + len > got) {
            failed.push(b);
            continue;
          }
          const bytes = buf.subarray(start, start + len);
          const id = await r.blockId(b);
          const ok = id === null ? bytes.equals(zeros.subarray(0, len)) : this.repo.blobId(bytes) === id;
          if (!ok) failed.push(b);
        }
      }
    } finally {
      await fh.close();
    }
    return failed;
  }
}

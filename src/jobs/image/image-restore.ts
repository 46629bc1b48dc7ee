/**
 * Restoring an image snapshot onto an image file, a block device, or a
 * stream (stdout): bare-metal recovery.
 *
 *   target = file:   refused when a loop device backed by it is mounted
 *                    (even with `--force`), and when it exists and is not
 *                    empty, unless `overwrite` (`--force`); truncated, then only stored
 *                    blocks are written (holes stay holes: the file is
 *                    sparse), then ftruncate(size)
 *            device: must be at least the image size (checked before any
 *                    write) and not mounted; every block is written, holes as
 *                    zeros (a used disk is not zero); the rest of a larger
 *                    disk is left alone
 *            stream: every byte in order, holes as zeros
 *   in batches of ~16 MiB, a few batches in flight: block ids → index → the
 *   pack ranges holding them, each read once → a block worker opens each blob
 *   and pwrites it at its positions (a stream gets the plaintext back and
 *   writes batches in order); a device is fdatasync'ed at the end (the
 *   machine is about to boot from it), an image file is left to the page
 *   cache like any restored file
 *   --verify: read the target back; every stored block must have its keyed
 *   id again, every hole must read as zeros
 */
import { constants, promises as fsp } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { splitRdev } from '../../sources/posix.js';
import { blockDeviceSize, devNo, mountsOf, type LiveUse } from '../../sources/image/block-devices.js';
import { openImageSnapshot, type ImageSnapshotReader } from './image-reader.js';
import { PoolSession, type JobPoolOptions } from '../pool/worker-pool.js';
import { BLOCK_WORKER, blockInit, type BlockTask, type UnpackBlob, type UnpackResult } from './block-protocol.js';
import { rebuildError, wireError } from '../pool/wire-error.js';
import { io } from '../../repo/objects.js';
import { BlobType } from '../../repo/pack.js';
import { BlobNotFoundError, CorruptObjectError } from '../../repo/errors.js';
import type { BlobLocation } from '../../repo/index-file.js';
import { NotFoundError, ShortReadError } from '../../storage/backend.js';
import type { ErrorCode } from '../../core/errors.js';

/** Raw bytes of blocks restored per batch. */
const BATCH_BYTES = 16 << 20;
/** Batches whose loads and unpacking overlap. */
const BATCHES_IN_FLIGHT = 3;
/** Stored blobs of a pack closer than this are read together. */
const RANGE_GAP = 256 << 10;
/** Largest pack range read at once. */
const RANGE_MAX = 16 << 20;

/** The target cannot take the image (too small, mounted, not writable as such). */
export class RestoreTargetError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BAD_TARGET';
  constructor(message: string) {
    super(message);
    this.name = 'RestoreTargetError';
  }
}

export interface ImageRestoreOptions extends JobPoolOptions {
  /** A path, or `-` for the stream `stdout`. */
  readonly target: string;
  readonly verify?: boolean;
  /** Replace an image file that exists and is not empty (`--force`); devices are checked by size and mounts instead. */
  readonly overwrite?: boolean;
  /** Where `-` writes, in order (the CLI's stdout). The caller owns it: the job never ends it. */
  readonly stdout?: Writable;
  readonly signal?: AbortSignal;
  /** Called once the target is checked and open, before anything is written to it. */
  readonly onStart?: () => void;
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

/** A block to restore and the copy of it planned to be read. */
interface Planned {
  readonly id: string;
  readonly loc: BlobLocation;
  readonly blocks: number[];
}

interface Sink {
  readonly kind: ImageRestoreResult['kind'];
  /** File descriptor that block workers write to with pwrite; absent for streams. */
  readonly fd?: number;

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
    },
    close: async () => undefined,
  };
}

/** Refuses a target with `mounts`: a device, or an image file, through which a file system is mounted. */
function refuseMounted(target: string, mounts: readonly LiveUse[]): void {
  if (mounts.length > 0) throw new RestoreTargetError(`${target} is in use (${mounts.map((m) => `${m.device} mounted on ${m.mountPoint}`).join(', ')}); unmount it first; nothing was written`);
}

async function openTarget(target: string, size: number, blockSize: number, out: Writable | undefined, overwrite: boolean, dataBytes: () => Promise<number>): Promise<Sink> {
  if (target === '-' && out) return streamSink(out, blockSize);
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
    refuseMounted(target, await mountsOf({ blockDevice: dev }));
    const fh = await fsp.open(target, constants.O_WRONLY | constants.O_EXCL);
    const zeros = Buffer.alloc(blockSize);
    return {
      kind: 'blockdev',
      fd: fh.fd,
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
  // An image file behind a mounted loop device is a file system in use: --force does not make writing under it safe.
  if (st?.isFile()) refuseMounted(target, await mountsOf({ file: target }));
  // An image file: never replace one that holds something unless asked, and check the space before truncating anything.
  if (st && st.size > 0 && !overwrite) {
    throw new RestoreTargetError(`${target} exists and holds ${st.size} bytes; pass --force to overwrite it; nothing was written`);
  }
  const needed = await dataBytes();
  const fsst = await fsp.statfs(dirname(resolve(target)));
  const free = Number(fsst.bavail) * Number(fsst.bsize) + (st?.isFile() ? st.blocks * 512 : 0);
  if (free < needed) throw new RestoreTargetError(`${target}: the image needs ${needed} bytes for its data (written sparse), ${free} are free there: the target is too small; nothing was written`);
  // O_EXCL for a new file: one created since the check above is not overwritten either.
  const fh = await fsp.open(target, st ? 'w' : 'wx', 0o600);
  return {
    kind: 'file',
    fd: fh.fd,
    write: (buf, position) => writeFully(fh, buf, position),
    hole: async () => undefined,
    // No fdatasync for an image file (like file restores); a device is synced.
    finish: async (n) => fh.truncate(n),
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
    if (this.opts.target === '-' && !this.opts.stdout) throw new RestoreTargetError('target - needs a stream to write to (the stdout option)');
    const sink = await openTarget(this.opts.target, size, blockSize, this.opts.stdout, this.opts.overwrite === true, () => r.storedBytes());
    this.opts.onStart?.();
    const pool = PoolSession.open<BlockTask>(this.opts, BLOCK_WORKER, blockInit(this.repo));
    let bytesWritten = 0;
    let holes = 0;
    try {
      const batchBlocks = Math.max(1, Math.floor(BATCH_BYTES / blockSize));
      // Batches in flight: their loads and unpacking overlap; streams write them in order.
      type Batch = { b0: number; n: number; done: Promise<Map<number, Buffer | number>> };
      const inFlight: Batch[] = [];
      const emit = async (batch: Batch): Promise<void> => {
        const plain = await batch.done;
        for (let b = batch.b0; b < batch.b0 + batch.n; b++) {
          const pos = b * blockSize;
          const bytes = plain.get(b);
          if (bytes === undefined) {
            holes++;
            await sink.hole(r.blockLength(b), pos);
          } else if (typeof bytes === 'number') {
            bytesWritten += bytes;
          } else {
            await sink.write(bytes, pos);
            bytesWritten += bytes.length;
          }
        }
        this.opts.onProgress?.({ bytes: Math.min(size, (batch.b0 + batch.n) * blockSize), total: size });
      };
      for (let b0 = 0; b0 < blocks; b0 += batchBlocks) {
        this.opts.signal?.throwIfAborted();
        const n = Math.min(batchBlocks, blocks - b0);
        const done = this.batch(pool, sink, b0, n);
        done.catch(() => undefined);
        inFlight.push({ b0, n, done });
        if (inFlight.length >= BATCHES_IN_FLIGHT) await emit(inFlight.shift()!);
      }
      while (inFlight.length > 0) await emit(inFlight.shift()!);
      await sink.finish(size);
    } catch (e) {
      if (/ENOSPC/.test((e as Error).message)) throw new RestoreTargetError(`${this.opts.target}: no space left after ${bytesWritten} bytes; the restore is NOT complete`);
      throw e;
    } finally {
      await pool.close();
      await sink.close();
    }
    const result: ImageRestoreResult = { kind: sink.kind, size, bytesWritten, holes, ...(sink.targetSize !== undefined ? { targetSize: sink.targetSize } : {}) };
    if (!this.opts.verify) return result;
    return { ...result, verifyFailed: await this.verify() };
  }

  /**
   * Restores blocks [b0, b0 + n): looks their ids up, reads each pack range
   * holding them once, and has the workers open and write them. Returns the
   * stored blocks: with their plaintext for a stream, else with an empty
   * their length (already written by a worker).
   */
  private async batch(pool: PoolSession<BlockTask>, sink: Sink, b0: number, n: number): Promise<Map<number, Buffer | number>> {
    const r = this.reader;
    const out = new Map<number, Buffer | number>();
    const byId = new Map<string, number[]>();
    for (let b = b0; b < b0 + n; b++) {
      const id = await r.blockId(b);
      if (id === null) continue;
      let list = byId.get(id);
      if (!list) byId.set(id, (list = []));
      list.push(b);
    }
    const byPack = new Map<string, Planned[]>();
    for (const [id, list] of byId) {
      let loc = this.repo.readCopy(id);
      if (!loc) throw new BlobNotFoundError(id, `block ${list[0]} of the image:`);
      const unfit = (loc: BlobLocation): CorruptObjectError | undefined => {
        if (loc.type !== BlobType.Data) return new CorruptObjectError(`block ${id}`, `indexed as type ${loc.type}`);
        if (loc.rawLength !== r.blockLength(list[0]!)) return new CorruptObjectError(`block ${list[0]} (${id})`, `holds ${loc.rawLength} bytes, expected ${r.blockLength(list[0]!)}`);
        return undefined;
      };
      // A copy indexed as another type or length is not this block (a planted record may say anything): the next copy is tried.
      for (let e = unfit(loc); e; e = unfit(loc)) {
        const next = this.repo.copyFailed(loc, `pack ${loc.pack}: ${e.message}`);
        if (!next) throw e;
        loc = next;
      }
      let p = byPack.get(loc.pack);
      if (!p) byPack.set(loc.pack, (p = []));
      p.push({ id, loc, blocks: list });
    }
    const jobs: Promise<void>[] = [];
    for (const [pack, items] of byPack) {
      items.sort((a, b) => a.loc.offset - b.loc.offset);
      // Ranges of the pack: neighbours closer than RANGE_GAP are read together.
      let i = 0;
      while (i < items.length) {
        let j = i + 1;
        let end = items[i]!.loc.offset + items[i]!.loc.length;
        while (j < items.length && items[j]!.loc.offset - end <= RANGE_GAP && items[j]!.loc.offset + items[j]!.loc.length - items[i]!.loc.offset <= RANGE_MAX) {
          end = Math.max(end, items[j]!.loc.offset + items[j]!.loc.length);
          j++;
        }
        jobs.push(this.unpackRange(pool, sink, pack, items.slice(i, j), out));
        i = j;
      }
    }
    await Promise.all(jobs);
    return out;
  }

  /**
   * Restores the blocks of one pack range. A block whose copy here is bad
   * (the pack is missing, or it fails authentication or its id) is read from
   * another copy (`Repository.loadBlob`) and written like a stream's.
   */
  private async unpackRange(pool: PoolSession<BlockTask>, sink: Sink, pack: string, items: Planned[], out: Map<number, Buffer | number>): Promise<void> {
    const start = items[0]!.loc.offset;
    const end = Math.max(...items.map((x) => x.loc.offset + x.loc.length));
    let res: UnpackResult;
    try {
      const data = await this.repo.backend.load({ type: 'data', name: pack }, { offset: start, length: end - start, signal: this.opts.signal });
      const own = data.byteOffset === 0 && data.buffer.byteLength === data.length ? data : Buffer.from(data);
      const bs = this.reader.blockSize;
      const blobs: UnpackBlob[] = items.map((x) => ({
        id: x.id, flags: x.loc.flags, rawLength: x.loc.rawLength, offset: x.loc.offset - start, length: x.loc.length, positions: x.blocks.map((b) => b * bs),
      }));
      res = await pool.run<UnpackResult>({ kind: 'unpack', pack, data: own, blobs, fd: sink.fd ?? -1 }, [own.buffer as ArrayBuffer]);
    } catch (e) {
      if (!(e instanceof NotFoundError || e instanceof ShortReadError)) throw e;
      const error = wireError(new CorruptObjectError(`pack ${pack}`, `${e instanceof NotFoundError ? 'missing' : 'truncated'} (needed for the image)`));
      res = { bytes: 0, bad: items.map((_, index) => ({ index, error })) };
    }
    const bad = new Map(res.bad.map((x) => [x.index, x.error]));
    await Promise.all(items.map(async (x, k) => {
      let v: Buffer | number;
      const error = bad.get(k);
      if (error !== undefined) {
        const next = this.repo.copyFailed(x.loc, error.message);
        if (!next) throw rebuildError(error); // as the main thread would have thrown it: its class and code
        v = await this.repo.loadBlob(BlobType.Data, x.id, io(this.opts));
      } else {
        const plain = res.plain?.[k];
        v = plain ? Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength) : x.loc.rawLength;
      }
      for (const b of x.blocks) out.set(b, v);
    }));
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

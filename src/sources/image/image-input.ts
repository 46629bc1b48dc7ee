/**
 * The source of an image backup: a block device, a raw image file, a qcow2
 * file's virtual disk, a running VM's disk (QMP), an NBD export, or a raw stream (stdin, `-`, or a
 * producer command's output). All but streams have a size and random access
 * (for reading partition tables and allocation bitmaps before the data); a
 * stream has neither and is read once, in order.
 */
import { constants, promises as fsp, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { splitRdev } from '../posix.js';
import { blockDeviceSize, devNo, type DevNo } from './block-devices.js';
import { inRange, type RandomAccessSource } from './random-access.js';
import type { ErrorCode } from '../../core/errors.js';
import { isNbdUri } from './nbd-client.js';
import { openNbdUri, openQcow2, qcow2FileDisk, type ByteRange } from './nbd-input.js';
import { isQmpSource, qmpDisk } from './qmp-disk.js';
import type { DirtyBitmapDisk } from './dirty-bitmap-disk.js';
import { isQcow2 } from './qemu.js';

/** Where the image comes from. */
export type ImageInputKind = 'file' | 'blockdev' | 'stream' | 'nbd' | 'qcow2' | 'qmp';

/** The source shrank (or a read came back short) while it was being read. */
export class SourceShrankError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'SOURCE_SHRANK';
  constructor(readonly path: string, readonly expected: number, readonly got: number) {
    super(`${path} shrank while it was read: expected ${expected} bytes, the source ended at ${got}; no snapshot was written`);
    this.name = 'SourceShrankError';
  }
}

/** The source holds no bytes: an empty image is no disk (typically a producer that wrote nothing). */
export class EmptySourceError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'EMPTY_SOURCE';
  constructor(readonly path: string, kind: ImageInputKind) {
    const what = kind !== 'stream' ? `${path} holds 0 bytes`
      : path === '-' ? 'stdin ended before its first byte (did the program writing to the pipe fail?)' : `${path} wrote nothing`;
    super(`${what}: an empty image is no disk; no snapshot was written`);
    this.name = 'EmptySourceError';
  }
}

/** An opened image source. */
export interface ImageInput {
  /** As given on the command line (`-` for stdin, the command line of a producer). */
  readonly path: string;
  readonly kind: ImageInputKind;
  /** The disk's format when it is not raw bytes (a qcow2 file, a VM's qcow2 disk). */
  readonly format?: 'qcow2';
  /** Bytes; undefined for a stream until it ends. */
  readonly size: number | undefined;
  /** "major:minor" of a block device. */
  readonly devNo?: DevNo;
  /** Random access to a file or a device; undefined for a stream. */
  readonly random?: RandomAccessSource;
  /**
   * Reads up to `length` bytes at `position` into `buf` at `offset` (files and
   * devices). Returns the bytes read: fewer only at the end of the source.
   */
  readAt?(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** The open descriptor of a raw file or block device, which an image backup's block workers may map instead of reading it. */
  readonly fd?: number;
  /** The bytes of a stream. */
  readonly stream?: AsyncIterable<Uint8Array>;
  /** Size now (files and devices), to notice a source that changed size. */
  currentSize?(): Promise<number>;
  /** Ranges known to read as zeros without reading them (NBD base:allocation), in order. */
  zeroRanges?(): Promise<ByteRange[]>;
  /** Ranges a qcow2 dirty bitmap marks as written since it started (`openImageInput` with `bitmap`, a DirtyBitmapDisk opened with `since`), in order. */
  dirtyRanges?(): Promise<ByteRange[]>;
  close(): Promise<void>;
}

async function sizeOf(st: Stats, path: string): Promise<{ size: number; dev?: DevNo }> {
  if (st.isFile()) return { size: st.size };
  const { major, minor } = splitRdev(st.rdev);
  const dev = devNo(major, minor);
  const size = await blockDeviceSize(dev);
  if (size === undefined) throw new Error(`cannot find the size of block device ${path} (${dev}) in /sys/dev/block`);
  return { size, dev };
}

/** A stream source named `path` (`-` for stdin, or the producer's command line). */
export function streamInput(path: string, stream: AsyncIterable<Uint8Array>): ImageInput {
  return { path, kind: 'stream', size: undefined, stream, close: async () => undefined };
}

/** The snapshot path of an image source: an NBD URI or a VM's disk as given, a file or device as an absolute path. */
export function imageSourcePath(src: string): string {
  return isNbdUri(src) || isQmpSource(src) ? src : resolve(src);
}

/**
 * The disk behind SRC whose persistent dirty bitmaps a backup rotates
 * (jobs/image/dirty-bitmaps.ts): a running VM's disk (`qmp:SOCKET#DISK`) or
 * a qcow2 file; undefined for every other source, which `openImageInput` opens.
 */
export async function bitmapDiskOf(src: string): Promise<DirtyBitmapDisk | undefined> {
  if (isQmpSource(src)) return qmpDisk(src);
  if (src === '-' || isNbdUri(src) || !(await isQcow2(src))) return undefined;
  return qcow2FileDisk(src);
}

/** How to open an image source. */
export interface OpenImageOptions {
  /** qcow2: also export this persistent dirty bitmap (`dirtyRanges`). */
  readonly bitmap?: string;
  readonly signal?: AbortSignal;
}

/**
 * Opens SRC: an NBD URI, a qcow2 file (its virtual disk, through qemu-nbd),
 * a block device or a raw file (a stream, such as the CLI's `-` for stdin, is
 * `streamInput`).
 */
export async function openImageInput(path: string, opts: OpenImageOptions = {}): Promise<ImageInput> {
  if (isNbdUri(path)) return openNbdUri(path, opts.signal);
  if (await isQcow2(path)) return openQcow2(path, opts);
  if (opts.bitmap !== undefined) throw new Error(`${path} is not a qcow2 file: it has no dirty bitmaps`);
  let fh: fsp.FileHandle;
  // Non-blocking: a FIFO given as the image is refused below instead of hanging the open until a writer comes.
  try {
    fh = await fsp.open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOATIME);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    fh = await fsp.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() && !st.isBlockDevice()) throw new Error(`${path} is neither a block device nor a regular file`);
    const { size, dev } = await sizeOf(st, path);
    const readAt = async (buf: Buffer, offset: number, length: number, position: number): Promise<number> => {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, offset + done, length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    };
    const random: RandomAccessSource = {
      size,
      async read(offset: number, length: number): Promise<Buffer> {
        if (!inRange(size, offset, length)) throw new RangeError(`read of ${length} bytes at ${offset} is outside ${path} (${size} bytes)`);
        const buf = Buffer.alloc(length);
        const n = await readAt(buf, 0, length, offset);
        if (n !== length) throw new SourceShrankError(path, size, offset + n);
        return buf;
      },
    };
    let closed = false;
    return {
      path,
      kind: st.isFile() ? 'file' : 'blockdev',
      size,
      ...(dev ? { devNo: dev } : {}),
      random,
      readAt,
      fd: fh.fd,
      currentSize: async () => (await sizeOf(await fh.stat(), path)).size,
      close: async () => {
        if (closed) return;
        closed = true;
        await fh.close();
      },
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

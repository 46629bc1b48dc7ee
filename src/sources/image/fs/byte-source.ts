/**
 * Byte sources for the filesystem readers: they read a disk or partition
 * through `RandomAccessSource` (src/sources/image/random-access.ts), whatever
 * holds the bytes: an image snapshot in a repository, an image file, a slice
 * of either.
 *
 *   SliceSource    a window [offset, offset + size) of another source (a partition)
 *   CachedSource   an LRU of aligned pages in front of a source, so metadata
 *                  reads that touch the same block do not fetch it again
 *   FileSource     an image file on disk (tests, and reading local images)
 */
import type { ErrorCode } from '../../../core/errors.js';
import { open, type FileHandle } from 'node:fs/promises';
import type { RandomAccessSource } from '../random-access.js';

/**
 * Random read access to a fixed-size run of bytes: exactly `length` bytes at
 * `offset`, rejected outside [0, size), safe to call concurrently.
 */
export type ByteSource = RandomAccessSource;

/** A read outside a source's bounds: the structure that asked for it is damaged (or the image truncated). */
export class OutOfBoundsError extends Error {
  readonly code: ErrorCode = 'FILESYSTEM_DAMAGED';
  constructor(readonly what: string, readonly offset: number, readonly length: number, readonly size: number) {
    super(`${what}: read of ${length} bytes at ${offset} is beyond the end (${size} bytes); the image is truncated or damaged`);
    this.name = 'OutOfBoundsError';
  }
}

/** Throws `OutOfBoundsError` unless [offset, offset + length) lies inside [0, size). */
export function checkRange(what: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new OutOfBoundsError(what, offset, length, size);
  }
}

/** A window of another source: offsets are relative to `offset`. */
export class SliceSource implements ByteSource {
  constructor(private readonly inner: ByteSource, readonly offset: number, readonly size: number, private readonly what = 'partition') {
    checkRange(what, offset, size, inner.size);
  }

  read(offset: number, length: number): Promise<Buffer> {
    checkRange(this.what, offset, length, this.size);
    return this.inner.read(this.offset + offset, length);
  }
}

/**
 * An LRU cache of aligned pages. Reads of at most `pageSize` bytes go
 * through it (metadata: superblocks, inodes, directory and extent blocks);
 * larger reads (file contents) go straight to the inner source, so a file
 * copy does not evict the metadata.
 */
export class CachedSource implements ByteSource {
  private readonly pages = new Map<number, Promise<Buffer>>();
  readonly size: number;

  constructor(private readonly inner: ByteSource, private readonly pageSize = 64 * 1024, private readonly maxPages = 256) {
    this.size = inner.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange('image', offset, length, this.size);
    if (length > this.pageSize) return this.inner.read(offset, length);
    const first = Math.floor(offset / this.pageSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.pageSize);
    const parts: Buffer[] = [];
    for (let p = first; p <= last; p++) parts.push(await this.page(p));
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const start = offset - first * this.pageSize;
    return all.subarray(start, start + length);
  }

  private page(n: number): Promise<Buffer> {
    let p = this.pages.get(n);
    if (p) {
      this.pages.delete(n); // most recently used goes last
      this.pages.set(n, p);
      return p;
    }
    const start = n * this.pageSize;
    p = this.inner.read(start, Math.min(this.pageSize, this.size - start));
    p.catch(() => this.pages.delete(n));
    this.pages.set(n, p);
    while (this.pages.size > this.maxPages) this.pages.delete(this.pages.keys().next().value!);
    return p;
  }
}

/** An image file on disk, read-only. */
export class FileSource implements ByteSource {
  private constructor(private readonly fh: FileHandle, readonly size: number) {}

  static async open(path: string): Promise<FileSource> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      return new FileSource(fh, st.size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange('image file', offset, length, this.size);
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new OutOfBoundsError('image file (shrank while open)', offset, length, this.size);
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

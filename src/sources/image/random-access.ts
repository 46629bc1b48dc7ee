/**
 * The seam between image formats and what reads them: a fixed-size byte
 * source with random access. Implemented by raw image files and block devices
 * (`image-input.ts`), by image snapshots in a repository
 * (`jobs/image/image-reader.ts`), and by windows of either (`sliceSource`).
 * The file system and partition-table parsers read through it.
 */

/** A readable, fixed-size byte source with random access. */
export interface RandomAccessSource {
  /** Total bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes at `offset`. Rejects with a `RangeError` when the
   * range is not inside [0, size); safe to call concurrently.
   */
  read(offset: number, length: number): Promise<Buffer>;
}

/** True when [offset, offset + length) is a valid range of a source of `size` bytes. */
export function inRange(size: number, offset: number, length: number): boolean {
  return Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size;
}

/** A window [start, start + size) of another source: one partition of an image. */
export function sliceSource(src: RandomAccessSource, start: number, size: number): RandomAccessSource {
  if (!inRange(src.size, start, size)) throw new RangeError(`slice ${start}+${size} is outside the source (${src.size} bytes)`);
  return {
    size,
    read(offset: number, length: number): Promise<Buffer> {
      if (!inRange(size, offset, length)) return Promise.reject(new RangeError(`read of ${length} bytes at ${offset} is outside the slice (${size} bytes)`));
      return src.read(start + offset, length);
    },
  };
}

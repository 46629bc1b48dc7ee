/**
 * Streams a regular file out of an image: data runs are read in pieces of
 * at most `PIECE` bytes, holes are either skipped (restore: they stay
 * holes) or produced as zeros (dump: a byte stream has no holes).
 */
import type { ImageNode, ImageSegment, ImageVolume } from '../../sources/image/fs/image-volume.js';

/** Largest single read from the image. */
export const PIECE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(1 << 20);

/** A piece of a file: bytes at an offset. */
export interface FilePiece {
  readonly offset: number;
  readonly data: Buffer;
}

/** Yields the stored data of a file in order; holes are left out. */
export async function* filePieces(volume: ImageVolume, file: ImageNode, segments?: readonly ImageSegment[]): AsyncGenerator<FilePiece> {
  const segs = segments ?? (await volume.segments(file));
  for (const s of segs) {
    if (s.hole) continue;
    for (let off = s.offset; off < s.offset + s.length; off += PIECE) {
      const length = Math.min(PIECE, s.offset + s.length - off);
      yield { offset: off, data: await volume.read(file, segs, off, length) };
    }
  }
}

/** Yields every byte of a file, holes as zeros. */
export async function* fileBytes(volume: ImageVolume, file: ImageNode): AsyncGenerator<Buffer> {
  const segs = await volume.segments(file);
  let pos = 0;
  for await (const piece of filePieces(volume, file, segs)) {
    for (; pos < piece.offset; pos += ZEROS.length) yield ZEROS.subarray(0, Math.min(ZEROS.length, piece.offset - pos));
    pos = piece.offset;
    yield piece.data;
    pos += piece.data.length;
  }
  for (; pos < file.size; pos += ZEROS.length) yield ZEROS.subarray(0, Math.min(ZEROS.length, file.size - pos));
}

/**
 * Hand-made zstd frames that inflate far beyond their size (a decompression
 * bomb): RLE blocks of 128 KiB, 4 bytes each, so 2 GiB costs 64 KiB (RFC 8878
 * §3.1.1). Built without compressing anything, so a test never holds the
 * inflated bytes itself.
 */
const BLOCK = 128 * 1024;

/**
 * A frame of `size` bytes of `byte` (a multiple of 128 KiB). With `declare`
 * the frame header states the content size (single segment, 8-byte field),
 * else it states only a 128 KiB window and the size is known only at its end.
 */
export function zstdBomb(size: number, opts: { declare?: number | false; byte?: number } = {}): Buffer {
  if (size % BLOCK !== 0 || size === 0) throw new RangeError('zstdBomb: size must be a positive multiple of 128 KiB');
  const declared = opts.declare === undefined ? size : opts.declare;
  const header = declared === false
    ? Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]) // no content size; window 2^(10+7) = 128 KiB
    : Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0]), u64(declared)]); // 8-byte content size, single segment
  const blocks = size / BLOCK;
  const body = Buffer.alloc(blocks * 4);
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0;
    body.writeUIntLE(last | (1 << 1) | (BLOCK << 3), i * 4, 3); // Last_Block, Block_Type 1 (RLE), Block_Size
    body[i * 4 + 3] = opts.byte ?? 0x41;
  }
  return Buffer.concat([header, body]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

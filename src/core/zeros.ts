/** All-zero detection for chunks and blocks (holes are not stored). No I/O. */

const ZEROS = Buffer.alloc(1 << 20);

/** True when every byte is zero: memcmp against a zero megabyte, piece by piece. */
export function isZero(b: Uint8Array): boolean {
  for (let o = 0; o < b.length; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - o);
    if (Buffer.compare(b.subarray(o, o + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

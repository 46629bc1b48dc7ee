/**
 * Content-defined chunking: FastCDC (2020 variant, normalized chunking level 2)
 * over a keyed gear hash.
 *
 * The chunker cuts a byte stream into chunks whose boundaries depend only on
 * the bytes near them, so an insertion or deletion changes the chunks around
 * the edit and the chunking re-synchronizes right after it: shifted data still
 * deduplicates. The definition below is normative (docs/format.md copies it);
 * two implementations that follow it produce identical cut points.
 *
 * Parameters (`ChunkerParams`, stored in the repository config)
 *   algorithm  "fastcdc-2020"
 *   minSize    integer, 64 <= minSize < avgSize
 *   avgSize    a power of two, avgSize = 2^b, minSize < avgSize < maxSize
 *   maxSize    integer, maxSize <= 64 MiB (so b <= 25; minSize >= 64 gives b >= 7)
 *   defaults   minSize 512 KiB, avgSize 1 MiB, maxSize 8 MiB
 *
 * Gear table. Each repository has a secret 32-byte chunker seed, so chunk
 * boundaries (and chunk sizes) do not fingerprint known content. For
 * k = 0, 1, ..., 31:
 *     block_k = HMAC-SHA256(key = seed, message = "holdfast/fastcdc-2020/gear" || k)
 * where the message is the 26 ASCII bytes of the string followed by the single
 * byte k. The 1024 bytes block_0 || block_1 || ... || block_31, read as 256
 * big-endian unsigned 32-bit integers, are gear[0], gear[1], ..., gear[255].
 *
 * Hash. x_i is the byte at stream offset i; all arithmetic is modulo 2^32.
 *     H(i) = sum over j = 0..31 of gear[x_(i-j)] * 2^j
 * is the gear hash of the 32-byte window ending at offset i. It is computed
 * incrementally as h <- (2h + gear[x_i]) mod 2^32: contributions shifted past
 * bit 31 drop out, so after 32 or more updates h = H(i) whatever h started as.
 * H depends on the content alone, not on where chunks start.
 *
 * Masks. Bit k of H(i) depends only on x_(i-k) .. x_i, so the masks take the
 * high bits, which see the widest window (bit 31 sees all 32 bytes):
 *     maskS = the top b+2 bits set = 2^32 - 2^(30-b)   (harder: P(match) = 1 / (4 avgSize))
 *     maskL = the top b-2 bits set = 2^32 - 2^(34-b)   (easier: P(match) = 4 / avgSize)
 * For the defaults (b = 20): maskS = 0xFFFFFC00 (bits 10..31),
 * maskL = 0xFFFFC000 (bits 14..31). The effective window of the cut test is
 * the 32 bytes ending at the candidate cut.
 *
 * Cut rule. The first chunk starts at offset 0; a chunk starting at offset s
 * has length L = the smallest value that satisfies one of
 *     minSize <= L < avgSize   and  H(s+L-1) & maskS = 0   (normal size not reached yet)
 *     avgSize <= L < maxSize   and  H(s+L-1) & maskL = 0   (past the normal size)
 *     L = maxSize                                           (forced cut)
 *     s + L = length of the stream                          (the last chunk, may be short)
 * and the next chunk starts at s + L. So the byte whose window matched is the
 * last byte of its chunk. An empty stream has no chunks. Since L >= minSize
 * >= 64, the window of a candidate lies inside its chunk, and no byte before
 * s + minSize - 32 needs to be hashed (FastCDC's cut-point skipping).
 *
 * With minSize = avgSize / 2 the mean chunk size is about 1.2 x avgSize.
 */

import { createHmac } from 'node:crypto';

/** The chunking algorithm and its sizes. See the module comment for the exact rules. */
export interface ChunkerParams {
  /** The only algorithm so far. */
  algorithm: 'fastcdc-2020';
  /** No cut is made before this many bytes (except at the end of the stream). 64 <= minSize < avgSize. */
  minSize: number;
  /** The normal chunk size, where the mask switches from hard to easy. A power of two. */
  avgSize: number;
  /** A cut is forced at this size. avgSize < maxSize <= 64 MiB. */
  maxSize: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** Smallest allowed minSize; also keeps the 32-byte hash window inside the chunk. */
const MIN_MIN_SIZE = 64;
/** Largest allowed maxSize: bounds memory per stream and keeps the masks within 32 bits. */
/** The largest chunk any repository's chunker may make: the bound on maxSize. */
export const MAX_CHUNK_SIZE = 64 * MiB;
/** Width of the gear hash window in bytes (the hash is 32 bits, one bit per byte of history). */
const WINDOW = 32;

export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = Object.freeze({
  algorithm: 'fastcdc-2020',
  minSize: 512 * KiB,
  avgSize: 1 * MiB,
  maxSize: 8 * MiB,
});

const PARAM_KEYS: ReadonlySet<string> = new Set(['algorithm', 'minSize', 'avgSize', 'maxSize']);

/**
 * Checks untrusted chunker parameters (e.g. from a repository config) and
 * returns a fresh, frozen copy. Throws an Error naming the offending field.
 */
export function validateChunkerParams(p: unknown): ChunkerParams {
  const fail = (why: string): never => {
    throw new Error(`invalid chunker params: ${why}`);
  };
  if (typeof p !== 'object' || p === null || Array.isArray(p)) {
    return fail(`expected an object, got ${p === null ? 'null' : Array.isArray(p) ? 'an array' : typeof p}`);
  }
  for (const key of Object.keys(p)) {
    if (!PARAM_KEYS.has(key)) fail(`unknown field ${JSON.stringify(key)}`);
  }
  const o = p as Record<string, unknown>;
  if (o['algorithm'] !== 'fastcdc-2020') {
    fail(`algorithm must be "fastcdc-2020", got ${describe(o['algorithm'])}`);
  }
  const size = (name: string): number => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      return fail(`${name} must be a positive integer, got ${describe(v)}`);
    }
    return v;
  };
  const minSize = size('minSize');
  const avgSize = size('avgSize');
  const maxSize = size('maxSize');
  if (minSize < MIN_MIN_SIZE) fail(`minSize must be at least ${MIN_MIN_SIZE}, got ${minSize}`);
  if (maxSize > MAX_CHUNK_SIZE) fail(`maxSize must be at most ${MAX_CHUNK_SIZE} (64 MiB), got ${maxSize}`);
  if (!(minSize < avgSize)) fail(`minSize (${minSize}) must be less than avgSize (${avgSize})`);
  if (!(avgSize < maxSize)) fail(`avgSize (${avgSize}) must be less than maxSize (${maxSize})`);
  // avgSize < 2^26 here, so the 32-bit test is exact.
  if ((avgSize & (avgSize - 1)) !== 0) fail(`avgSize must be a power of two, got ${avgSize}`);
  return Object.freeze({ algorithm: 'fastcdc-2020', minSize, avgSize, maxSize });
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === null) return 'null';
  return typeof v;
}

const GEAR_DOMAIN = Buffer.from('holdfast/fastcdc-2020/gear', 'ascii');

/**
 * Derives the 256-entry gear table from a repository's 32-byte chunker seed
 * (HMAC-SHA256 in counter mode, see the module comment). Deterministic;
 * different seeds give unrelated tables.
 */
export function gearTable(seed: Uint8Array): Uint32Array {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new Error(`gear table seed must be 32 bytes, got ${seed instanceof Uint8Array ? seed.length : typeof seed}`);
  }
  const table = new Uint32Array(256);
  for (let k = 0; k < 32; k++) {
    const block = createHmac('sha256', seed).update(GEAR_DOMAIN).update(Uint8Array.of(k)).digest();
    for (let j = 0; j < 8; j++) table[k * 8 + j] = block.readUInt32BE(j * 4);
  }
  return table;
}

/**
 * Where a stream scanned with `FastCDC.scan` stands inside its current chunk.
 * Start a stream with `{ pending: 0, hash: 0 }`; one state per stream.
 */
export interface ChunkScanState {
  /** Bytes of the current chunk passed to earlier `scan` calls. */
  pending: number;
  /** Rolling hash after those bytes (only meaningful once hashing began). */
  hash: number;
}

/**
 * A FastCDC chunker for one parameter set and gear table. Stateless between
 * calls, so one instance may serve any number of concurrent streams.
 */
export class FastCDC {
  /** The validated parameters this chunker cuts with. */
  readonly params: ChunkerParams;
  /** The gear table as int32 so the hot loop stays in small-integer arithmetic. */
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly minSize: number;
  private readonly avgSize: number;
  private readonly maxSize: number;
  /** Out-parameter of `find` (the hash where it stopped); read right after the call. */
  private lastHash = 0;

  constructor(params: ChunkerParams, gear: Uint32Array) {
    this.params = validateChunkerParams(params);
    if (!(gear instanceof Uint32Array) || gear.length !== 256) {
      throw new Error('gear table must be a Uint32Array of 256 entries');
    }
    this.gear = Int32Array.from(gear, (v) => v | 0);
    const b = Math.log2(this.params.avgSize);
    // Top b+2 and top b-2 bits, as int32 (the sign bit is the hash's bit 31).
    this.maskS = (0xffffffff << (30 - b)) | 0;
    this.maskL = (0xffffffff << (34 - b)) | 0;
    this.minSize = this.params.minSize;
    this.avgSize = this.params.avgSize;
    this.maxSize = this.params.maxSize;
  }

  /**
   * Finds the end of the chunk that starts at `start`, looking at
   * buf[start..end). Returns the absolute offset (start < result <= end) where
   * the chunk ends, or -1 when no cut point lies in the available bytes,
   * end - start < maxSize, and `eof` is false: the caller must then supply
   * more data and call again from the same start. With `eof` set the result is
   * `end` when no earlier cut exists (so `start` only when start === end).
   *
   * Each call rescans from `start`; for streams arriving in small pieces,
   * supply at least maxSize bytes per call or use `scan`/`chunkStream`.
   */
  cut(buf: Uint8Array, start: number, end: number, eof: boolean): number {
    checkRange(buf, start, end);
    const forced = start + this.maxSize;
    const limit = forced < end ? forced : end;
    const r = this.find(buf, start, start, limit, 0);
    if (r >= 0) return r;
    if (limit === forced || eof) return limit;
    return -1;
  }

  /**
   * Incremental form of `cut` for data that arrives in pieces: continues the
   * chunk described by `state` with buf[from..end). Returns the absolute offset
   * in `buf` where the current chunk ends (from < result <= end), after which
   * `state` describes a new, empty chunk and the caller calls again from the
   * result; or -1 when all of buf[from..end) belongs to the current chunk
   * (`state` advanced). At the end of the stream, the pending bytes (if any)
   * form the last chunk. Every byte is hashed at most once.
   */
  scan(buf: Uint8Array, from: number, end: number, state: ChunkScanState): number {
    checkRange(buf, from, end);
    const base = from - state.pending; // may be negative: the chunk began in an earlier buffer
    const forced = base + this.maxSize;
    const limit = forced < end ? forced : end;
    const r = this.find(buf, base, from, limit, state.hash);
    if (r >= 0 || limit === forced) {
      state.pending = 0;
      state.hash = 0;
      return r >= 0 ? r : limit;
    }
    state.pending += end - from;
    state.hash = this.lastHash;
    return -1;
  }

  /**
   * Where a cut lands. The chunk starts at `base` (possibly before this
   * buffer); hashes buf[from..limit) as far as needed, `h` being the hash so
   * far. Returns the chunk end if a mask matched (the forced cut at maxSize is
   * left to the callers), else -1 with the final hash in `lastHash`.
   */
  private find(buf: Uint8Array, base: number, from: number, limit: number, h: number): number {
    const gear = this.gear;
    let i = from;
    // Cut-point skipping: hashing starts WINDOW bytes before the first
    // candidate; whatever h holds then is shifted out by the first check.
    const warm = base + this.minSize - WINDOW;
    if (i < warm) i = warm;
    // Stops are offsets of a chunk's last byte: a cut after byte i gives length i - base + 1.
    let stop = base + this.minSize - 1;
    if (stop > limit) stop = limit;
    for (; i < stop; i++) h = ((h << 1) + gear[buf[i]!]!) | 0;

    stop = base + this.avgSize - 1;
    if (stop > limit) stop = limit;
    if (i < stop) {
      const r = scanUntilMatch(buf, gear, i, stop, h, this.maskS);
      if (r >= 0) return r;
      h = scannedHash;
      i = stop;
    }
    stop = base + this.maxSize - 1; // the byte that completes maxSize is a forced cut anyway
    if (stop > limit) stop = limit;
    if (i < stop) {
      const r = scanUntilMatch(buf, gear, i, stop, h, this.maskL);
      if (r >= 0) return r;
      h = scannedHash;
    }
    this.lastHash = h;
    return -1;
  }
}

/** Out-parameter of `scanUntilMatch`: the hash after the last byte when nothing matched. */
let scannedHash = 0;

/**
 * The hot loop: rolls the gear hash over buf[from..stop) and returns the
 * offset just past the first byte after which (h & mask) === 0, or -1 (then
 * the hash is in `scannedHash`). Unrolled by four: the serial shift-add
 * chain is about two cycles a byte and the unrolling hides the loop overhead.
 */
function scanUntilMatch(buf: Uint8Array, gear: Int32Array, from: number, stop: number, h: number, mask: number): number {
  let i = from;
  const stop4 = stop - 3;
  for (; i < stop4; i += 4) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
    h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
    if ((h & mask) === 0) return i + 2;
    h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
    if ((h & mask) === 0) return i + 3;
    h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
    if ((h & mask) === 0) return i + 4;
  }
  for (; i < stop; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  scannedHash = h;
  return -1;
}

function checkRange(buf: Uint8Array, from: number, end: number): void {
  if (!(buf instanceof Uint8Array)) throw new TypeError('chunker: buffer must be a Uint8Array');
  if (!(Number.isSafeInteger(from) && Number.isSafeInteger(end) && 0 <= from && from <= end && end <= buf.length)) {
    throw new RangeError(`chunker: invalid range [${from}, ${end}) of a ${buf.length}-byte buffer`);
  }
}

/** Source tails shorter than this are copied into a staging buffer instead of being referenced. */
const REFERENCE_MIN = 8 * KiB;
/** Size of a staging buffer for small tails. */
const STAGING_SIZE = 64 * KiB;

/**
 * Splits a stream into chunks. Each yielded Buffer owns its memory (its own
 * ArrayBuffer, exactly the chunk's size), so the consumer may keep it.
 *
 *   for each source buffer:
 *     while cdc.scan() finds a cut in it: yield pending pieces + head, one copy
 *     keep the rest as a pending piece (a reference, or staged if small)
 *   at the end: yield the pending pieces as the last chunk
 *
 * Pending bytes of the current chunk are referenced in the source's buffers,
 * not copied, so each byte is copied once, into its chunk. Small tails
 * (under 8 KiB, or under half of the ArrayBuffer they would pin) are staged
 * instead, so the number of pieces stays bounded and a small tail never pins
 * a huge buffer; those bytes are copied twice. Memory: pending data is under
 * maxSize and pins at most about twice that, plus a 64 KiB staging buffer,
 * the chunk being assembled (at most maxSize), and the source buffer being
 * scanned.
 *
 * A source must not modify a buffer after yielding it (Node streams do not).
 * An empty source yields nothing.
 */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, cdc: FastCDC): AsyncGenerator<Buffer> {
  const state: ChunkScanState = { pending: 0, hash: 0 };
  /** Pending bytes of the current chunk, in order (the open staging segment comes after these). */
  const pieces: Uint8Array[] = [];
  let staging: Buffer | null = null;
  let stagedFrom = 0; // start of the open staging segment, not yet in `pieces`
  let stagedTo = 0;

  const sealStaging = (): void => {
    if (staging !== null && stagedTo > stagedFrom) {
      pieces.push(staging.subarray(stagedFrom, stagedTo));
      stagedFrom = stagedTo;
    }
  };

  const keep = (buf: Uint8Array, from: number, end: number): void => {
    const n = end - from;
    const nothingPending = pieces.length === 0 && stagedTo === stagedFrom;
    // Reference only pieces that are not tiny (bounds the piece count) and that
    // pin at most twice their size (a small tail of a huge buffer is staged).
    if ((n >= REFERENCE_MIN || nothingPending) && buf.buffer.byteLength <= Math.max(2 * n, REFERENCE_MIN)) {
      sealStaging();
      pieces.push(from === 0 && end === buf.length ? buf : buf.subarray(from, end));
      return;
    }
    if (staging === null || staging.length - stagedTo < n) {
      sealStaging();
      staging = Buffer.allocUnsafeSlow(Math.max(STAGING_SIZE, n));
      stagedFrom = stagedTo = 0;
    }
    staging.set(buf.subarray(from, end), stagedTo);
    stagedTo += n;
  };

  /** Copies the pending pieces plus buf[from..end) into a new chunk and clears them. */
  const assemble = (size: number, buf: Uint8Array | null, from: number, end: number): Buffer => {
    sealStaging();
    const out = Buffer.allocUnsafeSlow(size);
    let off = 0;
    for (const p of pieces) {
      out.set(p, off);
      off += p.length;
    }
    if (buf !== null && end > from) {
      out.set(buf.subarray(from, end), off);
      off += end - from;
    }
    if (off !== size) throw new Error(`chunkStream: internal error, assembled ${off} of ${size} bytes`);
    pieces.length = 0;
    // Everything staged has been copied out, so the staging buffer is free again.
    stagedFrom = stagedTo = 0;
    return out;
  };

  for await (const buf of source) {
    if (!(buf instanceof Uint8Array)) {
      throw new TypeError(`chunkStream: source yielded ${typeof buf}, expected a Uint8Array`);
    }
    const end = buf.length;
    let pos = 0;
    while (pos < end) {
      const before = state.pending;
      const cut = cdc.scan(buf, pos, end, state);
      if (cut < 0) {
        keep(buf, pos, end);
        break;
      }
      const chunk = assemble(before + (cut - pos), buf, pos, cut);
      pos = cut;
      yield chunk;
    }
  }
  if (state.pending > 0) yield assemble(state.pending, null, 0, 0);
}

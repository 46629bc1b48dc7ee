/**
 * zstd compression of blobs. A blob is stored compressed only when that makes
 * it smaller; the pack header records which.
 */
import { createRequire } from 'node:module';
import type { ErrorCode } from './errors.js';

// The native binding (CommonJS, no named exports for ESM): its contexts work in a caller's buffers.
type Binding = typeof import('zstd-napi/binding.js');
const { CCtx, CParameter, DCtx, compressBound, getFrameContentSize } = createRequire(import.meta.url)('zstd-napi/binding') as Binding;

export type CompressionMode = 'off' | 'default' | 'better' | 'max';

export const COMPRESSION_MODES: readonly CompressionMode[] = ['off', 'default', 'better', 'max'];

/** zstd levels of the chosen modes. */
const LEVELS: Record<Exclude<CompressionMode, 'default'>, number> = { off: 0, better: 3, max: 19 };

/**
 * What `default` means, by the data (docs/decisions.md, "Compression"):
 * level 1 for files and streams, whose blobs are batches and chunks of about
 * a megabyte; level 3 for disk-image blocks, 128 KiB each compressed alone,
 * where level 1 lost 6 % more and the first backup has the time to spare.
 */
const DEFAULT_LEVELS = { chunks: 1, blocks: 3 } as const;

/** The kind of blobs a compressor is for: `chunks` of files and streams, or disk-image `blocks`. */
export type CompressedData = keyof typeof DEFAULT_LEVELS;

/**
 * Compresses blobs at one level; one instance per thread of work. Output
 * goes to a buffer the instance reuses: a fresh megabyte per blob (what
 * zstd-napi's `Compressor` allocates) was garbage for the collector and page
 * faults for the kernel.
 */
export class BlobCompressor {
  private readonly zstd: InstanceType<Binding['CCtx']> | undefined;
  private scratch = Buffer.alloc(0);

  constructor(readonly mode: CompressionMode, data: CompressedData = 'chunks') {
    if (mode !== 'off') {
      this.zstd = new CCtx();
      this.zstd.setParameter(CParameter.compressionLevel, mode === 'default' ? DEFAULT_LEVELS[data] : LEVELS[mode]);
    }
  }

  /**
   * The compressed bytes, or `undefined` when compression is off or does not
   * shrink `data`. The result is only valid until the next call.
   */
  compress(data: Uint8Array): Buffer | undefined {
    if (!this.zstd || data.length < 64) return undefined;
    const bound = compressBound(data.length);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafeSlow(Math.max(bound, 1 << 20));
    const n = this.zstd.compress2(this.scratch, data);
    return n < data.length ? this.scratch.subarray(0, n) : undefined;
  }
}

/** Thrown when compressed bytes do not decompress to the recorded size. */
export class DecompressionError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'DECOMPRESSION';
  constructor(what: string, detail: string) {
    super(`${what}: cannot decompress (${detail})`);
    this.name = 'DecompressionError';
  }
}

let dctx: InstanceType<Binding['DCtx']> | undefined;

/**
 * Decompresses a blob and checks it has exactly `rawLength` bytes. With
 * `into` (at least `rawLength` bytes) the result is a view of it: a worker
 * that reuses one buffer spares the kernel fresh, zeroed pages for every
 * blob (1.3 GB of them in a restore of the Linux tree).
 *
 * Never produces more than `rawLength` bytes, whatever the frame says: a
 * frame that declares another content size is refused before any output
 * buffer is allocated, and one that declares none is decompressed into
 * exactly `rawLength` bytes, where zstd stops with an error at the end of the
 * buffer. So the caller's bound on `rawLength` bounds the memory (a 66 KB
 * frame of RLE blocks inflates to 2 GiB).
 */
export function decompress(data: Uint8Array, rawLength: number, what: string, into?: Buffer): Buffer {
  if (into && into.length < rawLength) throw new RangeError(`decompress: ${into.length}-byte buffer for ${rawLength} bytes`);
  let declared: number | null;
  try {
    declared = getFrameContentSize(data);
  } catch (e) {
    throw new DecompressionError(what, (e as Error).message);
  }
  if (declared !== null && declared !== rawLength) throw new DecompressionError(what, `the frame declares ${declared} bytes, expected ${rawLength}`);
  dctx ??= new DCtx();
  const out = into ? into.subarray(0, rawLength) : Buffer.allocUnsafe(rawLength);
  let n: number;
  try {
    n = dctx.decompress(out, data);
  } catch (e) {
    throw new DecompressionError(what, (e as Error).message);
  }
  if (n !== rawLength) throw new DecompressionError(what, `got ${n} bytes, expected ${rawLength}`);
  return out;
}

/** Parses a compression mode name as given on the command line. */
export function parseCompressionMode(s: string): CompressionMode {
  if ((COMPRESSION_MODES as readonly string[]).includes(s)) return s as CompressionMode;
  throw new Error(`unknown compression "${s}" (use one of ${COMPRESSION_MODES.join(', ')})`);
}

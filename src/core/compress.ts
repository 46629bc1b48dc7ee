/**
 * zstd compression of blobs. A blob is stored compressed only when that makes
 * it smaller; the pack header records which.
 */
import { Compressor, Decompressor } from 'zstd-napi';

export type CompressionMode = 'off' | 'fast' | 'default' | 'max';

export const COMPRESSION_MODES: readonly CompressionMode[] = ['off', 'fast', 'default', 'max'];

const LEVELS: Record<CompressionMode, number> = { off: 0, fast: 1, default: 3, max: 19 };

/** Compresses blobs at one level; one instance per thread of work. */
export class BlobCompressor {
  private readonly zstd: Compressor | undefined;

  constructor(readonly mode: CompressionMode) {
    if (mode !== 'off') {
      this.zstd = new Compressor();
      this.zstd.setParameters({ compressionLevel: LEVELS[mode] });
    }
  }

  /** The compressed bytes, or `undefined` when compression is off or does not shrink `data`. */
  compress(data: Uint8Array): Buffer | undefined {
    if (!this.zstd || data.length < 64) return undefined;
    const out = this.zstd.compress(data);
    return out.length < data.length ? out : undefined;
  }
}

/** Thrown when compressed bytes do not decompress to the recorded size. */
export class DecompressionError extends Error {
  constructor(what: string, detail: string) {
    super(`${what}: cannot decompress (${detail})`);
    this.name = 'DecompressionError';
  }
}

let decompressor: Decompressor | undefined;

/** Decompresses a blob and checks it has exactly `rawLength` bytes. */
export function decompress(data: Uint8Array, rawLength: number, what: string): Buffer {
  decompressor ??= new Decompressor();
  let out: Buffer;
  try {
    out = decompressor.decompress(data);
  } catch (e) {
    throw new DecompressionError(what, (e as Error).message);
  }
  if (out.length !== rawLength) throw new DecompressionError(what, `got ${out.length} bytes, expected ${rawLength}`);
  return out;
}

/** Parses a compression mode name as given on the command line. */
export function parseCompressionMode(s: string): CompressionMode {
  if ((COMPRESSION_MODES as readonly string[]).includes(s)) return s as CompressionMode;
  throw new Error(`unknown compression "${s}" (use one of ${COMPRESSION_MODES.join(', ')})`);
}

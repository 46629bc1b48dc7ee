/**
 * The cryptography and decompression of the format, in the browser (and in
 * Node, where the tests run the same code). Each primitive is the fastest of
 * the candidates measured in Chromium (docs/decisions.md, "Browsing an
 * encrypted safe in the browser"):
 *
 *   AES-256-GCM, SHA-256, HMAC, HKDF   WebCrypto (native)
 *   scrypt, keyed BLAKE3               hash-wasm (WebAssembly)
 *   zstd                               @bokuweb/zstd-wasm (libzstd in WebAssembly)
 *
 * Nothing here keeps a secret beyond the call; keys are CryptoKeys that
 * cannot be exported where WebCrypto holds them.
 */
import { init as zstdInit, decompress as zstdDecompress } from '@bokuweb/zstd-wasm';
import { createBLAKE3, scrypt as wasmScrypt } from 'hash-wasm';
import { DamagedError } from './errors.js';
import { utf8 } from './bytes.js';

/** WebCrypto: the page's (window.crypto) or, in the Node tests, Node's global one. */
const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

/** A copy of `b` backed by an ArrayBuffer of its own, which WebCrypto takes. */
const own = (b: Uint8Array): Uint8Array<ArrayBuffer> => (b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b as Uint8Array<ArrayBuffer> : new Uint8Array(b));

export async function sha256(b: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', own(b)));
}

/** An AES-256-GCM key for opening (never exported). */
export function aesKey(raw: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey('raw', own(raw), { name: 'AES-GCM' }, false, ['decrypt']);
}

/**
 * Opens `nonce(12) || ciphertext || tag(16)` (docs/format.md §3.2); undefined
 * when it is shorter than 28 bytes or the tag does not verify.
 */
export async function aesGcmOpen(key: CryptoKey, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array | undefined> {
  if (sealed.length < 28) return undefined;
  try {
    return new Uint8Array(await subtle().decrypt(
      { name: 'AES-GCM', iv: own(sealed.slice(0, 12)), additionalData: own(aad), tagLength: 128 },
      key, own(sealed.subarray(12)),
    ));
  } catch {
    return undefined;
  }
}

export async function hmac(hash: 'SHA-256' | 'SHA-512', key: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', own(key), { name: 'HMAC', hash }, false, ['sign']);
  return new Uint8Array(await subtle().sign('HMAC', k, own(message)));
}

/** HKDF-SHA256 without a salt (RFC 5869: 32 zero bytes), 32 bytes (docs/format.md §3.6). */
export async function hkdf32(ikm: Uint8Array, info: string): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', own(ikm), 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(32), info: utf8.encode(info) }, k, 256));
}

/** scrypt, 32 bytes, of the password as the format takes it: UTF-8 of its NFC form (docs/format.md §3.5). */
export function scrypt(password: string, salt: Uint8Array, N: number, r: number, p: number): Promise<Uint8Array> {
  return wasmScrypt({ password: utf8.encode(password.normalize('NFC')), salt, costFactor: N, blockSize: r, parallelism: p, hashLength: 32, outputType: 'binary' });
}

/** BLAKE3 in keyed-hash mode with a 32-byte key, 32 bytes out (the blob ids, docs/format.md §3.3). */
export async function blake3Keyed(key: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const h = await createBLAKE3(256, key);
  h.init();
  h.update(message);
  return h.digest('binary');
}

let zstdReady: Promise<void> | undefined;

/** The zstd frame magic, 0xFD2FB528 little-endian. */
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * The content size a zstd frame's header declares, or undefined when it
 * declares none; DamagedError when the bytes are not a zstd frame (RFC 8878 §3.1.1.1).
 */
export function zstdDeclaredSize(frame: Uint8Array, what: string): number | undefined {
  if (frame.length < 6 || ZSTD_MAGIC.some((m, i) => frame[i] !== m)) throw new DamagedError(what, 'its payload is not a zstd frame');
  const fhd = frame[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictFlag = fhd & 3;
  const fcsBytes = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsBytes === 0) return undefined;
  const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]!;
  if (frame.length < at + fcsBytes) throw new DamagedError(what, 'its zstd frame header is cut short');
  const view = new DataView(frame.buffer, frame.byteOffset + at, fcsBytes);
  if (fcsBytes === 1) return view.getUint8(0);
  if (fcsBytes === 2) return view.getUint16(0, true) + 256;
  if (fcsBytes === 4) return view.getUint32(0, true);
  const big = view.getBigUint64(0, true);
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
}

/**
 * Decompresses one zstd frame into exactly `rawLength` bytes
 * (docs/format.md §8): a frame that declares another size is refused before
 * anything is inflated, and one that declares none is inflated into a buffer
 * of `rawLength` bytes, so that no frame can produce more.
 */
export async function zstdExact(frame: Uint8Array, rawLength: number, what: string): Promise<Uint8Array> {
  const declared = zstdDeclaredSize(frame, what);
  if (declared !== undefined && declared !== rawLength) throw new DamagedError(what, `its zstd frame declares ${declared} bytes, not the ${rawLength} its entry says`);
  await (zstdReady ??= zstdInit());
  let out: Uint8Array;
  try {
    out = zstdDecompress(frame, { defaultHeapSize: Math.max(rawLength, 1) });
  } catch {
    throw new DamagedError(what, 'its zstd frame does not decompress');
  }
  if (out.length !== rawLength) throw new DamagedError(what, `it decompresses to ${out.length} bytes, not ${rawLength}`);
  return out;
}

/**
 * Sealing and opening single blobs: the per-byte work of the format
 * (keyed id, compression, AES-256-GCM). Pure functions of their inputs, so
 * they run the same on the main thread and in worker threads.
 */
import { createHmac } from 'node:crypto';
import { AuthenticationError, blobId, open, seal, type BlobIdHash } from '../core/crypto.js';
import { decompress, type BlobCompressor } from '../core/compress.js';
import { idHex } from '../core/ids.js';
import { CorruptObjectError } from './errors.js';
import { BlobType, FLAG_COMPRESSED, blobAad, type PackedBlob } from './pack.js';

/** The secrets blob work needs. */
export interface BlobKeys {
  readonly encryption: Buffer;
  readonly id: Buffer;
  /** The keyed hash of ids (the repository's config says which). */
  readonly idHash: BlobIdHash;
}

/** A blob ready to be appended to a pack. */
export interface PreparedBlob {
  readonly type: BlobType;
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  readonly sealed: Buffer;
}

const typeKeys = new WeakMap<Buffer, Map<BlobType, Buffer>>();

/**
 * The id key for a blob type. Data blobs use the id key itself; other types
 * use the first 32 bytes of HMAC-SHA512(idKey, "holdfast/blob-type/" || type),
 * so that a file whose bytes equal a tree's can never share the tree's id.
 * HMAC-SHA512, not the hash of data ids: a file whose content is the label
 * must not have the derived key as its (plain, listed) id.
 */
function idKeyFor(keys: BlobKeys, type: BlobType): Buffer {
  if (type === BlobType.Data) return keys.id;
  let m = typeKeys.get(keys.id);
  if (!m) typeKeys.set(keys.id, (m = new Map()));
  let k = m.get(type);
  if (!k) m.set(type, (k = createHmac('sha512', keys.id).update(`holdfast/blob-type/${type}`).digest().subarray(0, 32)));
  return k;
}

/** Keyed id of a blob's plaintext, as hex. */
export function blobIdHex(keys: BlobKeys, data: Uint8Array, type: BlobType = BlobType.Data): string {
  return idHex(blobId(keys.idHash, idKeyFor(keys, type), data));
}

/** Compresses (when that shrinks it) and seals one blob. */
export function prepareBlob(keys: BlobKeys, compressor: BlobCompressor, type: BlobType, data: Buffer, id = blobIdHex(keys, data, type)): PreparedBlob {
  const compressed = compressor.compress(data);
  const flags = compressed ? FLAG_COMPRESSED : 0;
  const sealed = seal(keys.encryption, compressed ?? data, blobAad(type, flags, data.length, id));
  return { type, id, flags, rawLength: data.length, sealed };
}

/**
 * Authenticates and decompresses a sealed blob; errors name `what`. A
 * compressed blob is decompressed into `into` when given (see `decompress`).
 */
export function openBlob(keys: BlobKeys, loc: PackedBlob, sealed: Uint8Array, what: string, into?: Buffer): Buffer {
  let plain: Buffer;
  try {
    plain = open(keys.encryption, sealed, blobAad(loc.type, loc.flags, loc.rawLength, loc.id), what);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new CorruptObjectError(what, 'authentication failed');
    throw e;
  }
  if (loc.flags & FLAG_COMPRESSED) return decompress(plain, loc.rawLength, what, into);
  if (plain.length !== loc.rawLength) throw new CorruptObjectError(what, 'length mismatch');
  return plain;
}

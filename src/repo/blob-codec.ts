/**
 * Sealing and opening single blobs: the per-byte work of the format
 * (keyed id, compression, AES-256-GCM). Pure functions of their inputs, so
 * they run the same on the main thread and in worker threads.
 */
import { createHmac } from 'node:crypto';
import { AuthenticationError, SEAL_OVERHEAD, blobId, open, seal } from '../core/crypto.js';
import { decompress, type BlobCompressor } from '../core/compress.js';
import { MAX_CHUNK_SIZE } from '../core/chunker.js';
import { idHex } from '../core/ids.js';
import { CorruptObjectError } from './errors.js';
import { MAP_ENTRY_BYTES, MAX_IMAGE_BLOCK, MAX_MAP_BLOCKS } from './image-info.js';
import { BlobType, FLAG_COMPRESSED, blobAad, type PackedBlob } from './pack.js';

/** The secrets blob work needs. */
export interface BlobKeys {
  readonly encryption: Buffer;
  readonly id: Buffer;
}

/** A blob ready to be appended to a pack. */
export interface PreparedBlob {
  readonly type: BlobType;
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  readonly sealed: Buffer;
}

/**
 * The largest plaintext a blob of each type may have (docs/format.md §8).
 * A reader refuses a larger `rawLength` before it allocates or inflates
 * anything; a writer refuses to store one.
 */
export const MAX_RAW_LENGTH: Readonly<Record<BlobType, number>> = {
  // Chunks and batches of small files are at most the chunker's maxSize, image blocks at most their block size.
  [BlobType.Data]: Math.max(MAX_CHUNK_SIZE, MAX_IMAGE_BLOCK),
  // A tree is one folder's listing, not chunked: 256 MiB holds a folder of
  // about 2 million entries, or one file of 8 million chunk ids (8 TiB at
  // the default chunk size).
  [BlobType.Tree]: 256 * 1024 * 1024,
  [BlobType.ImageMap]: MAX_MAP_BLOCKS * MAP_ENTRY_BYTES,
};

const TYPE_NAMES: Readonly<Record<BlobType, string>> = { [BlobType.Data]: 'data', [BlobType.Tree]: 'tree', [BlobType.ImageMap]: 'image map' };

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
  return idHex(blobId(idKeyFor(keys, type), data));
}

/** Seals bytes as `core/crypto.ts` `seal` does (its layout, a fresh nonce of `nextNonce`). */
export type Sealer = (key: Buffer, plaintext: Uint8Array, aad: Uint8Array) => Buffer;

/**
 * Compresses (when that shrinks it) and seals one blob; `sealer` is `seal`
 * unless the caller seals into a buffer of its own (the image backup's block
 * workers seal into the buffer they hand back).
 */
export function prepareBlob(keys: BlobKeys, compressor: BlobCompressor, type: BlobType, data: Buffer, id = blobIdHex(keys, data, type), sealer: Sealer = seal): PreparedBlob {
  if (data.length > MAX_RAW_LENGTH[type]) throw new Error(`${TYPE_NAMES[type]} blob of ${data.length} bytes: larger than ${TYPE_NAMES[type]} blobs may be (${MAX_RAW_LENGTH[type]})`);
  const compressed = compressor.compress(data);
  const flags = compressed ? FLAG_COMPRESSED : 0;
  const sealed = sealer(keys.encryption, compressed ?? data, blobAad(type, flags, data.length, id));
  return { type, id, flags, rawLength: data.length, sealed };
}

/** Opens AES-256-GCM sealed bytes as `core/crypto.ts` `open` does: throws `AuthenticationError` naming `what`. */
export type SealOpener = (key: Buffer, sealed: Uint8Array, aad: Uint8Array, what: string) => Buffer;

/**
 * `open` into a buffer this opener reuses from call to call, so that a
 * worker opening thousands of blobs takes no fresh pages for each: for a
 * caller done with each blob's bytes before it opens the next (what it
 * returns is valid until its next call).
 */
export function reusingOpener(): SealOpener {
  let opened = Buffer.alloc(0);
  return (key, sealed, aad, what) => {
    const n = sealed.length - SEAL_OVERHEAD;
    if (opened.length < n) opened = Buffer.allocUnsafeSlow(Math.max(n, 2 * opened.length));
    return open(key, sealed, aad, what, opened);
  };
}

/**
 * Authenticates and decompresses a sealed blob and checks that its plaintext
 * hashes to its id; errors name `what`. A compressed blob is decompressed
 * into `into(rawLength)` when given (see `decompress`), which is asked for a
 * buffer only once the length is known to be within the format's bound.
 * `decrypt` is `open` unless the caller opens into a buffer it reuses
 * (`reusingOpener`: the restores' workers).
 */
export function openBlob(keys: BlobKeys, loc: PackedBlob, sealed: Uint8Array, what: string, into?: (length: number) => Buffer, decrypt: SealOpener = open): Buffer {
  const plain = openSealed(keys, loc, sealed, what, into, decrypt);
  // Authentication proves only that someone with the key sealed it: a client
  // that holds the key can seal anything under any id (docs/format.md §15.10).
  if (blobIdHex(keys, plain, loc.type) !== loc.id) throw new CorruptObjectError(what, 'content does not match its id');
  return plain;
}

function openSealed(keys: BlobKeys, loc: PackedBlob, sealed: Uint8Array, what: string, into: ((length: number) => Buffer) | undefined, decrypt: SealOpener): Buffer {
  // Anyone with the key can seal a bomb (a few KB that inflate to 4 GiB): refuse it before allocating.
  if (loc.rawLength > MAX_RAW_LENGTH[loc.type]) throw new CorruptObjectError(what, `declares ${loc.rawLength} bytes, more than ${TYPE_NAMES[loc.type]} blobs may hold (${MAX_RAW_LENGTH[loc.type]})`);
  let plain: Buffer;
  try {
    plain = decrypt(keys.encryption, sealed, blobAad(loc.type, loc.flags, loc.rawLength, loc.id), what);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new CorruptObjectError(what, 'authentication failed');
    throw e;
  }
  if (loc.flags & FLAG_COMPRESSED) return decompress(plain, loc.rawLength, what, into?.(loc.rawLength));
  if (plain.length !== loc.rawLength) throw new CorruptObjectError(what, 'length mismatch');
  return plain;
}

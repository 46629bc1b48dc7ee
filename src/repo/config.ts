/**
 * The `config` object: plain, written once by `init`, read first by every
 * client. Layout: "HFCF" || UTF-8 JSON || SHA-256 of the preceding bytes.
 * The JSON ends with a `mac` member, an HMAC-SHA256 under a key derived from
 * the master key of "HFCF" and the JSON without that member, so a keyed
 * client can tell the config `init` wrote from one rewritten in storage
 * (docs/format.md §4.1). A keyless reader can only parse it.
 */
import { randomBytes } from 'node:crypto';
import { BLOB_ID_HASHES, MAC_BYTES, mac, macMatches, sha256, type BlobIdHash } from '../core/crypto.js';
import { validateChunkerParams, type ChunkerParams } from '../core/chunker.js';
import { COMPRESSION_MODES, type CompressionMode } from '../core/compress.js';
import { isIdHex } from '../core/ids.js';
import { TREE_ENCODINGS, type TreeEncoding } from './tree.js';
import { asRecord, parseJson } from './binary.js';
import { CorruptObjectError, ForgedObjectError, RetiredVersionError, UnsupportedVersionError } from './errors.js';

/** The format version this build writes and reads. */
export const FORMAT_VERSION = 2;

const MAGIC = 'HFCF';
/** The JSON ends with the MAC member, written exactly so: `,"mac":"<64 hex>"}`. */
const MAC_MEMBER = ',"mac":"';
const MAC_TAIL = '"}';
const MAC_SUFFIX_BYTES = MAC_MEMBER.length + 2 * MAC_BYTES + MAC_TAIL.length;

export interface RepoConfig {
  /** Format version; a reader refuses any other. */
  readonly version: number;
  /** Random repository id, 64 hex. */
  readonly id: string;
  /** When `init` ran, ISO 8601. */
  readonly created: string;
  /** Chunker parameters every client must use. */
  readonly chunker: ChunkerParams;
  /** Target pack size in bytes. */
  readonly packSize: number;
  /** Default compression for clients that do not choose. */
  readonly compression: CompressionMode;
  /** The keyed hash of blob ids; configs written before it existed mean HMAC-SHA256. */
  readonly blobIds: BlobIdHash;
  /** How tree blobs are written; configs written before it existed mean JSON. */
  readonly trees: TreeEncoding;
  /**
   * The master key's public name (`masterKeyId`, 64 hex): two repositories
   * with the same one share the key, so blobs and snapshots copy between
   * them without it (docs/format.md §3.7). Absent in configs written before it.
   */
  readonly masterKey?: string;
  /** Append-only repository: clients refuse to remove anything but their own locks (docs/format.md, "Append-only repositories"). */
  readonly appendOnly?: true;
}

/** A fresh config with the given choices, for the master key named `masterKey` (`masterKeyId`). */
export function newConfig(chunker: ChunkerParams, packSize: number, compression: CompressionMode, masterKey: string, appendOnly = false): RepoConfig {
  return { version: FORMAT_VERSION, id: randomBytes(32).toString('hex'), created: new Date().toISOString(), chunker, packSize, compression, blobIds: 'blake3', trees: 'binary', masterKey, ...(appendOnly ? { appendOnly: true as const } : {}) };
}

/** Encodes `c` with its MAC under `key` (`macKey(master, 'config')`). */
export function encodeConfig(c: RepoConfig, key: Buffer): Buffer {
  const signed = Buffer.concat([Buffer.from(MAGIC, 'latin1'), Buffer.from(JSON.stringify(c), 'utf8')]);
  const tail = Buffer.from(`${MAC_MEMBER}${mac(key, signed).toString('hex')}${MAC_TAIL}`, 'latin1');
  // The MAC member replaces the closing brace, and brings its own.
  const body = Buffer.concat([signed.subarray(0, signed.length - 1), tail]);
  return Buffer.concat([body, sha256(body)]);
}

/**
 * Checks the config's MAC under `key` (`macKey(master, 'config')`); throws
 * `ForgedObjectError` when it fails. Expects bytes `decodeConfig` accepted.
 */
export function authenticateConfig(bytes: Buffer, key: Buffer): void {
  const body = bytes.subarray(0, bytes.length - 32);
  const suffix = body.subarray(body.length - MAC_SUFFIX_BYTES).toString('latin1');
  const hex = suffix.slice(MAC_MEMBER.length, MAC_MEMBER.length + 2 * MAC_BYTES);
  const signed = Buffer.concat([body.subarray(0, body.length - MAC_SUFFIX_BYTES), Buffer.from('}', 'latin1')]);
  const wellFormed = suffix.startsWith(MAC_MEMBER) && suffix.endsWith(MAC_TAIL) && isIdHex(hex);
  if (!wellFormed || !macMatches(key, signed, Buffer.from(hex, 'hex'))) {
    throw new ForgedObjectError('config', 'refusing to open the repository: its chunker, pack size, compression or another setting may have been rewritten. Put back the config from a copy of the repository');
  }
}

export function decodeConfig(bytes: Buffer): RepoConfig {
  const what = 'config';
  if (bytes.length < MAGIC.length + 32 || bytes.subarray(0, 4).toString('latin1') !== MAGIC) {
    throw new CorruptObjectError(what, 'not a holdfast config (bad magic or too short)');
  }
  const body = bytes.subarray(0, bytes.length - 32);
  if (!sha256(body).equals(bytes.subarray(bytes.length - 32))) throw new CorruptObjectError(what, 'checksum mismatch');
  const o = asRecord(parseJson(body.subarray(4), what), what);
  if (o['version'] === 1) {
    throw new RetiredVersionError(1, FORMAT_VERSION, 'its config and snapshots carry no MAC, so a change made to them in storage could not be told (docs/format.md §10). '
      + 'Read it with the holdfast that wrote it, and back up into a new repository made with "holdfast init"');
  }
  if (o['version'] !== FORMAT_VERSION) throw new UnsupportedVersionError('the repository', o['version'], FORMAT_VERSION);
  if (!isIdHex(o['mac'])) throw new CorruptObjectError(what, 'bad mac');
  if (!isIdHex(o['id'])) throw new CorruptObjectError(what, 'bad id');
  if (typeof o['created'] !== 'string') throw new CorruptObjectError(what, 'bad created');
  const packSize = o['packSize'];
  if (typeof packSize !== 'number' || !Number.isInteger(packSize) || packSize < 1 << 16 || packSize > 1 << 30) throw new CorruptObjectError(what, 'bad packSize');
  const compression = o['compression'];
  if (typeof compression !== 'string' || !(COMPRESSION_MODES as readonly string[]).includes(compression)) throw new CorruptObjectError(what, 'bad compression');
  let chunker: ChunkerParams;
  try {
    chunker = validateChunkerParams(o['chunker']);
  } catch (e) {
    throw new CorruptObjectError(what, (e as Error).message);
  }
  const blobIds = o['blobIds'] === undefined ? 'hmac-sha256' : o['blobIds'];
  if (typeof blobIds !== 'string') throw new CorruptObjectError(what, 'bad blobIds');
  if (!(BLOB_ID_HASHES as readonly string[]).includes(blobIds)) throw new UnsupportedVersionError(`the repository's blob ids are made with ${JSON.stringify(blobIds)}`);
  const trees = o['trees'] === undefined ? 'json' : o['trees'];
  if (typeof trees !== 'string') throw new CorruptObjectError(what, 'bad trees');
  if (!(TREE_ENCODINGS as readonly string[]).includes(trees)) throw new UnsupportedVersionError(`the repository's trees are encoded as ${JSON.stringify(trees)}`);
  const masterKey = o['masterKey'];
  if (masterKey !== undefined && !isIdHex(masterKey)) throw new CorruptObjectError(what, 'bad masterKey');
  const appendOnly = o['appendOnly'];
  if (appendOnly !== undefined && typeof appendOnly !== 'boolean') throw new CorruptObjectError(what, 'bad appendOnly');
  return { version: FORMAT_VERSION, id: o['id'], created: o['created'], chunker, packSize, compression: compression as CompressionMode, blobIds: blobIds as BlobIdHash, trees: trees as TreeEncoding, ...(masterKey !== undefined ? { masterKey } : {}), ...(appendOnly === true ? { appendOnly } : {}) };
}

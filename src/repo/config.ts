/**
 * The `config` object: plain, written once by `init`, read first by every
 * client. Layout: "HFCF" || UTF-8 JSON || SHA-256 of the preceding bytes.
 * The JSON ends with a `mac` member, an HMAC-SHA256 under a key derived from
 * the master key of "HFCF" and the JSON without that member, so a keyed
 * client can tell the config `init` wrote from one rewritten in storage
 * (docs/format.md §4.1). A keyless reader can only parse it.
 */
import { randomBytes } from 'node:crypto';
import { MAC_BYTES, mac, macMatches, sha256 } from '../core/crypto.js';
import { validateChunkerParams, type ChunkerParams } from '../core/chunker.js';
import { COMPRESSION_MODES, type CompressionMode } from '../core/compress.js';
import { isIdHex } from '../core/ids.js';
import { asRecord, parseJson } from './binary.js';
import { CorruptObjectError, ForgedObjectError, RetiredVersionError, UnsupportedVersionError } from './errors.js';

/**
 * The format version this build writes and reads. Each concept has one
 * encoding in it (keyed BLAKE3 blob ids, binary trees); older versions are
 * refused (docs/format.md §10).
 */
export const FORMAT_VERSION = 3;

/**
 * Why this build no longer reads each older version, and so what its
 * refusal says. The format was never released: no command converts a
 * repository; its owner restores with the holdfast that wrote it and backs
 * up again with this one.
 */
const RETIRED_VERSIONS: ReadonlyMap<unknown, string> = new Map([
  [1, 'its config and snapshots carry no MAC, so a change made to them in storage could not be told'],
  [2, 'its blob ids may be HMAC-SHA256 and its trees JSON, encodings this holdfast no longer reads'],
]);

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
  /**
   * The master key's public name (`masterKeyId`, 64 hex): two repositories
   * with the same one share the key, so blobs and snapshots copy between
   * them without it (docs/format.md §3.7).
   */
  readonly masterKey: string;
  /** Append-only repository: clients refuse to remove anything but their own locks (docs/format.md, "Append-only repositories"). */
  readonly appendOnly?: true;
}

/** A fresh config with the given choices, for the master key named `masterKey` (`masterKeyId`). */
export function newConfig(chunker: ChunkerParams, packSize: number, compression: CompressionMode, masterKey: string, appendOnly = false): RepoConfig {
  return { version: FORMAT_VERSION, id: randomBytes(32).toString('hex'), created: new Date().toISOString(), chunker, packSize, compression, masterKey, ...(appendOnly ? { appendOnly: true as const } : {}) };
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
  const retired = RETIRED_VERSIONS.get(o['version']);
  if (retired !== undefined) throw new RetiredVersionError(o['version'] as number, FORMAT_VERSION, retired);
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
  const masterKey = o['masterKey'];
  if (!isIdHex(masterKey)) throw new CorruptObjectError(what, 'bad masterKey');
  const appendOnly = o['appendOnly'];
  if (appendOnly !== undefined && typeof appendOnly !== 'boolean') throw new CorruptObjectError(what, 'bad appendOnly');
  return { version: FORMAT_VERSION, id: o['id'], created: o['created'], chunker, packSize, compression: compression as CompressionMode, masterKey, ...(appendOnly === true ? { appendOnly } : {}) };
}

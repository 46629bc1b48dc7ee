/**
 * Snapshot objects (`snapshots/<sha256>`). Plain, so that a server without
 * the key can apply retention, garbage-collect and account:
 *
 *   "HFSN" || u8 version (2) || u32 LE json length || JSON (UTF-8)
 *   || u32 LE id count || id count × 32-byte blob id (sorted, unique)
 *   || MAC: HMAC-SHA256 under macKey(master, 'snapshot') of all bytes before it
 *
 * The JSON carries time, host, paths, tags, parent, the root tree id and the
 * summary; the id list is every blob (data and tree) the snapshot references.
 * File names and metadata live only in the encrypted tree blobs. A keyless
 * reader parses and skips the MAC; a keyed one checks it
 * (`authenticateSnapshot`), so it never trusts a snapshot changed or planted
 * in storage.
 */
import { endianness } from 'node:os';
import { MAC_BYTES, mac, macMatches } from '../core/crypto.js';
import { ID_BYTES, isIdHex } from '../core/ids.js';
import { ByteReader, asRecord, parseJson } from './binary.js';
import { CorruptObjectError, ForgedObjectError, UnsupportedVersionError } from './errors.js';
import { decodeImageInfo, type ImageInfo } from './image-info.js';

export const SNAPSHOT_VERSION = 2;
const MAGIC = 'HFSN';

/** What a backup did, in numbers. */
export interface SnapshotSummary {
  readonly filesNew: number;
  readonly filesChanged: number;
  readonly filesUnchanged: number;
  readonly dirs: number;
  /** Of `dirs`: folders the parent snapshot did not have, whose tree differs from the parent's, whose tree is the parent's. Absent in snapshots written before holdfast counted them. */
  readonly dirsNew?: number;
  readonly dirsChanged?: number;
  readonly dirsUnchanged?: number;
  readonly otherNodes: number;
  /** Files and directories that could not be read; when > 0 the snapshot is incomplete. */
  readonly errors: number;
  /** Bytes of file content seen (logical size). */
  readonly totalBytes: number;
  /** Bytes of file content read because the file was new or changed. */
  readonly bytesRead: number;
  readonly blobsAdded: number;
  /** Of `blobsAdded`: data blobs and tree blobs (the rest are image-map blobs). Absent in snapshots written before holdfast counted them. */
  readonly dataBlobs?: number;
  readonly treeBlobs?: number;
  /** Plaintext bytes of the blobs added. */
  readonly dataAdded: number;
  /** Stored (compressed, sealed) bytes of the blobs added. */
  readonly dataAddedStored: number;
  readonly start: string;
  readonly end: string;
}

export interface Snapshot {
  /** Snapshot time, ISO 8601 with offset. */
  readonly time: string;
  readonly hostname: string;
  readonly username: string;
  /** Absolute paths backed up, sorted. */
  readonly paths: readonly string[];
  readonly tags: readonly string[];
  /** Parent snapshot id used for change detection, if any. */
  readonly parent?: string;
  /** Root tree blob id. */
  readonly tree: string;
  /** True when some files could not be read (or a stdin producer failed). */
  readonly incomplete?: boolean;
  readonly summary: SnapshotSummary;
  /**
   * Present on image snapshots (block-level backups): size, block size,
   * block-map blob ids, layout. Their `tree` is an empty tree.
   */
  readonly image?: ImageInfo;
  /** Every blob id referenced, sorted. */
  readonly blobs: readonly string[];
}

/** Encodes `s` with its MAC under `key` (`macKey(master, 'snapshot')`). */
export function encodeSnapshot(s: Snapshot, key: Buffer): Buffer {
  const { blobs, ...meta } = s;
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const ids = listBytes.get(blobs) ?? sortedIds(blobs);
  const b = Buffer.alloc(4 + 1 + 4 + json.length + 4 + ids.length + MAC_BYTES);
  b.write(MAGIC, 0, 'latin1');
  b.writeUInt8(SNAPSHOT_VERSION, 4);
  b.writeUInt32LE(json.length, 5);
  json.copy(b, 9);
  let o = 9 + json.length;
  b.writeUInt32LE(ids.length / ID_BYTES, o);
  o += 4;
  o += ids.copy(b, o);
  mac(key, b.subarray(0, o)).copy(b, o);
  return b;
}

/** Where the high 32 bits of a 64-bit word are, in 32-bit words. */
const HIGH = endianness() === 'LE' ? 1 : 0;

/**
 * The distinct ids of `hex`, sorted bytewise, back to back. An image
 * snapshot lists a block map's worth (111,000 ids for 14 GiB of disk): the
 * ids are made bytes in one conversion and sorted as numbers (their first
 * four bytes above their ordinal, in 64-bit words), with the rare ties of
 * the first four bytes settled bytewise; a sort of the hex strings and a
 * conversion per id took three times as long (docs/decisions.md).
 */
function sortedIds(hex: readonly string[]): Buffer {
  const all = Buffer.allocUnsafeSlow(hex.length * ID_BYTES);
  if (all.write(hex.join(''), 'hex') !== all.length || hex.some((h) => h.length !== 2 * ID_BYTES)) throw new TypeError('a snapshot lists blob ids of 64 hex characters');
  return sortUnique(all);
}

/** The distinct ids of `all` (32 bytes each, at a 4-byte aligned offset), sorted bytewise, back to back. */
function sortUnique(all: Buffer): Buffer {
  const n = all.length / ID_BYTES;
  const words = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    words[2 * i + HIGH] = all.readUInt32BE(i * ID_BYTES);
    words[2 * i + 1 - HIGH] = i;
  }
  new BigUint64Array(words.buffer).sort();
  const out = Buffer.allocUnsafeSlow(n * ID_BYTES);
  // Both are 4-byte aligned: an id is copied as eight 32-bit words.
  const from = new Uint32Array(all.buffer, all.byteOffset, n * 8);
  const to = new Uint32Array(out.buffer, 0, n * 8);
  let o = 0;
  const put = (i: number): void => {
    for (let w = 0; w < 8; w++) to[o * 8 + w] = from[i * 8 + w]!;
    o++;
  };
  for (let k = 0; k < n;) {
    // The run of ids that share their first four bytes (almost always one): a copy of an id is in the same run.
    let end = k + 1;
    while (end < n && words[2 * end + HIGH] === words[2 * k + HIGH]) end++;
    if (end === k + 1) {
      put(words[2 * k + 1 - HIGH]!);
    } else {
      const run = Array.from({ length: end - k }, (_, j) => words[2 * (k + j) + 1 - HIGH]!);
      run.sort((a, b) => all.compare(all, b * ID_BYTES, (b + 1) * ID_BYTES, a * ID_BYTES, (a + 1) * ID_BYTES));
      run.forEach((i, j) => {
        if (j === 0 || all.compare(all, run[j - 1]! * ID_BYTES, run[j - 1]! * ID_BYTES + ID_BYTES, i * ID_BYTES, (i + 1) * ID_BYTES) !== 0) put(i);
      });
    }
    k = end;
  }
  return out.subarray(0, o * ID_BYTES);
}

/** The encoded id list of each list `blobIdList` made: `encodeSnapshot` copies it as it is. */
const listBytes = new WeakMap<readonly string[], Buffer>();

/** The ids of a list `blobIdList` made, as the bytes it was made from (sorted, distinct; the kept buffer itself, to read, never to change); undefined for any other list. */
export function blobIdBytes(list: readonly string[]): Buffer | undefined {
  return listBytes.get(list);
}

/**
 * A snapshot's blob list from ids as bytes (32 each, in any order, repeats
 * allowed): distinct, sorted, hex, and frozen, its encoding kept for
 * `encodeSnapshot`. For lists of a disk's worth of blocks, which as hex
 * strings cost a set to make them distinct and a conversion back to bytes.
 */
export function blobIdList(ids: Buffer): readonly string[] {
  if (ids.length % ID_BYTES !== 0) throw new TypeError('a snapshot lists blob ids of 32 bytes');
  let own = ids;
  if (ids.byteOffset % 4 !== 0) {
    own = Buffer.allocUnsafeSlow(ids.length);
    ids.copy(own);
  }
  const sorted = sortUnique(own);
  const hex = sorted.toString('hex');
  const list = Object.freeze(Array.from({ length: sorted.length / ID_BYTES }, (_, i) => hex.slice(i * 2 * ID_BYTES, (i + 1) * 2 * ID_BYTES)));
  listBytes.set(list, sorted);
  return list;
}

/**
 * Checks the MAC of snapshot `id` under `key` (`macKey(master, 'snapshot')`);
 * throws `ForgedObjectError` when it fails. Expects bytes `decodeSnapshot`
 * accepted.
 */
export function authenticateSnapshot(bytes: Buffer, key: Buffer, id: string): void {
  const end = bytes.length - MAC_BYTES;
  if (!macMatches(key, bytes.subarray(0, end), bytes.subarray(end))) {
    throw new ForgedObjectError(`snapshot ${id}`, `not used ("holdfast forget ${id}" removes it)`);
  }
}

const str = (o: Record<string, unknown>, f: string, what: string): string => {
  const v = o[f];
  if (typeof v !== 'string') throw new CorruptObjectError(what, `bad ${f}`);
  return v;
};

const strArray = (o: Record<string, unknown>, f: string, what: string): string[] => {
  const v = o[f];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new CorruptObjectError(what, `bad ${f}`);
  return v as string[];
};

/** The summary's counts: each a whole number of at least 0 (stats adds them up). */
const SUMMARY_COUNTS = [
  'filesNew', 'filesChanged', 'filesUnchanged', 'dirs', 'otherNodes', 'errors', 'totalBytes', 'bytesRead', 'blobsAdded', 'dataAdded',
  'dataAddedStored',
] as const satisfies readonly (keyof SnapshotSummary)[];

/** Counts a summary may lack (snapshots written before holdfast counted them); checked alike when present. */
const SUMMARY_OPTIONAL_COUNTS = ['dirsNew', 'dirsChanged', 'dirsUnchanged', 'dataBlobs', 'treeBlobs'] as const satisfies readonly (keyof SnapshotSummary)[];

/** A snapshot's summary, every field checked: a bad one is damage, as any other bad field is. */
function decodeSummary(v: unknown, what: string): SnapshotSummary {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CorruptObjectError(what, 'bad summary');
  const o = v as Record<string, unknown>;
  for (const f of SUMMARY_COUNTS) {
    const n = o[f];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new CorruptObjectError(what, `bad summary.${f}`);
  }
  for (const f of SUMMARY_OPTIONAL_COUNTS) {
    const n = o[f];
    if (n !== undefined && (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)) throw new CorruptObjectError(what, `bad summary.${f}`);
  }
  for (const f of ['start', 'end'] as const) {
    const t = o[f];
    if (typeof t !== 'string' || Number.isNaN(Date.parse(t))) throw new CorruptObjectError(what, `bad summary.${f}`);
  }
  return o as unknown as SnapshotSummary;
}

/** How much of a snapshot `decodeSnapshot` keeps. */
export interface DecodeSnapshotOptions {
  /**
   * false: the header alone (what choosing a parent, restoring, retention
   * and the server's snapshot index read); its `blobs` throws. The list is
   * most of a snapshot's bytes (32 per blob: 200 KB for the Linux tree, 32 MB
   * for a terabyte in 1 MiB chunks), and a process that keeps snapshots
   * between jobs keeps only headers (`Repository.listSnapshots`).
   */
  readonly blobList?: boolean;
}

export function decodeSnapshot(bytes: Buffer, what: string, opts: DecodeSnapshotOptions = {}): Snapshot {
  const r = new ByteReader(bytes, what);
  r.magic(MAGIC);
  const version = r.u8('version');
  // Version 1 had no MAC, and a repository of this format never holds one: someone without the key put it there.
  if (version === 1) r.fail('a version 1 snapshot (without a MAC) cannot be in a repository this holdfast reads: it was planted in storage');
  if (version !== SNAPSHOT_VERSION) throw new UnsupportedVersionError(what, version, SNAPSHOT_VERSION);
  const jsonLength = r.u32('json length');
  const o = asRecord(parseJson(r.bytes(jsonLength, 'json'), what), what);
  const count = r.u32('id count');
  if (count * ID_BYTES + MAC_BYTES !== r.remaining) r.fail(`claims ${count} blob ids and a MAC in ${r.remaining} bytes`);
  // A copy: the caller's buffer may be reused before the list is read (its MAC was of these bytes).
  const ids = opts.blobList === false ? undefined : Buffer.from(r.bytes(count * ID_BYTES, 'blob ids'));
  const time = str(o, 'time', what);
  if (Number.isNaN(Date.parse(time))) throw new CorruptObjectError(what, 'bad time');
  const tree = str(o, 'tree', what);
  if (!isIdHex(tree)) throw new CorruptObjectError(what, 'bad tree id');
  const parent = o['parent'];
  if (parent !== undefined && !isIdHex(parent)) throw new CorruptObjectError(what, 'bad parent id');
  const summary = decodeSummary(o['summary'], what);
  let blobs: string[] | undefined;
  const image = o['image'] === undefined ? undefined : decodeImageInfo(o['image'], what);
  return {
    time,
    hostname: str(o, 'hostname', what),
    username: str(o, 'username', what),
    paths: strArray(o, 'paths', what),
    tags: strArray(o, 'tags', what),
    ...(parent === undefined ? {} : { parent }),
    tree,
    ...(o['incomplete'] === true ? { incomplete: true } : {}),
    summary,
    ...(image === undefined ? {} : { image }),
    // Made into hex when first read: choosing a parent or listing snapshots reads every snapshot
    // and none of their lists, which are most of their bytes (docs/decisions.md, "Snapshots read
    // for their header").
    get blobs(): readonly string[] {
      if (ids === undefined) throw new Error(`${what} was read for its header: its blob list was not kept (the caller must load it whole)`);
      return (blobs ??= hexIds(ids));
    },
  };
}

/**
 * A copy of a snapshot's header bytes: the encoding up to its blob ids
 * (magic, version, the JSON's length, the JSON), of bytes `decodeSnapshot`
 * accepted. What a client keeps of a snapshot it authenticated
 * (snapshot-headers.ts), without the rest of the snapshot's buffer.
 */
export function snapshotHeaderBytes(bytes: Buffer): Buffer {
  return Buffer.from(bytes.subarray(0, 9 + bytes.readUInt32LE(5)));
}

/** Decodes header bytes (`snapshotHeaderBytes`) as `decodeSnapshot` decodes the snapshot for its header alone. */
export function decodeSnapshotHeader(header: Buffer, what: string): Snapshot {
  // As the snapshot of these bytes with no blob id and a MAC of zeros, which is not checked here.
  const whole = Buffer.alloc(header.length + 4 + MAC_BYTES);
  header.copy(whole);
  return decodeSnapshot(whole, what, { blobList: false });
}

/** The 32-byte ids packed in `ids`, as hex: one conversion, then slices (a third of the time of one per id). */
function hexIds(ids: Buffer): string[] {
  const all = ids.toString('hex');
  const out = new Array<string>(ids.length / ID_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = all.slice(i * 2 * ID_BYTES, (i + 1) * 2 * ID_BYTES);
  return out;
}

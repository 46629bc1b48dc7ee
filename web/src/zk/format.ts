/**
 * The objects of a disk safe, decoded in the browser from docs/format.md
 * alone (a second reader: it shares no code with src/repo). Plain parsing,
 * no keys: the config (§4.1), key files (§4.2), index files (§4.4),
 * snapshots (§4.5), trees (§6.5) and the AAD of a blob (§3.4). What needs
 * the key (the MACs, opening blobs) is in safe.ts.
 */
import { compareBytes, fromHex, Reader, showText, utf8Text } from './bytes.js';
import { DamagedError, UnsupportedError } from './errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** The blob types (§3.4). */
export const BlobType = { Data: 0, Tree: 1, ImageMap: 2 } as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

/** The largest raw length of a blob of each type (§8), refused before anything is inflated. */
export const MAX_RAW_LENGTH: Readonly<Record<BlobType, number>> = { 0: 64 * 1024 * 1024, 1: 256 * 1024 * 1024, 2: 32 * 1024 * 1024 };

/** The most nodes one tree may hold (§6). */
export const MAX_TREE_NODES = 2 ** 21;

/** The config as a reader needs it. */
export interface Config {
  readonly id: string;
  readonly mac: string;
  /** The bytes its MAC covers: "HFCF" || JSON without its mac member || "}" (§4.1). */
  readonly macked: Uint8Array;
}

export function parseConfig(bytes: Uint8Array, checksum: Uint8Array): Config {
  const what = 'the config';
  if (bytes.length < 36) throw new DamagedError(what, 'it is shorter than 36 bytes');
  const r: Reader = new Reader(bytes, what);
  r.magic('HFCF');
  if (compareBytes(bytes.subarray(bytes.length - 32), checksum) !== 0) throw new DamagedError(what, 'its checksum does not match');
  const jsonBytes = bytes.subarray(4, bytes.length - 32);
  const json = parseJson(jsonBytes, what);
  if (json['version'] !== 3) {
    throw new UnsupportedError(`the disk safe's format version is ${String(json['version'])}; this browser reads version 3 (docs/format.md §10)`);
  }
  const mac = json['mac'];
  if (typeof mac !== 'string' || !HEX64.test(mac)) throw new DamagedError(what, 'it has no well-formed mac');
  if (typeof json['id'] !== 'string' || !HEX64.test(json['id'])) throw new DamagedError(what, 'its id is not 64 hex digits');
  const tail = `,"mac":"${mac}"}`;
  if (showText(jsonBytes.subarray(jsonBytes.length - tail.length)) !== tail) throw new DamagedError(what, 'its JSON does not end with its mac');
  const macked = new Uint8Array(4 + jsonBytes.length - tail.length + 1);
  macked.set(bytes.subarray(0, 4 + jsonBytes.length - tail.length));
  macked[macked.length - 1] = 0x7d;
  return { id: json['id'], mac, macked };
}

/** A key file's fields (§4.2). */
export interface KeyFile {
  readonly name: string;
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Uint8Array;
  readonly data: Uint8Array;
}

/** Parses a key file; the scrypt cost is checked against the bound of §3.5 before anything is spent on it. */
export function parseKeyFile(name: string, bytes: Uint8Array): KeyFile {
  const what = `key file ${name}`;
  const json = parseJson(bytes, what);
  if (json['version'] !== 1) throw new UnsupportedError(`key file ${name} has version ${String(json['version'])}; this browser reads version 1`);
  const kdf = json['kdf'] as Record<string, unknown> | undefined;
  if (typeof kdf !== 'object' || kdf === null || kdf['algorithm'] !== 'scrypt') throw new DamagedError(what, 'its kdf is not scrypt');
  const { N, r, p } = kdf as { N: unknown; r: unknown; p: unknown };
  if (typeof N !== 'number' || typeof r !== 'number' || typeof p !== 'number' || !Number.isInteger(N) || !Number.isInteger(r) || !Number.isInteger(p)
    || N < 2 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16 || N * r * p > 2 ** 21) {
    throw new DamagedError(what, 'its scrypt cost is outside the bounds a reader accepts (N a power of two, N·r·p ≤ 2^21)');
  }
  if (typeof kdf['salt'] !== 'string' || typeof json['data'] !== 'string') throw new DamagedError(what, 'its salt or data is not a string');
  for (const f of ['created', 'hostname', 'username']) if (typeof json[f] !== 'string') throw new DamagedError(what, `its ${f} is not a string`);
  return { name, N, r, p, salt: fromBase64(kdf['salt'], what), data: fromBase64(json['data'], what) };
}

/** Where a blob is (§4.4). */
export interface BlobLocation {
  readonly pack: string;
  readonly type: BlobType;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
  readonly id: string;
}

/** Every blob entry of one index file (§4.4); DamagedError when it does not parse. */
export function parseIndex(name: string, bytes: Uint8Array): BlobLocation[] {
  const r: Reader = new Reader(bytes, `index ${name}`);
  r.magic('HFIX');
  const version = r.u8('version');
  if (version !== 1) r.fail(`its version is ${version}, not 1`);
  const packs = r.u32('pack count');
  const out: BlobLocation[] = [];
  for (let i = 0; i < packs; i++) {
    const pack = r.hex(32, 'pack id');
    const n = r.u32('blob count');
    r.need(n * 48, 'blob entries');
    for (let j = 0; j < n; j++) {
      const type = r.u8('blob type');
      const flags = r.u8('flags');
      if (type > 2) r.fail(`a blob of unknown type ${type}`);
      if (flags & ~1) r.fail('unknown blob flags');
      r.u16('reserved');
      const offset = r.u32('offset');
      const length = r.u32('stored length');
      const rawLength = r.u32('raw length');
      out.push({ pack, type: type as BlobType, flags, offset, length, rawLength, id: r.hex(32, 'blob id') });
    }
  }
  const superseded = r.u32('superseded count');
  r.take(superseded * 32, 'superseded ids');
  r.end();
  return out;
}

/** The 38-byte AAD of a blob (§3.4). */
export function blobAad(type: BlobType, flags: number, rawLength: number, id: string): Uint8Array {
  const aad = new Uint8Array(38);
  aad[0] = type;
  aad[1] = flags;
  new DataView(aad.buffer).setUint32(2, rawLength, true);
  aad.set(fromHex(id)!, 6);
  return aad;
}

/** A snapshot's summary counts as written (§4.5); absent ones are undefined. */
export type Summary = Readonly<Record<string, number | string | undefined>>;

/** A snapshot's plain fields (§4.5). */
export interface Snapshot {
  readonly id: string;
  readonly time: string;
  readonly hostname: string;
  readonly username: string;
  readonly paths: readonly string[];
  readonly tags: readonly string[];
  readonly parent?: string;
  readonly tree: string;
  readonly incomplete: boolean;
  readonly summary: Summary;
  /** An image snapshot (§14): its tree is empty; the browser does not show block devices. */
  readonly image: boolean;
  /** The bytes its MAC covers, and the MAC. */
  readonly macked: Uint8Array;
  readonly mac: Uint8Array;
}

export function parseSnapshot(id: string, bytes: Uint8Array): Snapshot {
  const what = `snapshot ${id}`;
  const r: Reader = new Reader(bytes, what);
  r.magic('HFSN');
  const version = r.u8('version');
  if (version === 1) r.fail('a version 1 snapshot (without a MAC) cannot be in a safe of format version 3: it was planted in storage');
  if (version !== 2) throw new UnsupportedError(`${what} has version ${version}; this browser reads version 2`);
  const json = parseJson(r.take(r.u32('JSON length'), 'JSON'), what);
  const count = r.u32('blob count');
  if (r.remaining !== count * 32 + 32) r.fail('its id list and MAC do not fill the rest of it');
  const macked = bytes.subarray(0, bytes.length - 32);
  const mac = bytes.subarray(bytes.length - 32);
  const str = (f: string): string => {
    const v = json[f];
    if (typeof v !== 'string') r.fail(`its ${f} is not a string`);
    return v;
  };
  const strings = (f: string): string[] => {
    const v = json[f];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) r.fail(`its ${f} is not a list of strings`);
    return v as string[];
  };
  const time = str('time');
  if (Number.isNaN(Date.parse(time))) r.fail('its time is not a date');
  const tree = str('tree');
  if (!HEX64.test(tree)) r.fail('its tree is not 64 hex digits');
  const parent = json['parent'];
  if (parent !== undefined && (typeof parent !== 'string' || !HEX64.test(parent))) r.fail('its parent is not 64 hex digits');
  const summary = json['summary'];
  if (typeof summary !== 'object' || summary === null) r.fail('its summary is not an object');
  return {
    id, time, hostname: str('hostname'), username: str('username'), paths: strings('paths'), tags: strings('tags'),
    ...(parent === undefined ? {} : { parent: parent as string }), tree,
    incomplete: json['incomplete'] === true, summary: summary as Summary, image: json['image'] !== undefined, macked, mac,
  };
}

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';
const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket'];

/** One element of a file's content (§5): a whole data blob, a hole of zero bytes, or a slice of a blob. */
export type ContentEntry =
  | { readonly kind: 'blob'; readonly id: string }
  | { readonly kind: 'hole'; readonly length: number }
  | { readonly kind: 'slice'; readonly id: string; readonly offset: number; readonly length: number };

/** One node of a tree (§6.1), as the browser shows it. */
export interface TreeNode {
  /** The name's bytes, as stored. */
  readonly nameBytes: Uint8Array;
  /** The name as text (U+FFFD for bytes that are not UTF-8). */
  readonly name: string;
  readonly type: NodeType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly user?: string;
  readonly group?: string;
  /** Nanoseconds since the epoch. */
  readonly mtime: bigint;
  readonly ctime: bigint;
  readonly links: number;
  readonly size: number;
  readonly content?: readonly ContentEntry[];
  readonly subtree?: string;
  readonly target?: Uint8Array;
  readonly rdev?: bigint;
  readonly xattrs?: readonly { readonly name: Uint8Array; readonly value: Uint8Array }[];
  /** Marked damaged by `repair snapshots --mark-damaged` (§15.9): never restored as whole. */
  readonly damaged: boolean;
}

const NODE_FIXED = 2 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;

/**
 * Decodes a tree blob (§6.5). The whole tree is refused as damage for a
 * count above MAX_TREE_NODES or one that cannot fit, names not strictly
 * increasing, an unknown type, flag or entry, and bytes left over.
 */
export function decodeTree(bytes: Uint8Array, what: string): TreeNode[] {
  const r: Reader = new Reader(bytes, what);
  r.magic('HFTR');
  const version = r.u8('version');
  if (version !== 1) throw new UnsupportedError(`${what} has tree version ${version}; this browser reads version 1`);
  const count = r.u32('node count');
  if (count > MAX_TREE_NODES) r.fail(`${count} nodes are more than a tree may hold (${MAX_TREE_NODES})`);
  if (count * NODE_FIXED > r.remaining) r.fail(`${count} nodes cannot fit in ${r.remaining} bytes`);
  const nodes: TreeNode[] = [];
  let prev: Uint8Array | undefined;
  for (let i = 0; i < count; i++) {
    const nameBytes = r.take(r.u16('name length'), 'name');
    if (nameBytes.length === 0) r.fail('a node without a name');
    if (prev && compareBytes(prev, nameBytes) >= 0) r.fail(`the name of node ${i} is a duplicate or out of order`);
    prev = nameBytes;
    const type = NODE_TYPES[r.u8('type')];
    if (type === undefined) r.fail('a node of unknown type');
    const flags = r.u8('flags');
    if (flags & ~0x1f) r.fail('unknown node flags');
    if (flags & 4 && type !== 'file') r.fail('a fingerprint on a node that is not a file');
    const mode = r.u16('mode');
    if (mode > 0o7777) r.fail('a mode above 0o7777');
    const uid = r.u32('uid');
    const gid = r.u32('gid');
    const mtime = r.i64('mtime');
    const ctime = r.i64('ctime');
    r.u64('inode');
    r.u64('device');
    const links = r.n53('links');
    const size = r.n53('size');
    const node: { -readonly [K in keyof TreeNode]: TreeNode[K] } = { nameBytes, name: showText(nameBytes), type, mode, uid, gid, mtime, ctime, links, size, damaged: (flags & 8) !== 0 };
    if (flags & 1) node.user = readName(r, 'user');
    if (flags & 2) node.group = readName(r, 'group');
    if (flags & 16) node.xattrs = readXattrs(r);
    if (type === 'file') {
      if (flags & 4) r.take(16, 'fingerprint');
      const n = r.u32('content length');
      if (n > r.remaining / 9) r.fail(`a content list of ${n} entries cannot fit in ${r.remaining} bytes`);
      const content: ContentEntry[] = [];
      for (let j = 0; j < n; j++) {
        const tag = r.u8('content entry');
        if (tag === 0) {
          content.push({ kind: 'blob', id: r.hex(32, 'blob id') });
        } else if (tag === 1) {
          const length = r.n53('hole');
          if (length === 0) r.fail('an empty hole');
          content.push({ kind: 'hole', length });
        } else if (tag === 2) {
          const id = r.hex(32, 'blob id');
          const offset = r.n53('slice offset');
          const length = r.n53('slice length');
          if (length === 0) r.fail('an empty slice');
          content.push({ kind: 'slice', id, offset, length });
        } else {
          r.fail('an unknown content entry');
        }
      }
      node.content = content;
    } else if (type === 'dir') {
      node.subtree = r.hex(32, 'subtree id');
    } else if (type === 'symlink') {
      node.target = r.take(r.u32('target length'), 'target');
    } else if (type === 'chardev' || type === 'blockdev') {
      node.rdev = r.u64('rdev');
    }
    nodes.push(node);
  }
  r.end();
  return nodes;
}

function readName(r: Reader, field: string): string {
  const b = r.take(r.u16(`${field} length`), field);
  const s = utf8Text(b);
  if (s === undefined) r.fail(`its ${field} name is not UTF-8`);
  return s;
}

function readXattrs(r: Reader): { name: Uint8Array; value: Uint8Array }[] {
  const n = r.u32('extended attribute count');
  if (n === 0) r.fail('an empty list of extended attributes');
  if (n > r.remaining / 6) r.fail(`${n} extended attributes cannot fit in ${r.remaining} bytes`);
  const out: { name: Uint8Array; value: Uint8Array }[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.take(r.u8('extended attribute name length'), 'extended attribute name');
    if (name.length === 0 || name.includes(0)) r.fail('an extended attribute name that is empty or holds a NUL');
    if (i > 0 && compareBytes(out[i - 1]!.name, name) >= 0) r.fail('an extended attribute name that is a duplicate or out of order');
    out.push({ name, value: r.take(r.u32('extended attribute length'), 'extended attribute value') });
  }
  return out;
}

/**
 * Why a reader refuses `name` as a path component (§6.4), or undefined: it
 * would otherwise become a path outside the folder it is listed in.
 */
export function nameProblem(name: Uint8Array): string | undefined {
  if (name.length === 0) return 'an empty name';
  if (name.length > 255) return 'a name longer than 255 bytes';
  if (name.includes(0x2f)) return `the name ${JSON.stringify(showText(name))} holds a /`;
  if (name.includes(0)) return 'a name holding a NUL byte';
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) return `the name ${JSON.stringify(showText(name))}`;
  return undefined;
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  const text = utf8Text(bytes);
  if (text === undefined) throw new DamagedError(what, 'its JSON is not UTF-8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new DamagedError(what, 'its JSON does not parse');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DamagedError(what, 'its JSON is not an object');
  return v as Record<string, unknown>;
}

function fromBase64(s: string, what: string): Uint8Array {
  let bin: string;
  try {
    bin = atob(s);
  } catch {
    throw new DamagedError(what, 'a field is not base64');
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * Tree blobs: one per directory, the list of its entries with their
 * metadata, sorted by the bytes of the name (docs/format.md §6), in one
 * encoding:
 *
 *   "HFTR" || u8 version || u32 count || nodes (§6.5)
 */
import { ByteReader } from './binary.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket'];

/** Part of a blob: `length` bytes of its plaintext from `offset`. */
export interface BlobSlice {
  readonly blob: string;
  readonly offset: number;
  readonly length: number;
}

/**
 * A file's content, in order: a blob id (hex) stands for the whole blob, a
 * slice for part of one (small files share blobs: they are stored as one
 * stream per batch, see docs/format.md), and a number for a run of that many
 * zero bytes that is not stored (a hole).
 */
export type ContentEntry = string | number | BlobSlice;

/** The blob an entry reads from, or undefined for a hole. */
export function entryBlob(c: ContentEntry): string | undefined {
  return typeof c === 'string' ? c : typeof c === 'number' ? undefined : c.blob;
}

/** The blob ids a content list reads from, in order (repeats kept). */
export function contentBlobs(content: readonly ContentEntry[]): string[] {
  const ids: string[] = [];
  for (const c of content) {
    const id = entryBlob(c);
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

const ZERO_RUN = Buffer.alloc(1 << 20);

/**
 * Yields a file's bytes in order: whole blobs and slices of blobs from `load`
 * (plaintext), holes as zeros. A slice past its blob's end is damage.
 */
export async function* contentBytes(content: readonly ContentEntry[], load: (id: string) => Promise<Buffer>, what: string): AsyncGenerator<Buffer> {
  for (const c of content) {
    if (typeof c === 'number') {
      for (let left = c; left > 0; left -= ZERO_RUN.length) yield ZERO_RUN.subarray(0, Math.min(left, ZERO_RUN.length));
    } else if (typeof c === 'string') {
      yield await load(c);
    } else {
      yield slicePlain(await load(c.blob), c, `${what}, blob ${c.blob}`);
    }
  }
}

/** The part of a blob's plaintext a slice names; a slice past its end is damage (`what` names the blob). */
export function slicePlain(plain: Buffer, slice: { readonly offset: number; readonly length: number }, what: string): Buffer {
  if (slice.offset + slice.length > plain.length) throw new CorruptObjectError(what, `slice ${slice.offset}+${slice.length} lies outside its ${plain.length} bytes`);
  return plain.subarray(slice.offset, slice.offset + slice.length);
}

/** Appends an entry to a content list being built, merging it into a hole just before it (format §5). */
export function pushEntry(content: ContentEntry[], c: ContentEntry): void {
  const last = content[content.length - 1];
  if (typeof c === 'number' && typeof last === 'number') content[content.length - 1] = last + c;
  else content.push(c);
}

/** One extended attribute of a node: its name (with its namespace, `user.`, `security.`, ...) and value, as bytes. */
export interface Xattr {
  readonly name: Buffer;
  readonly value: Buffer;
}

export interface TreeNode {
  /** Name bytes (one path component). */
  readonly name: Buffer;
  readonly type: NodeType;
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly user?: string;
  readonly group?: string;
  /** ns since the epoch. */
  readonly mtime: bigint;
  readonly ctime: bigint;
  readonly inode: bigint;
  readonly device: bigint;
  readonly links: number;
  readonly size: number;
  readonly content?: readonly ContentEntry[];
  /**
   * Keyed fingerprint of the whole content (32 hex digits; `fingerprint` in
   * core/crypto.ts under the file-fingerprint key). Set for files stored in
   * a shared stream: it proves restored bytes and lets a later backup reuse
   * the content of a file whose metadata changed but whose bytes did not.
   */
  readonly fingerprint?: string;
  readonly subtree?: string;
  readonly target?: Buffer;
  readonly rdev?: bigint;
  /**
   * Extended attributes, POSIX ACLs (`system.posix_acl_*`), file capabilities
   * and SELinux labels among them, sorted by the bytes of their names; absent
   * when the entry has none (never an empty list).
   */
  readonly xattrs?: readonly Xattr[];
  /**
   * Set by `repair snapshots --mark-damaged`: the repository lost part of
   * this file's content (the lost blob ids were removed from `content`) or,
   * for a directory, its listing (`subtree` is then the empty tree). Readers
   * must report such a node and never restore it as if it were whole.
   */
  readonly damaged?: true;
}

/** True when two nodes' extended attributes are the same (both lists sorted by name, as trees hold them). */
export function sameXattrs(a: readonly Xattr[] | undefined, b: readonly Xattr[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  return a.every((x, i) => x.name.equals(b[i]!.name) && x.value.equals(b[i]!.value));
}

/**
 * The most nodes one tree may hold (docs/format.md §6, docs/decisions.md):
 * a 256 MiB tree of realistic nodes holds about 2 million, while one of
 * nodes cut to the bone holds 4.3 million, each costing a reader hundreds
 * of bytes of memory. Writers refuse a bigger folder, readers a bigger tree.
 */
export const MAX_TREE_NODES = 2 ** 21;

/** Encodes a directory's nodes; sorts them by name bytes. Refuses what a reader would refuse: too many nodes, or two with one name. */
export function encodeTree(nodes: TreeNode[]): Buffer {
  if (nodes.length > MAX_TREE_NODES) throw new RangeError(`a folder of ${nodes.length} entries is more than one tree may hold (${MAX_TREE_NODES}, docs/format.md §6)`);
  const sorted = [...nodes].sort((a, b) => compareNames(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) {
    if (compareNames(sorted[i - 1]!.name, sorted[i]!.name) === 0) throw new RangeError(`two entries of one folder are named "${sorted[i]!.name.toString()}"`);
  }
  return encodeSorted(sorted);
}

const TREE_MAGIC = 'HFTR';
const TREE_VERSION = 1;
/** Bytes of a node before its name and after it up to the optional fields. */
const NODE_FIXED = 2 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;
const ID_BYTES = 32;
const FINGERPRINT_BYTES = 16;

const HAS_USER = 1;
const HAS_GROUP = 2;
const HAS_FINGERPRINT = 4;
const DAMAGED = 8;
const HAS_XATTRS = 16;
/** The longest extended attribute name (Linux's XATTR_NAME_MAX; its length is a u8). */
export const XATTR_NAME_MAX = 255;

const CONTENT_BLOB = 0;
const CONTENT_HOLE = 1;
const CONTENT_SLICE = 2;

const U32_MAX = 0xffff_ffff;

const I64_MIN = -(2n ** 63n);
const I64_END = 2n ** 63n;
const U64_END = 2n ** 64n;

/** A hex digit's value by character code (either case), -1 for any other character below 128. */
const HEX_DIGIT = new Int8Array(128).fill(-1);
for (let d = 0; d < 16; d++) {
  HEX_DIGIT['0123456789abcdef'.charCodeAt(d)] = d;
  HEX_DIGIT['0123456789ABCDEF'.charCodeAt(d)] = d;
}

/**
 * Writes a tree's fields at increasing offsets. Numbers go through a
 * DataView and hex is parsed here: Buffer's write methods cost several times
 * as much per field (docs/decisions.md, "The tree codec").
 */
class TreeWriter {
  private pos = 0;
  private readonly view: DataView;

  constructor(readonly buf: Buffer) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  u8(v: number): void {
    this.buf[this.pos++] = v;
  }

  u16(v: number, field: string): void {
    if (!(v >= 0 && v <= 0xffff)) throw new RangeError(`tree node ${field} ${v} does not fit 16 bits`);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  u32(v: number, field: string): void {
    if (!(v >= 0 && v <= U32_MAX)) throw new RangeError(`tree node ${field} ${v} does not fit 32 bits`);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  safe64(v: number): void {
    this.view.setUint32(this.pos, v % 0x1_0000_0000, true);
    this.view.setUint32(this.pos + 4, Math.floor(v / 0x1_0000_0000), true);
    this.pos += 8;
  }

  u64(v: bigint): void {
    if (!(v >= 0n && v < U64_END)) throw new RangeError(`tree node field ${v} does not fit an unsigned 64-bit integer`);
    this.view.setBigUint64(this.pos, v, true);
    this.pos += 8;
  }

  i64(v: bigint): void {
    if (!(v >= I64_MIN && v < I64_END)) throw new RangeError(`tree node field ${v} does not fit a signed 64-bit integer`);
    this.view.setBigInt64(this.pos, v, true);
    this.pos += 8;
  }

  /** Exactly `bytes` bytes spelled by `v` in hex. */
  hex(v: string, bytes: number): void {
    if (v.length !== bytes * 2) throw new RangeError(`"${v}" is not ${bytes} bytes of hex`);
    const b = this.buf;
    let bad = 0;
    for (let i = 0, o = this.pos; i < v.length; i += 2, o++) {
      const hi = HEX_DIGIT[v.charCodeAt(i) & 0x7f]!, lo = HEX_DIGIT[v.charCodeAt(i + 1) & 0x7f]!;
      bad |= hi | lo | (v.charCodeAt(i) | v.charCodeAt(i + 1)) & ~0x7f;
      b[o] = (hi << 4) | lo;
    }
    if (bad < 0 || (bad & ~0xf) !== 0) throw new RangeError(`"${v}" is not ${bytes} bytes of hex`);
    this.pos += bytes;
  }

  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Checks the size computed beforehand was right. */
  end(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`tree encoder wrote ${this.pos} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

function contentLength(content: readonly ContentEntry[]): number {
  let n = 4;
  for (const c of content) n += typeof c === 'string' ? 1 + ID_BYTES : typeof c === 'number' ? 1 + 8 : 1 + ID_BYTES + 16;
  return n;
}

/** The encoded size of a node's extended attributes; refuses a list a reader would refuse. */
function xattrsLength(xattrs: readonly Xattr[]): number {
  if (xattrs.length === 0) throw new RangeError('an empty list of extended attributes is written as none');
  let n = 4;
  xattrs.forEach((x, i) => {
    if (x.name.length === 0 || x.name.length > XATTR_NAME_MAX || x.name.includes(0)) throw new RangeError(`extended attribute name "${x.name.toString()}" is empty, longer than ${XATTR_NAME_MAX} bytes or holds a NUL`);
    if (i > 0 && compareNames(xattrs[i - 1]!.name, x.name) >= 0) throw new RangeError(`extended attribute "${x.name.toString()}" is a duplicate or out of order`);
    n += 1 + x.name.length + 4 + x.value.length;
  });
  return n;
}

/** The bytes of nodes already sorted and checked (format §6.5). */
function encodeSorted(sorted: TreeNode[]): Buffer {
  // A folder's entries mostly share a user and a group: each name is encoded once.
  const names = new Map<string, Buffer>();
  const utf8 = (name: string | undefined): Buffer | undefined => {
    if (name === undefined) return undefined;
    let b = names.get(name);
    if (!b) names.set(name, (b = Buffer.from(name, 'utf8')));
    return b;
  };
  const users = sorted.map((n) => utf8(n.user));
  const groups = sorted.map((n) => utf8(n.group));
  let size = TREE_MAGIC.length + 1 + 4;
  sorted.forEach((n, i) => {
    size += NODE_FIXED + n.name.length;
    if (users[i]) size += 2 + users[i].length;
    if (groups[i]) size += 2 + groups[i].length;
    if (n.xattrs) size += xattrsLength(n.xattrs);
    if (n.type === 'file') size += (n.fingerprint !== undefined ? FINGERPRINT_BYTES : 0) + contentLength(n.content ?? []);
    else if (n.type === 'dir') size += ID_BYTES;
    else if (n.type === 'symlink') size += 4 + (n.target?.length ?? 0);
    else if (n.type === 'chardev' || n.type === 'blockdev') size += 8;
  });
  const w = new TreeWriter(Buffer.allocUnsafe(size));
  w.bytes(Buffer.from(TREE_MAGIC, 'latin1'));
  w.u8(TREE_VERSION);
  w.u32(sorted.length, 'count');
  sorted.forEach((n, i) => {
    const user = users[i];
    const group = groups[i];
    const fingerprint = n.type === 'file' ? n.fingerprint : undefined;
    w.u16(n.name.length, 'name length');
    w.bytes(n.name);
    w.u8(NODE_TYPES.indexOf(n.type));
    w.u8((user ? HAS_USER : 0) | (group ? HAS_GROUP : 0) | (fingerprint !== undefined ? HAS_FINGERPRINT : 0) | (n.damaged ? DAMAGED : 0) | (n.xattrs ? HAS_XATTRS : 0));
    w.u16(n.mode & 0o7777, 'mode');
    w.u32(n.uid, 'uid');
    w.u32(n.gid, 'gid');
    w.i64(n.mtime);
    w.i64(n.ctime);
    w.u64(n.inode);
    w.u64(n.device);
    w.safe64(n.links);
    w.safe64(n.size);
    if (user) {
      w.u16(user.length, 'user length');
      w.bytes(user);
    }
    if (group) {
      w.u16(group.length, 'group length');
      w.bytes(group);
    }
    if (n.xattrs) {
      w.u32(n.xattrs.length, 'extended attribute count');
      for (const x of n.xattrs) {
        w.u8(x.name.length);
        w.bytes(x.name);
        w.u32(x.value.length, 'extended attribute length');
        w.bytes(x.value);
      }
    }
    if (n.type === 'file') {
      if (fingerprint !== undefined) w.hex(fingerprint, FINGERPRINT_BYTES);
      const content = n.content ?? [];
      w.u32(content.length, 'content length');
      for (const c of content) {
        if (typeof c === 'string') {
          w.u8(CONTENT_BLOB);
          w.hex(c, ID_BYTES);
        } else if (typeof c === 'number') {
          w.u8(CONTENT_HOLE);
          w.safe64(c);
        } else {
          w.u8(CONTENT_SLICE);
          w.hex(c.blob, ID_BYTES);
          w.safe64(c.offset);
          w.safe64(c.length);
        }
      }
    } else if (n.type === 'dir') {
      w.hex(n.subtree ?? '', ID_BYTES);
    } else if (n.type === 'symlink') {
      const target = n.target ?? Buffer.alloc(0);
      w.u32(target.length, 'target length');
      w.bytes(target);
    } else if (n.type === 'chardev' || n.type === 'blockdev') {
      w.u64(n.rdev ?? 0n);
    }
  });
  return w.end();
}

/** Orders names by their bytes, as Buffer.compare does, without a native call for a few bytes. */
function compareNames(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The user or group names of one tree as strings: a folder's entries mostly
 * share one, so the bytes that spelled the last name give its string again
 * instead of decoding another.
 */
class NameCache {
  private bytes: Buffer | undefined;
  private text = '';

  constructor(private readonly field: 'user' | 'group', private readonly lengthField: string) {}

  read(r: ByteReader): string {
    const b = r.bytes(r.u16(this.lengthField), this.field);
    const last = this.bytes;
    if (last && sameBytes(b, last)) return this.text;
    this.bytes = b;
    this.text = b.toString('utf8');
    return this.text;
  }
}

/** A node's extended attributes (format §6.5): at least one, names not empty, without NUL, strictly increasing. */
function readXattrs(r: ByteReader): Xattr[] {
  const n = r.u32('extended attribute count');
  if (n === 0) r.fail('an empty list of extended attributes');
  if (n > r.remaining / 6) r.fail(`${n} extended attributes cannot fit in ${r.remaining} bytes`);
  const xattrs: Xattr[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.bytes(r.u8('extended attribute name length'), 'extended attribute name');
    if (name.length === 0 || name.includes(0)) r.fail('an extended attribute name that is empty or holds a NUL');
    if (i > 0 && compareNames(xattrs[i - 1]!.name, name) >= 0) r.fail('an extended attribute name that is a duplicate or out of order');
    xattrs.push({ name, value: r.bytes(r.u32('extended attribute length'), 'extended attribute value') });
  }
  return xattrs;
}

/**
 * Decodes a tree blob; rejects anything malformed with `CorruptObjectError`,
 * including more than MAX_TREE_NODES nodes and names not strictly increasing
 * (a duplicate or out of order): the tree is refused once as damage, not
 * each node on every path that reaches it.
 */
export function decodeTree(bytes: Buffer, what: string): TreeNode[] {
  // Annotated, so that r.fail (never returns) narrows.
  const r: ByteReader = new ByteReader(bytes, what);
  r.magic(TREE_MAGIC);
  const version = r.u8('version');
  if (version !== TREE_VERSION) throw new UnsupportedVersionError(what, version, TREE_VERSION);
  const count = r.u32('node count');
  if (count > MAX_TREE_NODES) throw new CorruptObjectError(what, `${count} nodes are more than a tree may hold (${MAX_TREE_NODES})`);
  if (count * NODE_FIXED > r.remaining) r.fail(`${count} nodes cannot fit in ${r.remaining} bytes`);
  const nodes: TreeNode[] = [];
  const users = new NameCache('user', 'user length');
  const groups = new NameCache('group', 'group length');
  let prev: Buffer | undefined;
  for (let i = 0; i < count; i++) {
    const name = r.bytes(r.u16('name length'), 'name');
    if (name.length === 0) r.fail('node without a name');
    if (prev && compareNames(prev, name) >= 0) r.fail(`the name of node ${i} is a duplicate or out of order`);
    prev = name;
    r.need(NODE_FIXED - 2, 'node');
    const type = NODE_TYPES[r.u8('type')];
    if (type === undefined) r.fail('bad node type');
    const flags = r.u8('flags');
    if (flags & ~(HAS_USER | HAS_GROUP | HAS_FINGERPRINT | DAMAGED | HAS_XATTRS)) r.fail('unknown node flags');
    if (flags & HAS_FINGERPRINT && type !== 'file') r.fail('a fingerprint on a node that is not a file');
    const mode = r.u16('mode');
    if (mode > 0o7777) r.fail('bad mode');
    const node: { -readonly [K in keyof TreeNode]: TreeNode[K] } = {
      name,
      type,
      mode,
      uid: r.u32('uid'),
      gid: r.u32('gid'),
      mtime: r.i64('mtime'),
      ctime: r.i64('ctime'),
      inode: r.u64('inode'),
      device: r.u64('device'),
      links: r.safe64('links'),
      size: r.safe64('size'),
    };
    if (flags & HAS_USER) node.user = users.read(r);
    if (flags & HAS_GROUP) node.group = groups.read(r);
    if (flags & HAS_XATTRS) node.xattrs = readXattrs(r);
    if (type === 'file') {
      if (flags & HAS_FINGERPRINT) node.fingerprint = r.hex(FINGERPRINT_BYTES, 'fingerprint');
      const n = r.u32('content length');
      if (n > r.remaining / 9) r.fail(`a content list of ${n} entries cannot fit in ${r.remaining} bytes`);
      const content: ContentEntry[] = [];
      for (let j = 0; j < n; j++) {
        const tag = r.u8('content entry');
        if (tag === CONTENT_BLOB) {
          content.push(r.hex(ID_BYTES, 'blob id'));
        } else if (tag === CONTENT_HOLE) {
          const hole = r.safe64('hole');
          if (hole === 0) r.fail('bad file content list: an empty hole');
          content.push(hole);
        } else if (tag === CONTENT_SLICE) {
          const blob = r.hex(ID_BYTES, 'blob id');
          const offset = r.safe64('slice offset');
          const length = r.safe64('slice length');
          if (length === 0) r.fail('bad file content list: an empty slice');
          content.push({ blob, offset, length });
        } else {
          r.fail('bad file content list: unknown entry');
        }
      }
      node.content = content;
    } else if (type === 'dir') {
      node.subtree = r.hex(ID_BYTES, 'subtree id');
    } else if (type === 'symlink') {
      node.target = r.bytes(r.u32('target length'), 'target');
    } else if (type === 'chardev' || type === 'blockdev') {
      node.rdev = r.u64('rdev');
    }
    if (flags & DAMAGED) node.damaged = true;
    nodes.push(node);
  }
  r.end();
  return nodes;
}

/**
 * Tree blobs: one per directory, the sorted list of its entries with their
 * metadata. Stored as UTF-8 JSON inside an encrypted blob:
 *
 *   { "nodes": [ Node, … ] }   sorted by the bytes of the name
 *
 * Names and symlink targets that are not valid UTF-8 are stored byte-exact
 * in base64 (`nameB64`, `targetB64`) instead of `name`, `target`.
 * Integers that may exceed 2^53 (times in ns, inode, device) are decimal strings.
 */
import { isUtf8 } from 'node:buffer';
import { isIdHex } from '../core/ids.js';
import { asRecord, parseJson } from './binary.js';
import { CorruptObjectError } from './errors.js';

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

function isContentEntry(c: unknown): c is ContentEntry {
  if (typeof c === 'number') return Number.isSafeInteger(c) && c > 0;
  if (typeof c === 'string') return isIdHex(c);
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return false;
  const o = c as Record<string, unknown>;
  return Object.keys(o).length === 3 && isIdHex(o['blob'])
    && typeof o['offset'] === 'number' && Number.isSafeInteger(o['offset']) && o['offset'] >= 0
    && typeof o['length'] === 'number' && Number.isSafeInteger(o['length']) && o['length'] > 0;
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
   * Set by `repair snapshots --mark-damaged`: the repository lost part of
   * this file's content (the lost blob ids were removed from `content`) or,
   * for a directory, its listing (`subtree` is then the empty tree). Readers
   * must report such a node and never restore it as if it were whole.
   */
  readonly damaged?: true;
}

function nodeToJson(n: TreeNode): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (isUtf8(n.name)) o['name'] = n.name.toString('utf8');
  else o['nameB64'] = n.name.toString('base64');
  o['type'] = n.type;
  o['mode'] = n.mode;
  o['uid'] = n.uid;
  o['gid'] = n.gid;
  if (n.user !== undefined) o['user'] = n.user;
  if (n.group !== undefined) o['group'] = n.group;
  o['mtime'] = n.mtime.toString();
  o['ctime'] = n.ctime.toString();
  o['inode'] = n.inode.toString();
  o['device'] = n.device.toString();
  o['links'] = n.links;
  o['size'] = n.size;
  if (n.content) o['content'] = n.content;
  if (n.fingerprint !== undefined) o['fingerprint'] = n.fingerprint;
  if (n.subtree) o['subtree'] = n.subtree;
  if (n.target) {
    if (isUtf8(n.target)) o['target'] = n.target.toString('utf8');
    else o['targetB64'] = n.target.toString('base64');
  }
  if (n.rdev !== undefined) o['rdev'] = n.rdev.toString();
  if (n.damaged) o['damaged'] = true;
  return o;
}

/** Encodes a directory's nodes; sorts them by name bytes. */
export function encodeTree(nodes: TreeNode[]): Buffer {
  const sorted = [...nodes].sort((a, b) => Buffer.compare(a.name, b.name));
  return Buffer.from(JSON.stringify({ nodes: sorted.map(nodeToJson) }), 'utf8');
}

function bytesField(o: Record<string, unknown>, f: string, what: string): Buffer | undefined {
  const plain = o[f];
  const b64 = o[`${f}B64`];
  if (typeof plain === 'string') return Buffer.from(plain, 'utf8');
  if (typeof b64 === 'string') return Buffer.from(b64, 'base64');
  if (plain !== undefined || b64 !== undefined) throw new CorruptObjectError(what, `bad ${f}`);
  return undefined;
}

function int(o: Record<string, unknown>, f: string, what: string): number {
  const v = o[f];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CorruptObjectError(what, `bad ${f}`);
  return v;
}

function big(o: Record<string, unknown>, f: string, what: string): bigint {
  const v = o[f];
  if (typeof v !== 'string' || !/^-?[0-9]{1,30}$/.test(v)) throw new CorruptObjectError(what, `bad ${f}`);
  return BigInt(v);
}

/** Decodes a tree blob; rejects anything malformed with `CorruptObjectError`. */
export function decodeTree(bytes: Buffer, what: string): TreeNode[] {
  const root = asRecord(parseJson(bytes, what), what);
  const list = root['nodes'];
  if (!Array.isArray(list)) throw new CorruptObjectError(what, 'no node list');
  return list.map((raw) => {
    const o = asRecord(raw, what);
    const name = bytesField(o, 'name', what);
    if (!name || name.length === 0) throw new CorruptObjectError(what, 'node without a name');
    const type = o['type'];
    if (typeof type !== 'string' || !(NODE_TYPES as readonly string[]).includes(type)) throw new CorruptObjectError(what, 'bad node type');
    const node: {
      -readonly [K in keyof TreeNode]: TreeNode[K];
    } = {
      name,
      type: type as NodeType,
      mode: int(o, 'mode', what) & 0o7777,
      uid: int(o, 'uid', what),
      gid: int(o, 'gid', what),
      mtime: big(o, 'mtime', what),
      ctime: big(o, 'ctime', what),
      inode: big(o, 'inode', what),
      device: big(o, 'device', what),
      links: int(o, 'links', what),
      size: int(o, 'size', what),
    };
    if (typeof o['user'] === 'string') node.user = o['user'];
    if (typeof o['group'] === 'string') node.group = o['group'];
    if (type === 'file') {
      const content = o['content'];
      if (!Array.isArray(content) || !content.every(isContentEntry)) throw new CorruptObjectError(what, 'bad file content list');
      node.content = content;
      const fp = o['fingerprint'];
      if (fp !== undefined) {
        if (typeof fp !== 'string' || !/^[0-9a-f]{32}$/.test(fp)) throw new CorruptObjectError(what, 'bad fingerprint');
        node.fingerprint = fp;
      }
    }
    if (type === 'dir') {
      if (!isIdHex(o['subtree'])) throw new CorruptObjectError(what, 'directory without a subtree id');
      node.subtree = o['subtree'];
    }
    if (type === 'symlink') {
      const target = bytesField(o, 'target', what);
      if (!target) throw new CorruptObjectError(what, 'symlink without a target');
      node.target = target;
    }
    if (type === 'chardev' || type === 'blockdev') node.rdev = big(o, 'rdev', what);
    if (o['damaged'] === true) node.damaged = true;
    return node;
  });
}

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
import { isIdHex } from '../core/ids.js';
import { asRecord, parseJson } from './binary.js';
import { CorruptObjectError } from './errors.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket'];

/**
 * A file's content: blob ids (hex) in order; a number stands for a run of
 * that many zero bytes that is not stored (a hole).
 */
export type ContentEntry = string | number;

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

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
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
      if (!Array.isArray(content) || !content.every((c) => isIdHex(c) || (typeof c === 'number' && Number.isSafeInteger(c) && c > 0))) {
        throw new CorruptObjectError(what, 'bad file content list');
      }
      node.content = content as ContentEntry[];
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

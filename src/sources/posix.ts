// POSIX odds and ends that Node's `fs` does not cover, used by the engine when
// it reads a file tree (backup) and when it recreates one (restore):
//
//   IdNames        uid/gid <-> user/group names, from /etc/passwd and /etc/group
//   makeFifo       mkfifo(3), through mknod(2) in the addon
//   makeDevice     mknod(2) for char/block devices
//   chmodNoFollow  chmod(2) that never follows a final symlink
//   splitRdev      st_rdev -> major/minor (glibc encoding), and makeRdev back
//   PathShortener  addresses paths longer than PATH_MAX through /proc/self/fd
//
// All path arguments may be Buffers: Linux file names are bytes, not UTF-8.

import { chmodSync, closeSync, constants as fsConstants, fstatSync, openSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { native } from './native.js';

/** A file system path as Node accepts it; Buffers carry names that are not valid UTF-8. */
export type PosixPath = string | Buffer;

// ---------------------------------------------------------------------------
// User and group names

/**
 * uid/gid to name maps (and back), parsed from passwd(5) and group(5) files.
 * The files are read once, synchronously, on the first lookup (a few KiB;
 * lookups then stay synchronous for the tree walker). Malformed lines are
 * skipped; a missing or unreadable file yields no names. When an id or name
 * appears twice, the first line wins, as with getpwuid(3).
 */
export class IdNames {
  private maps: IdMaps | undefined;

  /** @param files where to read from; defaults /etc/passwd and /etc/group. */
  constructor(private readonly files: { passwd?: string; group?: string } = {}) {}

  /** Names from the text of a passwd(5) and a group(5) file, without touching the file system. */
  static parse(passwdText: string, groupText: string): IdNames {
    const names = new IdNames();
    names.maps = parseMaps(passwdText, groupText);
    return names;
  }

  /** The user name of `uid`, or undefined if it has none. */
  user(uid: number): string | undefined {
    return this.load().users.get(uid);
  }

  /** The group name of `gid`, or undefined if it has none. */
  group(gid: number): string | undefined {
    return this.load().groups.get(gid);
  }

  /** The uid of user `name`, or undefined if there is no such user (restore maps names back). */
  uidOf(name: string): number | undefined {
    return this.load().userIds.get(name);
  }

  /** The gid of group `name`, or undefined if there is no such group. */
  gidOf(name: string): number | undefined {
    return this.load().groupIds.get(name);
  }

  private load(): IdMaps {
    this.maps ??= parseMaps(readOptional(this.files.passwd ?? '/etc/passwd'), readOptional(this.files.group ?? '/etc/group'));
    return this.maps;
  }
}

interface IdMaps {
  users: Map<number, string>;
  groups: Map<number, string>;
  userIds: Map<string, number>;
  groupIds: Map<string, number>;
}

function parseMaps(passwdText: string, groupText: string): IdMaps {
  // passwd: name:password:uid:gid:gecos:home:shell; group: name:password:gid:members.
  // In both the id is the third field; that is all we need.
  const [users, userIds] = parseIdFile(passwdText, 7);
  const [groups, groupIds] = parseIdFile(groupText, 4);
  return { users, groups, userIds, groupIds };
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EACCES') || isErrno(err, 'EISDIR')) return '';
    throw err;
  }
}

function parseIdFile(text: string, minFields: number): [Map<number, string>, Map<string, number>] {
  const byId = new Map<number, string>();
  const byName = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    // NIS compat entries ("+", "-name") name no local id.
    if (line.startsWith('+') || line.startsWith('-')) continue;
    const fields = line.split(':');
    if (fields.length < minFields) continue;
    const name = fields[0] ?? '';
    const idText = fields[2] ?? '';
    if (name === '' || !/^\d{1,10}$/.test(idText)) continue;
    const id = Number(idText);
    if (id > 0xffffffff) continue;
    if (!byId.has(id)) byId.set(id, name);
    if (!byName.has(name)) byName.set(name, id);
  }
  return [byId, byName];
}

// ---------------------------------------------------------------------------
// Device numbers

/** Major and minor number of a device, as ls(1) shows them. */
export interface DeviceNumber {
  /** Major number: the driver. */
  major: number;
  /** Minor number: the device within the driver. */
  minor: number;
}

/** Splits a Linux st_rdev / st_dev value (glibc's 64-bit dev_t encoding) into major and minor. */
export function splitRdev(rdev: number | bigint): DeviceNumber {
  const dev = BigInt(rdev);
  if (dev < 0n || dev > 0xffffffffffffffffn) throw new RangeError(`device number out of range: ${dev}`);
  // glibc <bits/sysmacros.h>:
  //   major = bits 8..19 | bits 44..63 << 12;  minor = bits 0..7 | bits 20..43 << 8
  const major = ((dev & 0x00000000000fff00n) >> 8n) | ((dev & 0xfffff00000000000n) >> 32n);
  const minor = (dev & 0x00000000000000ffn) | ((dev & 0x00000ffffff00000n) >> 12n);
  return { major: Number(major), minor: Number(minor) };
}

/** The inverse of splitRdev: glibc's makedev(3). */
export function makeRdev(major: number, minor: number): bigint {
  checkU32('major', major);
  checkU32('minor', minor);
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0x00000fffn) << 8n) | ((ma & 0xfffff000n) << 32n) | (mi & 0x000000ffn) | ((mi & 0xffffff00n) << 12n);
}

function checkU32(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${what} device number must be a 32-bit unsigned integer, got ${n}`);
}

// ---------------------------------------------------------------------------
// FIFOs and device nodes

/** Raised when mkfifo/mknod could not create a node; `path` is the node that was asked for. */
export class SpecialFileError extends Error {
  constructor(
    message: string,
    /** The path that was to be created. */
    readonly path: PosixPath,
    /** errno-style code when known (EEXIST, EPERM, ENOENT...). */
    readonly code?: string,
  ) {
    super(message);
    this.name = 'SpecialFileError';
  }
}

/**
 * Creates a FIFO at `path` with permission bits `mode` (umask does not apply).
 * Fails with SpecialFileError (code EEXIST) if `path` exists.
 */
export function makeFifo(path: PosixPath, mode: number): void {
  makeNode(path, fsConstants.S_IFIFO, mode, 0n, 'FIFO');
}

/**
 * Creates a character or block device node at `path`. `rdev` is an st_rdev
 * value (see makeRdev); `mode` holds only the permission bits. Needs
 * CAP_MKNOD (root) on most systems. Fails with SpecialFileError (code EEXIST)
 * if `path` exists.
 */
export function makeDevice(path: PosixPath, kind: 'char' | 'block', rdev: number | bigint, mode: number): void {
  if (kind !== 'char' && kind !== 'block') throw new TypeError(`device kind must be 'char' or 'block', got ${String(kind)}`);
  const { major, minor } = splitRdev(rdev);
  makeNode(path, kind === 'char' ? fsConstants.S_IFCHR : fsConstants.S_IFBLK, mode, makeRdev(major, minor), `${kind} device ${major}:${minor}`);
}

/** mknod(2), then the mode without the umask (set without following a symlink put in its place). */
function makeNode(path: PosixPath, type: number, mode: number, rdev: bigint, what: string): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new RangeError(`mode must hold permission bits only (0..0o7777), got ${mode}`);
  try {
    native.mknod(toBuffer(path), type | mode, rdev);
    chmodNoFollow(path, mode);
  } catch (err) {
    const hint = isErrno(err, 'EPERM') && type !== fsConstants.S_IFIFO ? ' (device nodes need CAP_MKNOD, usually root)' : '';
    throw new SpecialFileError(`cannot create ${what} at ${show(path)}: ${errMessage(err)}${hint}`, path, errCode(err));
  }
}

/**
 * chmod(2) without following a final symlink (Linux gives symlinks no mode of
 * their own: a symlink found there is left alone): the node is opened
 * O_PATH | O_NOFOLLOW and changed through its /proc/self/fd name, which is
 * that very inode, whatever is put at `path` meanwhile.
 */
export function chmodNoFollow(path: PosixPath, mode: number): void {
  const fd = openSync(path, O_PATH | fsConstants.O_NOFOLLOW);
  try {
    if (!fstatSync(fd).isSymbolicLink()) chmodSync(`/proc/self/fd/${fd}`, mode);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// Paths longer than PATH_MAX

/** O_PATH from <fcntl.h> (same value on x86-64 and arm64); Node does not export it. */
export const O_PATH = 0o10000000;
const SLASH = 0x2f;

/**
 * A time for utimes(2) through Node, which passes a double that libuv
 * truncates (towards zero) to the microsecond: aim at the middle of the
 * stored time's microsecond (`floorMicros`) so the truncation lands on it.
 * Node turns a negative number into "now" but passes a numeric string
 * through as it is (documented for fs.utimes), so a time before 1970 is
 * given as a string.
 */
export function utimesSeconds(ns: bigint): number | string {
  const us = floorMicros(ns) / 1000n;
  if (us >= 0n) return Number(us / 1_000_000n) + (Number(us % 1_000_000n) + 0.5) / 1e6;
  // Half a microsecond further from zero, in tenths of a microsecond: -(2·us - 1)·5.
  const tenths = ((1n - 2n * us) * 5n).toString().padStart(8, '0');
  return `-${tenths.slice(0, -7)}.${tenths.slice(-7)}`;
}

/**
 * A time as the seconds and nanoseconds of a timespec for futimens(2) (the
 * nanoseconds from 0 to 999,999,999, also before 1970), floored to the
 * microsecond as `utimesSeconds` sets it, so a restore gives the same mtime
 * whichever call sets it.
 */
export function timespec(ns: bigint): readonly [seconds: number, nanoseconds: number] {
  const t = floorMicros(ns);
  const nanos = ((t % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return [Number((t - nanos) / 1_000_000_000n), Number(nanos)];
}

/** A time in nanoseconds floored to the microsecond: what utimes through Node can set, and so what a restore gives. */
export function floorMicros(ns: bigint): bigint {
  const rest = ((ns % 1000n) + 1000n) % 1000n;
  return ns - rest;
}

/**
 * Turns paths of any length into equivalent ones short enough for a syscall.
 *
 * Linux refuses paths of PATH_MAX (4096) bytes or more with ENAMETOOLONG, yet
 * trees can be deeper than that. For a long path we open (O_PATH) a directory
 * on the way, at most `limit` bytes in, and name the rest relative to it as
 * /proc/self/fd/<fd>/<rest>, repeating until the result fits. Descriptors are
 * cached per prefix and held until close(); the directories on the way must
 * not be renamed or replaced meanwhile. Short paths are returned unchanged,
 * so wrapping every call costs nothing for ordinary trees.
 */
export class PathShortener {
  private readonly anchors = new Map<string, FileHandle>();

  /** @param limit longest path handed back (bytes); must leave room for one 255-byte name. */
  constructor(private readonly limit = 4000) {
    if (limit < 300 || limit > 4095) throw new RangeError(`PathShortener limit must be within 300..4095, got ${limit}`);
  }

  /** A path naming the same file as `path`, at most `limit` bytes long (as a Buffer if it had to change). */
  async short(path: PosixPath): Promise<PosixPath> {
    if (typeof path === 'string' && path.length * 3 <= this.limit) return path;
    const buf = toBuffer(path);
    if (buf.length <= this.limit) return path;
    // From the start of the path, each anchor is the folder at a "/" of it,
    // opened through the anchor before, until the rest fits: the path is
    // sliced, never copied whole per anchor (a copy each made deep trees
    // quadratic in their depth).
    let head = Buffer.alloc(0);
    let start = 0;
    for (;;) {
      if (head.length + buf.length - start <= this.limit) return Buffer.concat([head, buf.subarray(start)]);
      const cut = buf.lastIndexOf(SLASH, start + this.limit - head.length);
      if (cut <= start) throw Object.assign(new Error(`path has a component longer than 255 bytes: ${show(buf)}`), { code: 'ENAMETOOLONG' });
      head = Buffer.from(`/proc/self/fd/${await this.anchor(Buffer.concat([head, buf.subarray(start, cut)]))}`);
      start = cut;
    }
  }

  /** Closes the cached directory descriptors. Idempotent; the shortener can be used again afterwards. */
  async close(): Promise<void> {
    const handles = [...this.anchors.values()];
    this.anchors.clear();
    await Promise.all(handles.map((h) => h.close()));
  }

  private async anchor(prefix: Buffer): Promise<number> {
    const key = prefix.toString('latin1');
    const cached = this.anchors.get(key);
    if (cached) return cached.fd;
    let handle: FileHandle;
    try {
      handle = await fsp.open(prefix, O_PATH | fsConstants.O_DIRECTORY);
    } catch (err) {
      if (isErrno(err, 'ENOENT') && prefix.subarray(0, 14).toString() === '/proc/self/fd/' && !(await exists('/proc/self/fd'))) {
        throw new Error('paths longer than PATH_MAX need /proc to be mounted', { cause: err });
      }
      throw err;
    }
    this.anchors.set(key, handle);
    return handle.fd;
  }
}

// ---------------------------------------------------------------------------
// Small helpers

function toBuffer(path: PosixPath): Buffer {
  return typeof path === 'string' ? Buffer.from(path) : path;
}

async function exists(path: PosixPath): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

function show(path: PosixPath): string {
  return JSON.stringify(typeof path === 'string' ? path : path.toString('utf8'));
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function errCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

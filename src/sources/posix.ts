// POSIX odds and ends that Node's `fs` does not cover, used by the engine when
// it reads a file tree (backup) and when it recreates one (restore):
//
//   IdNames        uid/gid <-> user/group names, from /etc/passwd and /etc/group
//   makeFifo       mkfifo(3), through coreutils `mkfifo`
//   makeDevice     mknod(2) for char/block devices, through coreutils `mknod`
//   splitRdev      st_rdev -> major/minor (glibc encoding), and makeRdev back
//   PathShortener  addresses paths longer than PATH_MAX through /proc/self/fd
//
// All path arguments may be Buffers: Linux file names are bytes, not UTF-8.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

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
export async function makeFifo(path: PosixPath, mode: number): Promise<void> {
  await makeNode(path, mode, 'FIFO', ['mkfifo', '-m', octal(mode)], []);
}

/**
 * Creates a character or block device node at `path`. `rdev` is an st_rdev
 * value (see makeRdev); `mode` holds only the permission bits. Needs
 * CAP_MKNOD (root) on most systems. Fails with SpecialFileError (code EEXIST)
 * if `path` exists.
 */
export async function makeDevice(path: PosixPath, kind: 'char' | 'block', rdev: number | bigint, mode: number): Promise<void> {
  if (kind !== 'char' && kind !== 'block') throw new TypeError(`device kind must be 'char' or 'block', got ${String(kind)}`);
  const { major, minor } = splitRdev(rdev);
  const what = `${kind} device ${major}:${minor}`;
  await makeNode(path, mode, what, ['mknod', '-m', octal(mode)], [kind === 'char' ? 'c' : 'b', String(major), String(minor)]);
}

function octal(mode: number): string {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new RangeError(`mode must hold permission bits only (0..0o7777), got ${mode}`);
  return '0' + mode.toString(8);
}

// Node has no mknod(2). Running the coreutils tool is the portable way, but
// argv entries are strings, so a name that is not UTF-8 (or a path longer than
// PATH_MAX) cannot be handed over. Instead we open the parent directory, give
// the child that descriptor as fd 3, let it create an ASCII temporary name
// under /proc/self/fd/3, and move the node to its real name with link+unlink
// (unlike rename, link refuses to replace an existing file).
async function makeNode(path: PosixPath, mode: number, what: string, command: string[], trailing: string[]): Promise<void> {
  const buf = toBuffer(path);
  const { dir, base } = splitPath(buf);
  if (base.length === 0 || base.equals(DOT) || base.equals(DOTDOT)) {
    throw new SpecialFileError(`cannot create ${what} at ${show(path)}: not a file name`, path, 'EINVAL');
  }
  const shortener = new PathShortener();
  let parent: FileHandle;
  try {
    parent = await fsp.open(await shortener.short(dir), O_PATH | fsConstants.O_DIRECTORY);
  } catch (err) {
    await shortener.close();
    throw new SpecialFileError(`cannot create ${what} at ${show(path)}: parent directory: ${errMessage(err)}`, path, errCode(err));
  }
  try {
    const tmpName = `.holdfast-mknod-${process.pid}-${randomBytes(6).toString('hex')}`;
    const [file, ...args] = command as [string, ...string[]];
    const { code, stderr } = await run(file, [...args, `/proc/self/fd/3/${tmpName}`, ...trailing], parent.fd);
    if (code !== 0) {
      const hint = /Operation not permitted/.test(stderr) && what !== 'FIFO' ? ' (device nodes need CAP_MKNOD, usually root)' : '';
      throw new SpecialFileError(`cannot create ${what} at ${show(path)}: ${file} exited with ${code}: ${stderr.trim()}${hint}`, path, guessCode(stderr));
    }
    const viaParent = (name: Buffer | string): Buffer => Buffer.concat([Buffer.from(`/proc/self/fd/${parent.fd}/`), toBuffer(name)]);
    const tmp = viaParent(tmpName);
    try {
      await moveNoReplace(tmp, viaParent(base), () => new SpecialFileError(`cannot create ${what} at ${show(path)}: file exists`, path, 'EEXIST'));
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    // coreutils applies -m with chmod only in some cases; do it always so the
    // result never depends on the umask.
    await fsp.chmod(viaParent(base), mode);
  } catch (err) {
    if (err instanceof SpecialFileError) throw err;
    throw new SpecialFileError(`cannot create ${what} at ${show(path)}: ${errMessage(err)}`, path, errCode(err));
  } finally {
    await parent.close();
    await shortener.close();
  }
}

// link+unlink refuses to replace an existing file, unlike rename. On file
// systems without hard links fall back to check-then-rename (racy but rare).
async function moveNoReplace(from: Buffer, to: Buffer, existsError: () => Error): Promise<void> {
  try {
    await fsp.link(from, to);
    return;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) throw existsError();
    if (!isErrno(err, 'EPERM') && !isErrno(err, 'ENOTSUP') && !isErrno(err, 'EOPNOTSUPP') && !isErrno(err, 'EMLINK')) throw err;
  }
  if (await exists(to)) throw existsError();
  await fsp.rename(from, to);
}

function run(file: string, args: string[], fd3: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe', fd3] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (err) => {
      reject(isErrno(err, 'ENOENT') ? new Error(`${file} not found on PATH (it comes with coreutils)`) : err);
    });
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stderr }));
  });
}

function guessCode(stderr: string): string | undefined {
  if (/File exists/.test(stderr)) return 'EEXIST';
  if (/Operation not permitted/.test(stderr)) return 'EPERM';
  if (/Permission denied/.test(stderr)) return 'EACCES';
  if (/No such file or directory/.test(stderr)) return 'ENOENT';
  return undefined;
}

// ---------------------------------------------------------------------------
// Paths longer than PATH_MAX

/** O_PATH from <fcntl.h> (same value on x86-64 and arm64); Node does not export it. */
const O_PATH = 0o10000000;
const SLASH = 0x2f;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

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

function splitPath(path: Buffer): { dir: Buffer; base: Buffer } {
  let end = path.length;
  while (end > 1 && path[end - 1] === SLASH) end--;
  const trimmed = path.subarray(0, end);
  const slash = trimmed.lastIndexOf(SLASH);
  if (slash < 0) return { dir: DOT, base: trimmed };
  return { dir: slash === 0 ? Buffer.from('/') : trimmed.subarray(0, slash), base: trimmed.subarray(slash + 1) };
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

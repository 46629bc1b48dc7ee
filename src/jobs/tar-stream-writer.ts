/**
 * Writes entries as a tar stream (for `dump` of a folder, from file
 * snapshots and from files inside image snapshots alike) in the POSIX pax
 * format, as restic's dump does: a ustar header per entry, preceded by a pax
 * extended header ('x') when a value does not fit ustar. Nothing of an entry
 * is lost or rewritten on the way:
 *
 *   name, link target   as bytes (not UTF-8 only): pax `path`/`linkpath`
 *                       when longer than 100 bytes or not ASCII
 *   mode                exactly, 000 included
 *   mtime               whole seconds; pax `mtime` before 1970 and after 2242
 *   uid, gid, size      pax when over ustar's 7 and 11 octal digits
 *   user, group         pax `uname`/`gname` when over 32 bytes or not ASCII
 *   extended attributes pax `SCHILY.xattr.NAME` records, name and value as
 *                       bytes (what GNU tar writes and reads with --xattrs)
 *
 * Names are relative to the root (a folder's ends in "/"), hard links are
 * links to the first name written, device numbers are split the way glibc
 * does. Every write waits for the output to drain: a dump is larger than memory.
 */
import type { FileKind } from '../core/mode-string.js';
import type { Xattr } from '../repo/tree.js';

/** The part of a writable stream that writing needs. */
export interface Sink {
  write(chunk: Buffer | string): boolean;
  once(event: 'drain', fn: () => void): unknown;
}

/** Writes a chunk, waiting for 'drain' when the stream asks to. */
export async function writeOut(out: Sink, chunk: Buffer | string): Promise<void> {
  if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
}

/** One entry of the stream. */
export interface TarEntry {
  /** Absolute path in the snapshot or image ("/etc/hosts"). */
  readonly path: Buffer;
  readonly type: FileKind;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly user?: string;
  readonly group?: string;
  /** ns since the epoch. */
  readonly mtime: bigint;
  readonly size: number;
  readonly target?: Buffer;
  readonly rdev?: bigint;
  /** For files with several names: equal keys are one inode. */
  readonly linkKey?: string;
  readonly xattrs?: readonly Xattr[];
  /** A file's bytes: exactly `size` of them. */
  readonly content?: () => AsyncIterable<Buffer>;
}

const BLOCK = 512;
const ZEROS = Buffer.alloc(2 * BLOCK);

/** ustar type flags; sockets have none (they are skipped). */
const TYPE_FLAG: Partial<Record<FileKind, string>> = { file: '0', symlink: '2', chardev: '3', blockdev: '4', dir: '5', fifo: '6' };
const HARD_LINK = '1';
const PAX = 'x';

/** Octal digits, NUL-terminated, in a field of `width` bytes; undefined when they do not fit. */
function octal(n: bigint, width: number): Buffer | undefined {
  const digits = n.toString(8);
  if (n < 0n || digits.length > width - 1) return undefined;
  return Buffer.from(`${digits.padStart(width - 1, '0')}\0`, 'latin1');
}

/** True when bytes can go into a ustar text field as they are. */
const fitsText = (b: Buffer, width: number): boolean => b.length <= width && b.every((c) => c > 0 && c < 0x80);

const XATTR_KEY = Buffer.from('SCHILY.xattr.', 'latin1');

/** One pax record, "<len> <key>=<value>\n", where len counts its own digits. */
function paxRecord(key: string | Buffer, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(' '), typeof key === 'string' ? Buffer.from(key, 'latin1') : key, Buffer.from('='), value, Buffer.from('\n')]);
  let len = rest.length + String(rest.length).length;
  if (String(len).length > String(rest.length).length) len++;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), rest]);
}

/** A ustar header as field values; what does not fit goes to pax records. */
interface Header {
  readonly name: Buffer;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** ns since the epoch. */
  readonly mtime: bigint;
  readonly flag: string;
  readonly linkname?: Buffer;
  readonly uname: Buffer;
  readonly gname: Buffer;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly xattrs?: readonly Xattr[];
}

/** The header block, preceded by a pax header and its records when needed. */
function encodeHeader(h: Header): Buffer {
  const pax: Buffer[] = [];
  const block = Buffer.alloc(BLOCK);
  const text = (key: string, value: Buffer, offset: number, width: number): void => {
    if (fitsText(value, width)) value.copy(block, offset);
    else {
      pax.push(paxRecord(key, value));
      // Readers without pax still see a name: its last bytes, which hold the base name.
      if (key === 'path' || key === 'linkpath') Buffer.from(value.subarray(-width).toString('latin1').replace(/[^\x20-\x7e]/g, '_'), 'latin1').copy(block, offset);
    }
  };
  const number = (key: string | undefined, value: bigint, offset: number, width: number): void => {
    const o = octal(value, width);
    if (o) o.copy(block, offset);
    else if (key) pax.push(paxRecord(key, Buffer.from(value.toString(), 'latin1')));
  };
  text('path', h.name, 0, 100);
  number(undefined, BigInt(h.mode & 0o7777), 100, 8);
  number('uid', BigInt(h.uid), 108, 8);
  number('gid', BigInt(h.gid), 116, 8);
  number('size', BigInt(h.size), 124, 12);
  const seconds = h.mtime >= 0n ? h.mtime / 1_000_000_000n : -((-h.mtime + 999_999_999n) / 1_000_000_000n);
  const mtime = octal(seconds, 12);
  if (mtime) mtime.copy(block, 136);
  else pax.push(paxRecord('mtime', Buffer.from(seconds.toString(), 'latin1')));
  block.write(h.flag, 156, 'latin1');
  if (h.linkname) text('linkpath', h.linkname, 157, 100);
  block.write('ustar\x0000', 257, 'latin1');
  text('uname', h.uname, 265, 32);
  text('gname', h.gname, 297, 32);
  if (h.devmajor !== undefined) number(undefined, BigInt(h.devmajor), 329, 8);
  if (h.devminor !== undefined) number(undefined, BigInt(h.devminor), 337, 8);
  for (const x of h.xattrs ?? []) pax.push(paxRecord(Buffer.concat([XATTR_KEY, x.name]), x.value));
  checksum(block);
  if (pax.length === 0) return block;
  const records = Buffer.concat(pax);
  const paxBlock = Buffer.alloc(BLOCK);
  Buffer.from('PaxHeader', 'latin1').copy(paxBlock, 0);
  octal(0o644n, 8)!.copy(paxBlock, 100);
  octal(BigInt(records.length), 12)!.copy(paxBlock, 124);
  block.copy(paxBlock, 136, 136, 148); // the entry's mtime field
  paxBlock.write(PAX, 156, 'latin1');
  paxBlock.write('ustar\x0000', 257, 'latin1');
  checksum(paxBlock);
  return Buffer.concat([paxBlock, records, padding(records.length), block]);
}

/** Fills in a header block's checksum: the byte sum with the field itself as spaces. */
function checksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/** Zeros up to the next block boundary after `n` bytes. */
const padding = (n: number): Buffer => ZEROS.subarray(0, (BLOCK - (n % BLOCK)) % BLOCK);

/** Writes every entry (sockets are skipped: tar has no type for them) and the end-of-archive blocks. */
export async function writeTar(out: Sink, entries: AsyncIterable<TarEntry>): Promise<void> {
  const firstPath = new Map<string, Buffer>();
  for await (const e of entries) {
    const flag = TYPE_FLAG[e.type];
    if (!flag) continue;
    let start = 0;
    while (e.path[start] === 0x2f) start++;
    const rel = e.path.subarray(start);
    const name = e.type === 'dir' ? Buffer.concat([rel, Buffer.from('/')]) : rel;
    const rdev = e.rdev ?? 0n;
    const header = {
      name, mode: e.mode, uid: e.uid, gid: e.gid, size: 0, mtime: e.mtime, flag,
      uname: Buffer.from(e.user ?? ''), gname: Buffer.from(e.group ?? ''),
      ...(e.target ? { linkname: e.target } : {}),
      ...(e.xattrs ? { xattrs: e.xattrs } : {}),
      ...(e.type === 'chardev' || e.type === 'blockdev'
        ? { devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) }
        : {}),
    };
    if (e.type !== 'file') {
      await writeOut(out, encodeHeader(header));
      continue;
    }
    const first = e.linkKey ? firstPath.get(e.linkKey) : undefined;
    if (first) {
      await writeOut(out, encodeHeader({ ...header, flag: HARD_LINK, linkname: first }));
      continue;
    }
    if (e.linkKey) firstPath.set(e.linkKey, name);
    await writeOut(out, encodeHeader({ ...header, size: e.size }));
    let written = 0;
    for await (const chunk of e.content?.() ?? []) {
      written += chunk.length;
      // The header promised `size` bytes: more or fewer would shift every later entry.
      if (written > e.size) break;
      await writeOut(out, chunk);
    }
    if (written !== e.size) throw new Error(`${e.path.toString()}: its content is ${written > e.size ? 'longer' : 'shorter'} than its recorded size of ${e.size} bytes; the tar stream is cut off here`);
    await writeOut(out, padding(e.size));
  }
  await writeOut(out, ZEROS);
}

/**
 * A folder of a snapshot as a zip stream, made as it is read (tar.ts's
 * twin, for people whose systems open zips): every entry stored (method 0:
 * the content is already compressed in the safe, and stored keeps the
 * writer simple and fast), its CRC-32 computed as the bytes go by and
 * written after them in a data descriptor, so no file is held whole.
 * ZIP64 fields are written where a size or an offset needs them (a file of
 * 4 GiB or more, an archive past 4 GiB, more than 65,535 entries). Names
 * come from `ZkSafe.walk`, which refused `/`, `..` and the like (§6.4).
 *
 *   entry   = local header (flags: data descriptor, UTF-8; sizes 0), bytes, data descriptor (CRC, sizes)
 *   archive = entry*, central directory (one header per entry, its offset),
 *             [ZIP64 end record, ZIP64 locator], end record
 */
import { concatBytes, utf8 } from './bytes.js';
import type { TreeNode } from './format.js';
import { joinPath, type ZkSafe } from './safe.js';

const MAX32 = 0xffffffff;
const FLAGS = 0x0008 | 0x0800;
const MADE_BY_UNIX = 3 << 8;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, zip's) of `bytes` continued from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Options of a zip stream. */
export interface ZipOptions {
  /** ZIP64 fields on every entry and the end, needed or not (tests reach them without writing 4 GiB). */
  readonly zip64?: boolean;
  /** Hears of what a zip cannot hold (sockets, devices, FIFOs). */
  readonly onSkip?: (path: string, why: string) => void;
}

/** One archived entry as the central directory needs it. */
interface Written {
  readonly name: Uint8Array;
  readonly offset: number;
  readonly size: number;
  readonly crc: number;
  readonly attrs: number;
  readonly mtime: bigint;
  readonly zip64: boolean;
}

/** The zip of the walk below tree `tree`, entries named `top/…`. */
export async function* zipOf(safe: ZkSafe, tree: string, top: Uint8Array, opts: ZipOptions = {}): AsyncGenerator<Uint8Array> {
  const written: Written[] = [];
  let offset = 0;
  const force = opts.zip64 === true;
  async function* put(name: Uint8Array, n: Pick<TreeNode, 'mode' | 'mtime'>, kind: number, size: number, content: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const zip64 = force || size >= MAX32;
    const head = localHeader(name, n.mtime, zip64);
    const start = offset;
    yield head;
    offset += head.length;
    let crc = 0;
    let sent = 0;
    for await (const b of content) {
      crc = crc32(b, crc);
      sent += b.length;
      yield b;
    }
    offset += sent;
    const tail = dataDescriptor(crc, sent, zip64);
    yield tail;
    offset += tail.length;
    written.push({ name, offset: start, size: sent, crc, attrs: kind | (n.mode & 0o7777), mtime: n.mtime, zip64 });
  }
  yield* put(concatBytes([top, utf8.encode('/')]), { mode: 0o755, mtime: BigInt(Date.now()) * 1_000_000n }, 0o040000, 0, none());
  for await (const e of safe.walk(tree)) {
    const path = joinPath([top, ...e.path]);
    const n = e.node;
    if (n.type === 'dir') yield* put(concatBytes([path, utf8.encode('/')]), n, 0o040000, 0, none());
    else if (n.type === 'file') yield* put(path, n, 0o100000, n.size, safe.fileBytes(n, new TextDecoder().decode(path)));
    else if (n.type === 'symlink') yield* put(path, n, 0o120000, n.target?.length ?? 0, once(n.target ?? new Uint8Array(0)));
    else opts.onSkip?.(new TextDecoder().decode(path), `a ${n.type} is not put into the archive`);
  }
  const cdStart = offset;
  for (const w of written) {
    const h = centralHeader(w, force);
    yield h;
    offset += h.length;
  }
  yield end(written.length, cdStart, offset - cdStart, force);
}

async function* none(): AsyncGenerator<Uint8Array> {
  // An entry without content: a folder.
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

/** MS-DOS time and date (local time, as zip tools show them; 1980 at the earliest). */
function dosTime(mtime: bigint): { time: number; date: number } {
  const d = new Date(Number(mtime / 1_000_000n));
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 1980) return { time: 0, date: (1 << 5) | 1 };
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((Math.min(d.getFullYear(), 2107) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

/** The extended-timestamp field (0x5455): the modification time in UTC seconds, which unzip and 7-Zip prefer to the DOS time. */
function unixTime(mtime: bigint): Uint8Array {
  const seconds = mtime / 1_000_000_000n;
  const b = new Bytes(9);
  b.u16(0x5455).u16(5).u8(1).u32(seconds < 0n || seconds > 0xffffffffn ? 0 : Number(seconds));
  return b.out;
}

function localHeader(name: Uint8Array, mtime: bigint, zip64: boolean): Uint8Array {
  const extra = concatBytes([unixTime(mtime), ...(zip64 ? [new Bytes(20).u16(0x0001).u16(16).u64(0).u64(0).out] : [])]);
  const { time, date } = dosTime(mtime);
  const b = new Bytes(30 + name.length + extra.length);
  b.u32(0x04034b50).u16(zip64 ? 45 : 20).u16(FLAGS).u16(0).u16(time).u16(date)
    .u32(0).u32(zip64 ? MAX32 : 0).u32(zip64 ? MAX32 : 0).u16(name.length).u16(extra.length).bytes(name).bytes(extra);
  return b.out;
}

function dataDescriptor(crc: number, size: number, zip64: boolean): Uint8Array {
  return zip64 ? new Bytes(24).u32(0x08074b50).u32(crc).u64(size).u64(size).out : new Bytes(16).u32(0x08074b50).u32(crc).u32(size).u32(size).out;
}

function centralHeader(w: Written, force: boolean): Uint8Array {
  const bigSize = force || w.zip64 || w.size >= MAX32;
  const bigOffset = force || w.offset >= MAX32;
  const fields = [...(bigSize ? [w.size, w.size] : []), ...(bigOffset ? [w.offset] : [])];
  const zip64 = fields.length > 0 ? new Bytes(4 + 8 * fields.length).u16(0x0001).u16(8 * fields.length) : undefined;
  for (const f of fields) zip64!.u64(f);
  const extra = concatBytes([unixTime(w.mtime), ...(zip64 ? [zip64.out] : [])]);
  const { time, date } = dosTime(w.mtime);
  const folder = (w.attrs & 0o170000) === 0o040000;
  const b = new Bytes(46 + w.name.length + extra.length);
  b.u32(0x02014b50).u16(MADE_BY_UNIX | 45).u16(zip64 ? 45 : 20).u16(FLAGS).u16(0).u16(time).u16(date)
    .u32(w.crc).u32(bigSize ? MAX32 : w.size).u32(bigSize ? MAX32 : w.size).u16(w.name.length).u16(extra.length).u16(0)
    .u16(0).u16(0).u32(((w.attrs << 16) | (folder ? 0x10 : 0)) >>> 0).u32(bigOffset ? MAX32 : w.offset).bytes(w.name).bytes(extra);
  return b.out;
}

function end(entries: number, cdStart: number, cdSize: number, force: boolean): Uint8Array {
  const zip64 = force || entries > 0xffff || cdStart >= MAX32 || cdSize >= MAX32;
  const parts: Uint8Array[] = [];
  if (zip64) {
    parts.push(new Bytes(56).u32(0x06064b50).u64(44).u16(MADE_BY_UNIX | 45).u16(45).u32(0).u32(0).u64(entries).u64(entries).u64(cdSize).u64(cdStart).out);
    parts.push(new Bytes(20).u32(0x07064b50).u32(0).u64(cdStart + cdSize).u32(1).out);
  }
  const count = zip64 ? 0xffff : entries;
  parts.push(new Bytes(22).u32(0x06054b50).u16(0).u16(0).u16(count).u16(count).u32(zip64 ? MAX32 : cdSize).u32(zip64 ? MAX32 : cdStart).u16(0).out);
  return concatBytes(parts);
}

/** Little-endian fields written in order into a buffer of a known length. */
class Bytes {
  readonly out: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(length: number) {
    this.out = new Uint8Array(length);
    this.view = new DataView(this.out.buffer);
  }

  u8(v: number): this {
    this.view.setUint8(this.at, v);
    this.at += 1;
    return this;
  }

  u16(v: number): this {
    this.view.setUint16(this.at, v, true);
    this.at += 2;
    return this;
  }

  u32(v: number): this {
    this.view.setUint32(this.at, v, true);
    this.at += 4;
    return this;
  }

  u64(v: number): this {
    this.view.setBigUint64(this.at, BigInt(v), true);
    this.at += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.out.set(b, this.at);
    this.at += b.length;
    return this;
  }
}

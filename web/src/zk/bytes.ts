/**
 * Bytes in the browser: hex, UTF-8, comparison, and a little-endian reader
 * whose every read is bounded (a short structure is damage, never a read
 * past its end). Plain TypeScript, no Node Buffer, so that the same code
 * runs in the page, in its workers and in the Node tests.
 */
import { DamagedError } from './errors.js';

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex of `b`. */
export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!]!;
  return s;
}

/** The bytes of lowercase or uppercase hex; undefined when it is not hex of an even length. */
export function fromHex(s: string): Uint8Array | undefined {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return undefined;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const looseUtf8 = new TextDecoder('utf-8');

/** The text of UTF-8 bytes, or undefined when they are not valid UTF-8 (a file name may be any bytes). */
export function utf8Text(b: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(b);
  } catch {
    return undefined;
  }
}

/** The text of bytes for showing: invalid UTF-8 becomes U+FFFD. */
export function showText(b: Uint8Array): string {
  return looseUtf8.decode(b);
}

/** Bytewise order: memcmp, then the shorter first (docs/format.md §6). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A bounded little-endian reader of one structure; every failure is DamagedError naming `what`. */
export class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array, readonly what: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  fail(why: string): never {
    throw new DamagedError(this.what, why);
  }

  need(n: number, field: string): void {
    if (n > this.remaining) this.fail(`it ends inside its ${field}`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.view.getUint8(this.pos++);
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  i64(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A u64 that must be at most 2^53 − 1 (an `n53`, docs/format.md §6.5). */
  n53(field: string): number {
    const v = this.u64(field);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`its ${field} is larger than 2^53 − 1`);
    return Number(v);
  }

  take(n: number, field: string): Uint8Array {
    this.need(n, field);
    const b = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  hex(n: number, field: string): string {
    return toHex(this.take(n, field));
  }

  magic(m: string): void {
    const b = this.take(m.length, 'magic');
    for (let i = 0; i < m.length; i++) if (b[i] !== m.charCodeAt(i)) this.fail(`it does not begin with ${m}`);
  }

  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} bytes follow its end`);
  }
}

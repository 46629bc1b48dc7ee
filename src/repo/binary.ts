/**
 * A bounds-checked reader for the binary objects of the format. Every parser
 * of stored bytes reads through it, so a truncated or malformed object gives
 * a `CorruptObjectError` naming the object, never a RangeError or a hang.
 */
import { CorruptObjectError } from './errors.js';

export class ByteReader {
  private pos = 0;
  /** For the 64-bit fields: DataView's BigInt reads cost a third of Buffer's (docs/decisions.md, "The tree codec"). */
  private readonly view: DataView;

  constructor(private readonly buf: Buffer, private readonly what: string) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Where the next read starts, from the start of the object. */
  get offset(): number {
    return this.pos;
  }

  /** Fails with a message naming the object. */
  fail(detail: string): never {
    throw new CorruptObjectError(this.what, detail);
  }

  /** Fails unless `n` more bytes are there: a parser that checks a record's fixed part once may then read it field by field. */
  need(n: number, field: string): void {
    if (n > this.remaining) this.fail(`truncated while reading ${field}`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 2;
    return b[p]! | (b[p + 1]! << 8);
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** An unsigned 64-bit integer that must be at most 2^53 − 1. */
  safe64(field: string): number {
    this.need(8, field);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    if (hi > 0x1f_ffff) this.fail(`${field} is larger than 2^53 - 1`);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
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

  /** `n` bytes as lower-case hex. */
  hex(n: number, field: string): string {
    this.need(n, field);
    const v = this.buf.toString('hex', this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Steps over `n` bytes; returns where they start. */
  skip(n: number, field: string): number {
    this.need(n, field);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Checks the next bytes equal `magic`. */
  magic(magic: string): void {
    const got = this.bytes(magic.length, 'magic');
    if (got.toString('latin1') !== magic) this.fail(`not a ${magic} object (bad magic)`);
  }

  /** Fails unless every byte was consumed. */
  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} unexpected trailing bytes`);
  }
}

/** Parses JSON, turning a syntax error into a `CorruptObjectError`. */
export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (e) {
    throw new CorruptObjectError(what, `malformed JSON (${(e as Error).message})`);
  }
}

/** Narrows `v` to a plain object or fails naming the object. */
export function asRecord(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CorruptObjectError(what, 'expected a JSON object');
  return v as Record<string, unknown>;
}

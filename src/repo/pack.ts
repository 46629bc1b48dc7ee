/**
 * Pack files (`data/<xx>/<sha256>`): sealed blobs back to back, then a plain
 * header listing them, then an 8-byte trailer.
 *
 *   blob_0 || … || blob_n-1 || header || u32 LE header length || "HFPK"
 *   header = u8 version (1) || u32 LE count || count × entry
 *   entry  = u8 type || u8 flags || u16 0 || u32 LE stored length
 *            || u32 LE raw length || 32-byte blob id          (44 bytes)
 *
 * Blob i starts where blob i-1 ended (the first at 0). The header is plain so
 * that the index can be rebuilt, and garbage collected, without the key.
 */
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';
import { ByteReader } from './binary.js';
import { ID_BYTES, idHex } from '../core/ids.js';
import { sha256 } from '../core/crypto.js';

export const PACK_VERSION = 1;
const MAGIC = 'HFPK';
export const PACK_TRAILER_BYTES = 8;
const ENTRY_BYTES = 44;

/**
 * No pack holdfast writes is larger: the config's pack size is at most
 * 1 GiB, and a writer closes a pack once it reaches it, so the last blob (at
 * most a 256 MiB tree, §8) and the header come on top. 1.5 GiB leaves room
 * for both and stays below what Node can hold in one Buffer (2 GiB). A
 * larger pack is damaged, whatever its header says, and is not read.
 */
export const MAX_PACK_BYTES = 1.5 * 1024 * 1024 * 1024;

/**
 * Blob types. Data blobs hold file content (and image blocks); tree blobs hold
 * directory listings; image-map blobs hold the block ids of an image snapshot.
 */
export enum BlobType {
  Data = 0,
  Tree = 1,
  ImageMap = 2,
}

/** True for a blob type this version knows. */
export function isBlobType(t: number): t is BlobType {
  return t === BlobType.Data || t === BlobType.Tree || t === BlobType.ImageMap;
}

/** Blob flags. */
export const FLAG_COMPRESSED = 1;

/** One blob of a pack, as the header and the index describe it. */
export interface PackedBlob {
  readonly type: BlobType;
  /** 64 hex. */
  readonly id: string;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/** The associated data a blob is sealed with: type, flags, raw length and id. */
export function blobAad(type: BlobType, flags: number, rawLength: number, id: string): Buffer {
  const aad = Buffer.allocUnsafe(6 + ID_BYTES);
  aad.writeUInt8(type, 0);
  aad.writeUInt8(flags, 1);
  aad.writeUInt32LE(rawLength, 2);
  Buffer.from(id, 'hex').copy(aad, 6);
  return aad;
}

/**
 * What tells two stored copies of a blob apart without the key (64 hex): the
 * SHA-256 of the blob's AAD (fixed length) followed by its sealed bytes. Two
 * copies with the same digest agree on everything that enters authentication,
 * so either opens exactly when the other does; the same sealed bytes under
 * another type, flags or raw length never open (docs/format.md §3.4, §15.10).
 */
export function copyDigest(b: Pick<PackedBlob, 'type' | 'flags' | 'rawLength' | 'id'>, sealed: Buffer): string {
  return sha256(Buffer.concat([blobAad(b.type, b.flags, b.rawLength, b.id), sealed])).toString('hex');
}

/** Collects sealed blobs into one pack. */
export class PackWriter {
  private readonly entries: PackedBlob[] = [];
  /** Blob bytes are copied in as they come, so callers' buffers are not kept alive. */
  private buf: Buffer;
  private size = 0;

  /**
   * @param capacity expected size (grows as needed)
   * @param reuse the `buffer` of an earlier writer whose pack is no longer
   *   needed, used when it holds `capacity`: fresh memory costs the kernel a
   *   page fault and a zeroed page per 4 KiB
   */
  constructor(capacity = 1 << 20, reuse?: Buffer) {
    this.buf = reuse !== undefined && reuse.length >= capacity ? reuse : Buffer.allocUnsafeSlow(capacity);
  }

  /** Bytes so far, header excluded. */
  get length(): number {
    return this.size;
  }

  get count(): number {
    return this.entries.length;
  }

  /** Appends one sealed blob. */
  add(type: BlobType, id: string, flags: number, rawLength: number, sealed: Uint8Array): void {
    const headerRoom = 5 + (this.entries.length + 1) * ENTRY_BYTES + PACK_TRAILER_BYTES;
    const need = this.size + sealed.length + headerRoom;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(need + (need >> 3), this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.size);
      this.buf = grown;
    }
    this.entries.push({ type, id, flags, offset: this.size, length: sealed.length, rawLength });
    this.buf.set(sealed, this.size);
    this.size += sealed.length;
  }

  /**
   * The finished pack's bytes and its blobs, and the whole buffer `bytes` is
   * a part of (for a later writer, once `bytes` is no longer needed). The
   * writer is not used afterwards.
   */
  finish(): { bytes: Buffer; blobs: PackedBlob[]; buffer: Buffer } {
    const headerLength = 5 + this.entries.length * ENTRY_BYTES;
    const total = this.size + headerLength + PACK_TRAILER_BYTES;
    const header = this.buf.subarray(this.size, this.size + headerLength);
    header.writeUInt8(PACK_VERSION, 0);
    header.writeUInt32LE(this.entries.length, 1);
    let p = 5;
    for (const e of this.entries) {
      header.writeUInt8(e.type, p);
      header.writeUInt8(e.flags, p + 1);
      header.writeUInt16LE(0, p + 2);
      header.writeUInt32LE(e.length, p + 4);
      header.writeUInt32LE(e.rawLength, p + 8);
      header.write(e.id, p + 12, 'hex');
      p += ENTRY_BYTES;
    }
    const trailer = this.buf.subarray(this.size + headerLength, total);
    trailer.writeUInt32LE(headerLength, 0);
    trailer.write(MAGIC, 4, 'latin1');
    return { bytes: this.buf.subarray(0, total), blobs: this.entries, buffer: this.buf };
  }
}

/**
 * Reads the header length from a pack's last 8 bytes (`trailer`, empty when
 * the pack is shorter than that). Every reader of a pack, whole or by
 * ranges, calls this, so a damaged pack is described the same way by each.
 */
export function parsePackTrailer(trailer: Buffer, packSize: number, what: string): number {
  if (packSize < PACK_TRAILER_BYTES) throw new CorruptObjectError(what, `not a pack (${packSize} bytes, shorter than its trailer)`);
  if (trailer.length !== PACK_TRAILER_BYTES || trailer.subarray(4).toString('latin1') !== MAGIC) {
    throw new CorruptObjectError(what, 'not a pack (bad trailer)');
  }
  const headerLength = trailer.readUInt32LE(0);
  if (headerLength < 5 || headerLength + PACK_TRAILER_BYTES > packSize) throw new CorruptObjectError(what, `header length ${headerLength} does not fit a ${packSize}-byte pack`);
  return headerLength;
}

/**
 * Parses a pack header. `blobBytes` is the pack size minus header and
 * trailer; the blobs must exactly fill it.
 */
export function parsePackHeader(header: Buffer, blobBytes: number, what: string): PackedBlob[] {
  const r = new ByteReader(header, what);
  const version = r.u8('version');
  if (version !== PACK_VERSION) throw new UnsupportedVersionError(what, version, PACK_VERSION);
  const count = r.u32('count');
  if (count * ENTRY_BYTES !== r.remaining) r.fail(`header holds ${r.remaining} bytes for ${count} entries`);
  const blobs: PackedBlob[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const type = r.u8('type');
    if (!isBlobType(type)) r.fail(`blob ${i} has unknown type ${type}`);
    const flags = r.u8('flags');
    if ((flags & ~FLAG_COMPRESSED) !== 0) r.fail(`blob ${i} has unknown flags ${flags}`);
    r.u16('reserved');
    const length = r.u32('length');
    const rawLength = r.u32('raw length');
    const id = idHex(r.bytes(ID_BYTES, 'id'));
    blobs.push({ type, id, flags, offset, length, rawLength });
    offset += length;
  }
  r.end();
  if (offset !== blobBytes) r.fail(`blobs cover ${offset} bytes, the pack holds ${blobBytes}`);
  return blobs;
}

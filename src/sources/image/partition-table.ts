/**
 * MBR and GPT partition tables, parsed by hand from a random-access source so
 * that the image backup knows where the file systems are (and so that streams
 * can be parsed from their first megabyte).
 *
 *   sector 0 ends in 55 AA and its four entries are sane?
 *     an entry of type 0xEE (protective MBR) → GPT: header at LBA 1 (512- or
 *       4096-byte sectors), CRC32 of header and entries checked; the backup
 *       header at the last LBA is tried when the primary is damaged
 *     else MBR: primary entries, logical partitions through the EBR chain of
 *       an extended partition (numbered from 5)
 *   else no table.
 *
 * Never throws for bad content: a damaged table gives `table: 'none'` or the
 * partitions that could be read, with warnings.
 */
import { crc32 } from 'node:zlib';
import type { ImageLayout, ImagePartition } from '../../repo/image-info.js';
import type { RandomAccessSource } from './random-access.js';

export interface PartitionTableResult {
  readonly layout: ImageLayout;
  readonly warnings: string[];
  /** Sector size the table was found with (512 or 4096). */
  readonly sectorSize: number;
}

const EXTENDED = new Set([0x05, 0x0f, 0x85]);
const MAX_LOGICAL = 128;
const MAX_GPT_ENTRIES = 4096;

/** A GUID in its usual text form, from 16 bytes in the GPT (mixed-endian) layout. */
export function guidString(b: Buffer): string {
  const h = (x: Buffer): string => x.toString('hex');
  const le = (x: Buffer): string => h(Buffer.from(x).reverse());
  return `${le(b.subarray(0, 4))}-${le(b.subarray(4, 6))}-${le(b.subarray(6, 8))}-${h(b.subarray(8, 10))}-${h(b.subarray(10, 16))}`;
}

async function tryRead(src: RandomAccessSource, offset: number, length: number): Promise<Buffer | undefined> {
  if (offset < 0 || offset + length > src.size) return undefined;
  try {
    return await src.read(offset, length);
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

interface MbrEntry {
  readonly status: number;
  readonly type: number;
  readonly lbaStart: number;
  readonly sectors: number;
}

function mbrEntries(sector: Buffer): MbrEntry[] | undefined {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const o = 446 + 16 * i;
    const status = sector[o]!;
    if (status !== 0x00 && status !== 0x80) return undefined;
    const type = sector[o + 4]!;
    const lbaStart = sector.readUInt32LE(o + 8);
    const sectors = sector.readUInt32LE(o + 12);
    if (type === 0) {
      if (status !== 0) return undefined;
      continue;
    }
    if (sectors === 0 || lbaStart === 0) return undefined;
    out.push({ status, type, lbaStart, sectors });
  }
  return out;
}

const hexType = (t: number): string => `0x${t.toString(16).padStart(2, '0')}`;

async function readGpt(src: RandomAccessSource, sectorSize: number, warnings: string[]): Promise<PartitionTableResult | undefined> {
  const lastLba = Math.floor(src.size / sectorSize) - 1;
  for (const [lba, which] of [[1, 'primary'], [lastLba, 'backup']] as const) {
    const hdr = await tryRead(src, lba * sectorSize, sectorSize);
    if (!hdr || hdr.subarray(0, 8).toString('latin1') !== 'EFI PART') continue;
    const headerSize = hdr.readUInt32LE(12);
    if (headerSize < 92 || headerSize > sectorSize) {
      warnings.push(`GPT ${which} header: bad header size ${headerSize}`);
      continue;
    }
    const h = Buffer.from(hdr.subarray(0, headerSize));
    const crc = h.readUInt32LE(16);
    h.writeUInt32LE(0, 16);
    if (crc32(h) !== crc) {
      warnings.push(`GPT ${which} header: CRC mismatch`);
      continue;
    }
    const entriesLba = Number(hdr.readBigUInt64LE(72));
    const count = hdr.readUInt32LE(80);
    const entrySize = hdr.readUInt32LE(84);
    const entriesCrc = hdr.readUInt32LE(88);
    if (count > MAX_GPT_ENTRIES || entrySize < 128 || entrySize > 4096 || entrySize % 8 !== 0) {
      warnings.push(`GPT ${which} header: ${count} entries of ${entrySize} bytes is not plausible`);
      continue;
    }
    const entries = await tryRead(src, entriesLba * sectorSize, count * entrySize);
    if (!entries) {
      warnings.push(`GPT ${which} entries lie outside the image`);
      continue;
    }
    if (crc32(entries) !== entriesCrc) {
      warnings.push(`GPT ${which} entries: CRC mismatch`);
      continue;
    }
    if (which === 'backup') warnings.push('GPT primary header is damaged; used the backup header');
    const partitions: ImagePartition[] = [];
    for (let i = 0; i < count; i++) {
      const e = entries.subarray(i * entrySize, (i + 1) * entrySize);
      if (e.subarray(0, 16).every((x) => x === 0)) continue;
      const first = Number(e.readBigUInt64LE(32));
      const last = Number(e.readBigUInt64LE(40));
      if (!Number.isSafeInteger(first * sectorSize) || !Number.isSafeInteger((last + 1) * sectorSize) || last < first) {
        warnings.push(`GPT partition ${i + 1}: bad extent ${first}..${last}`);
        continue;
      }
      const name = e.subarray(56, 128).toString('utf16le').replace(/\0.*$/s, '');
      partitions.push({
        number: i + 1,
        start: first * sectorSize,
        size: (last - first + 1) * sectorSize,
        type: guidString(e.subarray(0, 16)),
        ...(name ? { name } : {}),
        uuid: guidString(e.subarray(16, 32)),
      });
    }
    return { layout: { table: 'gpt', diskId: guidString(hdr.subarray(56, 72)), partitions }, warnings, sectorSize };
  }
  return undefined;
}

/** Reads the partition table at the start of `src`. */
export async function readPartitionTable(src: RandomAccessSource): Promise<PartitionTableResult> {
  const warnings: string[] = [];
  const none = (): PartitionTableResult => ({ layout: { table: 'none', partitions: [] }, warnings, sectorSize: 512 });
  const sector0 = await tryRead(src, 0, 512);
  if (!sector0) return none();
  const entries = mbrEntries(sector0);
  if (!entries || entries.length === 0) return none();
  if (entries.some((e) => e.type === 0xee)) {
    for (const ss of [512, 4096]) {
      const gpt = await readGpt(src, ss, warnings);
      if (gpt) return gpt;
    }
    warnings.push('protective MBR without a readable GPT; treating the disk as having no partition table');
    return none();
  }
  const sectorSize = 512;
  const partitions: ImagePartition[] = [];
  const diskId = sector0.readUInt32LE(440).toString(16).padStart(8, '0');
  let extended: MbrEntry | undefined;
  for (let i = 0; i < 4; i++) {
    const o = 446 + 16 * i;
    const type = sector0[o + 4]!;
    if (type === 0) continue;
    const e: MbrEntry = { status: sector0[o]!, type, lbaStart: sector0.readUInt32LE(o + 8), sectors: sector0.readUInt32LE(o + 12) };
    if (EXTENDED.has(type)) {
      if (!extended) extended = e;
      else warnings.push('more than one extended partition; only the first is read');
    }
    partitions.push({
      number: i + 1,
      start: e.lbaStart * sectorSize,
      size: e.sectors * sectorSize,
      type: hexType(type),
      ...(e.status === 0x80 ? { bootable: true } : {}),
    });
  }
  if (extended) {
    const base = extended.lbaStart;
    let ebr = base;
    const seen = new Set<number>();
    for (let n = 5; n < 5 + MAX_LOGICAL; n++) {
      if (seen.has(ebr)) {
        warnings.push('extended partition: the EBR chain loops; stopped');
        break;
      }
      seen.add(ebr);
      const sec = await tryRead(src, ebr * sectorSize, 512);
      if (!sec || sec[510] !== 0x55 || sec[511] !== 0xaa) {
        warnings.push(`extended partition: no valid EBR at sector ${ebr}`);
        break;
      }
      const type = sec[446 + 4]!;
      const rel = sec.readUInt32LE(446 + 8);
      const sectors = sec.readUInt32LE(446 + 12);
      if (type !== 0 && sectors > 0) {
        partitions.push({ number: n, start: (ebr + rel) * sectorSize, size: sectors * sectorSize, type: hexType(type), ...(sec[446] === 0x80 ? { bootable: true } : {}) });
      }
      const nextType = sec[462 + 4]!;
      const next = sec.readUInt32LE(462 + 8);
      if (nextType === 0 || next === 0) break;
      ebr = base + next;
    }
  }
  for (const p of partitions) {
    if (p.start + p.size > src.size) warnings.push(`partition ${p.number} extends past the end of the image`);
  }
  return { layout: { table: 'mbr', diskId, partitions }, warnings, sectorSize };
}

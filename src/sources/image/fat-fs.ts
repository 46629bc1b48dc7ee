/**
 * FAT12/16/32 allocation, read by hand (EFI system partitions are FAT32 and
 * mostly empty): the clusters whose FAT entry is 0 are free.
 *
 *   boot sector: bytes per sector, sectors per cluster, reserved sectors,
 *     number of FATs, FAT size, root directory entries, total sectors
 *   data region = reserved + FATs + root directory; cluster n (n ≥ 2) starts
 *     at data + (n − 2) × cluster size; the cluster count decides FAT12/16/32
 *   free runs = clusters whose entry in the first FAT is 0
 *
 * Everything before the data region (boot sector, FATs, root directory) and
 * any slack after the last cluster is always kept. A volume whose "clean"
 * bit is cleared (FAT16/32: not cleanly unmounted) is not trusted.
 */
import { FsCorruptError, FsTruncatedError } from './ext-fs.js';
import type { RandomAccessSource } from './random-access.js';

export interface FatInfo {
  readonly type: 'vfat';
  readonly bits: 12 | 16 | 32;
  /** Bytes the volume spans. */
  readonly size: number;
  readonly clusterSize: number;
  readonly usedBytes: number;
  readonly label: string;
  readonly uuid: string;
  /** Why the FAT cannot be trusted; undefined when it can. */
  readonly untrusted?: string;
}

interface Geometry {
  readonly info: FatInfo;
  readonly fatOffset: number;
  readonly dataOffset: number;
  readonly clusters: number;
}

function geometry(bs: Buffer, srcSize: number): Geometry {
  const fail = (d: string): never => {
    throw new FsCorruptError(`FAT boot sector: ${d}`);
  };
  if (bs.length < 512 || bs[510] !== 0x55 || bs[511] !== 0xaa) fail('no boot signature');
  const bytesPerSector = bs.readUInt16LE(11);
  const sectorsPerCluster = bs[13]!;
  const reserved = bs.readUInt16LE(14);
  const fats = bs[16]!;
  const rootEntries = bs.readUInt16LE(17);
  const total = bs.readUInt16LE(19) || bs.readUInt32LE(32);
  const fatSectors = bs.readUInt16LE(22) || bs.readUInt32LE(36);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) fail(`${bytesPerSector} bytes per sector`);
  if (sectorsPerCluster === 0 || (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0) fail(`${sectorsPerCluster} sectors per cluster`);
  if (reserved === 0 || fats === 0 || fats > 4 || fatSectors === 0 || total === 0) fail('implausible geometry');
  const size = total * bytesPerSector;
  if (size > srcSize) throw new FsTruncatedError(`FAT boot sector: the volume claims ${size} bytes, but only ${srcSize} are there`, size, srcSize);
  const rootSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootSectors;
  if (dataSector >= total) fail('no data region');
  const clusters = Math.floor((total - dataSector) / sectorsPerCluster);
  const bits = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32;
  if (Math.ceil(((clusters + 2) * bits) / 8) > fatSectors * bytesPerSector) fail(`a FAT of ${fatSectors} sectors cannot hold ${clusters} clusters`);
  const ext = bits === 32 ? 0x40 : 0x24;
  const label = bs[ext + 2] === 0x29 ? bs.subarray(ext + 7, ext + 18).toString('latin1').trim() : '';
  const serial = bs[ext + 2] === 0x29 ? bs.readUInt32LE(ext + 3).toString(16).padStart(8, '0').toUpperCase() : '';
  return {
    info: { type: 'vfat', bits, size, clusterSize: sectorsPerCluster * bytesPerSector, usedBytes: 0, label: label === 'NO NAME' ? '' : label, uuid: serial ? `${serial.slice(0, 4)}-${serial.slice(4)}` : '' },
    fatOffset: reserved * bytesPerSector,
    dataOffset: dataSector * bytesPerSector,
    clusters,
  };
}

function entry(fat: Buffer, bits: number, n: number): number {
  if (bits === 32) return fat.readUInt32LE(n * 4) & 0x0fffffff;
  if (bits === 16) return fat.readUInt16LE(n * 2);
  const v = fat.readUInt16LE(Math.floor((n * 3) / 2));
  return n & 1 ? v >> 4 : v & 0xfff;
}

/** True when `src` starts with a FAT boot sector. */
export async function isFat(src: RandomAccessSource): Promise<boolean> {
  if (src.size < 512) return false;
  const b = await src.read(0, 512);
  return b[510] === 0x55 && b[511] === 0xaa && (b.subarray(0x36, 0x39).toString('latin1') === 'FAT' || b.subarray(0x52, 0x57).toString('latin1') === 'FAT32');
}

/**
 * Emits the free clusters of a FAT volume as (byte offset, byte length)
 * runs relative to its start. Throws `FsCorruptError` when the boot sector
 * is implausible or the volume was not cleanly unmounted.
 */
export async function fatFreeRuns(src: RandomAccessSource, emit: (offset: number, length: number) => void): Promise<FatInfo> {
  const g = geometry(await src.read(0, 512), src.size);
  const { bits, clusterSize } = g.info;
  const fat = await src.read(g.fatOffset, Math.ceil(((g.clusters + 2) * bits) / 8));
  if (bits !== 12) {
    const clean = bits === 32 ? (entry(fat, 32, 1) & 0x08000000) !== 0 : (entry(fat, 16, 1) & 0x8000) !== 0;
    if (!clean) throw new FsCorruptError('the volume was not cleanly unmounted (its dirty bit is set)');
  }
  let used = 0;
  let run = -1;
  for (let n = 2; n < g.clusters + 2; n++) {
    const free = entry(fat, bits, n) === 0;
    if (free && run < 0) run = n;
    if (!free) {
      used++;
      if (run >= 0) emit(g.dataOffset + (run - 2) * clusterSize, (n - run) * clusterSize);
      run = -1;
    }
  }
  if (run >= 0) emit(g.dataOffset + (run - 2) * clusterSize, (g.clusters + 2 - run) * clusterSize);
  return { ...g.info, usedBytes: g.dataOffset + used * clusterSize };
}

/** Reads the boot sector; throws `FsCorruptError` when it is implausible. */
export async function readFatInfo(src: RandomAccessSource): Promise<FatInfo> {
  if (src.size < 512) throw new FsCorruptError('too small for a FAT boot sector');
  return geometry(await src.read(0, 512), src.size).info;
}

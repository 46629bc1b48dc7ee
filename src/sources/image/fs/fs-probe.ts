/**
 * Recognises what a disk or partition holds from its magic numbers, so a
 * user who opens a partition holdfast cannot read is told what it is
 * ("filesystem not supported (xfs)") instead of "unknown".
 */
import type { ByteSource } from './byte-source.js';

/** What `probeFilesystem` recognised. `ext2`, `ext3` and `ext4` are readable. */
export type FsKind =
  | 'ext2' | 'ext3' | 'ext4' | 'ext4-journal' | 'xfs' | 'btrfs' | 'f2fs' | 'squashfs' | 'iso9660'
  | 'vfat' | 'exfat' | 'ntfs' | 'swap' | 'lvm2' | 'luks' | 'linux-raid';

/** Filesystems whose files holdfast can read. */
export const READABLE: ReadonlySet<FsKind> = new Set(['ext2', 'ext3', 'ext4']);

const PROBE_BYTES = 0x10040 + 64 + 8;

function at(b: Buffer, offset: number, magic: string): boolean {
  return b.length >= offset + magic.length && b.toString('latin1', offset, offset + magic.length) === magic;
}

/** Ext2/3/4 from superblock feature flags (the same rules as blkid). */
export function extKind(superblock: Buffer): FsKind {
  const compat = superblock.readUInt32LE(0x5c);
  const incompat = superblock.readUInt32LE(0x60);
  const roCompat = superblock.readUInt32LE(0x64);
  if (incompat & 0x8) return 'ext4-journal';
  // Anything beyond what ext3 knows (extents, 64bit, flex_bg, huge files …) makes it ext4.
  if ((incompat & ~0x17) !== 0 || (roCompat & ~0x7) !== 0) return 'ext4';
  return compat & 0x4 ? 'ext3' : 'ext2';
}

/** Returns what the source holds, or undefined when nothing is recognised. */
export async function probeFilesystem(src: ByteSource): Promise<FsKind | undefined> {
  const b = await src.read(0, Math.min(src.size, PROBE_BYTES));
  if (b.length >= 2048 && b.readUInt16LE(1024 + 0x38) === 0xef53) return extKind(b.subarray(1024, 2048));
  if (at(b, 0, 'XFSB')) return 'xfs';
  if (at(b, 0x10040, '_BHRfS_M')) return 'btrfs';
  if (at(b, 0, 'LUKS\xba\xbe')) return 'luks';
  if (at(b, 0, 'hsqs')) return 'squashfs';
  if (b.length >= 1028 && b.readUInt32LE(1024) === 0xf2f52010) return 'f2fs';
  if (at(b, 512, 'LABELONE') && at(b, 536, 'LVM2')) return 'lvm2';
  if (b.length >= 4100 && b.readUInt32LE(4096) === 0xa92b4efc) return 'linux-raid';
  if (b.length >= 4 && b.readUInt32LE(0) === 0xa92b4efc) return 'linux-raid';
  if (at(b, 3, 'NTFS    ')) return 'ntfs';
  if (at(b, 3, 'EXFAT   ')) return 'exfat';
  if (b.length >= 512 && b[510] === 0x55 && b[511] === 0xaa && (at(b, 54, 'FAT') || at(b, 82, 'FAT32'))) return 'vfat';
  for (const page of [4096, 8192, 16384, 65536]) {
    if (at(b, page - 10, 'SWAPSPACE2') || at(b, page - 10, 'SWAP-SPACE')) return 'swap';
  }
  if (at(b, 32769, 'CD001')) return 'iso9660';
  return undefined;
}

/**
 * The files inside a disk image, as one tree: a bare filesystem shows its
 * root directly; a partitioned disk shows its partitions as directories
 * `/p1`, `/p2`, … (Linux numbering), each the root of the filesystem in it.
 * A partition without a readable filesystem is still listed, and entering
 * it says why ("filesystem not supported (xfs)").
 *
 *   ImageVolume.open(source)
 *     filesystem at offset 0?  → bare: root = that filesystem's root
 *     else partition table?    → root lists p1 … pN (filesystems opened lazily)
 *     else                     → error: nothing recognised
 *
 * The tree is exactly what the image holds: names are not checked here (the
 * walker in src/jobs/image-files refuses unsafe ones), only bytes are read.
 */
import { SliceSource, type ByteSource } from './byte-source.js';
import { Ext4, type ExtFileType, type ExtInode, type ExtSegment } from './ext4.js';
import { READABLE, probeFilesystem, type FsKind } from './fs-probe.js';
import type { ImagePartition } from '../../../repo/image-info.js';
import { readPartitionTable } from '../partition-table.js';
import type { ErrorCode } from '../../../core/errors.js';

/** MBR types of extended partitions: containers of logical partitions, not filesystems. */
const EXTENDED_TYPES = new Set(['0x05', '0x0f', '0x85']);

/** A partitioned disk: its scheme and the partitions that can hold files. */
export interface PartitionTable {
  readonly scheme: 'mbr' | 'gpt';
  readonly partitions: readonly ImagePartition[];
}

/** Entering a directory that is a partition holdfast cannot read. */
export class FilesystemNotSupportedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'FILESYSTEM_NOT_SUPPORTED';
  constructor(message: string) {
    super(message);
    this.name = 'FilesystemNotSupportedError';
  }
}

/** One file, directory, symlink or special file of the image (or a partition). */
export interface ImageNode {
  /** Name bytes (one path component; empty for the root). */
  readonly name: Buffer;
  readonly type: ExtFileType;
  /** Permission bits with setuid/setgid/sticky. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Bytes, for regular files; 0 for everything else. */
  readonly size: number;
  readonly links: number;
  /** Nanoseconds since the epoch. */
  readonly mtime: bigint;
  readonly ctime: bigint;
  /** Inode number inside its filesystem (0 for partitions). */
  readonly ino: number;
  /** Which filesystem: the partition number, 0 for a bare filesystem or the disk's root. */
  readonly volume: number;
  /** Device number (glibc encoding), for device nodes. */
  readonly rdev?: bigint;
  /** Symlink target bytes. */
  readonly target?: Buffer;
  /** For a partition: its description ("ext4, Linux filesystem, 512 MiB"). */
  readonly description?: string;
  /** For a directory that cannot be entered: why ("filesystem not supported (xfs)"). */
  readonly unreadable?: string;
}

/** Where a file system of the image lies, and what it is. */
export interface VolumeFilesystem {
  /** Its volume: 0 for a bare file system, else its partition number (its tree path is `/pN`). */
  readonly volume: number;
  /** Bytes into the image where it starts, and its size. */
  readonly offset: number;
  readonly size: number;
  /** What was recognised there; undefined: nothing, or a partition that cannot be read. */
  readonly kind: FsKind | undefined;
}

interface Mounted {
  readonly fs?: Ext4;
  readonly error?: string;
}

/** A partition holding something we cannot read: what it is, for the message. */
function unsupportedMessage(kind: FsKind | undefined): string {
  if (kind === undefined) return 'no filesystem recognised';
  if (kind === 'swap') return 'swap space, which holds no files';
  if (kind === 'lvm2') return 'filesystem not supported (LVM physical volume)';
  if (kind === 'luks') return 'filesystem not supported (LUKS encrypted volume)';
  if (kind === 'linux-raid') return 'filesystem not supported (Linux software RAID member)';
  return `filesystem not supported (${kind})`;
}

const TYPE_NAMES: Record<string, string> = {
  '0x07': 'NTFS/exFAT', '0x0b': 'FAT32', '0x0c': 'FAT32', '0x82': 'Linux swap', '0x83': 'Linux', '0x8e': 'Linux LVM', '0xef': 'EFI System', '0xfd': 'Linux RAID',
  '0fc63daf-8483-4772-8e79-3d69d8477de4': 'Linux filesystem',
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI System',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  '933ac7e1-2eb4-4f13-b844-0e14e2aef915': 'Linux home',
};

/** What a partition type usually means, for listings. */
function typeName(type: string): string | undefined {
  return TYPE_NAMES[type];
}

const nodeHandles = new WeakMap<ImageNode, { fs: Ext4; inode: ExtInode }>();

export interface VolumeOptions {
  /** Told about things a user should know (damaged tables, journals not replayed). */
  readonly onWarning?: (message: string) => void;
}

export class ImageVolume {
  private readonly mounted = new Map<number, Promise<Mounted>>();

  private constructor(
    private readonly disk: ByteSource,
    /** The partition table, when the image is a partitioned disk. */
    readonly table: PartitionTable | undefined,
    /** What sits at offset 0, when the image is a bare filesystem. */
    readonly bareKind: FsKind | undefined,
    private readonly opts: VolumeOptions,
  ) {}

  /** Looks at the image: a bare filesystem, a partitioned disk, or an error. */
  static async open(disk: ByteSource, opts: VolumeOptions = {}): Promise<ImageVolume> {
    const kind = await probeFilesystem(disk);
    if (kind !== undefined) return new ImageVolume(disk, undefined, kind, opts);
    const { layout, warnings } = await readPartitionTable(disk);
    for (const w of warnings) opts.onWarning?.(`partition table: ${w}`);
    if (layout.table === 'none') throw new FilesystemNotSupportedError('the image holds no partition table and no filesystem holdfast recognises');
    const table = { scheme: layout.table, partitions: layout.partitions.filter((p) => !(layout.table === 'mbr' && EXTENDED_TYPES.has(p.type))) };
    return new ImageVolume(disk, table, undefined, opts);
  }

  /** The root of the tree (a directory). */
  async root(): Promise<ImageNode> {
    if (this.table) {
      return { name: Buffer.alloc(0), type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, links: 2, mtime: 0n, ctime: 0n, ino: 0, volume: 0 };
    }
    const m = await this.mount(0);
    if (!m.fs) return { name: Buffer.alloc(0), type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, links: 2, mtime: 0n, ctime: 0n, ino: 0, volume: 0, unreadable: m.error! };
    return this.nodeOf(m.fs, 0, Buffer.alloc(0), await m.fs.inode(m.fs.rootIno));
  }

  /** Every file system of the image: the bare one, or what each partition holds. */
  async filesystems(): Promise<VolumeFilesystem[]> {
    if (!this.table) return [{ volume: 0, offset: 0, size: this.disk.size, kind: this.bareKind }];
    return Promise.all(this.table.partitions.map(async (p): Promise<VolumeFilesystem> => {
      const inside = p.start + p.size <= this.disk.size;
      const kind = inside ? await probeFilesystem(new SliceSource(this.disk, p.start, p.size, `/p${p.number}`)).catch(() => undefined) : undefined;
      return { volume: p.number, offset: p.start, size: p.size, kind };
    }));
  }

  /** The root directory of one volume (see `filesystems`): the tree's root for a bare file system, else `/pN`. */
  async volumeRoot(volume: number): Promise<ImageNode> {
    if (!this.table) return this.root();
    const p = this.table.partitions.find((x) => x.number === volume);
    if (!p) throw new Error(`the image has no partition ${volume}`);
    return this.partitionNode(p);
  }

  private mount(volume: number): Promise<Mounted> {
    let m = this.mounted.get(volume);
    if (!m) {
      m = this.doMount(volume);
      this.mounted.set(volume, m);
    }
    return m;
  }

  private async doMount(volume: number): Promise<Mounted> {
    let src: ByteSource = this.disk;
    let kind = this.bareKind;
    const label = volume === 0 ? 'image' : `/p${volume}`;
    if (volume !== 0) {
      const p = this.table?.partitions.find((x) => x.number === volume);
      if (!p) return { error: 'no such partition' };
      if (p.start + p.size > this.disk.size) return { error: `the partition extends past the end of the disk image (${p.start + p.size} > ${this.disk.size} bytes)` };
      src = new SliceSource(this.disk, p.start, p.size, label);
      try {
        kind = await probeFilesystem(src);
      } catch (e) {
        return { error: `cannot read the partition: ${(e as Error).message}` };
      }
    }
    if (kind === undefined || !READABLE.has(kind)) return { error: unsupportedMessage(kind) };
    try {
      return { fs: await Ext4.open(src, { label, ...(this.opts.onWarning ? { onWarning: this.opts.onWarning } : {}) }) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  private async partitionNode(p: ImagePartition): Promise<ImageNode> {
    const m = await this.mount(p.number);
    const kind = m.fs?.kind;
    const size = p.size >= 2 ** 30 ? `${(p.size / 2 ** 30).toFixed(1)} GiB` : `${(p.size / 2 ** 20).toFixed(1)} MiB`;
    const description = [kind ?? m.error, typeName(p.type), p.name && `"${p.name}"`, size].filter(Boolean).join(', ');
    const name = Buffer.from(`p${p.number}`);
    if (!m.fs) {
      return { name, type: 'dir', mode: 0o555, uid: 0, gid: 0, size: 0, links: 2, mtime: 0n, ctime: 0n, ino: 0, volume: p.number, description, unreadable: m.error! };
    }
    // The partition directory stands for its filesystem's root: same metadata.
    return this.nodeOf(m.fs, p.number, name, await m.fs.inode(m.fs.rootIno), { description });
  }

  private async nodeOf(fs: Ext4, volume: number, name: Buffer, inode: ExtInode, extra: { description?: string } = {}): Promise<ImageNode> {
    const node: ImageNode = {
      ...extra,
      name, type: inode.type, mode: inode.mode, uid: inode.uid, gid: inode.gid,
      size: inode.type === 'file' ? inode.size : 0, links: inode.links, mtime: inode.mtime, ctime: inode.ctime, ino: inode.ino, volume,
      ...(inode.rdev === undefined ? {} : { rdev: inode.rdev }),
      ...(inode.type === 'symlink' ? { target: await fs.readLink(inode) } : {}),
    };
    nodeHandles.set(node, { fs, inode });
    return node;
  }

  /**
   * The entries of a directory, in on-disk order. Throws
   * `FilesystemNotSupportedError` for a partition that cannot be read. An
   * entry whose inode cannot be read is reported and left out.
   */
  async list(dir: ImageNode, onError?: (name: Buffer, message: string) => void): Promise<ImageNode[]> {
    if (dir.unreadable) throw new FilesystemNotSupportedError(dir.unreadable);
    if (dir.type !== 'dir') throw new Error('not a directory');
    if (this.table && dir.volume === 0) return Promise.all(this.table.partitions.map((p) => this.partitionNode(p)));
    const h = nodeHandles.get(dir);
    if (!h) throw new Error('not a node of this image');
    const entries = await h.fs.readDir(h.inode, this.opts.onWarning);
    const out: ImageNode[] = [];
    for (const e of entries) {
      try {
        out.push(await this.nodeOf(h.fs, dir.volume, e.name, await h.fs.inode(e.ino)));
      } catch (err) {
        onError?.(e.name, (err as Error).message);
      }
    }
    return out;
  }

  /** A regular file's runs of data and holes. */
  segments(file: ImageNode): Promise<ExtSegment[]> {
    const h = nodeHandles.get(file);
    if (!h || file.type !== 'file') throw new Error('not a file of this image');
    return h.fs.segments(h.inode);
  }

  /** Reads part of a regular file (holes read as zeros). */
  read(file: ImageNode, segments: readonly ExtSegment[], offset: number, length: number): Promise<Buffer> {
    const h = nodeHandles.get(file);
    if (!h || file.type !== 'file') throw new Error('not a file of this image');
    return h.fs.read(h.inode, segments, offset, length);
  }
}

export type { ExtSegment as ImageSegment, ExtFileType as ImageFileType };

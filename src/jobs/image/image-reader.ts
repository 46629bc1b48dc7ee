/**
 * Random access to the bytes of an image snapshot, without restoring it: the
 * seam that files-out-of-images, the NBD export and `restore-image --verify`
 * stand on.
 *
 *   read(offset, length)
 *     for each block b the range touches:
 *       map m = b / mapBlocks  → map blob (cached, LRU of a few maps)
 *       id    = map[b % mapBlocks]; all-zero id → a hole: zeros, nothing loaded
 *       block = LRU of recent blocks, else loadBlob(Data, id) (one load per block,
 *               concurrent readers of one block share it; a sequential reader
 *               gets the next blocks prefetched)
 *     copy the overlapping parts into a zeroed buffer
 *
 * Only the blocks a read touches are loaded. Every block is authenticated by
 * the repository (AES-GCM bound to its id); its length is checked here.
 */
import { BlobType } from '../../repo/pack.js';
import { CorruptObjectError } from '../../repo/errors.js';
import { MAP_ENTRY_BYTES, imageBlockCount, isHoleEntry, type ImageInfo } from '../../repo/image-info.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { inRange, type RandomAccessSource } from '../../sources/image/random-access.js';
import type { ErrorCode } from '../../core/errors.js';

export { sliceSource, type RandomAccessSource } from '../../sources/image/random-access.js';

/** What the reader needs of a repository (`Repository` has it). */
export interface BlobLoader {
  /** Loads, authenticates and decompresses one blob of the given type. */
  loadBlob(type: BlobType, id: string): Promise<Buffer>;
}

/** A run of bytes that is either stored or a hole (reads as zeros, nothing stored). */
export interface ImageExtent {
  readonly offset: number;
  readonly length: number;
  readonly hole: boolean;
}

/** Thrown by `openImageSnapshot` for a snapshot that is not an image snapshot. */
export class NotAnImageSnapshotError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NOT_AN_IMAGE_SNAPSHOT';
  constructor(what: string) {
    super(`${what} is not an image snapshot (it was made by "backup PATH", not "backup --image"); use "restore"`);
    this.name = 'NotAnImageSnapshotError';
  }
}

export interface ImageReaderOptions {
  /** Bytes of decoded blocks to keep (default 64 MiB, at least 4 blocks). */
  readonly cacheBytes?: number;
  /** Blocks to prefetch when reads are sequential (default 2). */
  readonly readAhead?: number;
  /** Names the snapshot in error messages. */
  readonly what?: string;
}

const MAP_CACHE = 8;

/** A small LRU over a Map's insertion order. */
class Lru<V> {
  private readonly m = new Map<number, V>();
  constructor(private readonly limit: number) {}
  get(k: number): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: number, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    while (this.m.size > this.limit) this.m.delete(this.m.keys().next().value as number);
  }
}

/** An image snapshot opened for reading. */
export class ImageSnapshotReader implements RandomAccessSource {
  readonly size: number;
  readonly blockSize: number;
  /** Number of blocks. */
  readonly blocks: number;
  private readonly maps: Lru<Buffer>;
  private readonly mapLoads = new Map<number, Promise<Buffer>>();
  private readonly cache: Lru<Buffer>;
  private readonly loads = new Map<number, Promise<Buffer>>();
  private lastBlock = -2;
  private readonly readAhead: number;
  private readonly what: string;

  constructor(private readonly repo: BlobLoader, readonly info: ImageInfo, opts: ImageReaderOptions = {}) {
    this.size = info.size;
    this.blockSize = info.blockSize;
    this.blocks = imageBlockCount(info);
    this.what = opts.what ?? 'image snapshot';
    this.maps = new Lru(MAP_CACHE);
    this.cache = new Lru(Math.max(4, Math.floor((opts.cacheBytes ?? 64 << 20) / info.blockSize)));
    this.readAhead = opts.readAhead ?? 2;
  }

  /** Plaintext length of block `b` (the last block may be short). */
  blockLength(b: number): number {
    return Math.min(this.blockSize, this.size - b * this.blockSize);
  }

  /** Map `m`: the 32-byte ids of blocks m·mapBlocks onwards, all zero for a hole. */
  async map(m: number): Promise<Buffer> {
    const cached = this.maps.get(m);
    if (cached) return cached;
    let p = this.mapLoads.get(m);
    if (!p) {
      const id = this.info.maps[m]!;
      p = this.repo.loadBlob(BlobType.ImageMap, id).then((bytes) => {
        const entries = Math.min(this.info.mapBlocks, this.blocks - m * this.info.mapBlocks);
        if (bytes.length !== entries * MAP_ENTRY_BYTES) {
          throw new CorruptObjectError(`${this.what}, block map ${m} (${id})`, `holds ${bytes.length} bytes, expected ${entries * MAP_ENTRY_BYTES}`);
        }
        this.maps.set(m, bytes);
        return bytes;
      }).finally(() => this.mapLoads.delete(m));
      this.mapLoads.set(m, p);
    }
    return p;
  }

  /** Bytes of the stored (non-hole) blocks: what a sparse copy of the image takes. */
  async storedBytes(): Promise<number> {
    let total = 0;
    for (let m = 0; m < this.info.maps.length; m++) {
      const map = await this.map(m);
      for (let i = 0; i * MAP_ENTRY_BYTES < map.length; i++) {
        if (!isHoleEntry(map, i * MAP_ENTRY_BYTES)) total += this.blockLength(m * this.info.mapBlocks + i);
      }
    }
    return total;
  }

  /** Id of block `b` as 64 hex, or null for a hole. */
  async blockId(b: number): Promise<string | null> {
    if (!Number.isInteger(b) || b < 0 || b >= this.blocks) throw new RangeError(`block ${b} is outside the image (${this.blocks} blocks)`);
    const mapBytes = await this.map(Math.floor(b / this.info.mapBlocks));
    const o = (b % this.info.mapBlocks) * MAP_ENTRY_BYTES;
    return isHoleEntry(mapBytes, o) ? null : mapBytes.toString('hex', o, o + MAP_ENTRY_BYTES);
  }

  /** The plaintext of block `b`, or null for a hole. Not cached: for streaming readers. */
  async loadBlock(b: number): Promise<Buffer | null> {
    const id = await this.blockId(b);
    if (id === null) return null;
    const bytes = await this.repo.loadBlob(BlobType.Data, id);
    if (bytes.length !== this.blockLength(b)) {
      throw new CorruptObjectError(`${this.what}, block ${b} (${id})`, `holds ${bytes.length} bytes, expected ${this.blockLength(b)}`);
    }
    return bytes;
  }

  /** Block `b` through the cache; a hole gives an empty buffer. */
  private block(b: number): Promise<Buffer> {
    const cached = this.cache.get(b);
    if (cached) return Promise.resolve(cached);
    let p = this.loads.get(b);
    if (!p) {
      p = this.loadBlock(b).then((bytes) => {
        const v = bytes ?? Buffer.alloc(0);
        this.cache.set(b, v);
        return v;
      }).finally(() => this.loads.delete(b));
      this.loads.set(b, p);
    }
    return p;
  }

  private checkRange(offset: number, length: number): void {
    if (!inRange(this.size, offset, length)) {
      throw new RangeError(`read of ${length} bytes at ${offset} is outside the image (${this.size} bytes)`);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length);
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((offset + length - 1) / this.blockSize);
    const sequential = first === this.lastBlock || first === this.lastBlock + 1;
    this.lastBlock = last;
    const want: Promise<void>[] = [];
    for (let b = first; b <= last; b++) {
      want.push(this.block(b).then((bytes) => {
        if (bytes.length === 0) return;
        const blockStart = b * this.blockSize;
        const from = Math.max(offset, blockStart);
        const to = Math.min(offset + length, blockStart + bytes.length);
        bytes.copy(out, from - offset, from - blockStart, to - blockStart);
      }));
    }
    if (sequential) {
      for (let b = last + 1; b <= Math.min(this.blocks - 1, last + this.readAhead); b++) this.block(b).catch(() => undefined);
    }
    await Promise.all(want);
    return out;
  }

  /**
   * Which parts of [offset, offset + length) are stored and which are holes,
   * merged into runs (for NBD block status, sparse copies, skipping unused space).
   */
  async extents(offset: number, length: number): Promise<ImageExtent[]> {
    this.checkRange(offset, length);
    const out: { offset: number; length: number; hole: boolean }[] = [];
    if (length === 0) return out;
    const end = offset + length;
    for (let b = Math.floor(offset / this.blockSize); b * this.blockSize < end; b++) {
      const hole = (await this.blockId(b)) === null;
      const from = Math.max(offset, b * this.blockSize);
      const to = Math.min(end, (b + 1) * this.blockSize);
      const prev = out[out.length - 1];
      if (prev && prev.hole === hole) prev.length += to - from;
      else out.push({ offset: from, length: to - from, hole });
    }
    return out;
  }
}

/**
 * Opens an image snapshot for reading. Loads nothing until the first read.
 * Throws `NotAnImageSnapshotError` for a file snapshot.
 */
export function openImageSnapshot(repo: BlobLoader, snapshot: Snapshot, opts: ImageReaderOptions = {}): ImageSnapshotReader {
  const what = opts.what ?? 'snapshot';
  if (!snapshot.image) throw new NotAnImageSnapshotError(what);
  return new ImageSnapshotReader(repo, snapshot.image, { ...opts, what });
}

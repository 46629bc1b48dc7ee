/**
 * Image backups: a block device, a raw image file or a raw stream, cut into
 * fixed-size blocks and stored as an image snapshot (docs/format.md §14).
 *
 *   file, device, qcow2 file or NBD export:
 *     analyse: partition table, file systems, their allocation bitmaps
 *       → which blocks no file system uses (skipped: holes)
 *     NBD base:allocation → blocks that read as zeros (holes, not read)
 *     a qcow2 dirty bitmap of the parent → blocks it leaves clean take the
 *       parent's id, not read
 *     for each run of used blocks, in order, in slots of ~8 MiB
 *     (SharedArrayBuffers; several in flight, read ahead of the workers):
 *       read the slot (a file or device: the block worker maps the range
 *         instead and copies only changed blocks into the slot)
 *       → scan in a block worker: zero? fingerprint equals the
 *         changed-block cache's (and its id is still indexed)? → reuse the id
 *         else keyed id → the repository has it? reuse : seal in a worker → pack
 *   stream (stdin or a producer's output): the same, slot by slot as bytes
 *     arrive; the partition table and file system superblocks are captured
 *     as they pass, for the record and to notice a stream that ended before
 *     the partitions and file systems it holds (the snapshot is then marked
 *     incomplete: the producer stopped early)
 *   an empty source is refused (no disk is 0 bytes; an empty pipe is a
 *     producer that failed)
 *   block maps (type 2) → empty tree → flush packs and index → snapshot →
 *   changed-block cache (only after the snapshot exists)
 *
 * An unchanged block costs one read and one keyed Poly1305 fingerprint, in a worker; only changed
 * blocks are keyed, compressed and encrypted. Memory is bounded by the slots,
 * the sealed blocks of the slots in flight, the block map (32 bytes a block)
 * and the cache (48 bytes a block).
 */
import { snapshotHeader, type SnapshotOrigin } from '../snapshot-origin.js';
import type { Repository } from '../../repo/repository.js';
import type { RepositoryWriter } from '../../repo/repository-writer.js';
import type { CompressionMode } from '../../core/compress.js';
import { BlobType } from '../../repo/pack.js';
import { blobIdList, type Snapshot, type SnapshotSummary } from '../../repo/snapshot.js';
import { IMAGE_VERSION, MAP_ENTRY_BYTES, isHoleEntry, type ImageCounts, type ImageInfo } from '../../repo/image-info.js';
import { analyzeImage, type LayoutAnalysis } from '../../sources/image/image-layout.js';
import { EmptySourceError, SourceShrankError, type ImageInput } from '../../sources/image/image-input.js';
import { readPartitionTable } from '../../sources/image/partition-table.js';
import type { RandomAccessSource } from '../../sources/image/random-access.js';
import type { ByteRange } from '../../sources/image/nbd-input.js';
import { CbtCache, type CacheKeyring, type CbtHeader } from './cbt-cache.js';
import { FP_BYTES } from '../../core/crypto.js';
import { PoolSession, type JobPoolOptions } from '../pool/worker-pool.js';
import { BlockKind, BLOCK_WORKER, blockInit, type BlockTask, type ScanResult, type SealResult } from './block-protocol.js';
import { openImageSnapshot, type ImageSnapshotReader } from './image-reader.js';

/** Smallest default block size (docs/decisions.md, "Image backups"). */
export const DEFAULT_IMAGE_BLOCK = 128 << 10;
/** The default block size grows so that an image has at most this many blocks… */
const AUTO_MAX_BLOCKS = 1 << 21;
/** …up to this size. */
const AUTO_MAX_BLOCK = 1 << 20;

/**
 * The block size used when none is given: 128 KiB, doubled until the image
 * has at most 2^21 blocks (256 GiB), at most 1 MiB, so that the block map,
 * the cache and the index stay bounded on large disks. A stream (size
 * unknown) gets 128 KiB.
 */
export function defaultBlockSize(size: number | undefined): number {
  let bs = DEFAULT_IMAGE_BLOCK;
  while (size !== undefined && bs < AUTO_MAX_BLOCK && Math.ceil(size / bs) > AUTO_MAX_BLOCKS) bs *= 2;
  return bs;
}
/** Blocks per map blob: 512 KiB of ids. */
export const MAP_BLOCKS = 16384;
const SLOT_TARGET = 8 << 20;
/** Reads of the source in flight (docs/decisions.md, "Image backups"). */
const READS_IN_FLIGHT = 3;
/** Bytes of a stream kept to read its partition table, and of each partition's start. */
const HEAD_BYTES = 1 << 20;
const WINDOW_BYTES = 68 << 10;

/**
 * One flag a block of a `size`-byte source: whether `ranges` cover all of it
 * (`all`) or touch any of it (`any`). The ranges are in order and do not overlap.
 */
function blockCover(ranges: readonly ByteRange[], bs: number, size: number, mode: 'all' | 'any'): Uint8Array {
  const blocks = Math.ceil(size / bs);
  const out = new Uint8Array(blocks);
  if (mode === 'any') {
    for (const r of ranges) {
      if (r.length > 0) out.fill(1, Math.floor(r.offset / bs), Math.min(blocks, Math.floor((r.offset + r.length - 1) / bs) + 1));
    }
    return out;
  }
  // Runs of touching ranges; a block is covered when one run holds all of it (the last block may be short).
  const runs: [number, number][] = [];
  for (const r of ranges) {
    const last = runs[runs.length - 1];
    if (last && last[1] === r.offset) last[1] += r.length;
    else runs.push([r.offset, r.offset + r.length]);
  }
  for (const [start, end] of runs) {
    for (let b = Math.ceil(start / bs); b < blocks && Math.min((b + 1) * bs, size) <= end; b++) out[b] = 1;
  }
  return out;
}

/** Options of an image backup; its `parent` is the previous image snapshot of this source (for the record and the changed count). */
export interface ImageBackupOptions extends SnapshotOrigin, JobPoolOptions {
  readonly input: ImageInput;
  /** The snapshot's `paths` (the absolute source path, or /NAME for a stream). */
  readonly paths: readonly string[];
  readonly blockSize?: number;
  /** Read every block, ignoring file system allocation (`--all-blocks`). */
  readonly allBlocks?: boolean;
  /** The source was mounted read-write (`--allow-live`): crash-consistent only. */
  readonly live?: boolean;
  /**
   * qcow2: the dirty bitmap added before this read (recorded in the
   * snapshot), and the parent's bitmap that the input's `dirtyRanges` come
   * from: then only the blocks it marks are read, every other one is the
   * parent's. The caller vouches that the parent's bitmap covers the parent.
   */
  readonly qcow2?: { readonly bitmap?: string; readonly since?: string };
  /** The changed-block cache file; undefined: none. */
  readonly cacheFile?: string;
  /** False: do not trust the cache (`--force`), but write a fresh one. */
  readonly readCache?: boolean;
  /** Compression of the blocks this backup stores; default the repository's. */
  readonly compression?: CompressionMode;
  readonly signal?: AbortSignal;
  /** The backup session's lock and orphan packs, when the work started beside them: nothing is written before (`WriterOptions.ready`). */
  readonly ready?: Promise<void>;
  /** Called once the backup is under way: a stream has given its first bytes, a file or device is about to be read. */
  readonly onStart?: () => void;
  readonly onWarning?: (message: string) => void;
  readonly onProgress?: (p: ImageBackupProgress) => void;
}

export interface ImageBackupProgress {
  /** Bytes of the image dealt with (read, or skipped as unused). */
  bytes: number;
  /** Image size; undefined for a stream. */
  total: number | undefined;
  bytesRead: number;
  blocksChanged: number;
}

export interface ImageBackupResult {
  readonly id: string;
  readonly snapshot: Snapshot;
}

/** Fixed-size entries in pages, growing as needed (block maps and cache entries of streams). */
class Paged {
  private readonly pages: Buffer[] = [];
  constructor(private readonly entryBytes: number, private readonly pageEntries: number) {}

  private page(p: number): Buffer {
    while (this.pages.length <= p) this.pages.push(Buffer.alloc(this.entryBytes * this.pageEntries));
    return this.pages[p]!;
  }

  set(i: number, bytes: Uint8Array): void {
    this.page(Math.floor(i / this.pageEntries)).set(bytes, (i % this.pageEntries) * this.entryBytes);
  }

  /** Entry i: the entry's length of bytes at `from[at…]` (a loop: a call into C++ per block costs more). */
  copyFrom(i: number, from: Buffer, at: number): void {
    const page = this.page(Math.floor(i / this.pageEntries));
    const o = (i % this.pageEntries) * this.entryBytes;
    for (let k = 0; k < this.entryBytes; k++) page[o + k] = from[at + k]!;
  }

  get(i: number): Buffer {
    const o = (i % this.pageEntries) * this.entryBytes;
    return this.page(Math.floor(i / this.pageEntries)).subarray(o, o + this.entryBytes);
  }

  /** The first n entries, split per page. */
  pagesFor(n: number): Buffer[] {
    const out: Buffer[] = [];
    for (let p = 0; p * this.pageEntries < n; p++) out.push(this.page(p).subarray(0, Math.min(this.pageEntries, n - p * this.pageEntries) * this.entryBytes));
    return out;
  }
}

/** Byte windows of a stream captured as it passes, readable afterwards as a sparse source. */
class StreamCapture implements RandomAccessSource {
  private readonly windows: { start: number; bytes: Buffer; filled: number }[] = [];
  size = 0;

  add(start: number, length: number): void {
    if (this.windows.some((w) => w.start === start)) return;
    this.windows.push({ start, bytes: Buffer.alloc(length), filled: 0 });
  }

  /** Copies what overlaps the windows from `chunk` at absolute `pos`. */
  feed(chunk: Buffer, pos: number): void {
    for (const w of this.windows) {
      const a = Math.max(pos, w.start);
      const b = Math.min(pos + chunk.length, w.start + w.bytes.length);
      if (a < b) {
        chunk.copy(w.bytes, a - w.start, a - pos, b - pos);
        w.filled = Math.max(w.filled, b - w.start);
      }
    }
  }

  read(offset: number, length: number): Promise<Buffer> {
    for (const w of this.windows) {
      if (offset >= w.start && offset + length <= w.start + w.filled) return Promise.resolve(w.bytes.subarray(offset - w.start, offset - w.start + length));
    }
    return Promise.reject(new RangeError(`bytes ${offset}+${length} of the stream were not kept`));
  }
}

/** One slot of block bytes, shared with the workers. */
interface Slot {
  readonly sab: SharedArrayBuffer;
  readonly buf: Buffer;
}

export class ImageBackup {
  private readonly blockSize: number;
  private readonly warnings: string[] = [];
  private pool: PoolSession<BlockTask> | undefined;
  private readonly map = new Paged(MAP_ENTRY_BYTES, MAP_BLOCKS);
  private readonly newCache = new Paged(FP_BYTES + 32, MAP_BLOCKS);
  private cache: CbtCache | undefined;
  private parentReader: ImageSnapshotReader | undefined;
  /** Ranges written since the parent was read (a qcow2 dirty bitmap); undefined: every used block is read. */
  private dirty: ByteRange[] | undefined;
  private readSince: string | undefined;
  private readonly counts = { unused: 0, zero: 0, unchanged: 0, changed: 0, stored: 0, bytesRead: 0 };
  private bytesDone = 0;
  private freeSlots: Slot[] = [];
  private slotWaiters: (() => void)[] = [];
  private failure: unknown;
  private readonly inFlight = new Set<Promise<void>>();
  /** Whether the block workers map a file or device input rather than the main thread reading it; off once a mapping fails. */
  private mapping = true;
  /** This backup's write session: its statistics are the snapshot's. */
  private readonly writer: RepositoryWriter;

  constructor(private readonly repo: Repository, private readonly opts: ImageBackupOptions) {
    this.blockSize = opts.blockSize ?? defaultBlockSize(opts.input.size);
    this.writer = repo.newWriter({ ...(opts.compression ? { compression: opts.compression } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.ready ? { ready: opts.ready } : {}) });
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.opts.onWarning?.(message);
  }

  private get keyring(): CacheKeyring {
    return { repositoryId: this.repo.config.id, mac: (d) => this.repo.blobId(d) };
  }

  private cacheHeader(size: number, snapshot: string): CbtHeader {
    return { repository: this.repo.config.id, snapshot, source: this.opts.paths[0] ?? this.opts.input.path, size, blockSize: this.blockSize, fingerprint: 'poly1305' };
  }

  /** Runs the backup and writes the snapshot (and then the cache). */
  async run(): Promise<ImageBackupResult> {
    const start = new Date();
    const { input } = this.opts;
    // Workers boot while the cache and the file systems are read.
    this.pool = PoolSession.open<BlockTask>(this.opts, BLOCK_WORKER, blockInit(this.repo, this.writer.compression));
    const slotBytes = Math.max(this.blockSize, Math.floor(SLOT_TARGET / this.blockSize) * this.blockSize);
    let size: number;
    let analysis: LayoutAnalysis;
    let truncated: string | undefined;
    try {
      if (this.opts.cacheFile && this.opts.readCache !== false) {
        const { cache, why } = await CbtCache.load(this.opts.cacheFile, this.keyring, { ...this.cacheHeader(input.size ?? 0, ''), size: input.size ?? 0 });
        this.cache = cache;
        if (!cache && why && !why.startsWith('no changed-block cache')) this.warn(why);
      }
      const parentImage = this.opts.parent?.snapshot.image;
      if (this.opts.parent && parentImage && parentImage.blockSize === this.blockSize) {
        this.parentReader = openImageSnapshot(this.repo, this.opts.parent.snapshot, { what: `parent snapshot ${this.opts.parent.id}`, cacheBytes: 0 });
      }
      if (this.opts.qcow2?.since !== undefined && input.dirtyRanges) {
        if (this.parentReader && parentImage?.size === input.size) {
          this.dirty = await input.dirtyRanges();
          this.readSince = this.opts.qcow2.since;
        } else this.warn(`the parent snapshot has another size or block size than ${input.path} now: reading every block, not only those dirty bitmap ${this.opts.qcow2.since} marks`);
      }
      const slots = this.pool.size * 2 + READS_IN_FLIGHT;
      for (let i = 0; i < slots; i++) {
        const sab = new SharedArrayBuffer(slotBytes);
        this.freeSlots.push({ sab, buf: Buffer.from(sab) });
      }
      if (input.random && input.readAt && input.size !== undefined) {
        size = input.size;
        this.opts.onStart?.();
        analysis = await analyzeImage(input.random, { blockSize: this.blockSize, allBlocks: this.opts.allBlocks === true });
        for (const w of analysis.warnings) this.warn(w);
        await this.readRandom(size, analysis.freeBytes);
        const now = await input.currentSize?.();
        if (now !== undefined && now < size) throw new SourceShrankError(input.path, size, now);
        if (now !== undefined && now > size) this.warn(`${input.path} grew from ${size} to ${now} bytes while it was read; the snapshot holds the first ${size} bytes`);
      } else {
        const capture = new StreamCapture();
        size = await this.readStream(capture);
        capture.size = size;
        analysis = await analyzeImage(capture, { blockSize: this.blockSize, headOnly: true });
        for (const w of analysis.warnings) this.warn(w);
        // A file is backed up as it is; a stream shorter than its own contents lost its end on the way.
        if (analysis.pastEnd) {
          truncated = `${input.path === '-' ? 'stdin' : `the output of ${input.path}`} ended at ${size} bytes, but ${analysis.pastEnd.what} ends at ${analysis.pastEnd.end}: `
            + 'the image is truncated (did the program writing it stop early?); the snapshot is marked incomplete';
          this.warn(truncated);
        }
      }
      if (size === 0) throw new EmptySourceError(input.path, input.kind);
    } finally {
      await this.pool.close();
    }
    return this.finish(start, size, analysis, truncated !== undefined);
  }

  // ---- slots ----

  private async takeSlot(): Promise<Slot> {
    for (;;) {
      if (this.failure) throw this.failure;
      this.opts.signal?.throwIfAborted();
      const s = this.freeSlots.pop();
      if (s) return s;
      await new Promise<void>((r) => this.slotWaiters.push(r));
    }
  }

  private releaseSlot(s: Slot): void {
    this.freeSlots.push(s);
    const w = this.slotWaiters;
    this.slotWaiters = [];
    for (const f of w) f();
  }

  /**
   * Processes a filled slot (or one to map, `source`) in the background; the
   * slot is released when done. `blocks`: the image's block number of the
   * slot's first block, the others following it; or (a gathered slot) of each.
   */
  private dispatch(slot: Slot, blocks: number | readonly number[], length: number, source?: { fd: number; position: number }): void {
    const p = this.processSlot(slot, blocks, length, source)
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.releaseSlot(slot);
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /**
   * A block a dirty bitmap leaves clean: the parent's id (`page[at…]`, from
   * the parent's map), and the cache's entry when it is for that id. False
   * when the parent has a hole there (a block no file system used then, or
   * zeros) or its blob is gone: it is read, since a hole does not say which.
   * Binary ids throughout: this runs for every clean block of the disk.
   */
  private takeFromParent(b: number, page: Buffer, at: number): boolean {
    if (isHoleEntry(page, at) || !this.writer.hasBlobAt(page, at)) return false;
    this.map.copyFrom(b, page, at);
    const cached = this.cache?.entryAt(b, page, at);
    if (cached !== undefined) this.newCache.copyFrom(b, this.cache!.entries, cached);
    return true;
  }

  private async parentId(b: number): Promise<string | null> {
    if (!this.parentReader || b >= this.parentReader.blocks) return null;
    return this.parentReader.blockId(b);
  }

  /**
   * Scans a slot's blocks: read into the slot already, or (`source`) mapped
   * by the worker, which copies only the changed blocks into the slot. A
   * mapping that fails turns mapping off and the slot is read instead.
   */
  private async scanSlot(slot: Slot, length: number, expect: Uint8Array, source: { fd: number; position: number } | undefined): Promise<ScanResult> {
    const task = { kind: 'scan' as const, data: slot.sab, length, blockSize: this.blockSize, expect };
    if (source && this.mapping) {
      const scan = await this.pool!.run<ScanResult>({ ...task, source });
      if (scan.mapError === undefined) return scan;
      const { input } = this.opts;
      if (scan.mapError === -1) throw new SourceShrankError(input.path, input.size ?? 0, await input.currentSize?.() ?? source.position);
      this.mapping = false;
      await this.readSlot(slot, length, source.position);
    }
    return this.pool!.run<ScanResult>(task);
  }

  /** Reads `length` bytes of the file or device at `position` into the slot at `at`; SourceShrankError when it ends before. */
  private async readSlot(slot: Slot, length: number, position: number, at = 0): Promise<void> {
    const { input } = this.opts;
    const got = await input.readAt!(slot.buf, at, length, position);
    if (got < length) throw new SourceShrankError(input.path, input.size ?? 0, position + got);
  }

  private async processSlot(slot: Slot, blocks: number | readonly number[], length: number, source?: { fd: number; position: number }): Promise<void> {
    const pool = this.pool!;
    const n = Math.ceil(length / this.blockSize);
    const blockAt = typeof blocks === 'number' ? (i: number): number => blocks + i : (i: number): number => blocks[i]!;
    const expect = new Uint8Array(n * FP_BYTES);
    const cachedIds: (string | undefined)[] = new Array<string | undefined>(n);
    if (this.cache) {
      for (let i = 0; i < n; i++) {
        const fp = this.cache.fingerprintOf(blockAt(i));
        const id = this.cache.idOf(blockAt(i));
        if (fp && id && this.writer.hasBlob(id)) {
          expect.set(fp, i * FP_BYTES);
          cachedIds[i] = id;
        }
      }
    }
    const scan = await this.scanSlot(slot, length, expect, source);
    const toSeal: { index: number; id: string }[] = [];
    for (let i = 0; i < n; i++) {
      const b = blockAt(i);
      const kind = scan.kinds[i]!;
      if (kind === BlockKind.Zero) {
        this.counts.zero++;
        continue;
      }
      const fp = scan.fingerprints.subarray(i * FP_BYTES, (i + 1) * FP_BYTES);
      let id: string;
      if (kind === BlockKind.Same) {
        id = cachedIds[i]!;
        this.counts.unchanged++;
      } else {
        const raw = scan.ids.subarray(i * 32, (i + 1) * 32);
        if (raw.every((x) => x === 0)) throw new Error(`block ${b} has the all-zero id, which an image map cannot record`);
        id = Buffer.from(raw).toString('hex');
        if ((await this.parentId(b)) === id) this.counts.unchanged++;
        else this.counts.changed++;
        if (!this.writer.hasBlob(id)) toSeal.push({ index: i, id });
      }
      this.map.set(b, Buffer.from(id, 'hex'));
      const entry = Buffer.alloc(FP_BYTES + 32);
      entry.set(fp, 0);
      entry.write(id, FP_BYTES, 32, 'hex');
      this.newCache.set(b, entry);
    }
    if (toSeal.length > 0) {
      const sealed = await pool.run<SealResult>({ kind: 'seal', data: slot.sab, length, blockSize: this.blockSize, blocks: toSeal });
      const bytes = Buffer.from(sealed.sealed.buffer, sealed.sealed.byteOffset, sealed.sealed.byteLength);
      for (const s of sealed.blobs) {
        const added = await this.writer.addPrepared({ type: BlobType.Data, id: s.id, flags: s.flags, rawLength: s.rawLength, sealed: bytes.subarray(s.offset, s.offset + s.length) });
        if (added) this.counts.stored++;
      }
    }
  }

  private progress(total: number | undefined): void {
    this.opts.onProgress?.({ bytes: this.bytesDone, total, bytesRead: this.counts.bytesRead, blocksChanged: this.counts.changed });
  }

  // ---- files and devices ----

  private async readRandom(size: number, freeBytes: Uint32Array | undefined): Promise<void> {
    const { input } = this.opts;
    const bs = this.blockSize;
    const blocks = Math.ceil(size / bs);
    const blockLength = (b: number): number => Math.min(bs, size - b * bs);
    const used = (b: number): boolean => !freeBytes || freeBytes[b]! < blockLength(b);
    const zero = blockCover(await input.zeroRanges?.() ?? [], bs, size, 'all');
    const dirty = this.dirty ? blockCover(this.dirty, bs, size, 'any') : undefined;
    const slotBlocks = this.freeSlots[0]!.sab.byteLength / bs;
    // What each block needs: nothing (unused, zero, clean), or a read.
    const toRead = new Uint8Array(blocks);
    const parent = dirty ? this.parentReader : undefined;
    let parentMap: Buffer | undefined;
    let parentMapNo = -1;
    for (let b = 0; b < blocks; b++) {
      if (!used(b)) this.counts.unused++;
      else if (zero[b]) this.counts.zero++;
      else if (dirty && !dirty[b] && parent && b < parent.blocks) {
        const m = Math.floor(b / parent.info.mapBlocks);
        if (m !== parentMapNo) {
          parentMap = await parent.map(m);
          parentMapNo = m;
        }
        if (this.takeFromParent(b, parentMap!, (b % parent.info.mapBlocks) * MAP_ENTRY_BYTES)) this.counts.unchanged++;
        else toRead[b] = 1;
      } else toRead[b] = 1;
    }
    // The reads, in order, a slot's worth each: a run of blocks; or, for the
    // blocks a dirty bitmap marks in a source read through a connection (a
    // qcow2 file, a VM's disk, an NBD export), as many runs as fill a slot,
    // gathered: its scattered blocks are then read many at once and worked
    // on in a few tasks, not a round trip and two tasks each. A full read's
    // runs are long already: gathered, it was no faster (20.8–21.2 s against
    // 19.6–19.7 s for the 20 GiB bench disk, two pairs).
    const gather = input.fd === undefined && dirty !== undefined;
    const plan: [number, number][][] = [];
    let filled = slotBlocks;
    for (let b = 0; b < blocks;) {
      if (!toRead[b]) {
        b++;
        continue;
      }
      let n = 0;
      while (n < slotBlocks && b + n < blocks && toRead[b + n]) n++;
      if (gather && filled + n <= slotBlocks) {
        plan[plan.length - 1]!.push([b, n]);
        filled += n;
      } else {
        plan.push([[b, n]]);
        filled = n;
      }
      b += n;
    }
    let next = 0;
    // A few reads in flight: copying from the page cache is CPU work too.
    const reader = async (): Promise<void> => {
      try {
        await readPlan();
      } catch (e) {
        this.failure ??= e;
        throw e;
      }
    };
    const readPlan = async (): Promise<void> => {
      while (next < plan.length) {
        const runs = plan[next++]!;
        const slot = await this.takeSlot();
        const first = runs[0]![0];
        // A file or device is mapped by the worker, which copies only the changed blocks; anything else is read here.
        const source = input.fd !== undefined && this.mapping ? { fd: input.fd, position: first * bs } : undefined;
        let length = 0;
        const reads: Promise<void>[] = [];
        for (const [b, n] of runs) {
          const l = Math.min(n * bs, size - b * bs);
          if (!source) reads.push(this.readSlot(slot, l, b * bs, length));
          length += l;
        }
        // Every read ends before the slot goes back, whichever failed.
        const failed = (await Promise.allSettled(reads)).find((r) => r.status === 'rejected');
        if (failed) {
          this.releaseSlot(slot);
          throw failed.reason;
        }
        this.counts.bytesRead += length;
        this.dispatch(slot, runs.length === 1 ? first : runs.flatMap(([b, n]) => Array.from({ length: n }, (_, i) => b + i)), length, source);
        const [lastBlock, lastRun] = runs[runs.length - 1]!;
        this.bytesDone = Math.max(this.bytesDone, Math.min((lastBlock + lastRun) * bs, size));
        this.progress(size);
      }
    };
    const readers = Array.from({ length: READS_IN_FLIGHT }, reader);
    const settled = await Promise.allSettled(readers);
    for (const r of settled) if (r.status === 'rejected') this.failure ??= r.reason;
    await this.drain();
    this.bytesDone = size;
  }

  // ---- streams ----

  private async readStream(capture: StreamCapture): Promise<number> {
    const stream = this.opts.input.stream!;
    const bs = this.blockSize;
    let pos = 0;
    let slot: Slot | undefined;
    let fill = 0;
    let slotFirstBlock = 0;
    let layoutRead = false;
    capture.add(0, HEAD_BYTES);
    const readLayout = async (): Promise<void> => {
      layoutRead = true;
      capture.size = pos;
      const { layout } = await readPartitionTable(capture);
      for (const p of layout.partitions) capture.add(p.start, WINDOW_BYTES);
    };
    for await (const raw of stream) {
      const chunk = raw as Buffer;
      if (pos === 0 && chunk.length > 0) this.opts.onStart?.();
      capture.feed(chunk, pos);
      let o = 0;
      while (o < chunk.length) {
        if (!slot) {
          slot = await this.takeSlot();
          fill = 0;
          slotFirstBlock = pos / bs;
        }
        const n = Math.min(chunk.length - o, slot.sab.byteLength - fill);
        chunk.copy(slot.buf, fill, o, o + n);
        fill += n;
        o += n;
        pos += n;
        if (fill === slot.sab.byteLength) {
          this.dispatch(slot, slotFirstBlock, fill);
          slot = undefined;
        }
      }
      this.counts.bytesRead = pos;
      this.bytesDone = pos;
      if (!layoutRead && pos >= HEAD_BYTES) await readLayout();
      this.progress(undefined);
    }
    if (slot) {
      if (fill > 0) this.dispatch(slot, slotFirstBlock, fill);
      else this.releaseSlot(slot);
    }
    if (!layoutRead) await readLayout();
    await this.drain();
    return pos;
  }

  // ---- the snapshot ----

  private async finish(start: Date, size: number, analysis: LayoutAnalysis, incomplete: boolean): Promise<ImageBackupResult> {
    const blocks = Math.ceil(size / this.blockSize);
    const maps: string[] = [];
    // Every block's id, each map's and the tree's, as bytes: a disk's worth of hex strings in a set cost more than the rest of an incremental.
    const pages = this.map.pagesFor(blocks);
    const ids = Buffer.allocUnsafeSlow((blocks + pages.length + 1) * MAP_ENTRY_BYTES);
    let n = 0;
    for (const page of pages) {
      // Runs of entries that are not holes, a copy each.
      for (let o = 0; o < page.length;) {
        if (isHoleEntry(page, o)) {
          o += MAP_ENTRY_BYTES;
          continue;
        }
        let end = o + MAP_ENTRY_BYTES;
        while (end < page.length && !isHoleEntry(page, end)) end += MAP_ENTRY_BYTES;
        n += page.copy(ids, n, o, end);
        o = end;
      }
      const { id } = await this.writer.saveBlob(BlobType.ImageMap, Buffer.from(page));
      maps.push(id);
      n += ids.write(id, n, 'hex');
    }
    const tree = await this.writer.saveTree([]);
    n += ids.write(tree, n, 'hex');
    const blobs = blobIdList(ids.subarray(0, n));
    await this.writer.flush();
    const counts: ImageCounts = { blocks, ...this.counts };
    const understood = analysis.filesystems.some((f) => f.understood);
    const image: ImageInfo = {
      version: IMAGE_VERSION,
      source: this.opts.input.path,
      size,
      blockSize: this.blockSize,
      mapBlocks: MAP_BLOCKS,
      maps,
      allBlocks: this.opts.allBlocks === true || !understood,
      ...(this.opts.live ? { live: true } : {}),
      ...(this.opts.input.format ? { format: this.opts.input.format } : {}),
      ...(this.opts.qcow2?.bitmap !== undefined ? { bitmap: this.opts.qcow2.bitmap } : {}),
      ...(this.readSince !== undefined ? { readSince: this.readSince } : {}),
      layout: analysis.layout,
      filesystems: analysis.filesystems,
      counts,
    };
    const stats = this.writer.stats;
    const summary: SnapshotSummary = {
      filesNew: 0,
      filesChanged: 0,
      filesUnchanged: 0,
      dirs: 0,
      dirsNew: 0,
      dirsChanged: 0,
      dirsUnchanged: 0,
      otherNodes: 0,
      errors: incomplete ? 1 : 0,
      totalBytes: size,
      bytesRead: this.counts.bytesRead,
      blobsAdded: stats.blobsAdded,
      dataBlobs: stats.dataBlobs,
      treeBlobs: stats.treeBlobs,
      dataAdded: stats.dataAdded,
      dataAddedStored: stats.dataAddedStored,
      start: start.toISOString(),
      end: new Date().toISOString(),
    };
    const snapshot: Snapshot = {
      ...snapshotHeader(this.opts, start, this.opts.parent?.id, this.opts.paths),
      tree,
      ...(incomplete ? { incomplete: true as const } : {}),
      summary,
      image,
      blobs,
    };
    // Ctrl-C during the last uploads ends the backup without a snapshot, as it does earlier.
    this.opts.signal?.throwIfAborted();
    const id = await this.writer.saveSnapshot(snapshot);
    if (this.opts.cacheFile) {
      const entries = Buffer.concat(this.newCache.pagesFor(blocks));
      const cache = CbtCache.fromEntries(this.cacheHeader(size, id), entries);
      try {
        await cache.save(this.opts.cacheFile, this.keyring, cache.header);
      } catch (e) {
        this.warn(`cannot write the changed-block cache ${this.opts.cacheFile}: ${(e as Error).message}; the next backup reads every block in full`);
      }
    }
    return { id, snapshot };
  }
}

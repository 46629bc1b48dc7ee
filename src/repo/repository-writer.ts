/**
 * A write session on an open repository (`Repository.newWriter`): it turns
 * blobs into packs, packs into index files, and writes snapshots. It owns its
 * open packs, its uploads, its statistics and its errors, so several writers
 * can run at once on one repository (two backups and a repair, say) and an
 * upload error in one fails only that one's flush.
 *
 *   saveBlob(type, bytes)
 *     id = keyed hash of bytes; known? → done (deduplicated)
 *     compress (if it shrinks) → seal(AES-256-GCM, aad = type|flags|rawLength|id)
 *     append to the open pack; pack ≥ packSize → upload it (≤ 2 in flight)
 *   flush()
 *     upload the open packs, wait for uploads, write one index file for them
 *   saveSnapshot(s)
 *     behind the snapshot fence (snapshot-fence.ts)
 *
 * Objects are written in the order packs → index → snapshot, each atomically,
 * so a crash at any point leaves a valid repository; packs written before a
 * crash but never indexed are found and indexed by the next writer
 * (`indexOrphanPacks`), so their blobs are reused, not uploaded again.
 *
 * Writers share the repository's index, which holds only what some durable
 * index file lists: a writer adds its packs to it once its index file for
 * them is stored (docs/format.md §15.4). Until then the blobs are the
 * writer's own (`pending`): it deduplicates against them, other writers do
 * not. So a writer that is aborted, or whose index file cannot be saved,
 * leaves nothing in the shared index that a fresh open of the repository
 * would not find: a snapshot another writer commits never references a blob
 * only this process knows of. Its stored packs are orphans, which the next
 * writer's `indexOrphanPacks` (a listing of storage) adopts. An index file
 * that cannot be saved keeps its records for the next flush.
 *
 * A blob another writer has stored but not yet indexed is not seen: two
 * writers storing the same new blob at once each store a copy. Two copies
 * are harmless (readers take either, prune keeps one), and a writer never
 * counts on a blob whose upload or index another writer may still lose.
 */
import type { OperationOptions } from '../storage/backend.js';
import { BlobCompressor, type CompressionMode } from '../core/compress.js';
import { blobIdHex, prepareBlob, type BlobKeys, type PreparedBlob } from './blob-codec.js';
import { encodeIndex, type BlobLocation, type IndexedPack, type MasterIndex } from './index-file.js';
import { saveAddressed } from './objects.js';
import { BlobType, PackWriter } from './pack.js';
import { commitSnapshot } from './snapshot-fence.js';
import type { Snapshot } from './snapshot.js';
import type { Store } from './store.js';
import { ID_BYTES } from '../core/ids.js';
import { encodeTree, type TreeNode } from './tree.js';

const MAX_UPLOADS = 2;
const INDEX_EVERY_PACKS = 16;

export interface WriterOptions {
  /** Compression of the blobs this writer seals; default the repository's. */
  readonly compression?: CompressionMode;
  /**
   * Aborts the session: adding a blob, flushing and saving a snapshot then
   * throw the signal's reason, and uploads in flight are told through the
   * backend (what was stored stays valid; the next writer indexes it).
   */
  readonly signal?: AbortSignal;
  /**
   * Nothing is written before it resolves (a backup session's lock held and
   * orphan packs indexed while the work has started: backup-session.ts):
   * packs wait for it to upload, as the snapshot does; blobs are still
   * added, up to the uploads' back-pressure. Its rejection is the writer's
   * error.
   */
  readonly ready?: Promise<void>;
}

/** What one writer stored (the counts of a snapshot's summary). */
export interface WriteStats {
  /** Blobs this writer added (not found in the index). */
  blobsAdded: number;
  /** Of those, data blobs (file content). */
  dataBlobs: number;
  /** Of those, tree blobs (folder listings). */
  treeBlobs: number;
  /** Their bytes before compression and sealing. */
  dataAdded: number;
  /** Their bytes as stored in packs. */
  dataAddedStored: number;
}

/** What a writer needs from the repository that opens it (`Repository.newWriter`). */
export interface WriterTarget {
  readonly store: Store;
  /** The repository's index, shared by its writers. */
  readonly index: MasterIndex;
  readonly blobKeys: BlobKeys;
  /** Encodes a snapshot with its MAC. */
  sealSnapshot(s: Snapshot): Buffer;
  /** How long a snapshot commit may take (docs/format.md §15.4). */
  readonly commitWindowMs: number;
  /** Told the name of each index file the writer (or its snapshot fence) stored, which the index then holds. */
  indexSaved?(name: string): void;
  /** Told each snapshot the writer stored: its id and its bytes, as `sealSnapshot` made them; awaited. */
  snapshotSaved?(id: string, bytes: Buffer): void | Promise<void>;
  /**
   * The index files the repository left out of its index, unusable
   * (`Repository.loadIndex`): an index file of adopted packs names them as
   * superseded, which also keeps it from taking the name of one of them
   * (a damaged file's packs adopted are often its very bytes).
   */
  readonly unusableIndexFiles?: ReadonlySet<string>;
}

/** A write session; see the module comment. */
export class RepositoryWriter {
  /** What this writer stored so far. */
  readonly stats: WriteStats = { blobsAdded: 0, dataBlobs: 0, treeBlobs: 0, dataAdded: 0, dataAddedStored: 0 };
  private readonly compressor: BlobCompressor;
  /** Open packs: tree (and image-map) blobs are kept apart from data blobs so that reading all trees of a snapshot reads few packs. */
  private readonly packs = new Map<'data' | 'meta', PackWriter>();
  /** Blobs in this writer's open, uploading or stored packs that no index file lists yet: its own, not the shared index's. */
  private readonly pending = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  /**
   * Buffers of data packs that were saved, for the next packs: a fresh 20 MiB
   * buffer per pack costs the kernel a page fault and a zeroed page per 4 KiB
   * (not measured apart from the rest of its round: docs/decisions.md, fifth
   * session).
   */
  private readonly spareBuffers: Buffer[] = [];
  /** Stored packs no index file of this writer lists yet. */
  private unindexed: IndexedPack[] = [];
  /** The first upload that failed: every later add and the flush throw it. */
  private uploadError: unknown;
  private readonly signal: AbortSignal | undefined;
  private readonly io: OperationOptions;
  private readonly ready: Promise<void> | undefined;

  constructor(private readonly target: WriterTarget, opts: WriterOptions = {}) {
    this.compressor = new BlobCompressor(opts.compression ?? target.store.config.compression);
    this.signal = opts.signal;
    this.ready = opts.ready;
    this.io = opts.signal ? { signal: opts.signal } : {};
  }

  /** The compression this writer seals blobs with. */
  get compression(): CompressionMode {
    return this.compressor.mode;
  }

  private get packSize(): number {
    return this.target.store.config.packSize;
  }

  /** True when an index file lists the blob (the shared index has it), or this writer has stored or is storing it. */
  hasBlob(id: string): boolean {
    return this.target.index.has(id) || this.pending.has(id);
  }

  /** As `hasBlob`, for the id in the 32 bytes at `bytes[at]`: no hex string unless the shared index lacks it. */
  hasBlobAt(bytes: Buffer, at: number): boolean {
    return this.target.index.hasBytes(bytes, at) || (this.pending.size > 0 && this.pending.has(bytes.toString('hex', at, at + ID_BYTES)));
  }

  /**
   * Stores a blob unless it is known already. Returns its id and whether it
   * was new. Waits when too many packs are being uploaded (back-pressure).
   * The sealing runs on the calling thread; bulk data goes through worker
   * threads and `addPrepared` instead.
   */
  async saveBlob(type: BlobType, data: Buffer, knownId?: string): Promise<{ id: string; added: boolean }> {
    const id = knownId ?? blobIdHex(this.target.blobKeys, data, type);
    if (this.hasBlob(id)) return { id, added: false };
    return { id, added: await this.addPrepared(prepareBlob(this.target.blobKeys, this.compressor, type, data, id)) };
  }

  /**
   * Appends a blob sealed elsewhere (a worker thread) unless the repository
   * has it already; returns whether it was added. Waits when too many packs
   * are being uploaded (back-pressure).
   */
  async addPrepared(b: PreparedBlob): Promise<boolean> {
    this.signal?.throwIfAborted();
    if (this.uploadError) throw this.uploadError;
    if (this.hasBlob(b.id)) return false;
    this.pending.add(b.id);
    const kind = b.type === BlobType.Data ? 'data' : 'meta';
    let pack = this.packs.get(kind);
    if (!pack) {
      pack = kind === 'data' ? new PackWriter(this.packSize + (this.packSize >> 2), this.spareBuffers.pop()) : new PackWriter();
      this.packs.set(kind, pack);
    }
    pack.add(b.type, b.id, b.flags, b.rawLength, b.sealed);
    this.stats.blobsAdded++;
    if (b.type === BlobType.Data) this.stats.dataBlobs++;
    else if (b.type === BlobType.Tree) this.stats.treeBlobs++;
    this.stats.dataAdded += b.rawLength;
    this.stats.dataAddedStored += b.sealed.length;
    if (pack.length >= this.packSize) await this.finishPack(kind);
    return true;
  }

  /** Stores a folder's nodes as a tree blob in the repository's encoding; returns its id. */
  async saveTree(nodes: TreeNode[]): Promise<string> {
    return (await this.saveBlob(BlobType.Tree, encodeTree(nodes))).id;
  }

  private async finishPack(kind: 'data' | 'meta'): Promise<void> {
    const pack = this.packs.get(kind);
    if (!pack || pack.count === 0) return;
    this.packs.delete(kind);
    const { bytes, blobs, buffer } = pack.finish();
    while (this.uploads.size >= MAX_UPLOADS) await Promise.race(this.uploads);
    const upload = (async () => {
      await this.ready;
      const name = await saveAddressed(this.target.store.backend, 'data', bytes, this.io);
      // A backend keeps no reference to what it saved (see `Backend.save`).
      if (kind === 'data' && this.spareBuffers.length < MAX_UPLOADS) this.spareBuffers.push(buffer);
      // Locations built once serve both the index and the next index file.
      const p = { pack: name, blobs: blobs.map((b): BlobLocation => ({ ...b, pack: name })) };
      this.unindexed.push(p);
      if (this.unindexed.length >= INDEX_EVERY_PACKS) await this.writeIndex();
    })().catch((e: unknown) => {
      this.uploadError ??= e;
    });
    const tracked = upload.finally(() => this.uploads.delete(tracked));
    this.uploads.add(tracked);
  }

  /**
   * Writes one index file for the stored packs no index file lists yet, then
   * adds them to the shared index (the module comment says why in that
   * order). When the save fails they stay listed for the next attempt.
   */
  private async writeIndex(supersedes: string[] = []): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    try {
      this.target.indexSaved?.(await saveAddressed(this.target.store.backend, 'index', encodeIndex({ packs, supersedes }), this.io));
    } catch (e) {
      this.unindexed = packs.concat(this.unindexed);
      throw e;
    }
    for (const p of packs) {
      this.target.index.addPack(p);
      for (const b of p.blobs) this.pending.delete(b.id);
    }
  }

  /**
   * Uploads the open packs, waits for all uploads and writes the index of
   * what was stored. After a failed upload, the packs that were stored are
   * still indexed (their blobs are then reused) and then the upload's error
   * is thrown. After a failed index file, calling it again writes the index
   * file again. Aborted, it writes no index file: the stored packs are left
   * to the next writer's `indexOrphanPacks`.
   */
  async flush(): Promise<void> {
    this.signal?.throwIfAborted();
    if (!this.uploadError) {
      await this.finishPack('data');
      await this.finishPack('meta');
    }
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    this.signal?.throwIfAborted();
    await this.writeIndex();
    if (this.uploadError) throw this.uploadError;
  }

  /**
   * Indexes packs that exist in storage but in no index (left by a backup
   * that was killed before it wrote its index), so their blobs are reused.
   * Returns how many packs it found; damaged ones are reported to `warn`.
   */
  async indexOrphanPacks(warn: (msg: string) => void): Promise<number> {
    const own = new Set(this.unindexed.map((p) => p.pack));
    let found = 0;
    for await (const info of this.target.store.backend.list('data', this.io)) {
      if (this.target.index.packs.has(info.name) || own.has(info.name)) continue;
      try {
        const blobs = await this.target.store.readPackHeader(info.name, info.size, this.io);
        this.unindexed.push({ pack: info.name, blobs });
        found++;
      } catch (e) {
        warn(`ignoring unindexed pack ${info.name}: ${(e as Error).message}`);
      }
    }
    // Indexed at once, not at the end of a long backup: see docs/format.md §15.5.
    if (found > 0) await this.writeIndex([...this.target.unusableIndexFiles ?? []]);
    return found;
  }

  /**
   * Writes a snapshot, with its MAC, behind the fence that keeps a
   * concurrent prune from deleting what it references (snapshot-fence.ts).
   * Flush first: the fence looks for every blob the snapshot lists in the
   * repository's index.
   */
  async saveSnapshot(s: Snapshot): Promise<string> {
    this.signal?.throwIfAborted();
    await this.ready;
    const t = this.target;
    const bytes = t.sealSnapshot(s);
    const id = await commitSnapshot({ store: t.store, index: t.index, commitWindowMs: t.commitWindowMs, ...(t.indexSaved ? { indexSaved: (n: string) => t.indexSaved!(n) } : {}) }, s.blobs, bytes, this.io);
    await t.snapshotSaved?.(id, bytes);
    return id;
  }
}

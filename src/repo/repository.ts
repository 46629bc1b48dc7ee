/**
 * A repository ("disk safe") opened on a Backend: the config, the master key,
 * the merged index, and the writers that turn blobs into packs.
 *
 *   saveBlob(type, bytes)
 *     id = HMAC(idKey, bytes); known? → done (deduplicated)
 *     compress (if it shrinks) → seal(AES-256-GCM, aad = type|flags|rawLength|id)
 *     append to the open pack; pack ≥ packSize → upload it (≤ 2 in flight)
 *   flush()
 *     upload the open pack, wait for uploads, write one index file for them
 *
 * Objects are written in the order packs → index → snapshot, each atomically,
 * so a crash at any point leaves a valid repository; packs written before a
 * crash but never indexed are found and indexed by the next writer
 * (`indexOrphanPacks`), so their blobs are reused, not uploaded again.
 */
import { NotFoundError, ShortReadError, type Backend } from '../storage/backend.js';
import { AuthenticationError, macKey, masterKeyFrom, masterKeyId, newMasterKey, describeScrypt, DEFAULT_SCRYPT_PARAMS, wipeMasterKey, type MasterKey, type ScryptParams } from '../core/crypto.js';
import { BlobCompressor, type CompressionMode } from '../core/compress.js';
import { DEFAULT_CHUNKER_PARAMS, FastCDC, gearTable, validateChunkerParams, type ChunkerParams } from '../core/chunker.js';
import { authenticateConfig, encodeConfig, newConfig, type RepoConfig } from './config.js';
import { costTimes, decodeKeyFile, unwrapMasterKey, wrapMasterKey, type KeyFile, type Password } from './key-file.js';
import { BlobType, PackWriter, type PackedBlob } from './pack.js';
import { blobIdHex, openBlob, prepareBlob, type BlobKeys, type PreparedBlob } from './blob-codec.js';
import { MasterIndex, encodeIndex, type BlobLocation, type IndexedPack } from './index-file.js';
import { authenticateSnapshot, decodeSnapshot, encodeSnapshot, type Snapshot } from './snapshot.js';
import { commitWindowMs, condemnedPacks, DEFAULT_MIN_GRACE_MS } from './deletion-marker.js';
import { commitSnapshot } from './snapshot-fence.js';
import { handleOf, loadChecked, loadEvery, saveAddressed } from './objects.js';
import { isDamage, oldestFirst, Store, type SnapshotList } from './store.js';
import { decodeTree, encodeTree, type ContentEntry, type TreeNode } from './tree.js';
import { BlobNotFoundError, CorruptObjectError, UnsupportedVersionError, WrongPasswordError } from './errors.js';

/** Default pack size: 16 MiB (see docs/decisions.md). */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
const MAX_UPLOADS = 2;
const INDEX_EVERY_PACKS = 16;
const PACK_CACHE_ENTRIES = 8;

export interface InitOptions {
  readonly compression?: CompressionMode;
  readonly chunker?: ChunkerParams;
  readonly packSize?: number;
  /** Create an append-only repository (docs/format.md, "Append-only repositories"). */
  readonly appendOnly?: boolean;
  /** KDF cost of the first key file. Default `DEFAULT_SCRYPT_PARAMS`. */
  readonly scrypt?: ScryptParams;
  /** As `OpenOptions.minGraceMs`, for the repository `init` returns open. */
  readonly minGraceMs?: number;
}

/** Statistics of what this session wrote. */
export interface WriteStats {
  blobsAdded: number;
  dataAdded: number;
  dataAddedStored: number;
}

export interface OpenOptions {
  /**
   * The key file to try first, given the repository's id: the one that
   * opened it last time on this machine (a local hint, never stored in the
   * repository, so storage cannot choose it).
   */
  readonly preferKey?: (repositoryId: string) => string | undefined;
  /**
   * Told of a key file refused or damaged, before a key file that costs more
   * than the default is tried, and of a copy of a blob that cannot be read
   * when another copy is (`Repository.copyFailed`).
   */
  readonly onWarning?: (message: string) => void;
  /**
   * The shortest grace period any prune of this repository accepts
   * (`DEFAULT_MIN_GRACE_MS`; tests lower it). A snapshot must be durable
   * within half of it (`commitWindowMs`, docs/format.md §15.4).
   */
  readonly minGraceMs?: number;
}

/** One key file, as `key list` shows it. */
export interface KeyInfo {
  readonly id: string;
  /** Absent when the file is damaged or refused (`problem` says why). */
  readonly file?: KeyFile;
  readonly problem?: string;
  readonly current: boolean;
}

/** What tells one copy of a blob from another. */
function copyKey(l: BlobLocation): string {
  return `${l.pack}:${l.offset}:${l.length}`;
}

export class Repository {
  readonly index = new MasterIndex();
  readonly stats: WriteStats = { blobsAdded: 0, dataAdded: 0, dataAddedStored: 0 };
  private compressor: BlobCompressor;
  /** Open packs: tree (and image-map) blobs are kept apart from data blobs so that reading all trees of a snapshot reads few packs. */
  private readonly packs = new Map<'data' | 'meta', PackWriter>();
  /** Recently read metadata packs (whole), so walking trees costs one read per pack, not per tree. */
  private readonly packCache = new Map<string, Promise<Buffer>>();
  private readonly pending = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  /**
   * Buffers of data packs that were saved, for the next packs: a fresh 20 MiB
   * buffer per pack costs the kernel a page fault and a zeroed page per 4 KiB
   * (not measured apart from the rest of its round: docs/decisions.md, fifth
   * session).
   */
  private readonly spareBuffers: Buffer[] = [];
  private unindexed: IndexedPack[] = [];
  private uploadError: unknown;
  private readonly blobKeys: BlobKeys;
  /** Key of the snapshots' MACs. */
  private readonly snapshotMacKey: Buffer;
  /** Copies of blobs found bad by this session (`copyFailed`), by `copyKey`. */
  private readonly badCopies = new Map<string, { pack: string; id: string; reason: string }>();
  /** Packs holding one of them. */
  private readonly badPacks = new Set<string>();

  private constructor(
    /** The keyless store this repository is opened on. */
    readonly store: Store,
    private readonly key: MasterKey,
    /** Name of the key file that opened the repository. */
    readonly keyId: string,
    /** Told of a bad copy of a blob (`copyFailed`). */
    private readonly onWarning?: (message: string) => void,
    /** `OpenOptions.minGraceMs`. */
    private readonly minGraceMs = DEFAULT_MIN_GRACE_MS,
  ) {
    this.compressor = new BlobCompressor(store.config.compression);
    this.blobKeys = { encryption: key.encryption, id: key.id };
    this.snapshotMacKey = macKey(key, 'snapshot');
  }

  /** The store's backend (wrapped when the client is append-only). */
  get backend(): Backend {
    return this.store.backend;
  }

  /** The config, authenticated with the key when the repository was opened. */
  get config(): RepoConfig {
    return this.store.config;
  }

  /** Creates a new repository with one key for `password`. */
  static async init(backend: Backend, password: Password, opts: InitOptions = {}): Promise<Repository> {
    const key = newMasterKey();
    const packSize = opts.packSize ?? DEFAULT_PACK_SIZE;
    try {
      if (!Number.isInteger(packSize) || packSize < 1 << 16 || packSize > 1 << 30) throw new Error(`pack size ${packSize} is outside 64 KiB .. 1 GiB`);
      const config = newConfig(validateChunkerParams(opts.chunker ?? DEFAULT_CHUNKER_PARAMS), packSize, opts.compression ?? 'default', masterKeyId(key), opts.appendOnly === true);
      return await Repository.create(backend, password, config, key, opts);
    } catch (e) {
      wipeMasterKey(key);
      throw e;
    }
  }

  /**
   * Creates a new repository at `backend` with one key for `password` that
   * shares this repository's master key, chunker parameters and pack size,
   * so that `copy` moves blobs and snapshots between
   * the two without the key (docs/format.md §3.7). Its own id, compression
   * and append-only flag are its own.
   */
  async initSharingKey(backend: Backend, password: Password, opts: Pick<InitOptions, 'compression' | 'appendOnly' | 'scrypt' | 'minGraceMs'> = {}): Promise<Repository> {
    const key = masterKeyFrom(Buffer.from(this.key.encryption), Buffer.from(this.key.id), Buffer.from(this.key.chunker));
    const c = this.config;
    try {
      const config = newConfig(c.chunker, c.packSize, opts.compression ?? c.compression, masterKeyId(key), opts.appendOnly === true);
      return await Repository.create(backend, password, config, key, opts);
    } catch (e) {
      wipeMasterKey(key);
      throw e;
    }
  }

  /** Stores `config` and one key file wrapping `key` for `password` in a new repository at `backend`. */
  private static async create(backend: Backend, password: Password, config: RepoConfig, key: MasterKey, opts: Pick<InitOptions, 'scrypt' | 'minGraceMs'>): Promise<Repository> {
    const existing = await backend.stat(handleOf('config', 'config')).catch(() => undefined);
    if (existing) throw new Error(`a repository exists already at ${backend.location}`);
    await backend.create();
    const keyBytes = await wrapMasterKey(key, config.id, password, opts.scrypt ?? DEFAULT_SCRYPT_PARAMS);
    const keyId = await saveAddressed(backend, 'key', keyBytes);
    const configKey = macKey(key, 'config');
    const configBytes = encodeConfig(config, configKey);
    configKey.fill(0);
    await backend.save(handleOf('config', 'config'), configBytes);
    return new Repository(Store.created(backend, config, configBytes), key, keyId, undefined, opts.minGraceMs);
  }

  /**
   * Opens the repository of a store with a password. Throws
   * `WrongPasswordError`, or `ForgedObjectError` when the config fails its
   * MAC (`Store.open` throws `NotARepositoryError`, `UnsupportedVersionError`
   * and `CorruptObjectError` for the config itself).
   * Key files are tried in this order (docs/format.md §4.2): the preferred
   * one, then the others cheapest first, so that planted key files of a high
   * cost are reached only when the password fits no other.
   */
  static async open(store: Store, password: Password, opts: OpenOptions = {}): Promise<Repository> {
    const { backend, config, configBytes: bytes } = store;
    const names: string[] = [];
    for await (const info of backend.list('key')) names.push(info.name);
    const preferred = opts.preferKey?.(config.id);
    let damaged: Error | undefined;
    const load = async (name: string): Promise<KeyFile | undefined> => {
      const what = `key ${name}`;
      try {
        return decodeKeyFile(await loadChecked(backend, handleOf('key', name), what), what);
      } catch (e) {
        if (!(e instanceof CorruptObjectError || e instanceof NotFoundError || e instanceof UnsupportedVersionError)) throw e;
        damaged = e;
        if (e instanceof CorruptObjectError) opts.onWarning?.(`${e.message}; skipped`);
        return undefined;
      }
    };
    const opened = (key: MasterKey, name: string): Repository => {
      const configKey = macKey(key, 'config');
      try {
        authenticateConfig(bytes, configKey);
      } catch (e) {
        wipeMasterKey(key); // the repository is not opened: nothing else will
        throw e;
      } finally {
        configKey.fill(0);
      }
      return new Repository(store, key, name, opts.onWarning, opts.minGraceMs);
    };
    const attempt = async (name: string, file: KeyFile): Promise<MasterKey | undefined> => {
      const times = costTimes(file.kdf);
      if (times > 1) opts.onWarning?.(`key ${name}: scrypt ${describeScrypt(file.kdf)} costs ${times} times the default; trying it takes longer`);
      try {
        return await unwrapMasterKey(file, password, config.id, `key ${name}`);
      } catch (e) {
        if (e instanceof AuthenticationError) return undefined;
        if (!(e instanceof CorruptObjectError)) throw e;
        damaged = e;
        return undefined;
      }
    };
    if (preferred !== undefined && names.includes(preferred)) {
      const file = await load(preferred);
      const key = file && await attempt(preferred, file);
      if (key) return opened(key, preferred);
    }
    const rest: { name: string; file: KeyFile }[] = [];
    for (const name of names) {
      if (name === preferred) continue;
      const file = await load(name);
      if (file) rest.push({ name, file });
    }
    rest.sort((a, b) => costTimes(a.file.kdf) - costTimes(b.file.kdf));
    for (const { name, file } of rest) {
      const key = await attempt(name, file);
      if (key) return opened(key, name);
    }
    if (damaged) throw new Error(`${(damaged as Error).message}; no other key opens with this password`);
    throw new WrongPasswordError();
  }

  /**
   * Zeroes the master key, in this thread and in every worker thread that
   * holds a view of it, and the snapshot MAC key; blobs can no longer be
   * sealed or opened, nor snapshots authenticated. Idempotent.
   * Call it once the session's writes are flushed.
   */
  close(): void {
    wipeMasterKey(this.key);
    this.snapshotMacKey.fill(0);
  }

  /** Chooses the compression for blobs this session writes. */
  setCompression(mode: CompressionMode): void {
    this.compressor = new BlobCompressor(mode);
  }

  /** The compression blobs of this session are written with. */
  get compression(): CompressionMode {
    return this.compressor.mode;
  }

  /**
   * What a worker thread needs to seal, open, fingerprint and chunk alike.
   * Stays inside this process: handed to worker threads, never stored.
   */
  workerSecrets(): BlobKeys & { chunker: Buffer } {
    return { ...this.blobKeys, chunker: this.key.chunker };
  }

  /** A chunker with the repository's parameters and secret gear table. */
  chunker(): FastCDC {
    return new FastCDC(this.config.chunker, gearTable(this.key.chunker));
  }

  /** Keyed id of a blob's plaintext (ids of data and of metadata blobs live in separate key domains). */
  blobId(data: Uint8Array, type: BlobType = BlobType.Data): string {
    return blobIdHex(this.blobKeys, data, type);
  }

  // ---- index ----

  /**
   * Loads and merges every index file. A damaged one stops it (its
   * `CorruptObjectError`): a reader that went on would take blobs for
   * missing that are not; check and repair, which must go on, fill the
   * index through `RepoState.fill` instead.
   */
  async loadIndex(): Promise<void> {
    // Markers first: a pack marked after this is handled by the snapshot fence (docs/format.md §15).
    const pending = condemnedPacks((await this.store.loadMarkers()).ok.values());
    const files = await this.store.loadIndexFiles();
    for (const e of files.damaged.values()) throw e;
    for (const f of files.ok.values()) {
      for (const p of f.packs) {
        if (pending.has(p.pack)) this.index.addPendingPack(p);
        else this.index.addPack(p);
      }
    }
    for (const p of pending.values()) this.index.addPendingPack(p);
  }

  /**
   * Indexes packs that exist in storage but in no index (left by a backup
   * that was killed before it wrote its index), so their blobs are reused.
   * Returns how many packs it found; damaged ones are reported to `warn`.
   */
  async indexOrphanPacks(warn: (msg: string) => void): Promise<number> {
    let found = 0;
    for await (const info of this.backend.list('data')) {
      if (this.index.packs.has(info.name)) continue;
      try {
        const blobs = await this.store.readPackHeader(info.name, info.size);
        const p = { pack: info.name, blobs };
        this.index.addPack(p);
        this.unindexed.push(p);
        found++;
      } catch (e) {
        warn(`ignoring unindexed pack ${info.name}: ${(e as Error).message}`);
      }
    }
    // Indexed at once, not at the end of a long backup: see docs/format.md §15.5.
    if (found > 0) await this.writeIndex();
    return found;
  }

  // ---- writing ----

  /** True when the repository has, or is about to store, the blob. */
  hasBlob(id: string): boolean {
    return this.index.has(id) || this.pending.has(id);
  }

  /**
   * Stores a blob unless it is known already. Returns its id and whether it
   * was new. Waits when too many packs are being uploaded (back-pressure).
   * The sealing runs on the calling thread; bulk data goes through worker
   * threads and `addPrepared` instead.
   */
  async saveBlob(type: BlobType, data: Buffer, knownId?: string): Promise<{ id: string; added: boolean }> {
    const id = knownId ?? this.blobId(data, type);
    if (this.hasBlob(id)) return { id, added: false };
    return { id, added: await this.addPrepared(prepareBlob(this.blobKeys, this.compressor, type, data, id)) };
  }

  /**
   * Appends a blob sealed elsewhere (a worker thread) unless the repository
   * has it already; returns whether it was added. Waits when too many packs
   * are being uploaded (back-pressure).
   */
  async addPrepared(b: PreparedBlob): Promise<boolean> {
    if (this.uploadError) throw this.uploadError;
    if (this.hasBlob(b.id)) return false;
    this.pending.add(b.id);
    const kind = b.type === BlobType.Data ? 'data' : 'meta';
    let pack = this.packs.get(kind);
    if (!pack) {
      pack = kind === 'data' ? new PackWriter(this.config.packSize + (this.config.packSize >> 2), this.spareBuffers.pop()) : new PackWriter();
      this.packs.set(kind, pack);
    }
    pack.add(b.type, b.id, b.flags, b.rawLength, b.sealed);
    this.stats.blobsAdded++;
    this.stats.dataAdded += b.rawLength;
    this.stats.dataAddedStored += b.sealed.length;
    if (pack.length >= this.config.packSize) await this.finishPack(kind);
    return true;
  }

  private async finishPack(kind: 'data' | 'meta'): Promise<void> {
    const pack = this.packs.get(kind);
    if (!pack || pack.count === 0) return;
    this.packs.delete(kind);
    const { bytes, blobs, buffer } = pack.finish();
    while (this.uploads.size >= MAX_UPLOADS) await Promise.race(this.uploads);
    const upload = (async () => {
      const name = await saveAddressed(this.backend, 'data', bytes);
      // A backend keeps no reference to what it saved (see `Backend.save`).
      if (kind === 'data' && this.spareBuffers.length < MAX_UPLOADS) this.spareBuffers.push(buffer);
      // Locations built once serve both the index and the next index file.
      const p = { pack: name, blobs: blobs.map((b): BlobLocation => ({ ...b, pack: name })) };
      this.index.addPack(p);
      for (const b of blobs) this.pending.delete(b.id);
      this.unindexed.push(p);
      if (this.unindexed.length >= INDEX_EVERY_PACKS) await this.writeIndex();
    })().catch((e: unknown) => {
      this.uploadError ??= e;
    });
    const tracked = upload.finally(() => this.uploads.delete(tracked));
    this.uploads.add(tracked);
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    await saveAddressed(this.backend, 'index', encodeIndex({ packs, supersedes: [] }));
  }

  /** Uploads the open pack, waits for all uploads and writes the index. */
  async flush(): Promise<void> {
    await this.finishPack('data');
    await this.finishPack('meta');
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    if (this.uploadError) throw this.uploadError;
    await this.writeIndex();
  }

  // ---- reading ----

  /**
   * The copy of a blob to read: the first known copy this session has not
   * found bad. Every read checks that its plaintext hashes to its id
   * (`openBlob`): any copy may have been planted by a client that holds the
   * key (docs/format.md §15.10).
   */
  readCopy(id: string): BlobLocation | undefined {
    if (this.badCopies.size === 0 || !this.index.hasSeveralCopies(id)) return this.index.lookup(id);
    return this.index.copies(id).find((l) => !this.badCopies.has(copyKey(l)));
  }

  /**
   * Records that a copy of a blob could not be read (`reason`: its pack is
   * missing or cut short, it fails authentication or its id) and warns once
   * per copy, naming the pack. Returns the copy to try next, or undefined
   * when no copy is left: then the blob is damaged.
   */
  copyFailed(loc: BlobLocation, reason: string): BlobLocation | undefined {
    const key = copyKey(loc);
    const others = this.index.copies(loc.id).filter((l) => copyKey(l) !== key && !this.badCopies.has(copyKey(l)));
    if (!this.badCopies.has(key) && this.index.hasSeveralCopies(loc.id)) {
      // What to do about it is said with the first bad copy of each pack.
      const advice = !this.badPacks.has(loc.pack)
        ? ` (pack ${loc.pack} is damaged or was planted: "holdfast check --read-data" names its bad copies, "holdfast repair snapshots --read-data" with the password removes a planted pack)` : '';
      this.onWarning?.(`${reason}; ${others.length > 0 ? 'reading another copy' : 'no other copy of it can be read'}${advice}`);
    }
    if (!this.badCopies.has(key)) this.badCopies.set(key, { pack: loc.pack, id: loc.id, reason });
    this.badPacks.add(loc.pack);
    return others[0];
  }

  /**
   * Makes `readCopy` give a copy of the right raw length for every blob of a
   * content list whose copies disagree on it, by reading the blob (through
   * its bad copies, which are then passed over): a reader places a file's
   * chunks by their lengths before it reads them, and a planted entry met
   * first may claim any length. Reads nothing when the copies agree.
   */
  async settleLengths(content: readonly ContentEntry[]): Promise<void> {
    for (const c of content) if (typeof c === 'string' && this.index.lengthsDisagree(c)) await this.loadBlob(BlobType.Data, c);
  }

  /** Every copy `copyFailed` was told of: its pack, blob id and why it could not be read. */
  badCopiesFound(): { pack: string; id: string; reason: string }[] {
    return [...this.badCopies.values()];
  }

  /**
   * Loads, authenticates and decompresses one blob. When a copy cannot be
   * read, the others are tried (`readCopy`, `copyFailed`); the error of the
   * last copy is thrown when none can.
   */
  async loadBlob(type: BlobType, id: string): Promise<Buffer> {
    const what = type === BlobType.Tree ? 'tree' : 'blob';
    let copy = this.readCopy(id);
    if (!copy) throw new BlobNotFoundError(id, what);
    for (;;) {
      try {
        return await this.loadCopy(type, copy, what);
      } catch (e) {
        if (!(e instanceof CorruptObjectError)) throw e;
        const next = this.copyFailed(copy, e.message);
        if (!next) throw e;
        copy = next;
      }
    }
  }

  /** Reads one copy of a blob; `CorruptObjectError` when it cannot be read or is not the blob. */
  private async loadCopy(type: BlobType, loc: BlobLocation, what: string): Promise<Buffer> {
    const packWhat = `pack ${loc.pack}`;
    if (loc.type !== type) throw new CorruptObjectError(`${what} ${loc.id}`, `indexed as type ${loc.type}`);
    let sealed: Buffer;
    try {
      if (type === BlobType.Data) sealed = await this.backend.load(handleOf('data', loc.pack), { offset: loc.offset, length: loc.length });
      else {
        const pack = await this.cachedPack(loc.pack);
        if (loc.offset + loc.length > pack.length) throw new ShortReadError(handleOf('data', loc.pack), loc.offset + loc.length, pack.length);
        sealed = pack.subarray(loc.offset, loc.offset + loc.length);
      }
    } catch (e) {
      if (e instanceof NotFoundError) throw new CorruptObjectError(packWhat, `missing (needed for ${what} ${loc.id})`);
      if (e instanceof ShortReadError) throw new CorruptObjectError(packWhat, `truncated (needed for ${what} ${loc.id})`);
      throw e;
    }
    return this.openBlob(loc, sealed, `${packWhat}, ${what} ${loc.id}`);
  }

  /** Authenticates and decompresses a sealed blob read from a pack, and checks that it hashes to its id. */
  openBlob(loc: PackedBlob, sealed: Buffer, what: string): Buffer {
    return openBlob(this.blobKeys, loc, sealed, what);
  }

  /** A whole metadata pack, read once and kept while a few others are. */
  private cachedPack(pack: string): Promise<Buffer> {
    let p = this.packCache.get(pack);
    if (p) {
      this.packCache.delete(pack);
      this.packCache.set(pack, p);
      return p;
    }
    p = this.backend.load(handleOf('data', pack));
    p.catch(() => this.packCache.delete(pack));
    this.packCache.set(pack, p);
    while (this.packCache.size > PACK_CACHE_ENTRIES) this.packCache.delete(this.packCache.keys().next().value!);
    return p;
  }

  /** Stores a folder's nodes as a tree blob in the repository's encoding; returns its id. */
  async saveTree(nodes: TreeNode[]): Promise<string> {
    return (await this.saveBlob(BlobType.Tree, encodeTree(nodes))).id;
  }

  /** Loads and decodes a tree blob. */
  async loadTree(id: string): Promise<TreeNode[]> {
    return decodeTree(await this.loadBlob(BlobType.Tree, id), `tree ${id}`);
  }

  // ---- snapshots ----

  /** Writes a snapshot, with its MAC, behind the fence that keeps a concurrent prune from deleting what it references (snapshot-fence.ts). */
  async saveSnapshot(s: Snapshot): Promise<string> {
    return commitSnapshot({ store: this.store, index: this.index, commitWindowMs: commitWindowMs(this.minGraceMs) }, s.blobs, encodeSnapshot(s, this.snapshotMacKey));
  }

  /** Loads a snapshot and checks its MAC: `ForgedObjectError` when it was changed or planted in storage. */
  async loadSnapshot(id: string): Promise<Snapshot> {
    const what = `snapshot ${id}`;
    const bytes = await loadChecked(this.backend, handleOf('snapshot', id), what);
    const s = decodeSnapshot(bytes, what);
    authenticateSnapshot(bytes, this.snapshotMacKey, id);
    return s;
  }

  /**
   * Every snapshot that can be read and passes its MAC, oldest first; the
   * others (damaged, or changed or planted in storage) are in `damaged`
   * with why, so that they cannot hide or displace the others.
   */
  async listSnapshots(): Promise<SnapshotList> {
    const damaged = new Map<string, Error>();
    const ok = await loadEvery(this.backend, 'snapshot', async (name) => {
      try {
        return await this.loadSnapshot(name);
      } catch (e) {
        if (!isDamage(e)) throw e;
        damaged.set(name, e);
        return undefined;
      }
    });
    return oldestFirst({ ok, damaged });
  }

  // ---- keys ----

  async listKeys(): Promise<KeyInfo[]> {
    const out: KeyInfo[] = [];
    for await (const info of this.backend.list('key')) {
      const what = `key ${info.name}`;
      try {
        out.push({ id: info.name, file: decodeKeyFile(await loadChecked(this.backend, handleOf('key', info.name), what), what), current: info.name === this.keyId });
      } catch (e) {
        // Listed, so that a damaged or planted key file can be seen and removed.
        if (!isDamage(e)) throw e;
        out.push({ id: info.name, problem: e.message, current: false });
      }
    }
    return out.sort((a, b) => (a.file?.created ?? '\uffff').localeCompare(b.file?.created ?? '\uffff'));
  }

  /** Adds a key file wrapping the master key with another password; returns its id. */
  async addKey(password: Password, scrypt: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<string> {
    return saveAddressed(this.backend, 'key', await wrapMasterKey(this.key, this.config.id, password, scrypt));
  }

  /** Removes a key file. Refuses the last one, and the one in use unless `allowCurrent`. */
  async removeKey(id: string, allowCurrent = false): Promise<void> {
    const keys = await this.listKeys();
    if (!keys.some((k) => k.id === id)) throw new Error(`no key ${id}`);
    if (keys.length === 1) throw new Error('refusing to remove the only key: the repository could never be opened again');
    if (id === this.keyId && !allowCurrent) throw new Error('refusing to remove the key in use; use "key passwd" to change its password');
    await this.backend.remove(handleOf('key', id));
  }
}

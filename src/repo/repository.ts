/**
 * A repository ("disk safe") opened with its key on a keyless `Store`: the
 * authenticated config, the master key, the merged index. By itself it only
 * reads (blobs, trees, snapshots) and manages key files; writes go through
 * write sessions it opens (`newWriter`, repository-writer.ts), several at
 * once if need be, which share its index.
 *
 *   store = await Store.open(backend)
 *   repo  = await Repository.open(store, password); await repo.loadIndex()
 *   w     = repo.newWriter({ compression, signal })
 *   w.saveBlob / w.addPrepared / w.saveTree … w.flush(); w.saveSnapshot(s)
 *   repo.close()                      zeroes the keys; idempotent
 *
 * Every method that reads or writes storage takes `{ signal }` (the
 * options' `signal` for `init` and `open`) and passes it to each backend
 * call: an abort ends it with the signal's reason.
 */
import { NotFoundError, ShortReadError, type Backend, type OperationOptions } from '../storage/backend.js';
import { abortable } from '../core/abortable.js';
import { AuthenticationError, macKey, masterKeyFrom, masterKeyId, newMasterKey, describeScrypt, DEFAULT_SCRYPT_PARAMS, wipeMasterKey, type MasterKey, type ScryptParams } from '../core/crypto.js';
import type { CompressionMode } from '../core/compress.js';
import { DEFAULT_CHUNKER_PARAMS, FastCDC, gearTable, validateChunkerParams, type ChunkerParams } from '../core/chunker.js';
import { authenticateConfig, encodeConfig, newConfig, type RepoConfig } from './config.js';
import { costTimes, decodeKeyFile, unwrapMasterKey, wrapMasterKey, type KeyDerivation, type KeyFile, type Password } from './key-file.js';
import { BlobType, type PackedBlob } from './pack.js';
import { blobIdHex, openBlob, type BlobKeys } from './blob-codec.js';
import { MasterIndex, type BlobLocation } from './index-file.js';
import { authenticateSnapshot, decodeSnapshot, decodeSnapshotHeader, encodeSnapshot, snapshotHeaderBytes, type Snapshot } from './snapshot.js';
import { decodeHeaderRecords, encodeHeaderRecords, type SnapshotHeaderStore } from './snapshot-headers.js';
import { commitWindowMs, condemnedPacks, DEFAULT_MIN_GRACE_MS, type DeletionMarker } from './deletion-marker.js';
import { RepositoryWriter, type WriterOptions } from './repository-writer.js';
import { handleOf, io, loadBounded, loadChecked, loadEvery, saveAddressed } from './objects.js';
import { isDamage, oldestFirst, Store, type Loaded, type SnapshotList } from './store.js';
import { decodeTree, type ContentEntry, type TreeNode } from './tree.js';
import { BlobNotFoundError, CorruptObjectError, UnsupportedVersionError, WrongPasswordError } from './errors.js';

/** Default pack size: 16 MiB (see docs/decisions.md). */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
const PACK_CACHE_ENTRIES = 8;

export interface InitOptions extends OperationOptions {
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

/** How `listSnapshots` and `loadSnapshot` read snapshots. */
export interface ListSnapshotsOptions extends OperationOptions {
  /** false: headers only, from memory where this repository authenticated the snapshot before (`DecodeSnapshotOptions.blobList`). */
  readonly blobList?: boolean;
}

export interface OpenOptions extends OperationOptions {
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
  /**
   * Load the index as well (`loadIndex`), while the key is derived: index
   * files need no key, and scrypt leaves this thread idle.
   */
  readonly loadIndex?: boolean;
  /** A key derivation started before the open: used for the key file and password it was started for. */
  readonly derivation?: KeyDerivation;
  /**
   * Where this client keeps the headers of the snapshots it authenticated
   * between its runs (snapshot-headers.ts): a listing for headers then
   * reads only the snapshots it has not authenticated before.
   */
  readonly headerStore?: SnapshotHeaderStore;
}

/** No pack marked for deletion: index files read by a refresh whose markers did not change are added as they were before. */
const NONE_PENDING: ReadonlyMap<string, unknown> = new Map();

/** What the index is built from: the markers (read first, docs/format.md §15) and the index files. */
interface IndexSources {
  readonly markers: Loaded<DeletionMarker>;
  /** Checked, not decoded (`MasterIndex.addIndexFile`). */
  readonly files: Loaded<Buffer>;
}

async function loadIndexSources(store: Store, opts: OperationOptions): Promise<IndexSources> {
  const markers = await store.loadMarkers(opts);
  return { markers, files: await store.loadCheckedIndexFiles(opts) };
}

/** An index built from its sources, which needs no key: `Repository.open` builds it while the key is derived. */
interface BuiltIndex {
  readonly index: MasterIndex;
  /** The index files it holds. */
  readonly files: readonly string[];
  /** The index files left out, and why. */
  readonly damaged: ReadonlyMap<string, Error>;
  /** The deletion markers it was built with. */
  readonly markers: ReadonlySet<string>;
}

/** Adds the index files of `sources` to `index`, packs the markers condemn as pending. */
function buildIndex({ markers, files }: IndexSources, index = new MasterIndex()): BuiltIndex {
  // Markers first: a pack marked after this is handled by the snapshot fence (docs/format.md §15).
  const pending = condemnedPacks(markers.ok.values());
  index.addIndexFiles([...files.ok.values()], pending);
  for (const p of pending.values()) index.addPendingPack(p);
  return { index, files: [...files.ok.keys()], damaged: files.damaged, markers: new Set([...markers.ok.keys(), ...markers.damaged.keys()]) };
}

/** One key file, as `key list` shows it. */
export interface KeyInfo {
  readonly id: string;
  /** Absent when the file is damaged or refused (`problem` says why). */
  readonly file?: KeyFile;
  readonly problem?: string;
  readonly current: boolean;
}

/** A read of a whole metadata pack, shared by the callers who need it while it is cached. */
interface CachedRead {
  readonly bytes: Promise<Buffer>;
  /** The signal of the caller who started it. */
  readonly signal: AbortSignal | undefined;
}

/** What tells one copy of a blob from another. */
function copyKey(l: BlobLocation): string {
  return `${l.pack}:${l.offset}:${l.length}`;
}

/** An open repository; see the module comment. */
export class Repository {
  /** Every blob's location, as loaded (`loadIndex`, `refreshIndex`) and as this repository's writers store packs. */
  private current = new MasterIndex();
  /** Index files the index holds: loaded, or written by this repository's writers (`refreshIndex` skips them). */
  private indexFiles = new Set<string>();
  /** Deletion markers the index was built with. */
  private markerNames = new Set<string>();
  /** Index files left out of the index, unusable (`loadIndex`); an adoption supersedes them (`WriterTarget.unusableIndexFiles`). */
  private readonly unusableIndexFiles = new Set<string>();
  /** Recently read metadata packs (whole), so walking trees costs one read per pack, not per tree. */
  private readonly packCache = new Map<string, CachedRead>();
  private readonly blobKeys: BlobKeys;
  /** Key of the snapshots' MACs. */
  private readonly snapshotMacKey: Buffer;
  /** Copies of blobs found bad by this session (`copyFailed`), by `copyKey`. */
  private readonly badCopies = new Map<string, { pack: string; id: string; reason: string }>();
  /** Packs holding one of them. */
  private readonly badPacks = new Set<string>();
  /**
   * Snapshots this repository authenticated, by id: those the last listing
   * found (`listSnapshots`) and those its writers stored since. A snapshot's
   * name is the SHA-256 of its bytes and never holds other bytes, so while
   * a listing has the name, the snapshot is the one authenticated here.
   */
  private snapshots = new Map<string, Snapshot>();
  /** Key of the header records (snapshot-headers.ts). */
  private readonly headerKey: Buffer;
  /** The header bytes of the snapshots authenticated here or by this client before (`headerStore`), by id; loaded with the first listing. */
  private headerBytes: Map<string, Buffer> | undefined;

  private constructor(
    /** The keyless store this repository is opened on. */
    readonly store: Store,
    private readonly key: MasterKey,
    /** Name of the key file that opened the repository. */
    readonly keyId: string,
    /** Its key derivation: the scrypt parameters and salt (a client's hint for its next open, src/cli/key-hint.ts). */
    readonly kdf: KeyFile['kdf'],
    /** Told of a bad copy of a blob (`copyFailed`). */
    private readonly onWarning?: (message: string) => void,
    /** `OpenOptions.minGraceMs`. */
    private readonly minGraceMs = DEFAULT_MIN_GRACE_MS,
    /** `OpenOptions.headerStore`. */
    private readonly headerStore?: SnapshotHeaderStore,
  ) {
    this.blobKeys = { encryption: key.encryption, id: key.id };
    this.snapshotMacKey = macKey(key, 'snapshot');
    this.headerKey = macKey(key, 'snapshot-header');
  }

  /** Every blob's location, as loaded (`loadIndex`, `refreshIndex`) and as this repository's writers store packs. */
  get index(): MasterIndex {
    return this.current;
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
  async initSharingKey(backend: Backend, password: Password, opts: Pick<InitOptions, 'compression' | 'appendOnly' | 'scrypt' | 'minGraceMs' | 'signal'> = {}): Promise<Repository> {
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
  private static async create(backend: Backend, password: Password, config: RepoConfig, key: MasterKey, opts: Pick<InitOptions, 'scrypt' | 'minGraceMs' | 'signal'>): Promise<Repository> {
    const existing = await backend.stat(handleOf('config', 'config'), io(opts)).catch(() => undefined);
    opts.signal?.throwIfAborted(); // the stat's failure is passed over, an abort is not
    if (existing) throw new Error(`a repository exists already at ${backend.location}`);
    await backend.create(io(opts));
    const keyBytes = await wrapMasterKey(key, config.id, password, opts.scrypt ?? DEFAULT_SCRYPT_PARAMS);
    opts.signal?.throwIfAborted();
    const keyId = await saveAddressed(backend, 'key', keyBytes, io(opts));
    const configKey = macKey(key, 'config');
    const configBytes = encodeConfig(config, configKey);
    configKey.fill(0);
    await backend.save(handleOf('config', 'config'), configBytes, io(opts));
    return new Repository(Store.created(backend, config, configBytes), key, keyId, decodeKeyFile(keyBytes, `key ${keyId}`).kdf, undefined, opts.minGraceMs);
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
    // Read and built while scrypt runs on the thread pool (this thread is idle meanwhile).
    const built = opts.loadIndex === true ? loadIndexSources(store, io(opts)).then((s) => buildIndex(s)) : undefined;
    built?.catch(() => undefined); // awaited once the key is known: a wrong password is said first
    const repo = await Repository.unlock(store, password, opts);
    if (built) {
      try {
        repo.useIndex(await built);
      } catch (e) {
        repo.close();
        throw e;
      }
    }
    return repo;
  }

  /** `open` without the index: finds the key file the password opens. */
  private static async unlock(store: Store, password: Password, opts: OpenOptions): Promise<Repository> {
    const { backend, config, configBytes: bytes } = store;
    const names: string[] = [];
    for await (const info of backend.list('key', io(opts))) names.push(info.name);
    const preferred = opts.preferKey?.(config.id);
    let damaged: Error | undefined;
    const load = async (name: string): Promise<KeyFile | undefined> => {
      const what = `key ${name}`;
      try {
        return decodeKeyFile(await loadChecked(backend, handleOf('key', name), what, opts), what);
      } catch (e) {
        if (!(e instanceof CorruptObjectError || e instanceof NotFoundError || e instanceof UnsupportedVersionError)) throw e;
        damaged = e;
        if (e instanceof CorruptObjectError) opts.onWarning?.(`${e.message}; skipped`);
        return undefined;
      }
    };
    const opened = (key: MasterKey, name: string, kdf: KeyFile['kdf']): Repository => {
      const configKey = macKey(key, 'config');
      try {
        authenticateConfig(bytes, configKey);
      } catch (e) {
        wipeMasterKey(key); // the repository is not opened: nothing else will
        throw e;
      } finally {
        configKey.fill(0);
      }
      return new Repository(store, key, name, kdf, opts.onWarning, opts.minGraceMs, opts.headerStore);
    };
    const attempt = async (name: string, file: KeyFile): Promise<MasterKey | undefined> => {
      opts.signal?.throwIfAborted(); // before a key derivation, which cannot be stopped once started
      const times = costTimes(file.kdf);
      if (times > 1) opts.onWarning?.(`key ${name}: scrypt ${describeScrypt(file.kdf)} costs ${times} times the default; trying it takes longer`);
      try {
        return await unwrapMasterKey(file, password, config.id, `key ${name}`, opts.derivation);
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
      if (key) return opened(key, preferred, file.kdf);
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
      if (key) return opened(key, name, file.kdf);
    }
    if (damaged) throw new Error(`${(damaged as Error).message}; no other key opens with this password`);
    throw new WrongPasswordError();
  }

  /**
   * Zeroes the master key, in this thread and in every worker thread that
   * holds a view of it, and the snapshot MAC key; blobs can no longer be
   * sealed or opened, nor snapshots authenticated. Idempotent. Call it once
   * the writers are flushed, however the work ended.
   */
  close(): void {
    wipeMasterKey(this.key);
    this.snapshotMacKey.fill(0);
    this.headerKey.fill(0);
  }

  /**
   * Opens a write session (repository-writer.ts): its own packs, uploads,
   * statistics and errors; the index is this repository's, shared with any
   * other writer open at the same time.
   */
  newWriter(opts: WriterOptions = {}): RepositoryWriter {
    return new RepositoryWriter({
      store: this.store,
      index: this.index,
      blobKeys: this.blobKeys,
      sealSnapshot: (s) => encodeSnapshot(s, this.snapshotMacKey),
      commitWindowMs: commitWindowMs(this.minGraceMs),
      indexSaved: (name) => this.indexFiles.add(name),
      snapshotSaved: (id, bytes) => this.keepSaved(id, bytes),
      unusableIndexFiles: this.unusableIndexFiles,
    }, opts);
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
   * Loads and merges every index file. One this reader cannot use (damaged
   * in storage, junk a client added, a version it does not read) is left
   * out with a warning (`onWarning`), as a copy of a blob that cannot be
   * read is (docs/format.md §4.4, "An index file a reader cannot use"): a
   * backup then stores its blobs again, or adopts its packs, a restore
   * reports the files it cannot find. Only readers go on: prune refuses
   * such a repository and check reports the file.
   */
  async loadIndex(opts: OperationOptions = {}): Promise<void> {
    this.fillIndex(await loadIndexSources(this.store, opts));
  }

  /**
   * Brings the index up to date for a repository kept open between jobs (the
   * agent's), cheaply: when every index file it holds is still there and the
   * deletion markers are the same, only the index files added since are
   * read; when a prune removed an index file or marked packs, the index is
   * built again from everything (as `loadIndex` on a fresh open), so that no
   * writer deduplicates against a pack that is going or gone. Call it while
   * no writer is open. Returns how many index files it read and whether it
   * built the index again.
   */
  async refreshIndex(opts: OperationOptions = {}): Promise<{ read: number; rebuilt: boolean }> {
    const markers = await this.store.list('deletion', opts);
    const names = await this.store.list('index', opts);
    const sameMarkers = markers.size === this.markerNames.size && [...markers.keys()].every((n) => this.markerNames.has(n));
    if (!sameMarkers || [...this.indexFiles].some((n) => !names.has(n))) {
      const sources = await loadIndexSources(this.store, opts);
      this.current = new MasterIndex();
      this.indexFiles = new Set();
      this.unusableIndexFiles.clear();
      this.fillIndex(sources);
      return { read: sources.files.ok.size, rebuilt: true };
    }
    let read = 0;
    for (const name of names.keys()) {
      if (this.indexFiles.has(name)) continue;
      let f;
      try {
        f = await this.store.loadIndexFile(name, opts);
      } catch (e) {
        if (!isDamage(e)) throw e;
        this.unusableIndexFile(name, e);
        continue;
      }
      if (f === undefined) continue; // removed since the listing: a prune's, seen at the next refresh
      this.current.addIndexFile(f, NONE_PENDING);
      this.indexFiles.add(name);
      read++;
    }
    return { read, rebuilt: false };
  }

  private fillIndex(sources: IndexSources): void {
    this.useIndex(buildIndex(sources, this.current));
  }

  /** Takes `built` as the index (built on top of the current one, or in place of an empty one). */
  private useIndex(built: BuiltIndex): void {
    this.current = built.index;
    for (const [name, e] of built.damaged) this.unusableIndexFile(name, e);
    for (const name of built.files) this.indexFiles.add(name);
    this.markerNames = new Set(built.markers);
  }

  /** Tells of an index file left out of the index (`loadIndex`): what it may cost, and what to run. */
  private unusableIndexFile(name: string, e: Error): void {
    this.unusableIndexFiles.add(name);
    this.onWarning?.(`${e.message}; left out of the index (blobs only it lists are stored again by a backup, or not found by a restore): `
      + '"holdfast check" reports it, "holdfast repair index" rebuilds the index from the packs');
  }

  // ---- reading ----

  /**
   * The copy of a blob to read: the first known copy this session has not
   * found bad, one in a pack where no copy was found bad before any other
   * (a planted pack fails every read of it: many planted copies cost one
   * failed read per pack, not per blob). Every read checks that its
   * plaintext hashes to its id (`openBlob`): any copy may have been planted
   * by a client that holds the key (docs/format.md §15.10), so a copy in a
   * suspect pack is still tried when no other is left.
   */
  readCopy(id: string): BlobLocation | undefined {
    if (this.badCopies.size === 0 || !this.index.hasSeveralCopies(id)) return this.index.lookup(id);
    return this.preferred(this.index.copies(id).filter((l) => !this.badCopies.has(copyKey(l))));
  }

  /** The first of `copies` outside the packs found bad, else the first. */
  private preferred(copies: readonly BlobLocation[]): BlobLocation | undefined {
    return copies.find((l) => !this.badPacks.has(l.pack)) ?? copies[0];
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
    return this.preferred(others);
  }

  /**
   * Makes `readCopy` give a copy of the right raw length for every blob of a
   * content list whose copies disagree on it, by reading the blob (through
   * its bad copies, which are then passed over): a reader places a file's
   * chunks by their lengths before it reads them, and a planted entry met
   * first may claim any length. Reads nothing when the copies agree.
   */
  async settleLengths(content: readonly ContentEntry[], opts: OperationOptions = {}): Promise<void> {
    for (const c of content) if (typeof c === 'string' && this.index.lengthsDisagree(c)) await this.loadBlob(BlobType.Data, c, opts);
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
  async loadBlob(type: BlobType, id: string, opts: OperationOptions = {}): Promise<Buffer> {
    const what = type === BlobType.Tree ? 'tree' : 'blob';
    let copy = this.readCopy(id);
    if (!copy) throw new BlobNotFoundError(id, what);
    for (;;) {
      try {
        return await this.loadCopy(type, copy, what, opts);
      } catch (e) {
        if (!(e instanceof CorruptObjectError)) throw e;
        const next = this.copyFailed(copy, e.message);
        if (!next) throw e;
        copy = next;
      }
    }
  }

  /** Reads one copy of a blob; `CorruptObjectError` when it cannot be read or is not the blob. */
  private async loadCopy(type: BlobType, loc: BlobLocation, what: string, opts: OperationOptions): Promise<Buffer> {
    const packWhat = `pack ${loc.pack}`;
    if (loc.type !== type) throw new CorruptObjectError(`${what} ${loc.id}`, `indexed as type ${loc.type}`);
    let sealed: Buffer;
    try {
      if (type === BlobType.Data) sealed = await this.backend.load(handleOf('data', loc.pack), { ...io(opts), offset: loc.offset, length: loc.length });
      else {
        const pack = await this.cachedPack(loc.pack, opts.signal);
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
  private cachedRead(pack: string, signal: AbortSignal | undefined): CachedRead {
    const r = this.packCache.get(pack);
    if (r) {
      this.packCache.delete(pack);
      this.packCache.set(pack, r);
      return r;
    }
    const read: CachedRead = { bytes: loadBounded(this.backend, handleOf('data', pack), `pack ${pack}`, signal ? { signal } : {}), signal };
    read.bytes.catch(() => {
      if (this.packCache.get(pack) === read) this.packCache.delete(pack);
    });
    this.packCache.set(pack, read);
    while (this.packCache.size > PACK_CACHE_ENTRIES) this.packCache.delete(this.packCache.keys().next().value!);
    return read;
  }

  /**
   * A whole metadata pack through the cache. The read carries the signal of
   * the caller who started it; a caller who joined it waits no longer than
   * its own signal allows, and reads again when the first caller's abort
   * ended the read (the failed read has left the cache by then).
   */
  private async cachedPack(pack: string, signal: AbortSignal | undefined): Promise<Buffer> {
    for (;;) {
      const read = this.cachedRead(pack, signal);
      try {
        return await abortable(read.bytes, signal);
      } catch (e) {
        if (signal?.aborted || read.signal === signal || read.signal?.aborted !== true) throw e;
      }
    }
  }

  /** Loads and decodes a tree blob. */
  async loadTree(id: string, opts: OperationOptions = {}): Promise<TreeNode[]> {
    return decodeTree(await this.loadBlob(BlobType.Tree, id, opts), `tree ${id}`);
  }

  // ---- snapshots ----

  /**
   * Loads a snapshot and checks its MAC: `ForgedObjectError` when it was
   * changed or planted in storage. `blobList: false`: its header alone
   * (`DecodeSnapshotOptions`).
   */
  async loadSnapshot(id: string, opts: ListSnapshotsOptions = {}): Promise<Snapshot> {
    return (await this.readSnapshot(id, opts)).snapshot;
  }

  /** A snapshot loaded, decoded and authenticated: its header (what memory keeps), its header bytes (what the records keep), and what `opts` asks for. */
  private async readSnapshot(id: string, opts: ListSnapshotsOptions): Promise<{ header: Snapshot; snapshot: Snapshot; headerBytes: Buffer }> {
    const what = `snapshot ${id}`;
    const bytes = await loadChecked(this.backend, handleOf('snapshot', id), what, opts);
    const header = decodeSnapshot(bytes, what, { blobList: false });
    authenticateSnapshot(bytes, this.snapshotMacKey, id);
    return { header, snapshot: opts.blobList === false ? header : decodeSnapshot(bytes, what), headerBytes: snapshotHeaderBytes(bytes) };
  }

  /**
   * Keeps the header of a snapshot a writer of this repository stored, as
   * the next listing would: one that does not decode (a caller's garbage
   * summary) is not kept, and the listing reads and reports it like any
   * other damaged snapshot.
   */
  private async keepSaved(id: string, bytes: Buffer): Promise<void> {
    let s: Snapshot;
    try {
      s = decodeSnapshot(bytes, `snapshot ${id}`, { blobList: false });
    } catch {
      return;
    }
    this.snapshots.set(id, s);
    // And in the client's records, once it has read them: its next run need not read this snapshot either.
    const recorded = this.headerBytes;
    if (recorded === undefined) return;
    recorded.set(id, snapshotHeaderBytes(bytes));
    await this.saveRecords(recorded);
  }

  /**
   * Every snapshot that can be read and passes its MAC, oldest first; the
   * others (damaged, or changed or planted in storage) are in `damaged`
   * with why, so that they cannot hide or displace the others.
   *
   * Storage is listed every time. With `blobList: false` only a name this
   * repository has not authenticated yet is loaded (a repository kept open,
   * the agent's, loads each snapshot once) and the snapshots are their
   * headers (from the client's header records, `OpenOptions.headerStore`,
   * where they hold one); otherwise every snapshot is loaded whole. What failed is not
   * kept, and is read and reported again by the next listing; a name the
   * listing no longer has is forgotten, so a removed snapshot never comes
   * back from memory. Memory: the headers of the listed snapshots (about a
   * kilobyte each), not their blob lists (32 bytes a blob: a year of hourly
   * snapshots of the Linux tree held 1.8 GB of them).
   */
  async listSnapshots(opts: ListSnapshotsOptions = {}): Promise<SnapshotList> {
    const damaged = new Map<string, Error>();
    const known = this.snapshots;
    const kept = new Map<string, Snapshot>();
    const recorded = await this.recordedHeaders();
    let recordsChanged = false;
    const ok = await loadEvery(this.backend, 'snapshot', async (name) => {
      const held = known.get(name);
      if (held !== undefined && opts.blobList === false) {
        kept.set(name, held);
        return held;
      }
      const bytes = opts.blobList === false ? recorded?.get(name) : undefined;
      if (bytes !== undefined) {
        try {
          const header = decodeSnapshotHeader(bytes, `snapshot ${name}`);
          kept.set(name, header);
          return header;
        } catch {
          // A record this holdfast does not read (authenticated, so its own, of another version): the snapshot is read.
        }
      }
      try {
        const { header, snapshot, headerBytes } = await this.readSnapshot(name, opts);
        kept.set(name, header);
        if (recorded && !recorded.get(name)?.equals(headerBytes)) {
          recorded.set(name, headerBytes);
          recordsChanged = true;
        }
        return snapshot;
      } catch (e) {
        if (!isDamage(e)) throw e;
        damaged.set(name, e);
        return undefined;
      }
    }, opts);
    this.snapshots = kept;
    if (recorded) {
      // Records of names storage no longer lists, or that failed this time, go.
      for (const name of recorded.keys()) {
        if (kept.has(name)) continue;
        recorded.delete(name);
        recordsChanged = true;
      }
      if (recordsChanged) await this.saveRecords(recorded);
    }
    return oldestFirst({ ok, damaged });
  }

  /**
   * Forgets what this repository and the client's records hold of snapshot
   * `id` (its name found holding other bytes than it authenticated): the
   * next listing reads it.
   */
  async forgetSnapshot(id: string): Promise<void> {
    this.snapshots.delete(id);
    if (this.headerBytes?.delete(id)) await this.saveRecords(this.headerBytes);
  }

  /** Replaces the client's header records; one not written costs its next run a read, not a result. */
  private async saveRecords(recorded: ReadonlyMap<string, Buffer>): Promise<void> {
    await this.headerStore!.save(this.config.id, encodeHeaderRecords(this.config.id, recorded, this.headerKey)).catch(() => undefined);
  }

  /** The header records of this client (`OpenOptions.headerStore`), if their MAC holds, loaded once; undefined without a store. */
  private async recordedHeaders(): Promise<Map<string, Buffer> | undefined> {
    if (!this.headerStore) return undefined;
    if (this.headerBytes === undefined) {
      const records = await this.headerStore.load(this.config.id);
      this.headerBytes = records === undefined ? new Map() : decodeHeaderRecords(this.config.id, records, this.headerKey);
    }
    return this.headerBytes;
  }

  // ---- keys ----

  /** Every key file, oldest first; damaged or planted ones with their `problem`. */
  async listKeys(opts: OperationOptions = {}): Promise<KeyInfo[]> {
    const out: KeyInfo[] = [];
    for await (const info of this.backend.list('key', io(opts))) {
      const what = `key ${info.name}`;
      try {
        out.push({ id: info.name, file: decodeKeyFile(await loadChecked(this.backend, handleOf('key', info.name), what, opts), what), current: info.name === this.keyId });
      } catch (e) {
        // Listed, so that a damaged or planted key file can be seen and removed.
        if (!isDamage(e)) throw e;
        out.push({ id: info.name, problem: e.message, current: false });
      }
    }
    return out.sort((a, b) => (a.file?.created ?? '\uffff').localeCompare(b.file?.created ?? '\uffff'));
  }

  /** Adds a key file wrapping the master key with another password; returns its id. */
  async addKey(password: Password, scrypt: ScryptParams = DEFAULT_SCRYPT_PARAMS, opts: OperationOptions = {}): Promise<string> {
    const bytes = await wrapMasterKey(this.key, this.config.id, password, scrypt);
    return saveAddressed(this.backend, 'key', bytes, io(opts));
  }

  /** Removes a key file. Refuses the last one, and the one in use unless `allowCurrent`. */
  async removeKey(id: string, allowCurrent = false, opts: OperationOptions = {}): Promise<void> {
    const keys = await this.listKeys(opts);
    if (!keys.some((k) => k.id === id)) throw new Error(`no key ${id}`);
    if (keys.length === 1) throw new Error('refusing to remove the only key: the repository could never be opened again');
    if (id === this.keyId && !allowCurrent) throw new Error('refusing to remove the key in use; use "key passwd" to change its password');
    await this.backend.remove(handleOf('key', id), io(opts));
  }
}

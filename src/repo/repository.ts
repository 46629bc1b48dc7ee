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
import { AlreadyExistsError, NotFoundError, ShortReadError, type Backend, type Handle } from '../storage/backend.js';
import { AuthenticationError, blobId, newMasterKey, open, seal, sha256, defaultScryptParams, type MasterKey } from '../core/crypto.js';
import { BlobCompressor, decompress, type CompressionMode } from '../core/compress.js';
import { DEFAULT_CHUNKER_PARAMS, FastCDC, gearTable, type ChunkerParams } from '../core/chunker.js';
import { idHex } from '../core/ids.js';
import { decodeConfig, encodeConfig, newConfig, type RepoConfig } from './config.js';
import { decodeKeyFile, unwrapMasterKey, wrapMasterKey, type KeyFile } from './key-file.js';
import { BlobType, FLAG_COMPRESSED, PACK_TRAILER_BYTES, PackWriter, blobAad, parsePackHeader, parsePackTrailer, type PackedBlob } from './pack.js';
import { MasterIndex, decodeIndex, encodeIndex, type IndexedPack } from './index-file.js';
import { decodeSnapshot, encodeSnapshot, type Snapshot } from './snapshot.js';
import { decodeTree, type TreeNode } from './tree.js';
import { BlobNotFoundError, CorruptObjectError, NotARepositoryError, UnsupportedVersionError, WrongPasswordError } from './errors.js';

/** Default pack size: 16 MiB (see docs/decisions.md). */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
const MAX_UPLOADS = 2;
const INDEX_EVERY_PACKS = 64;

export interface InitOptions {
  readonly compression?: CompressionMode;
  readonly chunker?: ChunkerParams;
  readonly packSize?: number;
}

/** Statistics of what this session wrote. */
export interface WriteStats {
  blobsAdded: number;
  dataAdded: number;
  dataAddedStored: number;
}

/** One key file, as `key list` shows it. */
export interface KeyInfo {
  readonly id: string;
  readonly file: KeyFile;
  readonly current: boolean;
}

const handle = (type: Handle['type'], name: string): Handle => ({ type, name });

/** Loads an object and checks its name is the SHA-256 of its bytes. */
async function loadChecked(backend: Backend, h: Handle, what: string): Promise<Buffer> {
  const bytes = await backend.load(h);
  if (sha256(bytes).toString('hex') !== h.name) throw new CorruptObjectError(what, 'checksum of stored bytes does not match its name');
  return bytes;
}

/** Saves a content-addressed object under the SHA-256 of its bytes. */
async function saveAddressed(backend: Backend, type: Handle['type'], bytes: Buffer): Promise<string> {
  const name = sha256(bytes).toString('hex');
  try {
    await backend.save(handle(type, name), bytes);
  } catch (e) {
    if (!(e instanceof AlreadyExistsError)) throw e;
  }
  return name;
}

async function readConfig(backend: Backend): Promise<RepoConfig> {
  try {
    return decodeConfig(await backend.load(handle('config', 'config')));
  } catch (e) {
    if (e instanceof NotFoundError) throw new NotARepositoryError(backend.location);
    throw e;
  }
}

export class Repository {
  readonly index = new MasterIndex();
  readonly stats: WriteStats = { blobsAdded: 0, dataAdded: 0, dataAddedStored: 0 };
  private compressor: BlobCompressor;
  private pack = new PackWriter();
  private readonly pending = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  private unindexed: IndexedPack[] = [];
  private uploadError: unknown;

  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
    private readonly key: MasterKey,
    /** Name of the key file that opened the repository. */
    readonly keyId: string,
  ) {
    this.compressor = new BlobCompressor(config.compression);
  }

  /** Creates a new repository with one key for `password`. */
  static async init(backend: Backend, password: string, opts: InitOptions = {}): Promise<Repository> {
    const existing = await backend.stat(handle('config', 'config')).catch(() => undefined);
    if (existing) throw new Error(`a repository exists already at ${backend.location}`);
    await backend.create();
    const config = newConfig(opts.chunker ?? DEFAULT_CHUNKER_PARAMS, opts.packSize ?? DEFAULT_PACK_SIZE, opts.compression ?? 'default');
    const key = newMasterKey();
    const keyBytes = await wrapMasterKey(key, config.id, password, defaultScryptParams());
    const keyId = await saveAddressed(backend, 'key', keyBytes);
    await backend.save(handle('config', 'config'), encodeConfig(config));
    return new Repository(backend, config, key, keyId);
  }

  /**
   * Opens a repository with a password. Throws `NotARepositoryError`,
   * `UnsupportedVersionError`, `CorruptObjectError` or `WrongPasswordError`.
   */
  static async open(backend: Backend, password: string): Promise<Repository> {
    const config = await readConfig(backend);
    let damaged: Error | undefined;
    for await (const info of backend.list('key')) {
      const what = `key ${info.name}`;
      try {
        const file = decodeKeyFile(await loadChecked(backend, handle('key', info.name), what), what);
        const key = await unwrapMasterKey(file, password, config.id, what);
        return new Repository(backend, config, key, info.name);
      } catch (e) {
        if (e instanceof AuthenticationError) continue;
        if (e instanceof CorruptObjectError || e instanceof NotFoundError || e instanceof UnsupportedVersionError) {
          damaged = e;
          continue;
        }
        throw e;
      }
    }
    if (damaged) throw new Error(`${damaged.message}; no other key opens with this password`);
    throw new WrongPasswordError();
  }

  /** Reads the config alone, without a password (for keyless operations). */
  static readConfig(backend: Backend): Promise<RepoConfig> {
    return readConfig(backend);
  }

  /** Chooses the compression for blobs this session writes. */
  setCompression(mode: CompressionMode): void {
    this.compressor = new BlobCompressor(mode);
  }

  /** A chunker with the repository's parameters and secret gear table. */
  chunker(): FastCDC {
    return new FastCDC(this.config.chunker, gearTable(this.key.chunker));
  }

  /** Keyed id of a blob's plaintext. */
  blobId(data: Uint8Array): string {
    return idHex(blobId(this.key.id, data));
  }

  // ---- index ----

  /** Loads and merges every index file. */
  async loadIndex(): Promise<void> {
    for await (const info of this.backend.list('index')) {
      const what = `index ${info.name}`;
      const f = decodeIndex(await loadChecked(this.backend, handle('index', info.name), what), what);
      for (const p of f.packs) this.index.addPack(p);
    }
  }

  /** Reads the header of one pack, without the key. */
  async readPackHeader(pack: string, size?: number): Promise<PackedBlob[]> {
    const what = `pack ${pack}`;
    const h = handle('data', pack);
    const packSize = size ?? (await this.backend.stat(h))?.size;
    if (packSize === undefined) throw new CorruptObjectError(what, 'missing');
    if (packSize < PACK_TRAILER_BYTES) throw new CorruptObjectError(what, 'truncated');
    const trailer = await this.backend.load(h, packSize - PACK_TRAILER_BYTES, PACK_TRAILER_BYTES);
    const headerLength = parsePackTrailer(trailer, packSize, what);
    const header = await this.backend.load(h, packSize - PACK_TRAILER_BYTES - headerLength, headerLength);
    return parsePackHeader(header, packSize - PACK_TRAILER_BYTES - headerLength, what);
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
        const blobs = await this.readPackHeader(info.name, info.size);
        const p = { pack: info.name, blobs };
        this.index.addPack(p);
        this.unindexed.push(p);
        found++;
      } catch (e) {
        warn(`ignoring unindexed pack ${info.name}: ${(e as Error).message}`);
      }
    }
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
   */
  async saveBlob(type: BlobType, data: Buffer, knownId?: string): Promise<{ id: string; added: boolean }> {
    if (this.uploadError) throw this.uploadError;
    const id = knownId ?? this.blobId(data);
    if (this.hasBlob(id)) return { id, added: false };
    this.pending.add(id);
    const compressed = this.compressor.compress(data);
    const flags = compressed ? FLAG_COMPRESSED : 0;
    const sealed = seal(this.key.encryption, compressed ?? data, blobAad(type, flags, data.length, id));
    this.pack.add(type, id, flags, data.length, sealed);
    this.stats.blobsAdded++;
    this.stats.dataAdded += data.length;
    this.stats.dataAddedStored += sealed.length;
    if (this.pack.length >= this.config.packSize) await this.finishPack();
    return { id, added: true };
  }

  private async finishPack(): Promise<void> {
    if (this.pack.count === 0) return;
    const { bytes, blobs } = this.pack.finish();
    this.pack = new PackWriter();
    while (this.uploads.size >= MAX_UPLOADS) await Promise.race(this.uploads);
    const upload = (async () => {
      const name = await saveAddressed(this.backend, 'data', bytes);
      const p = { pack: name, blobs };
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
    await this.finishPack();
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    if (this.uploadError) throw this.uploadError;
    await this.writeIndex();
  }

  // ---- reading ----

  /** Loads, authenticates and decompresses one blob. */
  async loadBlob(type: BlobType, id: string): Promise<Buffer> {
    const what = type === BlobType.Tree ? 'tree' : 'blob';
    const loc = this.index.lookup(id);
    if (!loc) throw new BlobNotFoundError(id, what);
    if (loc.type !== type) throw new CorruptObjectError(`${what} ${id}`, `indexed as type ${loc.type}`);
    const packWhat = `pack ${loc.pack}`;
    let sealed: Buffer;
    try {
      sealed = await this.backend.load(handle('data', loc.pack), loc.offset, loc.length);
    } catch (e) {
      if (e instanceof NotFoundError) throw new CorruptObjectError(packWhat, `missing (needed for ${what} ${id})`);
      if (e instanceof ShortReadError) throw new CorruptObjectError(packWhat, `truncated (needed for ${what} ${id})`);
      throw e;
    }
    return this.openBlob(loc, sealed, `${packWhat}, ${what} ${id}`);
  }

  /** Authenticates and decompresses a sealed blob read from a pack. */
  openBlob(loc: PackedBlob, sealed: Buffer, what: string): Buffer {
    let plain: Buffer;
    try {
      plain = open(this.key.encryption, sealed, blobAad(loc.type, loc.flags, loc.rawLength, loc.id), what);
    } catch (e) {
      if (e instanceof AuthenticationError) throw new CorruptObjectError(what, 'authentication failed');
      throw e;
    }
    if (loc.flags & FLAG_COMPRESSED) return decompress(plain, loc.rawLength, what);
    if (plain.length !== loc.rawLength) throw new CorruptObjectError(what, 'length mismatch');
    return plain;
  }

  /** Loads and decodes a tree blob. */
  async loadTree(id: string): Promise<TreeNode[]> {
    return decodeTree(await this.loadBlob(BlobType.Tree, id), `tree ${id}`);
  }

  // ---- snapshots ----

  async saveSnapshot(s: Snapshot): Promise<string> {
    return saveAddressed(this.backend, 'snapshot', encodeSnapshot(s));
  }

  async loadSnapshot(id: string): Promise<Snapshot> {
    const what = `snapshot ${id}`;
    return decodeSnapshot(await loadChecked(this.backend, handle('snapshot', id), what), what);
  }

  /** Every snapshot, oldest first. */
  async listSnapshots(): Promise<{ id: string; snapshot: Snapshot }[]> {
    const out: { id: string; snapshot: Snapshot }[] = [];
    for await (const info of this.backend.list('snapshot')) out.push({ id: info.name, snapshot: await this.loadSnapshot(info.name) });
    return out.sort((a, b) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time) || a.id.localeCompare(b.id));
  }

  // ---- keys ----

  async listKeys(): Promise<KeyInfo[]> {
    const out: KeyInfo[] = [];
    for await (const info of this.backend.list('key')) {
      const what = `key ${info.name}`;
      out.push({ id: info.name, file: decodeKeyFile(await loadChecked(this.backend, handle('key', info.name), what), what), current: info.name === this.keyId });
    }
    return out.sort((a, b) => a.file.created.localeCompare(b.file.created));
  }

  /** Adds a key file wrapping the master key with another password; returns its id. */
  async addKey(password: string): Promise<string> {
    return saveAddressed(this.backend, 'key', await wrapMasterKey(this.key, this.config.id, password, defaultScryptParams()));
  }

  /** Removes a key file. Refuses the last one, and the one in use unless `allowCurrent`. */
  async removeKey(id: string, allowCurrent = false): Promise<void> {
    const keys = await this.listKeys();
    if (!keys.some((k) => k.id === id)) throw new Error(`no key ${id}`);
    if (keys.length === 1) throw new Error('refusing to remove the only key: the repository could never be opened again');
    if (id === this.keyId && !allowCurrent) throw new Error('refusing to remove the key in use; use "key passwd" to change its password');
    await this.backend.remove(handle('key', id));
  }
}

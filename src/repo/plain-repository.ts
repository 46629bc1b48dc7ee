/**
 * A repository opened without the key: everything the plain objects say
 * (config, index files, pack headers, snapshots' reference lists, deletion
 * markers) and the stored-bytes checksums. This is what the server, which
 * never sees a customer's key, runs prune, check and repair index on.
 *
 *   PlainRepository   load / save / list the plain objects, checksums checked
 *   RepoState         one consistent look at markers → index files → packs,
 *                     merged: which packs exist, which are marked, where each
 *                     blob is (every copy, not just the first)
 */
import type { Backend, ObjectType } from '../storage/backend.js';
import { NotFoundError } from '../storage/backend.js';
import { condemnedPacks, decodeMarker, type DeletionMarker } from './deletion-marker.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';
import { decodeIndex, encodeIndex, sameBlobs, sameEntry, type BlobLocation, type IndexFile, type IndexedPack, type MasterIndex } from './index-file.js';
import { handleOf, listObjects, loadChecked, loadEvery, saveAddressed } from './objects.js';
import { PACK_TRAILER_BYTES, parsePackHeader, parsePackTrailer, type PackedBlob } from './pack.js';
import type { RepoConfig } from './config.js';
import { withRepositoryMode, type ModeOptions } from './keyless-repository.js';
import { decodeSnapshot, type Snapshot } from './snapshot.js';

/** Objects of one type, read: the good ones and why the others could not be read. */
export interface Loaded<T> {
  readonly ok: Map<string, T>;
  readonly damaged: Map<string, string>;
}

function isDamage(e: unknown): e is Error {
  return e instanceof CorruptObjectError || e instanceof UnsupportedVersionError;
}

/** Plain access to a repository; see the module comment. */
export class PlainRepository {
  /** `backend` as `withRepositoryMode` returns it (wrapped when append-only), `config` as read. */
  constructor(readonly backend: Backend, readonly config: RepoConfig) {}

  /** Reads the config (no password involved); append-only as `withRepositoryMode` decides. */
  static async open(backend: Backend, mode: ModeOptions = {}): Promise<PlainRepository> {
    const m = await withRepositoryMode(backend, mode);
    return new PlainRepository(m.backend, m.config);
  }

  /** True when this client cannot remove anything (append-only). */
  get appendOnly(): boolean {
    return this.backend.capabilities.appendOnly;
  }

  /** Name → size of every object of a type. */
  list(type: ObjectType): Promise<Map<string, number>> {
    return listObjects(this.backend, type);
  }

  /** Loads every object of a type that `decode` accepts; objects removed while listing are left out. */
  private async loadAll<T>(type: ObjectType, label: string, decode: (b: Buffer, what: string) => T): Promise<Loaded<T>> {
    const damaged = new Map<string, string>();
    const ok = await loadEvery(this.backend, type, async (name) => {
      const what = `${label} ${name}`;
      try {
        return decode(await loadChecked(this.backend, handleOf(type, name), what), what);
      } catch (e) {
        if (!isDamage(e)) throw e;
        damaged.set(name, e.message);
        return undefined;
      }
    });
    return { ok, damaged };
  }

  loadIndexFiles(): Promise<Loaded<IndexFile>> {
    return this.loadAll('index', 'index', decodeIndex);
  }

  loadMarkers(): Promise<Loaded<DeletionMarker>> {
    return this.loadAll('deletion', 'deletion marker', decodeMarker);
  }

  loadSnapshots(): Promise<Loaded<Snapshot>> {
    return this.loadAll('snapshot', 'snapshot', decodeSnapshot);
  }

  /** Reads one pack's header with two range reads. Throws `CorruptObjectError` when it does not parse. */
  async readPackHeader(pack: string, size: number): Promise<PackedBlob[]> {
    const what = `pack ${pack}`;
    const h = handleOf('data', pack);
    if (size < PACK_TRAILER_BYTES) throw new CorruptObjectError(what, `truncated (${size} bytes)`);
    const headerLength = parsePackTrailer(await this.backend.load(h, { offset: size - PACK_TRAILER_BYTES, length: PACK_TRAILER_BYTES }), size, what);
    const header = await this.backend.load(h, { offset: size - PACK_TRAILER_BYTES - headerLength, length: headerLength });
    return parsePackHeader(header, size - PACK_TRAILER_BYTES - headerLength, what);
  }

  /** Parses the header of a whole pack held in memory. */
  static parsePack(pack: string, bytes: Buffer): PackedBlob[] {
    const what = `pack ${pack}`;
    const headerLength = parsePackTrailer(bytes.subarray(bytes.length - PACK_TRAILER_BYTES), bytes.length, what);
    const start = bytes.length - PACK_TRAILER_BYTES - headerLength;
    return parsePackHeader(bytes.subarray(start, bytes.length - PACK_TRAILER_BYTES), start, what);
  }

  /** Saves a content-addressed object; returns its name. */
  save(type: ObjectType, bytes: Buffer): Promise<string> {
    return saveAddressed(this.backend, type, bytes);
  }

  /** Writes an index file; returns its name. */
  saveIndex(f: IndexFile): Promise<string> {
    return this.save('index', encodeIndex(f));
  }

  /** Removes an object; false when it was gone already (another prune, or a retry). */
  async remove(type: ObjectType, name: string): Promise<boolean> {
    try {
      await this.backend.remove(handleOf(type, name));
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
}

/**
 * One look at the repository's plain state, read in the order the GC
 * protocol needs: markers, then index files, then the pack listing
 * (docs/format.md §15). A pack marked after the markers were read is
 * treated as live; one removed after the listing as present.
 *
 * Index records and markers are claims: any client that can add objects
 * can write them. What a pack holds is settled by its header (`confirm`),
 * which is inside the pack and cannot change. Until then every claim
 * counts: `locations` holds every copy any record names, and a pack that
 * two records describe differently is `disputed`.
 */
export class RepoState {
  /** Present packs → size. */
  readonly packs: Map<string, number>;
  readonly indexFiles: Map<string, IndexFile>;
  readonly damagedIndexFiles: Map<string, string>;
  readonly markers: Map<string, DeletionMarker>;
  readonly damagedMarkers: Map<string, string>;
  /** Marked pack → its blobs (from the marker). */
  readonly condemned: Map<string, IndexedPack>;
  /** Pack → its blobs: the header once `confirm`ed, else the first record met (index files, then markers). */
  readonly packBlobs = new Map<string, readonly PackedBlob[]>();
  /** Pack → the index files that list it. */
  readonly packIndexFiles = new Map<string, Set<string>>();
  /** Packs whose header was read: what this state says of them is the header. */
  readonly confirmed = new Set<string>();
  /** Packs that index files and markers describe in more than one way (until `confirm`ed). */
  readonly disputed = new Set<string>();
  /** Pack → every distinct description of it (one, the header, once confirmed). */
  private readonly descriptions = new Map<string, (readonly PackedBlob[])[]>();
  private readonly where = new Map<string, BlobLocation[]>();

  private constructor(markers: Loaded<DeletionMarker>, index: Loaded<IndexFile>, packs: Map<string, number>) {
    this.markers = markers.ok;
    this.damagedMarkers = markers.damaged;
    this.indexFiles = index.ok;
    this.damagedIndexFiles = index.damaged;
    this.packs = packs;
    this.condemned = condemnedPacks(markers.ok.values());
    for (const [name, f] of index.ok) {
      for (const p of f.packs) {
        let files = this.packIndexFiles.get(p.pack);
        if (!files) this.packIndexFiles.set(p.pack, (files = new Set()));
        files.add(name);
        this.describe(p);
      }
    }
    for (const m of markers.ok.values()) for (const p of m.packs) this.describe(p);
  }

  static async load(repo: PlainRepository): Promise<RepoState> {
    const markers = await repo.loadMarkers();
    const index = await repo.loadIndexFiles();
    const packs = await repo.list('data');
    return new RepoState(markers, index, packs);
  }

  private describe(p: IndexedPack): void {
    if (this.confirmed.has(p.pack)) return;
    let d = this.descriptions.get(p.pack);
    if (!d) {
      this.descriptions.set(p.pack, (d = []));
      this.packBlobs.set(p.pack, p.blobs);
    }
    if (d.some((x) => sameBlobs(x, p.blobs))) return;
    d.push(p.blobs);
    if (d.length > 1) this.disputed.add(p.pack);
    for (const b of p.blobs) this.locate(p.pack, b);
  }

  private locate(pack: string, b: PackedBlob): void {
    let l = this.where.get(b.id);
    if (!l) this.where.set(b.id, (l = []));
    if (!l.some((x) => x.pack === pack && sameEntry(x, b))) l.push({ type: b.type, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength, pack });
  }

  /** Every distinct description of a pack (index records, marker records; the header alone once confirmed). */
  descriptionsOf(pack: string): readonly (readonly PackedBlob[])[] {
    return this.descriptions.get(pack) ?? [];
  }

  /** Every entry any description of a pack has (the header's, once confirmed). */
  claims(pack: string): PackedBlob[] {
    const out: PackedBlob[] = [];
    for (const d of this.descriptionsOf(pack)) for (const b of d) if (!out.some((x) => sameEntry(x, b))) out.push(b);
    return out;
  }

  /** Replaces every claim about a pack with what its header says. */
  confirm(p: IndexedPack): void {
    for (const d of this.descriptionsOf(p.pack)) {
      for (const b of d) {
        const l = this.where.get(b.id)?.filter((x) => x.pack !== p.pack);
        if (l && l.length > 0) this.where.set(b.id, l);
        else this.where.delete(b.id);
      }
    }
    this.descriptions.set(p.pack, [p.blobs]);
    this.packBlobs.set(p.pack, p.blobs);
    this.disputed.delete(p.pack);
    this.confirmed.add(p.pack);
    for (const b of p.blobs) this.locate(p.pack, b);
  }

  /** Reads a pack's header and `confirm`s it; throws `CorruptObjectError` when it does not parse. */
  async readHeader(repo: PlainRepository, pack: string): Promise<PackedBlob[]> {
    const blobs = await repo.readPackHeader(pack, this.packs.get(pack)!);
    this.confirm({ pack, blobs });
    return blobs;
  }

  /** Every claimed copy of a blob, in any pack (present or not, marked or not). */
  locations(id: string): readonly BlobLocation[] {
    return this.where.get(id) ?? [];
  }

  /** A present pack that no marker names. */
  isLive(pack: string): boolean {
    return this.packs.has(pack) && !this.condemned.has(pack);
  }

  /** A copy in a live pack, else undefined. */
  liveLocation(id: string): BlobLocation | undefined {
    return this.locations(id).find((l) => this.isLive(l.pack));
  }

  /**
   * Fills a reader's index from this state: what the readable index files
   * say, marked packs as pending (readable, not for deduplication). Unlike
   * `Repository.loadIndex`, a damaged index file does not stop it (check and
   * repair must run on a damaged repository).
   */
  fill(index: MasterIndex): void {
    for (const f of this.indexFiles.values()) {
      for (const p of f.packs) {
        if (this.condemned.has(p.pack)) index.addPendingPack(p);
        else index.addPack(p);
      }
    }
    for (const p of this.condemned.values()) index.addPendingPack(p);
  }

  /** Present packs that no index file and no marker lists. */
  orphans(): string[] {
    return [...this.packs.keys()].filter((p) => !this.packBlobs.has(p));
  }
}

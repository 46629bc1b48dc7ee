/**
 * One consistent look at a repository's plain state, on top of the keyless
 * store: markers → index files → packs, merged: which packs exist, which are
 * marked, where each blob is (every copy, not just the first). What prune,
 * check and repair decide on.
 */
import { condemnedPacks, type DeletionMarker } from './deletion-marker.js';
import { entryKey, recordKey, sameEntry, type BlobLocation, type IndexFile, type IndexedPack, type MasterIndex } from './index-file.js';
import type { PackedBlob } from './pack.js';
import type { Loaded, Store } from './store.js';
import type { OperationOptions } from '../storage/backend.js';

/** Copies of a blob checked one by one before `RepoState` keys them. */
const SCAN_COPIES = 8;

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
  readonly damagedIndexFiles: Map<string, Error>;
  readonly markers: Map<string, DeletionMarker>;
  readonly damagedMarkers: Map<string, Error>;
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
  /**
   * Blob id → `entryKey`s of its locations, once it has SCAN_COPIES: a record can name one blob at any number of places, and
   * checking each against all the others would make loading quadratic.
   */
  private readonly whereKeys = new Map<string, Set<string>>();
  /** Pack → `recordKey`s of its descriptions, for the same reason. */
  private readonly descriptionKeys = new Map<string, Set<string>>();

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

  static async load(repo: Store, opts: OperationOptions = {}): Promise<RepoState> {
    const markers = await repo.loadMarkers(opts);
    const index = await repo.loadIndexFiles(opts);
    const packs = await repo.list('data', opts);
    return new RepoState(markers, index, packs);
  }

  private describe(p: IndexedPack): void {
    if (this.confirmed.has(p.pack)) return;
    let d = this.descriptions.get(p.pack);
    if (!d) {
      this.descriptions.set(p.pack, (d = []));
      this.packBlobs.set(p.pack, p.blobs);
    }
    if (d.length > 0) {
      // Only a pack described more than once pays for keys (a hash of each description).
      let keys = this.descriptionKeys.get(p.pack);
      if (!keys) this.descriptionKeys.set(p.pack, (keys = new Set(d.map((blobs) => recordKey({ pack: p.pack, blobs })))));
      const key = recordKey(p);
      if (keys.has(key)) return;
      keys.add(key);
    }
    d.push(p.blobs);
    if (d.length > 1) this.disputed.add(p.pack);
    for (const b of p.blobs) this.locate(p.pack, b);
  }

  private locate(pack: string, b: PackedBlob): void {
    let l = this.where.get(b.id);
    if (!l) this.where.set(b.id, (l = []));
    if (l.length < SCAN_COPIES) {
      if (l.some((x) => x.pack === pack && sameEntry(x, b))) return;
    } else {
      let keys = this.whereKeys.get(b.id);
      if (!keys) this.whereKeys.set(b.id, (keys = new Set(l.map((x) => entryKey(x.pack, x)))));
      const key = entryKey(pack, b);
      if (keys.has(key)) return;
      keys.add(key);
    }
    l.push({ type: b.type, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength, pack });
  }

  /** Every distinct description of a pack (index records, marker records; the header alone once confirmed). */
  descriptionsOf(pack: string): readonly (readonly PackedBlob[])[] {
    return this.descriptions.get(pack) ?? [];
  }

  /** Every entry any description of a pack has (the header's, once confirmed). */
  claims(pack: string): PackedBlob[] {
    const out: PackedBlob[] = [];
    const seen = new Set<string>();
    for (const d of this.descriptionsOf(pack)) {
      for (const b of d) {
        const key = entryKey(pack, b);
        if (!seen.has(key)) out.push(b);
        seen.add(key);
      }
    }
    return out;
  }

  /** Replaces every claim about a pack with what its header says. */
  confirm(p: IndexedPack): void {
    const ids = new Set<string>();
    for (const d of this.descriptionsOf(p.pack)) for (const b of d) ids.add(b.id);
    for (const id of ids) {
      const l = this.where.get(id)!.filter((x) => x.pack !== p.pack);
      this.whereKeys.delete(id);
      if (l.length > 0) this.where.set(id, l);
      else this.where.delete(id);
    }
    this.descriptions.set(p.pack, [p.blobs]);
    this.descriptionKeys.delete(p.pack);
    this.packBlobs.set(p.pack, p.blobs);
    this.disputed.delete(p.pack);
    this.confirmed.add(p.pack);
    for (const b of p.blobs) this.locate(p.pack, b);
  }

  /** Reads a pack's header and `confirm`s it; throws `CorruptObjectError` when it does not parse. */
  async readHeader(repo: Store, pack: string, opts: OperationOptions = {}): Promise<PackedBlob[]> {
    const blobs = await repo.readPackHeader(pack, this.packs.get(pack)!, opts);
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

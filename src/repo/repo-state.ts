/**
 * One consistent look at a repository's plain state, on top of the keyless
 * store: markers → index files → packs, merged: which packs exist, which are
 * marked, where each blob is (every copy, not just the first). What prune,
 * check and repair decide on.
 */
import { condemnedPacks, type DeletionMarker } from './deletion-marker.js';
import { sameBlobs, sameEntry, type BlobLocation, type IndexFile, type IndexedPack, type MasterIndex } from './index-file.js';
import type { PackedBlob } from './pack.js';
import type { Loaded, Store } from './store.js';

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

  static async load(repo: Store): Promise<RepoState> {
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
  async readHeader(repo: Store, pack: string): Promise<PackedBlob[]> {
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

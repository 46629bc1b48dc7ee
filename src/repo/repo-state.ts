/**
 * One consistent look at a repository's plain state, on top of the keyless
 * store: markers → index files → packs, merged: which packs exist, which are
 * marked, where each blob is (every copy, not just the first). What prune,
 * check and repair decide on.
 */
import { condemnedPacks, type DeletionMarker } from './deletion-marker.js';
import { MasterIndex, entryKey, recordKey, sameEntry, type BlobLocation, type IndexFile, type IndexedPack } from './index-file.js';
import type { PackedBlob } from './pack.js';
import type { Loaded, Store } from './store.js';
import type { OperationOptions } from '../storage/backend.js';

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
  /**
   * Every copy of each blob that any description names, each once: the
   * reader's compact index (about 60 bytes a blob, where a `Map` of
   * location objects took about 290: docs/decisions.md, "The in-memory
   * index"), every pack in it as live (`isLive` decides).
   */
  private readonly where = new MasterIndex();
  /** `entryKey`s of copies that descriptions named and their pack's header, once read, does not: `where` keeps them, `locations` leaves them out. */
  private readonly refuted = new Set<string>();
  /**
   * Pack → `recordKey`s of its descriptions, once it has more than one: a
   * pack can be described any number of times, and comparing each
   * description with all the others would make loading quadratic.
   */
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
    this.where.addPack(p);
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
    const described = this.descriptionsOf(p.pack);
    // Most packs are described once, entry for entry as the header lists them: nothing to refute.
    if (described.length > 1 || (described.length === 1 && !sameEntries(described[0]!, p.blobs))) {
      const header = new Set(p.blobs.map((b) => entryKey(p.pack, b)));
      for (const d of described) {
        for (const b of d) {
          const key = entryKey(p.pack, b);
          if (!header.has(key)) this.refuted.add(key);
        }
      }
    }
    this.descriptions.set(p.pack, [p.blobs]);
    this.descriptionKeys.delete(p.pack);
    this.packBlobs.set(p.pack, p.blobs);
    this.disputed.delete(p.pack);
    this.confirmed.add(p.pack);
    this.where.addPack(p);
  }

  /** Reads a pack's header and `confirm`s it; throws `CorruptObjectError` when it does not parse. */
  async readHeader(repo: Store, pack: string, opts: OperationOptions = {}): Promise<PackedBlob[]> {
    const blobs = await repo.readPackHeader(pack, this.packs.get(pack)!, opts);
    this.confirm({ pack, blobs });
    return blobs;
  }

  /** Every claimed copy of a blob, in any pack (present or not, marked or not). */
  locations(id: string): readonly BlobLocation[] {
    const copies = this.where.copies(id);
    return this.refuted.size === 0 ? copies : copies.filter((l) => !this.refuted.has(entryKey(l.pack, l)));
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
   * say, marked packs as pending (readable, not for deduplication). A
   * damaged index file is left out, as `Repository.loadIndex` leaves it
   * (check reports it and repair rebuilds the index; neither stops at it).
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

/** Two lists of the same entries in the same order. */
function sameEntries(a: readonly PackedBlob[], b: readonly PackedBlob[]): boolean {
  return a.length === b.length && a.every((x, i) => sameEntry(x, b[i]!));
}

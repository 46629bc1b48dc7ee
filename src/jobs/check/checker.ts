/**
 * Check: is every snapshot restorable, and if not, what exactly is lost.
 *
 *   structure (always; no key needed)
 *     markers, index files, snapshots load and match their checksums
 *     every pack an index file names exists (unless a prune is deleting it),
 *       and its header agrees with the index; unindexed packs are noted
 *     every blob a snapshot references is in a present pack (one that only
 *       a pack no index file lists holds is not lost: "repair index" is named)
 *   with the key
 *     every snapshot's MAC verifies (else it was changed or planted in storage)
 *     every tree of every snapshot decrypts and parses, and everything it
 *       references (subtrees, file content, image maps and blocks) is in the
 *       snapshot's plain reference list (else a prune would delete it)
 *   read data (all packs, or a subset)
 *     read the whole pack: SHA-256 = its name; header = index
 *     with the key: every blob decrypts, decompresses, and hashes to its id
 *   damage report
 *     lost blobs → the snapshots that reference them (plain lists)
 *     with the key → the files whose content and the folders whose listing is lost
 *
 * Without the key a pack that fails its checksum cannot say which of its
 * blobs are bad: all of them are reported as possibly damaged.
 */
import { sha256 } from '../../core/crypto.js';
import { forEachLimit } from '../../core/for-each-limit.js';
import { sameEntry, type BlobLocation } from '../../repo/index-file.js';
import { BlobType, MAX_PACK_BYTES, copyDigest, type PackedBlob } from '../../repo/pack.js';
import { RepoState } from '../../repo/repo-state.js';
import { Store } from '../../repo/store.js';
import { handleOf, io, loadBounded } from '../../repo/objects.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { contentBlobs, entryBlob, type TreeNode } from '../../repo/tree.js';
import { MAP_ENTRY_BYTES, imageBlockCount } from '../../repo/image-info.js';
import { NotFoundError, type OperationOptions } from '../../storage/backend.js';
import { selectPacks, type DataSelection } from './subset.js';

/** What check needs from a repository opened with the key (`Repository` has it). */
export interface KeyedReader {
  /** Loads a snapshot and checks its MAC (`ForgedObjectError` when it fails). */
  loadSnapshot(id: string, opts?: OperationOptions): Promise<Snapshot>;
  /** Loads and decodes a tree. */
  loadTree(id: string, opts?: OperationOptions): Promise<TreeNode[]>;
  /** Loads a blob, reading past bad copies to a good one. */
  loadBlob(type: BlobType, id: string, opts?: OperationOptions): Promise<Buffer>;
  /** Authenticates and decompresses a sealed blob, and checks that it hashes to its id. */
  openBlob(loc: PackedBlob, sealed: Buffer, what: string): Buffer;
  /** Copies of blobs the reads so far found bad and read past (`Repository.copyFailed`). */
  badCopiesFound(): readonly { readonly pack: string; readonly id: string; readonly reason: string }[];
}

export interface CheckOptions {
  /** Read pack contents: all, or a subset. Structure only when absent. */
  readonly readData?: DataSelection;
  /** The repository opened with the key: trees, decryption, file names. */
  readonly keyed?: KeyedReader;
  readonly onProgress?: (p: CheckProgress) => void;
  readonly signal?: AbortSignal;
  /** For `x%` and `SIZE` subsets; tests fix it. */
  readonly random?: () => number;
}

export interface CheckProgress {
  readonly phase: 'structure' | 'trees' | 'read-data';
  readonly done: number;
  readonly total: number;
}

/** One problem, about one object. */
export interface Problem {
  readonly object: string;
  readonly message: string;
}

/** A snapshot that references lost or possibly damaged blobs. */
export interface DamagedSnapshot {
  readonly id: string;
  readonly time: string;
  readonly hostname: string;
  readonly paths: readonly string[];
  /** Damaged blobs it references. */
  readonly blobs: number;
  /** False when only known without the key: the blobs are in packs that fail their checksum and may or may not be damaged. */
  readonly certain: boolean;
  /** With the key: files whose content is damaged. */
  readonly files?: string[];
  /** With the key: folders whose listing is lost (nothing below them can be listed). */
  readonly dirs?: string[];
  /** With the key: the root listing itself is lost. */
  readonly rootLost?: boolean;
  /** With the key, for image snapshots: blocks whose content is lost. */
  readonly imageBlocks?: number;
}

export interface CheckReport {
  readonly keyed: boolean;
  readonly errors: Problem[];
  readonly warnings: Problem[];
  readonly snapshots: number;
  readonly packs: number;
  readonly indexFiles: number;
  readonly packsRead: number;
  readonly bytesRead: number;
  /** Blobs with no intact copy (missing, or damaged in every pack that holds them). */
  readonly lostBlobs: string[];
  /** Keyless read-data: blobs in packs that fail their checksum. */
  readonly suspectBlobs: string[];
  /**
   * Referenced blobs that no index file places in a present pack but whose
   * copy a pack no index file lists holds (by its header): not lost, but
   * readers cannot find them until `repair index` (or the next backup)
   * indexes that pack.
   */
  readonly unindexedBlobs: string[];
  readonly damaged: DamagedSnapshot[];
  /** Present packs whose stored bytes do not match their name, or whose header cannot be read. */
  readonly damagedPacks: string[];
  /** Packs index files name that do not exist, and that no deletion marker names (checked again at the end: a prune's deletion is not one). */
  readonly missingPacks: string[];
  /** Copies found bad by reading (`pack/blob`), with why. */
  readonly badCopies: { readonly pack: string; readonly id: string; readonly reason: string }[];
  /**
   * Snapshots marked incomplete, oldest first: some files could not be read
   * at backup time, or `repair snapshots --mark-damaged` marked lost ones.
   * Not an error (the repository is consistent), but their restores report
   * those files.
   */
  readonly incomplete: string[];
}

/** Runs a check; see the module comment. */
export class Checker {
  private readonly errors: Problem[] = [];
  private readonly warnings: Problem[] = [];
  /** `${pack}/${blob}` copies found damaged by reading. */
  private readonly badCopies = new Map<string, string>();
  private readonly suspect = new Set<string>();
  private readonly damagedPacks = new Set<string>();
  private readonly gone = new Set<string>();
  /** Packs index files name that do not exist (and no marker names). */
  private readonly missing = new Set<string>();
  /** Blob id → the packs no index file lists whose header holds it (read with every pack). */
  private readonly orphanCopies = new Map<string, string[]>();
  /** Referenced blobs found only in such packs → the first of them. */
  private readonly unindexed = new Map<string, string>();
  /** Keyless read-data: blob id → a copy's `copyDigest` (sealed bytes with type, flags and raw length) → packs, for ids claimed in more than one pack. */
  private readonly copies = new Map<string, Map<string, Set<string>>>();
  private packsRead = 0;
  private bytesRead = 0;

  constructor(private readonly repo: Store, private readonly opts: CheckOptions = {}) {}

  private error(object: string, message: string): void {
    this.errors.push({ object, message });
  }

  /** Damage in a pack a marker already condemns is a warning: its referenced blobs are judged one by one (lostBlobs). */
  private packProblem(state: RepoState, pack: string, message: string): void {
    if (state.condemned.has(pack)) this.warn(`pack ${pack}`, `${message} (marked for deletion)`);
    else this.error(`pack ${pack}`, message);
  }

  private warn(object: string, message: string): void {
    this.warnings.push({ object, message });
  }

  async run(): Promise<CheckReport> {
    const state = await RepoState.load(this.repo, io(this.opts));
    for (const [name, why] of state.damagedMarkers) this.error(`deletion marker ${name}`, why.message);
    for (const [name, why] of state.damagedIndexFiles) this.error(`index ${name}`, `${why.message} (run "holdfast repair index")`);
    const snaps = await this.repo.loadSnapshots(io(this.opts));
    for (const [name, why] of snaps.damaged) this.error(`snapshot ${name}`, `${why.message}; what it references is unknown`);

    const readSet = new Set(this.opts.readData ? selectPacks(state.packs, this.opts.readData, this.opts.random) : []);
    if (!this.opts.keyed) {
      for (const s of snaps.ok.values()) for (const id of s.blobs) if (new Set(state.locations(id).map((l) => l.pack)).size > 1) this.copies.set(id, new Map());
    }
    await this.checkPacks(state, readSet);
    this.differingCopies();
    if (this.opts.keyed) {
      await this.checkTrees(snaps.ok);
      // A bad copy the tree walk read past (a reader meets a planted one first) is damage all the same.
      for (const c of this.opts.keyed.badCopiesFound()) {
        if (this.badCopies.has(`${c.pack}/${c.id}`)) continue;
        const why = c.reason.replace(/^.* is damaged: /, '');
        this.badCopies.set(`${c.pack}/${c.id}`, why);
        this.packProblem(state, c.pack, `blob ${c.id}: ${why}`);
      }
    }

    // Which referenced blobs have no intact copy?
    let lost = this.lostBlobs(state, snaps.ok);
    if (lost.size > 0) {
      lost = await this.confirmLost(lost);
      // Snapshots removed meanwhile (forget) no longer count.
      const still = await this.repo.list('snapshot', io(this.opts));
      for (const id of [...snaps.ok.keys()]) if (!still.has(id)) snaps.ok.delete(id);
    }
    const damaged = await this.damageReport(state, snaps.ok, lost);
    // A pack a prune deleted while the check ran is named by that prune's marker by now: only those still missing count.
    const fresh = this.missing.size === 0 ? undefined : await RepoState.load(this.repo, io(this.opts));
    const missingPacks = [...this.missing].filter((p) => fresh!.packBlobs.has(p) && !fresh!.packs.has(p) && !fresh!.condemned.has(p)).sort();
    return {
      keyed: this.opts.keyed !== undefined,
      errors: this.errors,
      warnings: this.warnings,
      snapshots: snaps.ok.size,
      packs: state.packs.size,
      indexFiles: state.indexFiles.size,
      packsRead: this.packsRead,
      bytesRead: this.bytesRead,
      lostBlobs: [...lost].sort(),
      suspectBlobs: [...this.suspect].filter((id) => !lost.has(id)).sort(),
      unindexedBlobs: [...this.unindexed.keys()].sort(),
      damaged,
      damagedPacks: [...this.damagedPacks].sort(),
      missingPacks,
      badCopies: [...this.badCopies].map(([k, reason]) => ({ pack: k.slice(0, k.indexOf('/')), id: k.slice(k.indexOf('/') + 1), reason })),
      incomplete: [...snaps.ok].filter(([, x]) => x.incomplete === true).sort(([, a], [, b]) => Date.parse(a.time) - Date.parse(b.time)).map(([id]) => id),
    };
  }

  // ---- packs ----

  private async checkPacks(state: RepoState, readSet: ReadonlySet<string>): Promise<void> {
    for (const pack of state.packBlobs.keys()) {
      if (state.packs.has(pack)) continue;
      if (state.condemned.has(pack)) continue; // a prune is deleting it; its live blobs were copied first
      this.missing.add(pack);
      this.error(`pack ${pack}`, `named by index ${[...(state.packIndexFiles.get(pack) ?? [])].join(', ')} but does not exist`);
    }
    for (const pack of state.orphans()) {
      this.warn(`pack ${pack}`, 'is in no index file (left by an interrupted backup; the next backup or prune indexes it)');
    }
    const packs = [...state.packs.keys()];
    let done = 0;
    await forEachLimit(packs, this.repo.backend.capabilities.connections, async (pack) => {
      this.opts.signal?.throwIfAborted();
      if (state.packs.get(pack)! > MAX_PACK_BYTES) this.oversized(state, pack);
      else if (readSet.has(pack)) await this.readPack(state, pack);
      else await this.checkHeader(state, pack);
      this.opts.onProgress?.({ phase: readSet.size > 0 ? 'read-data' : 'structure', done: ++done, total: packs.length });
    });
  }

  /** A pack larger than any pack holdfast writes: damaged, and not read (its blobs count as damaged copies). */
  private oversized(state: RepoState, pack: string): void {
    const size = state.packs.get(pack)!;
    this.damagedPacks.add(pack);
    this.packProblem(state, pack, `is ${size} bytes, larger than any pack (${MAX_PACK_BYTES}): not read`);
    for (const b of state.claims(pack)) this.badCopies.set(`${pack}/${b.id}`, 'in a pack larger than any pack');
  }

  /** Compares every description the index files and markers give of a pack with its header, which then settles what the pack holds. */
  private compareHeader(state: RepoState, pack: string, header: readonly PackedBlob[]): void {
    for (const indexed of state.descriptionsOf(pack)) {
      const byId = new Map(header.map((b) => [b.id, b]));
      const bad = indexed.filter((b) => {
        const h = byId.get(b.id);
        return h === undefined || !sameEntry(b, h);
      });
      if (bad.length > 0 || header.length !== indexed.length) {
        this.packProblem(state, pack, `its header and the index disagree (${bad.length} of ${indexed.length} indexed blobs differ; header lists ${header.length}); run "holdfast repair index"`);
        break;
      }
    }
    // An indexed pack holds what its header says; an unindexed one is only reported (readers do not see it yet),
    // but what it holds is not lost: a referenced blob found nowhere else is looked for there (confirmLost).
    if (state.descriptionsOf(pack).length > 0) state.confirm({ pack, blobs: header });
    else for (const b of header) this.orphanCopies.set(b.id, [...(this.orphanCopies.get(b.id) ?? []), pack]);
  }

  private async checkHeader(state: RepoState, pack: string): Promise<void> {
    try {
      this.compareHeader(state, pack, await this.repo.readPackHeader(pack, state.packs.get(pack)!, io(this.opts)));
    } catch (e) {
      if (e instanceof NotFoundError) return this.vanished(state, pack);
      this.damagedPacks.add(pack);
      this.packProblem(state, pack, `header cannot be read: ${(e as Error).message}`);
    }
  }

  /**
   * A pack that went between listing and reading (a concurrent prune): not an
   * error in itself; its blobs count as absent, and any a snapshot needs are
   * looked for again in a fresh state (confirmLost).
   */
  private vanished(_state: RepoState, pack: string): void {
    this.gone.add(pack);
  }

  private async readPack(state: RepoState, pack: string): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await loadBounded(this.repo.backend, handleOf('data', pack), `pack ${pack}`, { signal: this.opts.signal });
    } catch (e) {
      if (e instanceof NotFoundError) return this.vanished(state, pack);
      throw e;
    }
    this.packsRead++;
    this.bytesRead += bytes.length;
    const checksumOk = sha256(bytes).toString('hex') === pack;
    let header: PackedBlob[] | undefined;
    try {
      header = Store.parsePack(pack, bytes);
      this.compareHeader(state, pack, header);
    } catch (e) {
      this.damagedPacks.add(pack);
      this.packProblem(state, pack, `header cannot be read: ${(e as Error).message}`);
    }
    // The header says what the pack holds; only when it cannot be read do the index's claims stand in.
    const blobs = header ?? state.claims(pack);
    if (!checksumOk) {
      this.damagedPacks.add(pack);
      const size = state.packs.get(pack)!;
      const detail = bytes.length < size ? ` (read ${bytes.length} of ${size} bytes)` : '';
      this.packProblem(state, pack, `stored bytes do not match its name: damaged${detail}`);
    }
    if (!this.opts.keyed) {
      if (!checksumOk) for (const b of blobs) this.suspect.add(b.id);
      // A truncated pack cannot hold blobs past its end, key or no key; a blob is cut off only when no claim for it fits.
      const fits = new Set(blobs.filter((b) => b.offset + b.length <= bytes.length).map((b) => b.id));
      for (const b of blobs) if (!fits.has(b.id)) this.badCopies.set(`${pack}/${b.id}`, 'cut off: the pack is truncated');
      if (checksumOk) {
        for (const b of blobs) {
          const digests = this.copies.get(b.id);
          if (!digests) continue;
          const d = copyDigest(b, bytes.subarray(b.offset, b.offset + b.length));
          let packs = digests.get(d);
          if (!packs) digests.set(d, (packs = new Set()));
          packs.add(pack);
        }
      }
      return;
    }
    // A copy is bad only when no claim for it opens (claims stand in for a header that cannot be read, and may be wrong).
    const good = new Set<string>();
    const failed = new Map<string, string>();
    for (const b of blobs) {
      const why = this.verifyBlob(pack, b, bytes);
      if (why) failed.set(b.id, why);
      else good.add(b.id);
    }
    let bad = 0;
    for (const [id, why] of failed) {
      if (good.has(id)) continue;
      bad++;
      this.badCopies.set(`${pack}/${id}`, why);
      this.packProblem(state, pack, `blob ${id}: ${why}`);
    }
    if (!checksumOk && bad === 0 && blobs.length > 0) {
      this.warn(`pack ${pack}`, 'every blob in it decrypts and matches its id: the damage is outside the blobs (header or trailer); the index still finds them');
    }
  }

  /**
   * Keyless read-data: referenced blobs stored in several intact packs
   * differently: other sealed bytes, or the same ones under another type,
   * flags or raw length (which cannot authenticate under both). Two writers
   * that store the same blob at once do that; so does a client that plants
   * garbage under a blob's id, or copies a genuine blob with its header entry
   * changed. Without the key nothing tells which copy is genuine, so it is a
   * warning, and prune keeps every copy (docs/format.md §15.10).
   */
  private differingCopies(): void {
    const perPack = new Map<string, { n: number; first: string; other: string }>();
    for (const [id, digests] of this.copies) {
      if (digests.size < 2) continue;
      const all = [...digests.values()].flatMap((s) => [...s]);
      for (const packs of digests.values()) {
        for (const pack of packs) {
          const p = perPack.get(pack);
          if (p) p.n++;
          else perPack.set(pack, { n: 1, first: id, other: all.find((x) => !packs.has(x))! });
        }
      }
    }
    for (const [pack, p] of perPack) {
      this.warn(`pack ${pack}`, `${p.n} referenced blob(s) in it are stored differently in other packs too (first: ${p.first}, also in ${p.other}; other sealed bytes, or another type, flags or raw length); `
        + 'without the password check cannot tell which copy is genuine (prune keeps every copy; "holdfast check --read-data" with the password names the bad ones)');
    }
  }

  /** Why one sealed blob is bad, or undefined when it opens and hashes to its id. */
  private verifyBlob(pack: string, b: PackedBlob, bytes: Buffer): string | undefined {
    if (b.offset + b.length > bytes.length) return 'cut off: the pack is truncated';
    try {
      this.opts.keyed!.openBlob(b, bytes.subarray(b.offset, b.offset + b.length), `pack ${pack}, blob ${b.id}`);
    } catch (e) {
      return (e as Error).message.replace(/^.* is damaged: /, '');
    }
    return undefined;
  }

  // ---- trees ----

  /** Every snapshot is authentic, every tree decrypts, and every id the trees reference is in the snapshot's plain list. */
  private async checkTrees(snapshots: ReadonlyMap<string, Snapshot>): Promise<void> {
    const keyed = this.opts.keyed!;
    const refs = new Map<string, string[] | Error>();
    const refsOf = async (tree: string): Promise<string[] | Error> => {
      let r = refs.get(tree);
      if (r) return r;
      try {
        const nodes = await keyed.loadTree(tree, io(this.opts));
        r = [];
        for (const n of nodes) {
          if (n.subtree) r.push(`t${n.subtree}`);
          r.push(...contentBlobs(n.content ?? []));
        }
      } catch (e) {
        r = e as Error;
      }
      refs.set(tree, r);
      return r;
    };
    let done = 0;
    for (const [id, s] of snapshots) {
      this.opts.signal?.throwIfAborted();
      try {
        await keyed.loadSnapshot(id, io(this.opts));
      } catch (e) {
        if (e instanceof NotFoundError) continue; // forgotten meanwhile
        // Its trees and references are whatever the forger chose: walking them would prove nothing.
        this.error(`snapshot ${id}`, (e as Error).message.replace(`snapshot ${id} `, ''));
        continue;
      }
      const listed = new Set(s.blobs);
      const notListed = new Set<string>();
      const failed: string[] = [];
      const seen = new Set<string>();
      const stack = [s.tree];
      while (stack.length > 0) {
        const tree = stack.pop()!;
        if (seen.has(tree)) continue;
        seen.add(tree);
        if (!listed.has(tree)) notListed.add(tree);
        const r = await refsOf(tree);
        if (r instanceof Error) {
          failed.push(`tree ${tree}: ${r.message}`);
          continue;
        }
        for (const ref of r) {
          if (ref.startsWith('t')) stack.push(ref.slice(1));
          else if (!listed.has(ref)) notListed.add(ref);
        }
      }
      if (s.image) {
        for (const m of s.image.maps) {
          if (!listed.has(m)) notListed.add(m);
          try {
            const map = await keyed.loadBlob(BlobType.ImageMap, m, io(this.opts));
            for (let o = 0; o + MAP_ENTRY_BYTES <= map.length; o += MAP_ENTRY_BYTES) {
              const e = map.subarray(o, o + MAP_ENTRY_BYTES);
              if (e.some((x) => x !== 0) && !listed.has(e.toString('hex'))) notListed.add(e.toString('hex'));
            }
          } catch (e) {
            failed.push(`image map ${m}: ${(e as Error).message}`);
          }
        }
      }
      for (const f of failed) this.error(`snapshot ${id}`, f);
      if (notListed.size > 0) {
        this.error(`snapshot ${id}`, `its trees reference ${notListed.size} blob(s) missing from its plain reference list (first: ${[...notListed][0]}); a prune would not keep them`);
      }
      this.opts.onProgress?.({ phase: 'trees', done: ++done, total: snapshots.size });
    }
  }

  // ---- damage ----

  private intact(state: RepoState, l: BlobLocation): boolean {
    return state.packs.has(l.pack) && !this.gone.has(l.pack) && !this.badCopies.has(`${l.pack}/${l.id}`);
  }

  /** Referenced blobs with no intact copy in a present pack. */
  private lostBlobs(state: RepoState, snapshots: ReadonlyMap<string, Snapshot>): Set<string> {
    const lost = new Set<string>();
    const seen = new Set<string>();
    for (const s of snapshots.values()) {
      for (const id of s.blobs) {
        if (seen.has(id)) continue;
        seen.add(id);
        const locs = state.locations(id);
        if (locs.some((l) => this.intact(state, l))) {
          const bad = locs.filter((l) => state.packs.has(l.pack) && !this.intact(state, l));
          if (bad.length > 0) this.warn(`blob ${id}`, `damaged in pack ${bad[0]!.pack}, but another copy is intact`);
          if (!state.liveLocation(id)) this.warn(`blob ${id}`, 'is only in a pack marked for deletion; the prune that deletes the pack copies it first');
          continue;
        }
        lost.add(id);
      }
    }
    return lost;
  }

  /**
   * Looks again at blobs found missing (not damaged): a prune may have moved
   * them meanwhile. A blob a pack no index file lists holds intact is not
   * lost either: it is reported with the way to index that pack.
   */
  private async confirmLost(lost: Set<string>): Promise<Set<string>> {
    const damagedByReading = new Set([...this.badCopies.keys()].map((k) => k.slice(k.indexOf('/') + 1)));
    const missing = [...lost].filter((id) => !damagedByReading.has(id));
    const fresh = missing.length === 0 ? undefined : await RepoState.load(this.repo, io(this.opts));
    const out = new Set<string>();
    for (const id of lost) {
      if (!damagedByReading.has(id) && fresh!.locations(id).some((l) => this.intact(fresh!, l))) continue;
      const orphan = this.orphanCopies.get(id)?.find((pack) => !this.damagedPacks.has(pack) && !this.gone.has(pack) && !this.badCopies.has(`${pack}/${id}`));
      if (orphan !== undefined) this.unindexed.set(id, orphan);
      else out.add(id);
    }
    for (const id of out) this.error(`blob ${id}`, damagedByReading.has(id) ? 'damaged in every pack that holds it' : 'is referenced but in no pack');
    for (const [id, pack] of this.unindexed) {
      this.error(`blob ${id}`, `is referenced but only in pack ${pack}, which no index file lists, so readers cannot find it: run "holdfast repair index"`);
    }
    return out;
  }

  private async damageReport(state: RepoState, snapshots: ReadonlyMap<string, Snapshot>, lost: ReadonlySet<string>): Promise<DamagedSnapshot[]> {
    // A suspect blob with a copy in a present pack that is not damaged is read from there (readers read past a bad copy): it damages no snapshot.
    const elsewhere = new Map<string, boolean>();
    const readableElsewhere = (id: string): boolean => {
      let r = elsewhere.get(id);
      if (r === undefined) elsewhere.set(id, (r = state.locations(id).some((l) => this.intact(state, l) && !this.damagedPacks.has(l.pack))));
      return r;
    };
    const out: DamagedSnapshot[] = [];
    for (const [id, s] of snapshots) {
      const certain = s.blobs.filter((b) => lost.has(b)).length;
      const possible = s.blobs.filter((b) => this.suspect.has(b) && !lost.has(b) && !readableElsewhere(b)).length;
      if (certain === 0 && possible === 0) continue;
      const base = { id, time: s.time, hostname: s.hostname, paths: s.paths, blobs: certain + possible, certain: possible === 0 };
      if (!this.opts.keyed) {
        out.push(base);
        continue;
      }
      out.push({ ...base, ...(await damagedPaths(this.opts.keyed, s, lost, io(this.opts))) });
    }
    return out.sort((a, b) => a.time.localeCompare(b.time));
  }
}

/** With the key: which files and folders of a snapshot the lost blobs take away. */
export async function damagedPaths(keyed: KeyedReader, s: Snapshot, lost: ReadonlySet<string>, opts: OperationOptions = {}): Promise<{ files: string[]; dirs: string[]; rootLost: boolean; imageBlocks?: number }> {
  const files: string[] = [];
  const dirs: string[] = [];
  let rootLost = false;
  const walk = async (tree: string, path: string): Promise<void> => {
    let nodes: TreeNode[];
    try {
      if (lost.has(tree)) throw new Error('lost');
      nodes = await keyed.loadTree(tree, opts);
    } catch {
      opts.signal?.throwIfAborted();
      if (path === '') rootLost = true;
      else dirs.push(path);
      return;
    }
    for (const n of nodes) {
      const p = `${path}/${n.name.toString()}`;
      if (n.type === 'file' && (n.content ?? []).some((c) => lost.has(entryBlob(c) ?? ''))) files.push(p);
      if (n.type === 'dir' && n.subtree) await walk(n.subtree, p);
    }
  };
  await walk(s.tree, '');
  if (!s.image) return { files, dirs, rootLost };
  let imageBlocks = 0;
  const blocks = imageBlockCount(s.image);
  for (let m = 0; m < s.image.maps.length; m++) {
    const entries = Math.min(s.image.mapBlocks, blocks - m * s.image.mapBlocks);
    try {
      if (lost.has(s.image.maps[m]!)) throw new Error('lost');
      const map = await keyed.loadBlob(BlobType.ImageMap, s.image.maps[m]!, opts);
      for (let o = 0; o + MAP_ENTRY_BYTES <= map.length; o += MAP_ENTRY_BYTES) if (lost.has(map.subarray(o, o + MAP_ENTRY_BYTES).toString('hex'))) imageBlocks++;
    } catch {
      opts.signal?.throwIfAborted();
      imageBlocks += entries;
    }
  }
  return { files, dirs, rootLost, imageBlocks };
}

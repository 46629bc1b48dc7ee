/**
 * Prune: garbage collection in two phases with a grace period, without the
 * key (docs/format.md §15 has the protocol and why it is safe).
 *
 *   sweep (phase 2 of earlier runs)
 *     markers whose grace has passed, and that no live lock older than them holds back
 *     list snapshots → live blobs
 *     read the header of every pack those markers name: what it holds
 *     a live blob in no present pack → stop, delete nothing
 *     every copy of a live blob in those packs must stay: as the same copy
 *       (sealed bytes, type, flags, raw length) in a pack that stays and
 *       matches its checksum, else copied now (rescue)
 *     index files that name those packs → rewrite what else they describe
 *       (unless the same description stays elsewhere)
 *     delete the packs, then those index files, then the markers
 *   mark (phase 1)
 *     markers → index files → packs (adopt orphan packs by their headers)
 *     list snapshots → live blobs
 *     read the header of every pack the index files describe in two ways
 *     a pack with no live blob is unused; one with more than maxUnused of
 *       its blobs' bytes unused (the header left out) is repacked; either is decided again on its header
 *       before it is condemned; every live blob counts, in every pack
 *     a live blob in no present pack → stop, write and delete nothing
 *     copy every live blob of a repacked pack (sealed bytes, after checking
 *       the pack's SHA-256) into new packs
 *     write the new packs, then one index file for everything that stays
 *       (superseding every index file read), then a marker that names the
 *       condemned packs and those index files
 *
 * Index records and markers are claims that any client able to add objects
 * can write; a pack's header cannot change. So nothing is deleted on a
 * claim, and of several copies of a blob none is preferred: a keyless prune
 * cannot tell a genuine copy from a planted one (§15.10).
 *
 * Nothing is deleted in phase 1, and phase 2 deletes only what a marker
 * named at least one grace period earlier. A backup that started before a
 * marker and references one of its blobs copies that blob before it writes
 * its snapshot (the snapshot fence), or its snapshot is seen by phase 2.
 */
import { sha256 } from '../../core/crypto.js';
import { newMarker, encodeMarker, DEFAULT_GRACE_MS, commitWindowMs, type DeletionMarker } from '../../repo/deletion-marker.js';
import { recordKey, type IndexedPack } from '../../repo/index-file.js';
import { copyDigest, type PackedBlob } from '../../repo/pack.js';
import { PackCopier } from '../../repo/pack-copier.js';
import { RepoState } from '../../repo/repo-state.js';
import { Store } from '../../repo/store.js';
import { handleOf, io, loadBounded } from '../../repo/objects.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../repo/errors.js';
import { NotFoundError, type OperationOptions } from '../../storage/backend.js';
import type { ErrorCode } from '../../core/errors.js';

/** A lock held by someone else, as the sweep needs to see it. */
export interface OtherLock {
  /** When the holder took it (ms since the epoch). */
  readonly created: number;
  /** For messages: "backup (pid 12 on vm) …". */
  readonly description: string;
  /** What holds it ("backup", "prune"). */
  readonly operation?: string;
}

export interface PruneOptions {
  /** Compute and report, write and delete nothing. */
  readonly dryRun?: boolean;
  /** Repack a pack when more than this fraction (0..1) of its blobs' bytes is unused (the header is not counted). Default 0.5. */
  readonly maxUnused?: number;
  /** How long a marked pack stays before a sweep may delete it. Default one hour. */
  readonly graceMs?: number;
  /** The shortest grace period of this repository's prunes (`DEFAULT_MIN_GRACE_MS`): writers commit within half of it. */
  readonly minGraceMs?: number;
  /** The clock (ms since the epoch); tests move it. */
  readonly now?: () => number;
  /** Live locks of other clients (stale ones left out); a marker younger than one of them is not swept. */
  readonly otherLocks?: () => Promise<readonly OtherLock[]>;
  /** Called before each deletion step, e.g. to refresh our own lock (and throw if it was lost). */
  readonly beforeDelete?: () => Promise<void>;
  readonly onWarning?: (message: string) => void;
  readonly signal?: AbortSignal;
}

export interface SweepReport {
  /** Markers whose packs were deleted (or would be, with dryRun). */
  markersSwept: number;
  /** Markers not yet due, with when they become due (ISO). */
  readonly markersWaiting: { readonly marker: string; readonly dueAt: string; readonly reason: string }[];
  packsDeleted: number;
  bytesFreed: number;
  indexFilesDeleted: number;
  /** Live blobs copied out of packs about to be deleted (referenced by snapshots written since they were marked). */
  blobsRescued: number;
  bytesRescued: number;
}

export interface MarkReport {
  /** The marker written (undefined when nothing was condemned, or with dryRun). */
  readonly marker?: string;
  readonly unusedPacks: number;
  readonly unusedBytes: number;
  readonly repackedPacks: number;
  readonly repackedBytes: number;
  /** Live blobs copied out of repacked packs, and their stored bytes. */
  readonly blobsCopied: number;
  readonly bytesCopied: number;
  readonly packsWritten: number;
  /** Unindexed packs that were indexed from their headers. */
  readonly orphansAdopted: number;
  /** Bytes the condemned packs hold, minus the copies: what the sweep will free. */
  readonly bytesToFree: number;
  /** When a sweep may delete them (ISO). */
  readonly deletableAt?: string;
  /** Packs that could not be repacked because their bytes do not match their name (left alone; see check). */
  readonly damagedPacks: string[];
}

export interface PruneReport {
  readonly dryRun: boolean;
  readonly snapshots: number;
  readonly packs: number;
  readonly packBytes: number;
  readonly sweep: SweepReport;
  readonly mark: MarkReport;
}

/** Prune refuses to run on a repository it cannot read completely. */
export class PruneRefusedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'PRUNE_REFUSED';
  constructor(detail: string) {
    super(`prune refused: ${detail}`);
    this.name = 'PruneRefusedError';
  }
}

const emptySweep = (): SweepReport => ({ markersSwept: 0, markersWaiting: [], packsDeleted: 0, bytesFreed: 0, indexFilesDeleted: 0, blobsRescued: 0, bytesRescued: 0 });

/** Runs a prune; see the module comment. */
export class Pruner {
  private readonly now: () => number;
  private readonly grace: number;
  private readonly maxUnused: number;

  /** The options of each storage call: the caller's signal. */
  private readonly io: OperationOptions;

  constructor(private readonly repo: Store, private readonly opts: PruneOptions = {}) {
    this.io = io(opts);
    this.now = opts.now ?? Date.now;
    this.grace = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.maxUnused = opts.maxUnused ?? 0.5;
    if (!(this.maxUnused >= 0 && this.maxUnused <= 1)) throw new RangeError(`maxUnused must be between 0 and 1, got ${this.maxUnused}`);
  }

  private warn(m: string): void {
    this.opts.onWarning?.(m);
  }

  private check(): void {
    this.opts.signal?.throwIfAborted();
  }

  async run(): Promise<PruneReport> {
    const sweep = await this.sweep();
    this.check();
    const { report, snapshots, state } = await this.mark();
    let packBytes = 0;
    for (const s of state.packs.values()) packBytes += s;
    return { dryRun: this.opts.dryRun === true, snapshots, packs: state.packs.size, packBytes, sweep, mark: report };
  }

  /** Every snapshot's blob list, merged; refuses when a snapshot cannot be read (its references would be unknown). */
  private async liveBlobs(): Promise<{ live: Set<string>; count: number }> {
    const snaps = await this.repo.loadSnapshots(this.io);
    if (snaps.damaged.size > 0) {
      // Removing one is the operator's decision (it may be a real snapshot damaged in storage): say which and how, exactly.
      const ids = [...snaps.damaged.keys()];
      const shown = ids.slice(0, 10);
      const more = ids.length > shown.length ? ` and ${ids.length - shown.length} more ("holdfast check" lists them)` : '';
      throw new PruneRefusedError(`${ids.length} snapshot(s) cannot be read, so what they reference is unknown: `
        + `${shown.map((id) => snaps.damaged.get(id)!.message).join('; ')}${more}. `
        + 'Look at each first ("holdfast check"; with the password also "holdfast cat snapshot ID"); one that is no snapshot you need '
        + `(junk a client stored, or damaged beyond use) is removed by "holdfast forget ${shown.join(' ')}"; then run prune again`);
    }
    const live = new Set<string>();
    for (const s of snaps.ok.values()) for (const b of s.blobs) live.add(b);
    return { live, count: snaps.ok.size };
  }

  private refuseDamagedIndex(state: RepoState): void {
    if (state.damagedIndexFiles.size > 0) {
      const [name, why] = [...state.damagedIndexFiles][0]!;
      throw new PruneRefusedError(`${state.damagedIndexFiles.size} index file(s) cannot be read (${name}: ${why.message}); run "holdfast repair index" first`);
    }
  }

  // ---- phase 2 ----

  /** Deletes what markers past their grace period condemned; see the module comment. */
  async sweep(): Promise<SweepReport> {
    const now = this.now();
    const state = await RepoState.load(this.repo, this.io);
    this.refuseDamagedIndex(state);
    const report = emptySweep();
    const damagedMarkers = [...state.damagedMarkers.keys()];
    for (const [name, why] of state.damagedMarkers) this.warn(`deletion marker ${name} cannot be read (${why.message}); it condemns nothing and is removed`);
    if (state.markers.size === 0 && damagedMarkers.length === 0) return report;

    const locks = this.opts.otherLocks ? await this.opts.otherLocks() : [];
    const due = new Map<string, DeletionMarker>();
    for (const [name, m] of state.markers) {
      const t = Date.parse(m.time);
      const dueAt = t + this.grace;
      if (t > now) {
        report.markersWaiting.push({ marker: name, dueAt: new Date(dueAt).toISOString(), reason: 'written in the future of this clock' });
      } else if (dueAt > now) {
        report.markersWaiting.push({ marker: name, dueAt: new Date(dueAt).toISOString(), reason: 'grace period not over' });
      } else {
        // A client that took its lock before the marker (allowing for clock skew) may hold blobs it condemns in memory.
        const older = locks.find((l) => l.created < t + commitWindowMs(this.opts.minGraceMs));
        if (older) report.markersWaiting.push({ marker: name, dueAt: new Date(dueAt).toISOString(), reason: `still running since before it was marked: ${older.description}` });
        else due.set(name, m);
      }
    }
    if (due.size === 0) {
      if (damagedMarkers.length > 0 && !this.opts.dryRun) {
        await this.opts.beforeDelete?.();
        for (const name of damagedMarkers) await this.repo.remove('deletion', name, this.io);
      }
      return report;
    }

    // Snapshots are listed after the due decision: any snapshot whose fence ran before a due marker existed is durable by now.
    const { live } = await this.liveBlobs();
    this.check();
    const doomed = new Set<string>();
    for (const m of due.values()) for (const p of m.packs) if (state.packs.has(p.pack)) doomed.add(p.pack);

    // A marker is a claim like an index record: what a doomed pack holds is what its header says.
    const headerless = new Set<string>();
    for (const pack of doomed) {
      this.check();
      if (!(await this.confirm(state, pack, 'is marked for deletion and its header cannot be read; the blobs the index and markers name for it count'))) headerless.add(pack);
    }
    await this.refuseMissing(state, live);

    // Rescue: every copy of a live blob in a doomed pack survives, as the same copy (everything its authentication covers) in a pack that stays, or copied now.
    const copier = this.opts.dryRun ? undefined : this.copier(state);
    const secured = new Map<string, Set<string>>();
    const survivors = new Survivors(this.repo, state, doomed, (m) => this.warn(m), this.opts.signal);
    for (const pack of doomed) {
      const held = (headerless.has(pack) ? state.claims(pack) : state.packBlobs.get(pack) ?? []).filter((b) => live.has(b.id));
      if (held.length === 0) continue;
      this.check();
      const bytes = await loadBounded(this.repo.backend, handleOf('data', pack), `pack ${pack}`, { signal: this.opts.signal });
      const intact = sha256(bytes).toString('hex') === pack;
      if (!intact) this.warn(`pack ${pack} is marked for deletion and does not match its checksum; its live blobs are kept only where no intact pack holds them`);
      for (const b of held) {
        if (b.offset + b.length > bytes.length) continue; // cut off: nothing left to keep
        const sealed = bytes.subarray(b.offset, b.offset + b.length);
        const digest = copyDigest(b, sealed);
        let mine = secured.get(b.id);
        if (!mine) secured.set(b.id, (mine = new Set()));
        if (mine.has(digest)) continue;
        const elsewhere = await survivors.of(b.id);
        // An intact pack's copy goes only where the same copy stays; a damaged pack's (storage damage, which no client can cause) wherever an intact copy stays.
        if (elsewhere.has(digest) || (!intact && elsewhere.size > 0)) continue;
        mine.add(digest);
        report.blobsRescued++;
        report.bytesRescued += b.length;
        await copier?.add(b, sealed);
      }
    }

    // Index files to remove: those the due markers supersede, and any other that names a doomed pack.
    const candidates = new Set<string>();
    for (const m of due.values()) for (const f of m.indexes) candidates.add(f);
    for (const pack of doomed) for (const f of state.packIndexFiles.get(pack) ?? []) candidates.add(f);
    // What else they describe is dropped only where the same description stays (in an index file kept, or a marker not swept): any other is rewritten.
    const staying = new Set<string>();
    for (const [name, f] of state.indexFiles) if (!candidates.has(name)) for (const p of f.packs) staying.add(recordKey(p));
    for (const [name, m] of state.markers) if (!due.has(name)) for (const p of m.packs) staying.add(recordKey(p));
    const rewrite = new Map<string, IndexedPack>();
    for (const f of candidates) {
      for (const p of state.indexFiles.get(f)?.packs ?? []) {
        if (doomed.has(p.pack) || !state.packs.has(p.pack)) continue;
        const key = recordKey(p);
        if (!staying.has(key) && !rewrite.has(key)) rewrite.set(key, p);
      }
    }

    for (const pack of doomed) {
      report.packsDeleted++;
      report.bytesFreed += state.packs.get(pack)!;
    }
    report.markersSwept = due.size;
    report.indexFilesDeleted = [...candidates].filter((f) => state.indexFiles.has(f) || state.damagedIndexFiles.has(f)).length;
    if (this.opts.dryRun) return report;

    // Additions first (copies, then the index files that replace), deletions last: a crash anywhere leaves every live blob reachable.
    const keep: IndexedPack[] = [...(await copier!.finish()), ...rewrite.values()];
    if (keep.length > 0) await this.repo.saveIndex({ packs: keep, supersedes: [...candidates] }, this.io);
    this.check();
    await this.opts.beforeDelete?.();
    for (const pack of doomed) await this.repo.remove('data', pack, this.io);
    for (const f of candidates) await this.repo.remove('index', f, this.io);
    for (const name of [...due.keys(), ...damagedMarkers]) await this.repo.remove('deletion', name, this.io);
    return report;
  }

  /** Reads a pack's header into `state`; false (with a warning) when it cannot be read. */
  private async confirm(state: RepoState, pack: string, unreadable: string): Promise<boolean> {
    try {
      await state.readHeader(this.repo, pack, this.io);
      return true;
    } catch (e) {
      if (!(e instanceof CorruptObjectError || e instanceof UnsupportedVersionError)) throw e;
      this.warn(`pack ${pack} ${unreadable} (${e.message})`);
      return false;
    }
  }

  /**
   * Stops, before anything is written or deleted, when a live blob is in no
   * present pack: a partial view could delete it. A backup that committed
   * between the reading of `state` and the listing of the snapshots is seen
   * by its snapshot but not by its index file (and perhaps not by its
   * packs): a blob missing from `state` is looked up in a fresh view, and
   * counts there in a pack that `state` did not list (which this run never
   * condemns or deletes), or in an orphan of `state` whose header, read now,
   * lists it.
   */
  private async refuseMissing(state: RepoState, live: ReadonlySet<string>): Promise<void> {
    const inState = (id: string): boolean => state.locations(id).some((l) => state.packs.has(l.pack));
    let missing = [...live].filter((id) => !inState(id));
    if (missing.length === 0) return;
    const fresh = await RepoState.load(this.repo, this.io);
    missing = missing.filter((id) => !fresh.locations(id).some((l) => fresh.packs.has(l.pack) && !state.packs.has(l.pack)));
    const orphans = new Set(state.orphans());
    for (const id of missing) {
      for (const l of fresh.locations(id)) {
        if (!orphans.delete(l.pack)) continue;
        this.check();
        await this.confirm(state, l.pack, 'was written during this prune and has a header that cannot be read');
      }
    }
    missing = missing.filter((id) => !inState(id));
    if (missing.length === 0) return;
    throw new PruneRefusedError(`${missing.length} blob(s) referenced by snapshots are in no pack (first: ${missing[0]}), so the repository is incomplete and nothing is deleted; `
      + 'run "holdfast check" to see which snapshots and files, "holdfast repair index" if pack headers list them, else "holdfast repair snapshots"');
  }

  /** Packs for copied sealed blobs, never with the name of a present pack. */
  private copier(state: RepoState): PackCopier {
    return new PackCopier(this.repo.backend, this.repo.config.packSize, (name) => state.packs.has(name), this.io);
  }

  // ---- phase 1 ----

  /** Marks unused and mostly unused packs; see the module comment. */
  async mark(): Promise<{ report: MarkReport; snapshots: number; state: RepoState }> {
    const state = await RepoState.load(this.repo, this.io);
    this.refuseDamagedIndex(state);
    const { live, count } = await this.liveBlobs();
    this.check();

    // Headers are read only where they decide something; one that cannot be read (storage damage: no client can change a stored pack) leaves every claim about the pack standing.
    const unreadable = new Set<string>();
    const confirm = async (pack: string): Promise<readonly PackedBlob[]> => {
      this.check();
      if (!state.confirmed.has(pack) && !unreadable.has(pack) && !(await this.confirm(state, pack, 'has a header that cannot be read; every blob the index files name for it counts'))) unreadable.add(pack);
      return unreadable.has(pack) ? state.claims(pack) : state.packBlobs.get(pack)!;
    };

    // Orphans: packs no index file and no marker names (an interrupted backup's, or one in flight). Adopted, never deleted unread.
    const adopted: IndexedPack[] = [];
    for (const pack of state.orphans()) {
      const blobs = await confirm(pack);
      if (!unreadable.has(pack)) adopted.push({ pack, blobs });
    }
    // A pack that index files describe in different ways: its header decides, and the index is rewritten from it.
    const disputed = [...state.disputed].filter((p) => state.isLive(p));
    for (const pack of disputed) await confirm(pack);
    if (disputed.length > 0) this.warn(`${disputed.length} pack(s) are described differently by different index files (first: ${disputed[0]}); their headers decide, and the index is rewritten from them`);
    const missingPacks = [...state.packBlobs.keys()].filter((p) => !state.packs.has(p) && !state.condemned.has(p));
    if (missingPacks.length > 0) this.warn(`${missingPacks.length} pack(s) named by index files do not exist (first: ${missingPacks[0]}); their entries are dropped`);

    // Every live copy counts where its pack says it is, and a pack is condemned only on what its header says.
    const unused: string[] = [];
    const repack: string[] = [];
    for (const pack of [...state.packBlobs.keys()].filter((p) => state.isLive(p))) {
      let verdict = this.verdict(state.packBlobs.get(pack)!, live);
      if (verdict !== 'keep') verdict = this.verdict(await confirm(pack), live);
      if (verdict === 'unused') unused.push(pack);
      else if (verdict === 'repack') repack.push(pack);
    }
    await this.refuseMissing(state, live);
    const condemned = new Set([...unused, ...repack]);

    const damagedPacks: string[] = [];
    let unusedBytes = 0;
    for (const p of unused) unusedBytes += state.packs.get(p)!;
    let repackedBytes = 0;
    for (const p of repack) repackedBytes += state.packs.get(p)!;
    let blobsCopied = 0;
    let bytesCopied = 0;
    for (const p of repack) for (const b of await confirm(p)) if (live.has(b.id)) {
      blobsCopied++;
      bytesCopied += b.length;
    }

    const base = {
      unusedPacks: unused.length, unusedBytes, repackedPacks: repack.length, repackedBytes, blobsCopied, bytesCopied,
      orphansAdopted: adopted.length, damagedPacks,
    };
    if (this.opts.dryRun || condemned.size === 0) {
      // Adopted packs are only added; entries of missing packs and descriptions that the headers overrule are rewritten away.
      const full = missingPacks.length > 0 || disputed.length > 0;
      if (!this.opts.dryRun && (full || adopted.length > 0)) await this.compact(state, new Set(), adopted, full);
      const report: MarkReport = { ...base, packsWritten: 0, bytesToFree: unusedBytes + repackedBytes - bytesCopied };
      return { report, snapshots: count, state };
    }

    // Copy every live blob of a repacked pack (every copy is kept: a keyless prune cannot tell a genuine copy from a planted one), from bytes whose SHA-256 matches the pack's name.
    const copier = this.copier(state);
    let keptBytes = 0;
    for (const pack of repack) {
      this.check();
      const bytes = await loadBounded(this.repo.backend, handleOf('data', pack), `pack ${pack}`, { signal: this.opts.signal });
      const header = sha256(bytes).toString('hex') === pack ? parseOrUndefined(pack, bytes) : undefined;
      if (!header) {
        damagedPacks.push(pack);
        condemned.delete(pack);
        this.warn(`pack ${pack} does not match its checksum; not repacked (run "holdfast check --read-data")`);
        continue;
      }
      for (const b of header.filter((x) => live.has(x.id))) {
        this.check();
        await copier.add(b, bytes.subarray(b.offset, b.offset + b.length));
        keptBytes += b.length;
      }
    }
    const written = await copier.finish();
    const marked: IndexedPack[] = [];
    for (const pack of condemned) marked.push({ pack, blobs: await confirm(pack) });
    const compacted = await this.compact(state, condemned, [...adopted, ...written], true);
    let marker: string | undefined;
    const stamp = new Date(this.now());
    if (marked.length > 0) marker = await this.repo.save('deletion', encodeMarker(newMarker(marked, compacted, stamp)), this.io);
    const freed = marked.reduce((n, p) => n + (state.packs.get(p.pack) ?? 0), 0) - keptBytes;
    const report: MarkReport = {
      ...base,
      unusedPacks: unused.filter((p) => condemned.has(p)).length,
      repackedPacks: repack.filter((p) => condemned.has(p)).length,
      ...(marker ? { marker, deletableAt: new Date(stamp.getTime() + this.grace).toISOString() } : {}),
      packsWritten: written.length,
      bytesToFree: freed,
    };
    return { report, snapshots: count, state };
  }

  /**
   * What to do with a live pack holding `blobs`: every live blob in it
   * counts, whatever other packs hold. The unused fraction is of the blobs'
   * bytes only: a pack's header is no waste that repacking saves (a pack of
   * one small live blob is mostly header, and a new pack of it would be too,
   * so counting the header repacked it at every prune).
   */
  private verdict(blobs: readonly PackedBlob[], live: ReadonlySet<string>): 'keep' | 'unused' | 'repack' {
    let used = 0;
    let dead = 0;
    for (const b of blobs) {
      if (live.has(b.id)) used += b.length;
      else dead += b.length;
    }
    if (used === 0) return 'unused';
    return dead / (used + dead) > this.maxUnused ? 'repack' : 'keep';
  }

  /**
   * Writes one index file for every present pack that stays (plus `extra`),
   * superseding every index file read; returns the names superseded. A
   * confirmed pack is written as its header says, any other with every
   * description the index files gave it. Without `full`, only `extra` is
   * written and nothing superseded.
   */
  private async compact(state: RepoState, condemned: ReadonlySet<string>, extra: readonly IndexedPack[], full: boolean): Promise<string[]> {
    const records: IndexedPack[] = [];
    const seen = new Set<string>();
    const add = (pack: string, blobs: readonly PackedBlob[]): void => {
      const p = { pack, blobs };
      const key = recordKey(p);
      if (seen.has(key)) return;
      seen.add(key);
      records.push(p);
    };
    for (const p of extra) add(p.pack, p.blobs);
    if (full) {
      for (const pack of state.packBlobs.keys()) {
        if (!state.isLive(pack) || condemned.has(pack)) continue;
        for (const blobs of state.descriptionsOf(pack)) add(pack, blobs);
      }
    }
    const supersedes = full ? [...state.indexFiles.keys()] : [];
    if (records.length > 0 || supersedes.length > 0) await this.repo.saveIndex({ packs: records, supersedes }, this.io);
    // Without a marker, nothing else removes what this index replaces: do it now (only after the new one is durable).
    if (full && condemned.size === 0 && supersedes.length > 0) {
      await this.opts.beforeDelete?.();
      for (const f of supersedes) await this.repo.remove('index', f, this.io);
    }
    return supersedes;
  }
}

/** The header of a whole pack in memory, or undefined when it does not parse. */
function parseOrUndefined(pack: string, bytes: Buffer): PackedBlob[] | undefined {
  try {
    return Store.parsePack(pack, bytes);
  } catch (e) {
    if (e instanceof CorruptObjectError || e instanceof UnsupportedVersionError) return undefined;
    throw e;
  }
}

/**
 * The copies of live blobs that a sweep may count as staying: in a present
 * pack it does not delete, whose stored bytes match its name, where that
 * pack's own header puts them; each copy known by its `copyDigest` (its
 * header entry's type, flags, raw length and id with its sealed bytes: the
 * same sealed bytes under another raw length, say, never authenticate, so
 * they do not keep a copy). Each pack is read once.
 */
class Survivors {
  private readonly packs = new Map<string, Map<string, Set<string>> | undefined>();

  constructor(
    private readonly repo: Store,
    private readonly state: RepoState,
    private readonly doomed: ReadonlySet<string>,
    private readonly warn: (m: string) => void,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** `copyDigest`s of every copy of `id` that stays. */
  async of(id: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const l of this.state.locations(id)) {
      if (this.doomed.has(l.pack) || !this.state.packs.has(l.pack)) continue;
      for (const d of (await this.copiesIn(l.pack))?.get(id) ?? []) out.add(d);
    }
    return out;
  }

  private async copiesIn(pack: string): Promise<Map<string, Set<string>> | undefined> {
    if (this.packs.has(pack)) return this.packs.get(pack);
    let copies: Map<string, Set<string>> | undefined;
    try {
      const bytes = await loadBounded(this.repo.backend, handleOf('data', pack), `pack ${pack}`, { signal: this.signal });
      if (sha256(bytes).toString('hex') !== pack) {
        this.warn(`pack ${pack} does not match its checksum: its copies do not count, and live blobs are copied again out of the packs about to be deleted (run "holdfast check --read-data")`);
      } else {
        copies = new Map();
        for (const b of Store.parsePack(pack, bytes)) {
          let d = copies.get(b.id);
          if (!d) copies.set(b.id, (d = new Set()));
          d.add(copyDigest(b, bytes.subarray(b.offset, b.offset + b.length)));
        }
      }
    } catch (e) {
      if (!(e instanceof NotFoundError || e instanceof CorruptObjectError || e instanceof UnsupportedVersionError)) throw e;
    }
    this.packs.set(pack, copies);
    return copies;
  }
}

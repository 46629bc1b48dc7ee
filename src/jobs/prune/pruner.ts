/**
 * Prune: garbage collection in two phases with a grace period, without the
 * key (docs/format.md §15 has the protocol and why it is safe).
 *
 *   sweep (phase 2 of earlier runs)
 *     markers whose grace has passed, and that no live lock older than them holds back
 *     list snapshots → live blobs
 *     live blobs whose only copies are in those markers' packs → copy into new packs (rescue)
 *     index files that name those packs → rewrite what else they hold (if no other file has it)
 *     delete the packs, then those index files, then the markers
 *   mark (phase 1)
 *     markers → index files → packs (adopt orphan packs by their headers)
 *     list snapshots → live blobs
 *     a pack with no live blob is unused; one with more than maxUnused of
 *       its bytes unused is repacked: its live blobs are copied (sealed
 *       bytes, after checking the pack's SHA-256) into new packs
 *     write the new packs, then one index file for everything that stays
 *       (superseding every index file read), then a marker that names the
 *       condemned packs and those index files
 *
 * Nothing is deleted in phase 1, and phase 2 deletes only what a marker
 * named at least one grace period earlier. A backup that started before a
 * marker and references one of its blobs copies that blob before it writes
 * its snapshot (the snapshot fence), or its snapshot is seen by phase 2.
 */
import { sha256 } from '../../core/crypto.js';
import { newMarker, encodeMarker, DEFAULT_GRACE_MS, commitWindowMs, type DeletionMarker } from '../../repo/deletion-marker.js';
import type { BlobLocation, IndexedPack } from '../../repo/index-file.js';
import type { PackedBlob } from '../../repo/pack.js';
import { PackCopier } from '../../repo/pack-copier.js';
import { PlainRepository, RepoState } from '../../repo/plain-repository.js';
import { handleOf } from '../../repo/objects.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../repo/errors.js';

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
  /** Repack a pack when more than this fraction (0..1) of its bytes is unused. Default 0.5. */
  readonly maxUnused?: number;
  /** How long a marked pack stays before a sweep may delete it. Default one hour. */
  readonly graceMs?: number;
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
  /** Blobs snapshots reference that are in no pack at all (damage: see check). */
  readonly missingBlobs: number;
}

/** Prune refuses to run on a repository it cannot read completely. */
export class PruneRefusedError extends Error {
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

  constructor(private readonly repo: PlainRepository, private readonly opts: PruneOptions = {}) {
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
    const { report, snapshots, state, missing } = await this.mark();
    let packBytes = 0;
    for (const s of state.packs.values()) packBytes += s;
    return { dryRun: this.opts.dryRun === true, snapshots, packs: state.packs.size, packBytes, sweep, mark: report, missingBlobs: missing };
  }

  /** Every snapshot's blob list, merged; refuses when a snapshot cannot be read (its references would be unknown). */
  private async liveBlobs(): Promise<{ live: Set<string>; count: number }> {
    const snaps = await this.repo.loadSnapshots();
    if (snaps.damaged.size > 0) {
      const [name, why] = [...snaps.damaged][0]!;
      throw new PruneRefusedError(`${snaps.damaged.size} snapshot(s) cannot be read, so what they reference is unknown (${name}: ${why}); `
        + 'run "holdfast check", then "holdfast repair snapshots --forget-damaged"');
    }
    const live = new Set<string>();
    for (const s of snaps.ok.values()) for (const b of s.blobs) live.add(b);
    return { live, count: snaps.ok.size };
  }

  private refuseDamagedIndex(state: RepoState): void {
    if (state.damagedIndexFiles.size > 0) {
      const [name, why] = [...state.damagedIndexFiles][0]!;
      throw new PruneRefusedError(`${state.damagedIndexFiles.size} index file(s) cannot be read (${name}: ${why}); run "holdfast repair index" first`);
    }
  }

  // ---- phase 2 ----

  /** Deletes what markers past their grace period condemned; see the module comment. */
  async sweep(): Promise<SweepReport> {
    const now = this.now();
    const state = await RepoState.load(this.repo);
    this.refuseDamagedIndex(state);
    const report = emptySweep();
    const damagedMarkers = [...state.damagedMarkers.keys()];
    for (const [name, why] of state.damagedMarkers) this.warn(`deletion marker ${name} cannot be read (${why}); it condemns nothing and is removed`);
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
        const older = locks.find((l) => l.created < t + commitWindowMs());
        if (older) report.markersWaiting.push({ marker: name, dueAt: new Date(dueAt).toISOString(), reason: `still running since before it was marked: ${older.description}` });
        else due.set(name, m);
      }
    }
    if (due.size === 0) {
      if (damagedMarkers.length > 0 && !this.opts.dryRun) {
        await this.opts.beforeDelete?.();
        for (const name of damagedMarkers) await this.repo.remove('deletion', name);
      }
      return report;
    }

    // Snapshots are listed after the due decision: any snapshot whose fence ran before a due marker existed is durable by now.
    const { live } = await this.liveBlobs();
    this.check();
    const doomed = new Set<string>();
    for (const m of due.values()) for (const p of m.packs) doomed.add(p.pack);

    // Rescue: live blobs whose only present copies are in doomed packs.
    const rescue = new Map<string, BlobLocation>();
    for (const id of live) {
      if (state.liveLocation(id)) continue;
      const here = state.locations(id).filter((l) => state.packs.has(l.pack));
      if (here.length === 0 || here.some((l) => !doomed.has(l.pack))) continue; // missing (check reports it), or waits in a later marker
      rescue.set(id, here[0]!);
    }

    // Index files to remove: those the due markers supersede, and any other that names a doomed pack.
    const candidates = new Set<string>();
    for (const m of due.values()) for (const f of m.indexes) candidates.add(f);
    for (const pack of doomed) for (const f of state.packIndexFiles.get(pack) ?? []) candidates.add(f);
    const coveredElsewhere = (pack: string): boolean =>
      (state.condemned.has(pack) && !doomed.has(pack)) || [...(state.packIndexFiles.get(pack) ?? [])].some((f) => !candidates.has(f));
    const rewrite = new Map<string, IndexedPack>();
    for (const f of candidates) {
      for (const p of state.indexFiles.get(f)?.packs ?? []) {
        if (doomed.has(p.pack) || !state.packs.has(p.pack) || coveredElsewhere(p.pack) || rewrite.has(p.pack)) continue;
        rewrite.set(p.pack, p);
      }
    }

    for (const pack of doomed) {
      const size = state.packs.get(pack);
      if (size === undefined) continue;
      report.packsDeleted++;
      report.bytesFreed += size;
    }
    for (const b of rescue.values()) {
      report.blobsRescued++;
      report.bytesRescued += b.length;
    }
    report.markersSwept = due.size;
    report.indexFilesDeleted = [...candidates].filter((f) => state.indexFiles.has(f) || state.damagedIndexFiles.has(f)).length;
    if (this.opts.dryRun) return report;

    // Additions first (copies, then the index files that replace), deletions last: a crash anywhere leaves every live blob reachable.
    const copies = await this.copy(state, [...rescue.values()], async (loc) => this.repo.backend.load(handleOf('data', loc.pack), loc.offset, loc.length));
    const keep: IndexedPack[] = [...copies, ...rewrite.values()];
    if (keep.length > 0) await this.repo.saveIndex({ packs: keep, supersedes: [...candidates] });
    this.check();
    await this.opts.beforeDelete?.();
    for (const pack of doomed) await this.repo.remove('data', pack);
    for (const f of candidates) await this.repo.remove('index', f);
    for (const name of [...due.keys(), ...damagedMarkers]) await this.repo.remove('deletion', name);
    return report;
  }

  /** Copies sealed blobs into new packs whose names no present pack has; returns them. */
  private async copy(state: RepoState, blobs: readonly BlobLocation[], read: (loc: BlobLocation) => Promise<Buffer>): Promise<IndexedPack[]> {
    const copier = new PackCopier(this.repo.backend, this.repo.config.packSize, (name) => state.packs.has(name));
    for (const b of blobs) {
      this.check();
      await copier.add(b, await read(b));
    }
    return copier.finish();
  }

  // ---- phase 1 ----

  /** Marks unused and mostly unused packs; see the module comment. */
  async mark(): Promise<{ report: MarkReport; snapshots: number; state: RepoState; missing: number }> {
    const state = await RepoState.load(this.repo);
    this.refuseDamagedIndex(state);
    const { live, count } = await this.liveBlobs();
    this.check();

    // Orphans: packs no index file and no marker names (an interrupted backup's, or one in flight). Adopted, never deleted unread.
    const adopted: IndexedPack[] = [];
    for (const pack of state.orphans()) {
      try {
        const p = { pack, blobs: await this.repo.readPackHeader(pack, state.packs.get(pack)!) };
        state.adopt(p);
        adopted.push(p);
      } catch (e) {
        if (!(e instanceof CorruptObjectError || e instanceof UnsupportedVersionError)) throw e;
        this.warn(`pack ${pack} is in no index and its header cannot be read (${e.message}); left alone`);
      }
    }

    // Every pack the index files (or adoption) name, that exists and is not already marked.
    const candidates = new Map<string, readonly PackedBlob[]>();
    for (const [pack, blobs] of state.packBlobs) if (state.isLive(pack)) candidates.set(pack, blobs);
    const missingPacks = [...state.packBlobs.keys()].filter((p) => !state.packs.has(p) && !state.condemned.has(p));
    if (missingPacks.length > 0) this.warn(`${missingPacks.length} pack(s) named by index files do not exist (first: ${missingPacks[0]}); their entries are dropped`);

    // Attribute each live blob to one live copy (its keeper); count the bytes each pack keeps.
    const keeper = new Map<string, string>();
    const used = new Map<string, number>();
    let missing = 0;
    for (const id of live) {
      const loc = state.liveLocation(id);
      if (!loc) {
        if (!state.locations(id).some((l) => state.packs.has(l.pack))) missing++;
        continue; // only in a marked pack: the sweep that deletes it rescues the blob
      }
      keeper.set(id, loc.pack);
      used.set(loc.pack, (used.get(loc.pack) ?? 0) + loc.length);
    }
    if (missing > 0) this.warn(`${missing} blob(s) referenced by snapshots are in no pack; run "holdfast check" to see which snapshots and files`);

    const unused: string[] = [];
    const repack: string[] = [];
    for (const pack of candidates.keys()) {
      const size = state.packs.get(pack)!;
      const u = used.get(pack) ?? 0;
      if (u === 0) unused.push(pack);
      else if ((size - u) / size > this.maxUnused) repack.push(pack);
    }
    const condemned = new Set([...unused, ...repack]);

    // What must be copied out of repacked packs: live blobs kept there that no staying pack also holds.
    const toCopy = new Map<string, BlobLocation[]>();
    for (const [id, pack] of keeper) {
      if (!condemned.has(pack)) continue;
      const other = state.locations(id).find((l) => state.isLive(l.pack) && !condemned.has(l.pack));
      if (other) continue;
      const loc = state.locations(id).find((l) => l.pack === pack)!;
      let l = toCopy.get(pack);
      if (!l) toCopy.set(pack, (l = []));
      l.push(loc);
    }

    const damagedPacks: string[] = [];
    let unusedBytes = 0;
    for (const p of unused) unusedBytes += state.packs.get(p)!;
    let repackedBytes = 0;
    for (const p of repack) repackedBytes += state.packs.get(p)!;
    let blobsCopied = 0;
    let bytesCopied = 0;
    for (const l of toCopy.values()) for (const b of l) {
      blobsCopied++;
      bytesCopied += b.length;
    }

    const base = {
      unusedPacks: unused.length, unusedBytes, repackedPacks: repack.length, repackedBytes, blobsCopied, bytesCopied,
      orphansAdopted: adopted.length, damagedPacks,
    };
    if (this.opts.dryRun || condemned.size === 0) {
      if (!this.opts.dryRun && (adopted.length > 0 || missingPacks.length > 0)) await this.compact(state, new Set(), adopted);
      const report: MarkReport = { ...base, packsWritten: 0, bytesToFree: unusedBytes + repackedBytes - bytesCopied };
      return { report, snapshots: count, state, missing };
    }

    // Copy the live blobs of repacked packs, from pack bytes whose SHA-256 matches their name.
    const written: IndexedPack[] = [];
    for (const [pack, blobs] of toCopy) {
      this.check();
      const bytes = await this.repo.backend.load(handleOf('data', pack));
      if (sha256(bytes).toString('hex') !== pack) {
        damagedPacks.push(pack);
        condemned.delete(pack);
        this.warn(`pack ${pack} does not match its checksum; not repacked (run "holdfast check --read-data")`);
        continue;
      }
      written.push(...(await this.copy(state, blobs, async (b) => bytes.subarray(b.offset, b.offset + b.length))));
    }
    const marked = [...condemned].map((pack) => ({ pack, blobs: state.packBlobs.get(pack)! }));
    const keptBytes = [...toCopy].filter(([p]) => condemned.has(p)).flatMap(([, l]) => l).reduce((n, b) => n + b.length, 0);
    const compacted = await this.compact(state, condemned, [...adopted, ...written]);
    let marker: string | undefined;
    const stamp = new Date(this.now());
    if (marked.length > 0) marker = await this.repo.save('deletion', encodeMarker(newMarker(marked, compacted, stamp)));
    const freed = marked.reduce((n, p) => n + (state.packs.get(p.pack) ?? 0), 0) - keptBytes;
    const report: MarkReport = {
      ...base,
      unusedPacks: unused.filter((p) => condemned.has(p)).length,
      repackedPacks: repack.filter((p) => condemned.has(p)).length,
      ...(marker ? { marker, deletableAt: new Date(stamp.getTime() + this.grace).toISOString() } : {}),
      packsWritten: written.length,
      bytesToFree: freed,
    };
    return { report, snapshots: count, state, missing };
  }

  /**
   * Writes one index file for every present pack that stays (plus `extra`),
   * superseding every index file read; returns the names superseded. When
   * nothing is condemned, only `extra` is written and nothing superseded.
   */
  private async compact(state: RepoState, condemned: ReadonlySet<string>, extra: readonly IndexedPack[]): Promise<string[]> {
    if (condemned.size === 0 && extra.length === 0) return [];
    const packs = new Map<string, IndexedPack>();
    const missingPacks = [...state.packBlobs.keys()].some((p) => !state.packs.has(p) && !state.condemned.has(p));
    const full = condemned.size > 0 || missingPacks;
    if (full) {
      for (const f of state.indexFiles.values()) {
        for (const p of f.packs) if (state.isLive(p.pack) && !condemned.has(p.pack) && !packs.has(p.pack)) packs.set(p.pack, p);
      }
    }
    for (const p of extra) if (!packs.has(p.pack)) packs.set(p.pack, p);
    const supersedes = full ? [...state.indexFiles.keys()] : [];
    if (packs.size > 0 || supersedes.length > 0) await this.repo.saveIndex({ packs: [...packs.values()], supersedes });
    // Without a marker, nothing else removes what this index replaces: do it now (only after the new one is durable).
    if (full && condemned.size === 0) {
      await this.opts.beforeDelete?.();
      for (const f of supersedes) await this.repo.remove('index', f);
    }
    return supersedes;
  }
}

/**
 * The copy job: copies snapshots from one repository into another that
 * shares its master key and chunker parameters, without the key
 * (docs/format.md §19). Sealed blobs move byte for byte: their AAD binds
 * type, flags, raw length and id, not the pack or the repository, and a
 * snapshot's MAC key derives from the master key alone.
 *
 *   refuse unless both configs name the same master key and chunker parameters
 *   wanted = the chosen source snapshots the destination lacks (same id: same bytes)
 *   dst    = the destination's index; packs no index file lists (left by a copy
 *            or backup killed before its index file) are read for their headers and indexed
 *   claims = blobs the wanted snapshots list that the destination's index files put in
 *            present, unmarked packs: only claims (anyone who can add objects can write
 *            an index file), so each such pack's header is read and decides
 *   needed = blobs the wanted snapshots list that no present, unmarked destination pack's
 *            header holds
 *   for each source pack claimed to hold needed blobs (what it holds is its header's word):
 *     larger than any pack (MAX_PACK_BYTES), or a header entry larger than any blob of
 *     its type (MAX_RAW_LENGTH + seal) → damaged, nothing read from it
 *     most of it needed → read it whole, check its bytes against its name, header from those bytes
 *     else             → read its header, then the needed blobs by range
 *     check each blob's stored length against its header entry
 *     read whole, and its header lists needed blobs only, each once, each good
 *                      → the pack as it is, under its own name unless the destination
 *                        holds that name (then salted as any copy: docs/format.md §19)
 *     else             → each good blob into a new destination pack
 *     source packs read and destination packs stored at once: as many as each
 *     backend has connections, IN_FLIGHT_BYTES at most; each source pack taken as
 *     it arrives, not in turn
 *     a blob that fails is looked for in the next pack claimed to hold it
 *     every INDEX_EVERY_PACKS destination packs → one index file
 *   the last pack, its index file
 *   each wanted snapshot, oldest first, whose every blob is now in a destination
 *   pack whose header lists it (read above, or written by this run):
 *     its bytes as they are, behind the snapshot fence (src/repo/snapshot-fence.ts),
 *     one fence for as many as fit its commit window
 *
 * Killed at any point, the destination stays valid (a snapshot is written
 * only once its blobs are indexed) and the next copy does only what is left.
 */
import { SEAL_OVERHEAD, sha256 } from '../../core/crypto.js';
import { forEachLimit } from '../../core/for-each-limit.js';
import { NotFoundError, ShortReadError } from '../../storage/backend.js';
import type { RepoConfig } from '../../repo/config.js';
import { commitWindowMs } from '../../repo/deletion-marker.js';
import { CorruptObjectError, ForgedObjectError } from '../../repo/errors.js';
import { MasterIndex, type IndexedPack } from '../../repo/index-file.js';
import { handleOf, io, loadBounded, loadChecked } from '../../repo/objects.js';
import { PackCopier } from '../../repo/pack-copier.js';
import { MAX_RAW_LENGTH } from '../../repo/blob-codec.js';
import { BlobType, FLAG_COMPRESSED, MAX_PACK_BYTES, type PackedBlob } from '../../repo/pack.js';
import { RepoState } from '../../repo/repo-state.js';
import { isDamage, Store, type Loaded, type StoredSnapshot } from '../../repo/store.js';
import { BlobsLostError, commitSnapshots } from '../../repo/snapshot-fence.js';
import type { ErrorCode } from '../../core/errors.js';

/** Destination packs between two index files. */
const INDEX_EVERY_PACKS = 16;
/**
 * Bytes of source packs being read, and of destination packs being stored,
 * each about at most: as many packs as the backend has connections, fewer
 * when they are large.
 */
const IN_FLIGHT_BYTES = 128 * 1024 * 1024;
/** Two needed blobs of a pack at most this far apart are read with one range read. */
const RANGE_GAP = 64 * 1024;

/** The two repositories cannot share blobs: nothing was copied. */
export class CopyRefusedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'COPY_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'CopyRefusedError';
  }
}

/**
 * Refuses (`CopyRefusedError`) unless blobs sealed for `src` open, and are
 * deduplicated, in `dst`: the same master key (by its public name) and
 * chunker parameters. Needs no key.
 */
export function refuseUnlessCompatible(src: RepoConfig, dst: RepoConfig): void {
  if (src.id === dst.id) throw new CopyRefusedError(`the source and the destination are the same repository (${src.id.slice(0, 10)})`);
  const init = 'a repository that shares the source\'s key is made with "holdfast init --copy-from SOURCE"';
  if (src.masterKey !== dst.masterKey) {
    throw new CopyRefusedError(`repository ${src.id.slice(0, 10)} (the source) and repository ${dst.id.slice(0, 10)} (the destination) have different master keys: `
      + `blobs sealed with the source's key would not open in the destination; ${init}`);
  }
  const chunker = (c: RepoConfig): string => JSON.stringify(c.chunker);
  if (chunker(src) !== chunker(dst)) throw new CopyRefusedError(`the repositories share a master key but not their chunker parameters (${chunker(src)} against ${chunker(dst)}); ${init}`);
}

/** What a copy did. */
export interface CopyReport {
  /** Snapshots written into the destination, oldest first. */
  readonly copied: string[];
  /** Chosen snapshots the destination had already. */
  readonly present: string[];
  /** Chosen snapshots not copied, and why. */
  readonly failed: { id: string; reason: string }[];
  /** Blobs copied, and their stored bytes. */
  blobsCopied: number;
  bytesCopied: number;
  /** Source packs read from. */
  packsRead: number;
  /** Destination packs written. */
  packsWritten: number;
  /** Destination packs an interrupted run had left without an index file, indexed now. */
  orphansIndexed: number;
}

/** How far a copy is, after each source pack. */
export interface CopyProgress {
  /** Source packs read, of those the needed blobs are claimed to be in. */
  readonly packsDone: number;
  readonly packsTotal: number;
  /** Stored bytes copied, of those needed (as the source's index files claim them). */
  readonly bytesCopied: number;
  readonly bytesTotal: number;
}

export interface CopyOptions {
  /** Ends the copy between packs and between snapshots (with its reason). */
  readonly signal?: AbortSignal;
  /** Damage met in the source or the destination, not fatal to the copy. */
  readonly onWarning?: (message: string) => void;
  readonly onProgress?: (p: CopyProgress) => void;
  /** The destination's minimum grace period, which bounds how long a snapshot's commit may take (`commitWindowMs`). */
  readonly minGraceMs?: number;
}

/** A source snapshot to copy. */
interface Wanted extends StoredSnapshot {
  readonly id: string;
}

/** What reading one source pack gave. */
interface PackRead {
  /** Needed blobs that passed the checks, with their sealed bytes. */
  readonly good: { entry: PackedBlob; sealed: Buffer }[];
  /** Needed blobs it did not give, and why. */
  readonly bad: Map<string, string>;
  /** The pack read whole, its name checked, when every blob its header lists is in `good`: it can be stored as it is. */
  readonly whole?: { readonly pack: string; readonly bytes: Buffer; readonly blobs: readonly PackedBlob[] };
}

/**
 * Problems of a header entry that tell, without the key, that its bytes
 * cannot be a sealed blob (docs/format.md §3.2, §3.4), else undefined.
 */
function entryProblem(b: PackedBlob): string | undefined {
  if (b.length < SEAL_OVERHEAD) return `${b.length} stored bytes, fewer than any sealed blob's ${SEAL_OVERHEAD}`;
  if ((b.flags & FLAG_COMPRESSED) === 0 && b.length !== b.rawLength + SEAL_OVERHEAD) return `uncompressed, yet ${b.length} stored bytes for ${b.rawLength} raw`;
  if ((b.flags & FLAG_COMPRESSED) !== 0 && b.length >= b.rawLength + SEAL_OVERHEAD) return `compressed, yet ${b.length} stored bytes for ${b.rawLength} raw`;
  return undefined;
}

/** A header entry larger than any blob of its type can be (docs/format.md §8), else undefined. */
function sizeProblem(b: PackedBlob): string | undefined {
  const max = MAX_RAW_LENGTH[b.type];
  if (b.rawLength > max || b.length > max + SEAL_OVERHEAD) return `blob ${b.id} of ${b.length} stored bytes (${b.rawLength} raw): larger than any blob of its type (${max} raw)`;
  return undefined;
}

/** One copy from `src` into `dst`; see the module comment. */
export class SnapshotCopier {
  private readonly report: CopyReport = { copied: [], present: [], failed: [], blobsCopied: 0, bytesCopied: 0, packsRead: 0, packsWritten: 0, orphansIndexed: 0 };
  /** Where the destination holds blobs, by pack headers only (read, or written by this run): the snapshot fence's index. */
  private readonly index = new MasterIndex();
  /** Destination packs written and not yet in an index file. */
  private unindexed: IndexedPack[] = [];
  /** Blobs copied by this run. */
  private readonly copiedBlobs = new Set<string>();
  /** Needed blobs that could not be copied, and why. */
  private readonly missing = new Map<string, string>();

  constructor(private readonly src: Store, private readonly dst: Store, private readonly opts: CopyOptions = {}) {}

  /**
   * What the destination holds under a snapshot's name: that snapshot (its
   * bytes hash to its name), nothing (removed since the listing), or other
   * bytes, said as the reason the copy of that snapshot failed.
   */
  private async inDestination(id: string, what: string): Promise<'intact' | 'gone' | string> {
    try {
      await loadChecked(this.dst.backend, handleOf('snapshot', id), what, io(this.opts));
      return 'intact';
    } catch (e) {
      if (e instanceof NotFoundError) return 'gone';
      if (!isDamage(e)) throw e;
      return `the destination holds other bytes under this snapshot's name (${e.message}); remove them there ("holdfast forget ${id}") and copy again`;
    }
  }

  /**
   * Copies the source snapshots `ids` (full ids) that the destination lacks,
   * taking their bytes from `source` (the source's snapshots as the caller
   * chose from them; read here when not given).
   */
  async run(ids: readonly string[], source?: Loaded<StoredSnapshot>): Promise<CopyReport> {
    refuseUnlessCompatible(this.src.config, this.dst.config);
    const from = source ?? await this.src.loadStoredSnapshots(io(this.opts));
    const there = await this.dst.list('snapshot', io(this.opts));
    const wanted: Wanted[] = [];
    for (const id of new Set(ids)) {
      const what = `snapshot ${id}`;
      // A name is a claim: anyone who can add objects may have stored other bytes under it.
      const held = there.has(id) ? await this.inDestination(id, what) : 'gone';
      if (held !== 'gone') {
        if (held === 'intact') this.report.present.push(id);
        else this.report.failed.push({ id, reason: held });
        continue;
      }
      const found = from.ok.get(id);
      if (found) wanted.push({ id, ...found });
      else this.report.failed.push({ id, reason: from.damaged.get(id)?.message ?? `${what} is not in the source` });
    }
    if (wanted.length === 0) return this.report;
    wanted.sort((a, b) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time) || (a.id < b.id ? -1 : 1));

    const dstState = await this.openDestination();
    await this.confirmDestination(dstState, wanted);
    const needed = new Set<string>();
    for (const w of wanted) for (const id of w.snapshot.blobs) if (dstState.liveLocation(id) === undefined) needed.add(id);
    if (needed.size > 0) await this.copyBlobs(needed, dstState);

    const complete: Wanted[] = [];
    for (const w of wanted) {
      const lacking = w.snapshot.blobs.find((id) => this.missing.has(id));
      if (lacking === undefined) {
        complete.push(w);
        continue;
      }
      const n = w.snapshot.blobs.filter((id) => this.missing.has(id)).length;
      this.report.failed.push({ id: w.id, reason: `${n} of its blobs could not be copied (first: ${lacking}: ${this.missing.get(lacking)})` });
    }
    // Behind one fence for all: the destination's markers and packs are listed once, not once per snapshot.
    const fence = { store: this.dst, index: this.index, commitWindowMs: commitWindowMs(this.opts.minGraceMs) };
    const stored = await commitSnapshots(fence, complete.map((w) => ({ blobs: w.snapshot.blobs, bytes: w.bytes })), io(this.opts));
    complete.forEach((w, i) => {
      const id = stored[i]!;
      if (id instanceof BlobsLostError) this.report.failed.push({ id: w.id, reason: id.message });
      else if (id !== w.id) throw new Error(`snapshot ${w.id} was stored as ${id}`);
      else this.report.copied.push(id);
    });
    return this.report;
  }

  /**
   * Reads the destination's state, indexes packs no index file lists (their
   * headers say what they hold), and fills the index the fence works from.
   */
  private async openDestination(): Promise<RepoState> {
    const state = await RepoState.load(this.dst, io(this.opts));
    const adopted: IndexedPack[] = [];
    for (const pack of state.orphans()) {
      try {
        adopted.push({ pack, blobs: await state.readHeader(this.dst, pack, io(this.opts)) });
      } catch (e) {
        if (e instanceof NotFoundError) continue; // removed since the listing
        if (!isDamage(e)) throw e;
        this.opts.onWarning?.(`ignoring unindexed pack ${pack} of the destination: ${e.message}`);
      }
    }
    if (adopted.length > 0) {
      await this.dst.saveIndex({ packs: adopted, supersedes: [] }, io(this.opts));
      this.report.orphansIndexed = adopted.length;
    }
    return state;
  }

  /**
   * Reads the header of every present, unmarked destination pack that a
   * record claims holds a blob of a wanted snapshot, so that the header, not
   * the claim, decides what is there (docs/format.md §15.10, rule 1). A pack
   * whose header cannot be read counts as holding nothing. The fence's index
   * gets the confirmed packs.
   */
  private async confirmDestination(state: RepoState, wanted: readonly Wanted[]): Promise<void> {
    const ids = new Set(wanted.flatMap((w) => w.snapshot.blobs));
    const packs = new Set<string>();
    for (const id of ids) for (const l of state.locations(id)) if (state.isLive(l.pack) && !state.confirmed.has(l.pack)) packs.add(l.pack);
    await forEachLimit([...packs], this.dst.backend.capabilities.connections, async (pack) => {
      this.opts.signal?.throwIfAborted();
      const claimed = state.claims(pack).filter((b) => ids.has(b.id));
      let held: ReadonlySet<string>;
      try {
        held = new Set((await state.readHeader(this.dst, pack, io(this.opts))).map((b) => b.id));
      } catch (e) {
        if (!isDamage(e) && !(e instanceof NotFoundError)) throw e;
        state.confirm({ pack, blobs: [] });
        if (!(e instanceof NotFoundError)) this.opts.onWarning?.(`pack ${pack} of the destination: ${e.message}; the blobs it is claimed to hold are copied again`);
        return;
      }
      const absent = new Set(claimed.filter((b) => !held.has(b.id)).map((b) => b.id));
      if (absent.size > 0) {
        this.opts.onWarning?.(`the destination's index claims pack ${pack} holds ${absent.size} blob(s) its header does not list (first: ${[...absent][0]}); they are copied`);
      }
    });
    for (const pack of state.confirmed) if (state.isLive(pack)) this.index.addPack({ pack, blobs: state.packBlobs.get(pack)! });
  }

  /** Copies `needed` blobs from the source's packs into new destination packs, indexed. */
  private async copyBlobs(needed: ReadonlySet<string>, dstState: RepoState): Promise<void> {
    const srcState = await RepoState.load(this.src, io(this.opts));
    const present = new Set(dstState.packs.keys());
    // A pack stored as it is has the source's size.
    const largest = Math.max(this.src.config.packSize, this.dst.config.packSize);
    const reading = Math.max(2, Math.min(this.src.backend.capabilities.connections, Math.floor(IN_FLIGHT_BYTES / this.src.config.packSize)));
    const storing = Math.max(2, Math.min(this.dst.backend.capabilities.connections, Math.floor(IN_FLIGHT_BYTES / largest)));
    // Trees and image maps go into packs of their own, as a backup stores them: walking a snapshot's trees then reads few packs.
    const copiers = new Map<'data' | 'meta', PackCopier>();
    const copierFor = (b: Pick<PackedBlob, 'type'>): PackCopier => {
      const kind = b.type === BlobType.Data ? 'data' : 'meta';
      let c = copiers.get(kind);
      if (!c) copiers.set(kind, (c = new PackCopier(this.dst.backend, this.dst.config.packSize, (name) => present.has(name), { ...io(this.opts), maxInFlight: storing })));
      return c;
    };
    /** Source packs a blob was read from and not found good in: only blobs that failed somewhere have any (a `Set` for each needed blob cost 181 bytes a blob). */
    const failedIn = new Map<string, Set<string>>();
    /** Source packs claimed to hold a blob, in the order to try them: unmarked first. */
    const candidates = (id: string): string[] => {
      const packs = [...new Set(srcState.locations(id).map((l) => l.pack))].filter((p) => srcState.packs.has(p));
      return [...packs.filter((p) => srcState.isLive(p)), ...packs.filter((p) => !srcState.isLive(p))];
    };
    // What the first tries read: the progress's totals.
    const firstPacks = new Set<string>();
    let totalBytes = 0;
    for (const id of needed) {
      const first = candidates(id)[0];
      const l = first === undefined ? undefined : srcState.locations(id).find((x) => x.pack === first);
      if (!l) continue;
      firstPacks.add(l.pack);
      totalBytes += l.length;
    }
    const totalPacks = firstPacks.size;
    let pending = [...needed];
    let packsDone = 0;
    while (pending.length > 0) {
      const byPack = new Map<string, string[]>();
      for (const id of pending) {
        const failed = failedIn.get(id);
        const next = candidates(id).find((p) => failed?.has(p) !== true);
        if (next === undefined) {
          if (!this.missing.has(id)) this.missing.set(id, 'the source holds no copy of it');
          continue;
        }
        const l = byPack.get(next);
        if (l) l.push(id);
        else byPack.set(next, [id]);
      }
      pending = [];
      const order = [...byPack.keys()].sort();
      // Reads in flight, each taken as it comes: one slow pack holds up neither the others nor the reads after them.
      const reads = new Map<number, Promise<{ i: number; r: PackRead }>>();
      let started = 0;
      const startReads = (): void => {
        for (; reads.size < reading && started < order.length; started++) {
          const i = started;
          const p = this.readPack(srcState, order[i]!, byPack.get(order[i]!)!).then((r) => ({ i, r }));
          p.catch(() => undefined); // raced below; a failure while another is taken is not unhandled
          reads.set(i, p);
        }
      };
      startReads();
      while (reads.size > 0) {
        this.opts.signal?.throwIfAborted();
        const { i, r } = await Promise.race(reads.values());
        reads.delete(i);
        startReads(); // the next read goes out while this pack is stored
        this.report.packsRead++;
        for (const [id, why] of r.bad) {
          this.missing.set(id, why);
          pending.push(id);
          const failed = failedIn.get(id);
          if (failed) failed.add(order[i]!);
          else failedIn.set(id, new Set([order[i]!]));
        }
        const whole = r.whole !== undefined && r.good.every((g) => !this.copiedBlobs.has(g.entry.id)) ? r.whole : undefined;
        // Every blob of it wanted: the pack is stored as it is, not taken apart (through one copier, which bounds how many are stored at once).
        if (whole) await copierFor({ type: BlobType.Data }).addPack(whole.pack, whole.bytes, whole.blobs);
        for (const { entry, sealed } of r.good) {
          if (this.copiedBlobs.has(entry.id)) continue;
          if (!whole) await copierFor(entry).add(entry, sealed);
          this.copiedBlobs.add(entry.id);
          this.missing.delete(entry.id);
          this.report.blobsCopied++;
          this.report.bytesCopied += sealed.length;
        }
        for (const c of copiers.values()) await this.stored(c.takeStored(), present, false);
        this.opts.onProgress?.({ packsDone: Math.min(++packsDone, totalPacks), packsTotal: totalPacks, bytesCopied: this.report.bytesCopied, bytesTotal: totalBytes });
      }
    }
    for (const c of copiers.values()) {
      await c.finish();
      await this.stored(c.takeStored(), present, false);
    }
    await this.stored([], present, true);
  }

  /** Takes note of destination packs just stored; writes an index file every INDEX_EVERY_PACKS of them, and at the end. */
  private async stored(packs: readonly IndexedPack[], present: Set<string>, last: boolean): Promise<void> {
    for (const p of packs) present.add(p.pack);
    this.report.packsWritten += packs.length;
    this.unindexed.push(...packs);
    if (this.unindexed.length === 0 || (!last && this.unindexed.length < INDEX_EVERY_PACKS)) return;
    await this.dst.saveIndex({ packs: this.unindexed, supersedes: [] }, io(this.opts));
    for (const p of this.unindexed) this.index.addPack(p);
    this.unindexed = [];
  }

  /**
   * Reads the needed blobs `ids` out of source pack `pack`, checked against
   * its header as far as storage can be checked without the key (the module
   * comment). A damaged pack gives none, with one warning.
   */
  private async readPack(state: RepoState, pack: string, ids: readonly string[]): Promise<PackRead> {
    const size = state.packs.get(pack)!;
    const what = `pack ${pack} of the source`;
    const claimed = ids.reduce((n, id) => n + (state.locations(id).find((l) => l.pack === pack)?.length ?? 0), 0);
    let header: PackedBlob[];
    let whole: Buffer | undefined;
    try {
      if (size > MAX_PACK_BYTES) throw new CorruptObjectError(what, `${size} bytes, larger than any pack (${MAX_PACK_BYTES})`);
      if (2 * claimed >= size) {
        whole = await loadBounded(this.src.backend, handleOf('data', pack), what, io(this.opts));
        if (sha256(whole).toString('hex') !== pack) throw new CorruptObjectError(what, 'checksum of stored bytes does not match its name');
        header = Store.parsePack(pack, whole);
        state.confirm({ pack, blobs: header });
      } else {
        // Named as the source's pack, as every other problem of a source pack is.
        header = await state.readHeader(this.src, pack, io(this.opts)).catch((e: unknown) => {
          throw e instanceof CorruptObjectError && !(e instanceof ForgedObjectError) ? new CorruptObjectError(what, e.detail) : e;
        });
      }
      // Refused before any blob is read: a hostile header must not make copy read (and hold) gigabytes as one blob.
      const oversized = header.map(sizeProblem).find((x) => x !== undefined);
      if (oversized !== undefined) throw new CorruptObjectError(what, `its header lists a ${oversized}`);
    } catch (e) {
      if (!isDamage(e) && !(e instanceof NotFoundError)) throw e;
      const why = e instanceof NotFoundError ? `${what} is gone (removed by a prune since the listing)` : e.message;
      this.opts.onWarning?.(`${why}; none of its blobs is copied from it`);
      return { good: [], bad: new Map(ids.map((id) => [id, why])) };
    }
    const bad = new Map<string, string>();
    const entries: PackedBlob[] = [];
    // The header's entries by id, once: a filter of the header per id took 0.5–0.7 s of a copy of the Linux tree's repository.
    const listed = new Map<string, PackedBlob[]>();
    for (const b of header) {
      const same = listed.get(b.id);
      if (same) same.push(b);
      else listed.set(b.id, [b]);
    }
    for (const id of ids) {
      const inHeader = listed.get(id) ?? [];
      const entry = inHeader.find((b) => entryProblem(b) === undefined);
      if (entry) entries.push(entry);
      else bad.set(id, inHeader.length === 0 ? `${what} does not hold it (its header does not list it)` : `${what}: its header entry cannot be a sealed blob (${entryProblem(inHeader[0]!)})`);
    }
    const good: PackRead['good'] = [];
    if (whole) {
      for (const entry of entries) good.push({ entry, sealed: whole.subarray(entry.offset, entry.offset + entry.length) });
      // One entry for each id of `ids` (none twice): as many as the header's means every entry is wanted and none repeats an id.
      const all = header.length > 0 && entries.length === header.length;
      return { good, bad, ...(all ? { whole: { pack, bytes: whole, blobs: header } } : {}) };
    }
    entries.sort((a, b) => a.offset - b.offset);
    for (let i = 0; i < entries.length;) {
      let j = i + 1;
      while (j < entries.length && entries[j]!.offset - (entries[j - 1]!.offset + entries[j - 1]!.length) <= RANGE_GAP) j++;
      const from = entries[i]!.offset;
      const run = entries.slice(i, j);
      i = j;
      let bytes: Buffer;
      try {
        bytes = await this.src.backend.load(handleOf('data', pack), { offset: from, length: run[run.length - 1]!.offset + run[run.length - 1]!.length - from, signal: this.opts.signal });
      } catch (e) {
        if (!(e instanceof ShortReadError) && !(e instanceof NotFoundError)) throw e;
        for (const entry of run) bad.set(entry.id, `${what}: ${e.message}`);
        continue;
      }
      for (const entry of run) good.push({ entry, sealed: bytes.subarray(entry.offset - from, entry.offset - from + entry.length) });
    }
    return { good, bad };
  }
}

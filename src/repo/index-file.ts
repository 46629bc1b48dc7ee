/**
 * Index files (`index/<sha256>`): which blobs each pack holds and where, so a
 * client need not read pack headers. Plain, like pack headers; everything in
 * an index can be rebuilt from the packs alone.
 *
 *   "HFIX" || u8 version (1) || u32 LE pack count || packs || u32 LE superseded count || superseded
 *   pack       = 32-byte pack id || u32 LE blob count || blob count × entry
 *   entry      = u8 type || u8 flags || u16 0 || u32 LE offset || u32 LE stored length
 *                || u32 LE raw length || 32-byte blob id          (48 bytes)
 *   superseded = 32-byte ids of index files this one replaces (for compaction)
 */
import { sha256 } from '../core/crypto.js';
import { ID_BYTES, idHex } from '../core/ids.js';
import { ByteReader } from './binary.js';
import { UnsupportedVersionError } from './errors.js';
import { IdTable } from './id-table.js';
import { FLAG_COMPRESSED, isBlobType, type BlobType, type PackedBlob } from './pack.js';

export const INDEX_VERSION = 1;
const MAGIC = 'HFIX';
const ENTRY_BYTES = 48;

export interface IndexedPack {
  /** 64 hex. */
  readonly pack: string;
  readonly blobs: readonly PackedBlob[];
}

export interface IndexFile {
  readonly packs: readonly IndexedPack[];
  readonly supersedes: readonly string[];
}

export function encodeIndex(f: IndexFile): Buffer {
  let size = 4 + 1 + 4 + 4 + f.supersedes.length * ID_BYTES;
  for (const p of f.packs) size += ID_BYTES + 4 + p.blobs.length * ENTRY_BYTES;
  const b = Buffer.alloc(size);
  b.write(MAGIC, 0, 'latin1');
  b.writeUInt8(INDEX_VERSION, 4);
  b.writeUInt32LE(f.packs.length, 5);
  let o = 9;
  for (const p of f.packs) {
    o += Buffer.from(p.pack, 'hex').copy(b, o);
    b.writeUInt32LE(p.blobs.length, o);
    o += 4;
    for (const e of p.blobs) {
      b.writeUInt8(e.type, o);
      b.writeUInt8(e.flags, o + 1);
      b.writeUInt32LE(e.offset, o + 4);
      b.writeUInt32LE(e.length, o + 8);
      b.writeUInt32LE(e.rawLength, o + 12);
      Buffer.from(e.id, 'hex').copy(b, o + 16);
      o += ENTRY_BYTES;
    }
  }
  b.writeUInt32LE(f.supersedes.length, o);
  o += 4;
  for (const s of f.supersedes) o += Buffer.from(s, 'hex').copy(b, o);
  return b;
}

/** What `readIndex` reports of an index file, in the file's order; ids as where their 32 bytes start in the file. */
interface IndexVisitor {
  pack(at: number): void;
  blob(type: BlobType, flags: number, offset: number, length: number, rawLength: number, at: number): void;
  superseded(at: number): void;
}

const IGNORE: IndexVisitor = { pack: () => undefined, blob: () => undefined, superseded: () => undefined };

/** The hex of the id at `bytes[at]`. */
const idAt = (bytes: Buffer, at: number): string => idHex(bytes.subarray(at, at + ID_BYTES));

/**
 * Checks index file `bytes` and reports what it holds to `to` as it goes:
 * a `CorruptObjectError` (or `UnsupportedVersionError`) may come after some
 * of it was reported, so a caller that keeps what it is told checks the
 * file first (`checkIndex`).
 */
function readIndex(bytes: Buffer, what: string, to: IndexVisitor): void {
  const r = new ByteReader(bytes, what);
  r.magic(MAGIC);
  const version = r.u8('version');
  if (version !== INDEX_VERSION) throw new UnsupportedVersionError(what, version, INDEX_VERSION);
  const packCount = r.u32('pack count');
  if (packCount * (ID_BYTES + 4) > r.remaining) r.fail(`claims ${packCount} packs`);
  for (let i = 0; i < packCount; i++) {
    const pack = r.skip(ID_BYTES, 'pack id');
    const n = r.u32('blob count');
    if (n * ENTRY_BYTES > r.remaining) r.fail(`pack ${idAt(bytes, pack)} claims ${n} blobs`);
    to.pack(pack);
    for (let j = 0; j < n; j++) {
      const type = r.u8('type');
      if (!isBlobType(type)) r.fail(`unknown blob type ${type}`);
      const flags = r.u8('flags');
      if ((flags & ~FLAG_COMPRESSED) !== 0) r.fail(`unknown blob flags ${flags}`);
      r.u16('reserved');
      const offset = r.u32('offset');
      const length = r.u32('length');
      const rawLength = r.u32('raw length');
      to.blob(type, flags, offset, length, rawLength, r.skip(ID_BYTES, 'blob id'));
    }
  }
  const sc = r.u32('superseded count');
  if (sc * ID_BYTES !== r.remaining) r.fail(`claims ${sc} superseded indexes`);
  for (let i = 0; i < sc; i++) to.superseded(r.skip(ID_BYTES, 'superseded id'));
  r.end();
}

/** Index file `bytes`, checked as `decodeIndex` checks it, not decoded: what `MasterIndex.addIndexFile` takes. */
export function checkIndex(bytes: Buffer, what: string): Buffer {
  readIndex(bytes, what, IGNORE);
  return bytes;
}

export function decodeIndex(bytes: Buffer, what: string): IndexFile {
  const packs: IndexedPack[] = [];
  const supersedes: string[] = [];
  let blobs: PackedBlob[] = [];
  readIndex(bytes, what, {
    pack: (at) => {
      blobs = [];
      packs.push({ pack: idAt(bytes, at), blobs });
    },
    blob: (type, flags, offset, length, rawLength, at) => blobs.push({ type, flags, offset, length, rawLength, id: idAt(bytes, at) }),
    superseded: (at) => supersedes.push(idAt(bytes, at)),
  });
  return { packs, supersedes };
}

/** Two entries say the same about a blob: id, type, flags, place and lengths. */
export function sameEntry(a: PackedBlob, b: PackedBlob): boolean {
  return a.id === b.id && a.type === b.type && a.flags === b.flags && a.offset === b.offset && a.length === b.length && a.rawLength === b.rawLength;
}

/** A key equal for two entries of one pack exactly when `sameEntry` holds: entries deduplicated through a Set, in linear time. */
export function entryKey(pack: string, b: PackedBlob): string {
  return `${pack} ${b.id} ${b.type} ${b.flags} ${b.offset} ${b.length} ${b.rawLength}`;
}

/** A short key that is equal for two records exactly when they describe the same pack the same way. */
export function recordKey(p: IndexedPack): string {
  return `${p.pack}:${sha256(encodeIndex({ packs: [p], supersedes: [] })).toString('base64')}`;
}

/** Where a blob lives. */
export interface BlobLocation extends PackedBlob {
  readonly pack: string;
}

/** The packs an index knows. */
export interface KnownPacks {
  has(pack: string): boolean;
  readonly size: number;
}

// A blob's record in the table: its id, then these words.
const PACK_AND_BITS = 8;
const OFFSET = 9;
const LENGTH = 10;
const RAW_LENGTH = 11;
const RECORD_WORDS = 4;
// The low bits of PACK_AND_BITS; the pack's number is above them.
const TYPE_MASK = 3;
const COMPRESSED = 4;
/** The record is the first copy met in a pack pending deletion (else the first live one). */
const PRIMARY_PENDING = 8;
/** The blob has other copies, in `extras`. */
const SEVERAL = 16;
const PACK_SHIFT = 5;
const LOW_BITS = 2 ** PACK_SHIFT;
const MAX_PACKS = 2 ** (32 - PACK_SHIFT);

/** A copy of a blob beside the one in the table (only blobs with several copies have any). */
interface Copy {
  /** The pack's number. */
  readonly pack: number;
  readonly type: BlobType;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/**
 * The copies of a blob beyond its record in the table. Each copy is kept
 * once however often records name it, and found by key, not by a scan: an
 * add-only client can claim one blob at any number of places (docs/format.md
 * §15.10), and every claim counts, so adding N claims must cost O(N).
 */
interface Extras {
  /** The first copy met in a pack of the other kind than the record's (live or pending). */
  other?: Copy;
  /** Every other copy, in the order met: none is the record's, `other`'s at the time it came, or another's. */
  readonly more: Copy[];
  /** `slotKey`s of `more`. */
  readonly keys: Set<string>;
}

/**
 * All index files merged: blob id → location, and every other copy any
 * record names. Index records are claims an add-only client can make too
 * (docs/format.md §15.10): the first copy met may be planted, so a reader
 * that finds it bad goes on to the others (`copies`).
 *
 * Compact (about 60 bytes a blob, docs/decisions.md "The in-memory index"):
 * one record per blob id in an `IdTable` holding the first copy met (live or
 * pending) with its pack as a number; packs in a second table; the other
 * copies, which only a repository with duplicates has, in a `Map` beside.
 * `has` allocates nothing; `lookup` and `copies` return fresh locations.
 */
export class MasterIndex {
  private readonly blobs = new IdTable(RECORD_WORDS);
  private readonly packTable = new IdTable(0);
  /** Names of packs a location was asked for, by number (the table holds them as 32 bytes). */
  private readonly packNames: (string | undefined)[] = [];
  /** Copies beyond the record in the table, by blob ordinal, in the order met. */
  private readonly extras = new Map<number, Extras>();
  private live = 0;

  /** Adds every blob of a pack. A blob already known keeps its first location; the new one is kept as another copy. */
  addPack(p: IndexedPack): void {
    this.add(p, 'live');
  }

  /**
   * Adds a pack that a prune marked for deletion: its blobs stay readable
   * (`lookup`) but are not offered for deduplication (`has` is false for
   * them unless a live pack holds them too), so writers store them again
   * instead of referencing a pack about to go. The pack counts as known
   * (`packs`), so it is never adopted as an orphan.
   */
  addPendingPack(p: IndexedPack): void {
    this.add(p, 'pending');
  }

  /**
   * Adds every blob of an index file that `checkIndex` accepted, read from
   * its bytes (no hex string or object per blob: a reader's index of a
   * large repository loads in a fraction of the time); the packs `pending`
   * holds are added as `addPendingPack` adds them, the others as `addPack`.
   */
  addIndexFile(bytes: Buffer, pending: ReadonlyMap<string, unknown>): void {
    this.addIndexFiles([bytes], pending);
  }

  /** `addIndexFile` of each, the table sized once for them all (an entry is 48 of a file's bytes: at most that many blobs). */
  addIndexFiles(files: readonly Buffer[], pending: ReadonlyMap<string, unknown>): void {
    this.blobs.reserve(this.blobs.size + files.reduce((n, f) => n + Math.floor(f.length / ENTRY_BYTES), 0));
    for (const bytes of files) this.addOne(bytes, pending);
  }

  private addOne(bytes: Buffer, pending: ReadonlyMap<string, unknown>): void {
    let pack = 0;
    let role: 'live' | 'pending' = 'live';
    readIndex(bytes, 'index', {
      pack: (at) => {
        const name = idAt(bytes, at);
        role = pending.has(name) ? 'pending' : 'live';
        pack = this.packNumber(name);
      },
      blob: (type, flags, offset, length, rawLength, at) => {
        const known = this.blobs.size;
        this.addCopy(this.blobs.addBytes(bytes, at), this.blobs.size > known, pack, role, type, flags, offset, length, rawLength);
      },
      superseded: () => undefined,
    });
  }

  private add(p: IndexedPack, role: 'live' | 'pending'): void {
    const pack = this.packNumber(p.pack);
    for (const b of p.blobs) {
      if (b.type > TYPE_MASK || (b.flags & ~FLAG_COMPRESSED) !== 0) throw new RangeError(`blob ${b.id}: type ${b.type}, flags ${b.flags} cannot be indexed`);
      const known = this.blobs.size;
      this.addCopy(this.blobs.add(b.id), this.blobs.size > known, pack, role, b.type, b.flags, b.offset, b.length, b.rawLength);
    }
  }

  /** The number of pack `name` (64 hex), numbered as first met. */
  private packNumber(name: string): number {
    const packs = this.packTable.size;
    const pack = this.packTable.add(name);
    if (this.packTable.size > packs) {
      if (pack >= MAX_PACKS) throw new RangeError(`an index holds at most ${MAX_PACKS} packs`);
      this.packNames.push(undefined);
    }
    return pack;
  }

  /** Records a copy of blob ordinal `o` (`added`: the id was new to the table): in the table when it is the first, else among the extras. */
  private addCopy(o: number, added: boolean, pack: number, role: 'live' | 'pending', type: BlobType, flags: number, offset: number, length: number, rawLength: number): void {
    if (added) {
      const page = this.blobs.page(o);
      const at = this.blobs.base(o);
      page[at + PACK_AND_BITS] = pack * LOW_BITS + (type | (flags === FLAG_COMPRESSED ? COMPRESSED : 0) | (role === 'pending' ? PRIMARY_PENDING : 0));
      page[at + OFFSET] = offset;
      page[at + LENGTH] = length;
      page[at + RAW_LENGTH] = rawLength;
      if (role === 'live') this.live++;
      return;
    }
    const copy: Copy = { pack, type, flags, offset, length, rawLength };
    const extras = this.extras.get(o);
    if (this.primaryRole(o) !== role && !extras?.other) {
      if (role === 'live') this.live++;
      (extras ?? this.addExtras(o)).other = copy;
      return;
    }
    if (sameSlot(this.primary(o), copy) || (extras?.other && sameSlot(extras.other, copy))) return;
    const key = slotKey(copy);
    if (extras?.keys.has(key)) return;
    const e = extras ?? this.addExtras(o);
    e.keys.add(key);
    e.more.push(copy);
  }

  /** The (empty) extras of ordinal `o`, once it has a copy beside its record. */
  private addExtras(o: number): Extras {
    const e: Extras = { more: [], keys: new Set() };
    this.extras.set(o, e);
    const page = this.blobs.page(o);
    page[this.blobs.base(o) + PACK_AND_BITS]! |= SEVERAL;
    return e;
  }

  private bitsOf(o: number): number {
    return this.blobs.page(o)[this.blobs.base(o) + PACK_AND_BITS]!;
  }

  private primaryRole(o: number): 'live' | 'pending' {
    return (this.bitsOf(o) & PRIMARY_PENDING) !== 0 ? 'pending' : 'live';
  }

  /** The copy the table holds for ordinal `o`. */
  private primary(o: number): Copy {
    const page = this.blobs.page(o);
    const at = this.blobs.base(o);
    const w = page[at + PACK_AND_BITS]!;
    return {
      pack: w >>> PACK_SHIFT,
      type: (w & TYPE_MASK) as BlobType,
      flags: (w & COMPRESSED) !== 0 ? FLAG_COMPRESSED : 0,
      offset: page[at + OFFSET]!,
      length: page[at + LENGTH]!,
      rawLength: page[at + RAW_LENGTH]!,
    };
  }

  /** The first copy of ordinal `o` in a pack of that role. */
  private firstOf(o: number, role: 'live' | 'pending'): Copy | undefined {
    if (this.primaryRole(o) === role) return this.primary(o);
    return (this.bitsOf(o) & SEVERAL) !== 0 ? this.extras.get(o)!.other : undefined;
  }

  private location(id: string, c: Copy): BlobLocation {
    return { type: c.type, id, flags: c.flags, offset: c.offset, length: c.length, rawLength: c.rawLength, pack: this.packName(c.pack) };
  }

  private packName(n: number): string {
    return (this.packNames[n] ??= this.packTable.hexAt(n));
  }

  /**
   * Every known copy of a blob, in the order readers try them: the first
   * live one (`lookup`'s), the first in a pack pending deletion, then the
   * others in the order they were met.
   */
  copies(id: string): BlobLocation[] {
    const o = this.blobs.find(id);
    if (o < 0) return [];
    const live = this.firstOf(o, 'live');
    const pending = this.firstOf(o, 'pending');
    const out: BlobLocation[] = [];
    if (live) out.push(this.location(id, live));
    if (pending && !(live && sameSlot(live, pending))) out.push(this.location(id, pending));
    // `more` holds each copy once and never the record; it may hold `other`, met first as an extra copy.
    for (const c of this.extras.get(o)?.more ?? []) {
      if (!(live && sameSlot(live, c)) && !(pending && sameSlot(pending, c))) out.push(this.location(id, c));
    }
    return out;
  }

  /** Whether the known copies of a blob claim different raw lengths (one of them at least is not the blob). */
  lengthsDisagree(id: string): boolean {
    if (!this.hasSeveralCopies(id)) return false;
    const c = this.copies(id);
    return c.some((l) => l.rawLength !== c[0]!.rawLength);
  }

  /** Whether more than one copy of a blob is known (so a reader may meet a planted one first). */
  hasSeveralCopies(id: string): boolean {
    const o = this.blobs.find(id);
    return o >= 0 && (this.bitsOf(o) & SEVERAL) !== 0;
  }

  /** Whether a live pack holds the blob (what a writer may deduplicate against). Allocates nothing. */
  has(id: string): boolean {
    return this.holdsLive(this.blobs.find(id));
  }

  /** As `has`, for the id in the 32 bytes at `bytes[at]`. */
  hasBytes(bytes: Uint8Array, at: number): boolean {
    return this.holdsLive(this.blobs.findBytes(bytes, at));
  }

  /** Whether ordinal `o` (-1: none) has a copy in a live pack. */
  private holdsLive(o: number): boolean {
    if (o < 0) return false;
    const bits = this.bitsOf(o);
    if ((bits & PRIMARY_PENDING) === 0) return true;
    return (bits & SEVERAL) !== 0 && this.extras.get(o)!.other !== undefined;
  }

  /** The pack of `lookup`'s location, without making the location (a snapshot's fence asks for every blob it lists). */
  packOf(id: string): string | undefined {
    return this.packOfOrdinal(this.blobs.find(id));
  }

  /** As `packOf`, for the id in the 32 bytes at `bytes[at]`. */
  packOfBytes(bytes: Buffer, at: number): string | undefined {
    return this.packOfOrdinal(this.blobs.findBytes(bytes, at));
  }

  /** `lookup`'s pack for ordinal `o` (-1: none): the first live copy's, else the first copy's. */
  private packOfOrdinal(o: number): string | undefined {
    if (o < 0) return undefined;
    const w = this.bitsOf(o);
    if ((w & (PRIMARY_PENDING | SEVERAL)) === 0) return this.packName(w >>> PACK_SHIFT);
    return this.packName((this.firstOf(o, 'live') ?? this.primary(o)).pack);
  }

  /** Where a blob is: a live location, else one in a pack pending deletion (`addPendingPack`). */
  lookup(id: string): BlobLocation | undefined {
    const o = this.blobs.find(id);
    if (o < 0) return undefined;
    const page = this.blobs.page(o);
    const at = this.blobs.base(o);
    const w = page[at + PACK_AND_BITS]!;
    // The common case, built from the record without a `Copy` between.
    if ((w & (PRIMARY_PENDING | SEVERAL)) === 0) {
      return { type: (w & TYPE_MASK) as BlobType, id, flags: (w & COMPRESSED) !== 0 ? FLAG_COMPRESSED : 0, offset: page[at + OFFSET]!, length: page[at + LENGTH]!, rawLength: page[at + RAW_LENGTH]!, pack: this.packName(w >>> PACK_SHIFT) };
    }
    return this.location(id, this.firstOf(o, 'live') ?? this.primary(o));
  }

  /** Packs the index knows. */
  get packs(): KnownPacks {
    return this.packTable;
  }

  /** How many blobs a live pack holds. */
  get size(): number {
    return this.live;
  }

  /** The first live location of every blob a live pack holds, in the order the blobs were first met. */
  *entries(): IterableIterator<BlobLocation> {
    for (let o = 0; o < this.blobs.size; o++) {
      const c = this.firstOf(o, 'live');
      if (c) yield this.location(this.blobs.hexAt(o), c);
    }
  }
}

/** Two copies are the same: same pack, same entry (the id is the blob's). */
function sameSlot(a: Copy, b: Copy): boolean {
  return a.pack === b.pack && a.type === b.type && a.flags === b.flags && a.offset === b.offset && a.length === b.length && a.rawLength === b.rawLength;
}

/** A key equal for two copies exactly when `sameSlot` holds. */
function slotKey(c: Copy): string {
  return `${c.pack} ${c.type} ${c.flags} ${c.offset} ${c.length} ${c.rawLength}`;
}

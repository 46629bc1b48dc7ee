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
import { FLAG_COMPRESSED, isBlobType, type PackedBlob } from './pack.js';

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

export function decodeIndex(bytes: Buffer, what: string): IndexFile {
  const r = new ByteReader(bytes, what);
  r.magic(MAGIC);
  const version = r.u8('version');
  if (version !== INDEX_VERSION) throw new UnsupportedVersionError(what, version, INDEX_VERSION);
  const packCount = r.u32('pack count');
  if (packCount * (ID_BYTES + 4) > r.remaining) r.fail(`claims ${packCount} packs`);
  const packs: IndexedPack[] = [];
  for (let i = 0; i < packCount; i++) {
    const pack = idHex(r.bytes(ID_BYTES, 'pack id'));
    const n = r.u32('blob count');
    if (n * ENTRY_BYTES > r.remaining) r.fail(`pack ${pack} claims ${n} blobs`);
    const blobs: PackedBlob[] = [];
    for (let j = 0; j < n; j++) {
      const type = r.u8('type');
      if (!isBlobType(type)) r.fail(`unknown blob type ${type}`);
      const flags = r.u8('flags');
      if ((flags & ~FLAG_COMPRESSED) !== 0) r.fail(`unknown blob flags ${flags}`);
      r.u16('reserved');
      const offset = r.u32('offset');
      const length = r.u32('length');
      const rawLength = r.u32('raw length');
      const id = idHex(r.bytes(ID_BYTES, 'blob id'));
      blobs.push({ type, flags, offset, length, rawLength, id });
    }
    packs.push({ pack, blobs });
  }
  const sc = r.u32('superseded count');
  if (sc * ID_BYTES !== r.remaining) r.fail(`claims ${sc} superseded indexes`);
  const supersedes: string[] = [];
  for (let i = 0; i < sc; i++) supersedes.push(idHex(r.bytes(ID_BYTES, 'superseded id')));
  r.end();
  return { packs, supersedes };
}

/** Two entries say the same about a blob: id, type, flags, place and lengths. */
export function sameEntry(a: PackedBlob, b: PackedBlob): boolean {
  return a.id === b.id && a.type === b.type && a.flags === b.flags && a.offset === b.offset && a.length === b.length && a.rawLength === b.rawLength;
}

/** Two lists of a pack's blobs are the same, entry for entry. */
export function sameBlobs(a: readonly PackedBlob[], b: readonly PackedBlob[]): boolean {
  return a.length === b.length && a.every((e, i) => sameEntry(e, b[i]!));
}

/** A short key that is equal for two records exactly when they describe the same pack the same way. */
export function recordKey(p: IndexedPack): string {
  return `${p.pack}:${sha256(encodeIndex({ packs: [p], supersedes: [] })).toString('base64')}`;
}

/** Where a blob lives. */
export interface BlobLocation extends PackedBlob {
  readonly pack: string;
}

/** Two locations are the same copy: same pack, same entry. */
function sameCopy(a: BlobLocation, b: BlobLocation): boolean {
  return a.pack === b.pack && sameEntry(a, b);
}

function locationIn(pack: string, b: PackedBlob): BlobLocation {
  return (b as Partial<BlobLocation>).pack === pack ? (b as BlobLocation)
    : { type: b.type, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength, pack };
}

/**
 * All index files merged: blob id → location, and every other copy any
 * record names. Index records are claims an add-only client can make too
 * (docs/format.md §15.10): the first copy met may be planted, so a reader
 * that finds it bad goes on to the others (`copies`).
 */
export class MasterIndex {
  private readonly blobs = new Map<string, BlobLocation>();
  private readonly packSet = new Set<string>();
  /** Copies beyond the first live one and the first pending one; empty in a repository without duplicates. */
  private readonly more = new Map<string, BlobLocation[]>();

  /** Adds every blob of a pack. A blob already known keeps its first location; the new one is kept as another copy. */
  addPack(p: IndexedPack): void {
    this.packSet.add(p.pack);
    for (const b of p.blobs) {
      const known = this.blobs.get(b.id);
      if (known) this.addCopy(known, p.pack, b);
      else this.blobs.set(b.id, locationIn(p.pack, b));
    }
  }

  private addCopy(first: BlobLocation, pack: string, b: PackedBlob): void {
    const loc = locationIn(pack, b);
    if (sameCopy(first, loc)) return;
    let l = this.more.get(b.id);
    if (!l) this.more.set(b.id, (l = []));
    if (!l.some((x) => sameCopy(x, loc))) l.push(loc);
  }

  /**
   * Every known copy of a blob, in the order readers try them: the first
   * live one (`lookup`'s), the first in a pack pending deletion, then the
   * others in the order they were met.
   */
  copies(id: string): BlobLocation[] {
    const out: BlobLocation[] = [];
    for (const loc of [this.blobs.get(id), this.pendingBlobs.get(id), ...(this.more.get(id) ?? [])]) {
      if (loc && !out.some((x) => sameCopy(x, loc))) out.push(loc);
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
    return this.more.has(id) || (this.blobs.has(id) && this.pendingBlobs.has(id));
  }

  has(id: string): boolean {
    return this.blobs.has(id);
  }

  /** Where a blob is: a live location, else one in a pack pending deletion (`addPendingPack`). */
  lookup(id: string): BlobLocation | undefined {
    return this.blobs.get(id) ?? this.pendingBlobs.get(id);
  }

  /** Packs the index knows. */
  get packs(): ReadonlySet<string> {
    return this.packSet;
  }

  get size(): number {
    return this.blobs.size;
  }

  entries(): IterableIterator<BlobLocation> {
    return this.blobs.values();
  }

  /** Blobs of packs a prune marked for deletion (docs/format.md §15). */
  private readonly pendingBlobs = new Map<string, BlobLocation>();

  /**
   * Adds a pack that a prune marked for deletion: its blobs stay readable
   * (`lookup`) but are not offered for deduplication (`has` is false for
   * them unless a live pack holds them too), so writers store them again
   * instead of referencing a pack about to go. The pack counts as known
   * (`packs`), so it is never adopted as an orphan.
   */
  addPendingPack(p: IndexedPack): void {
    this.packSet.add(p.pack);
    for (const b of p.blobs) {
      const known = this.pendingBlobs.get(b.id);
      if (known) this.addCopy(known, p.pack, b);
      else this.pendingBlobs.set(b.id, { ...b, pack: p.pack });
    }
  }
}

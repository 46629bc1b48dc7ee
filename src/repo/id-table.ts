/**
 * A compact table of 32-byte ids (blob ids, pack ids), each with a few
 * 32-bit words of its own, for indexes of tens of millions of blobs: a `Map`
 * from hex strings to objects costs about 189 bytes per blob on V8, this
 * costs the record (8 words of id + the extra words) and about 8 bytes of
 * hash slot (docs/decisions.md, "The in-memory index").
 *
 *   records  pages of PAGE_RECORDS × stride u32 words, appended in the order
 *            ids are added; an id's ordinal is its place in that order.
 *            word 0..7  the id, big-endian words of its hex
 *            word 8..   the caller's words (zero when added)
 *   slots    open addressing with linear probing, 2^bits u32 slots, at
 *            most 3/4 full:
 *              slot = fingerprint << bits | (ordinal + 1)      (0 = empty)
 *            an id's hash h (32 bits) chooses the first slot (its top
 *            `bits` bits) and the fingerprint (the other 32 - bits bits),
 *            so a probe compares the id only when the fingerprint matches.
 *
 * The hash is keyed per table (HalfSipHash-1-3 under a random 64-bit key):
 * ids in index files are claims anyone with write access can make
 * (docs/format.md §15.10), and ids chosen to collide would turn every lookup
 * into a scan. Choosing them needs the key: a seed that only started an
 * unkeyed multiply-xor chain did not stop it (flipping an input word's top
 * bit passes through the rounds as a fixed difference, so families of ids
 * shared a hash whatever the seed).
 *
 * Lookups take the id as hex and parse it into a scratch array: they
 * allocate nothing.
 */
import { randomInt } from 'node:crypto';

/** Records per page: 4096 × 48 bytes for a blob table (192 KiB); a table never holds more than one page it does not use. */
const PAGE_BITS = 12;
const PAGE_RECORDS = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_RECORDS - 1;
const ID_WORDS = 8;
const MIN_BITS = 10;
/** 2^31 slots (8 GiB) at most; the ordinal and a fingerprint of at least one bit share each slot. */
const MAX_BITS = 31;
/** HalfSipHash's last message block for a 32-byte input: the length in the top byte. */
const LENGTH_BLOCK = (ID_WORDS * 4) << 24;

/**
 * The byte two lower-case hex digits c0 c1 (both below 128) spell, at
 * c0 << 7 | c1; -1 where they spell none. Two digits a lookup: parsing is
 * most of what a lookup costs (docs/decisions.md, "The in-memory index").
 */
const HEX_PAIR = new Int16Array(1 << 14).fill(-1);
const DIGITS = '0123456789abcdef';
for (let a = 0; a < 16; a++) for (let b = 0; b < 16; b++) HEX_PAIR[(DIGITS.charCodeAt(a) << 7) | DIGITS.charCodeAt(b)] = (a << 4) | b;

/**
 * Parses 64 lower-case hex digits into 8 big-endian words; false for any
 * other string (which, like a key no `Map` holds, is in no table).
 */
function parseId(hex: string, out: Uint32Array): boolean {
  if (hex.length !== 64) return false;
  // Negative once a pair spells no byte; above 127 once a character is.
  let bad = 0;
  let high = 0;
  for (let w = 0, i = 0; w < ID_WORDS; w++, i += 8) {
    const c0 = hex.charCodeAt(i), c1 = hex.charCodeAt(i + 1), c2 = hex.charCodeAt(i + 2), c3 = hex.charCodeAt(i + 3);
    const c4 = hex.charCodeAt(i + 4), c5 = hex.charCodeAt(i + 5), c6 = hex.charCodeAt(i + 6), c7 = hex.charCodeAt(i + 7);
    high |= c0 | c1 | c2 | c3 | c4 | c5 | c6 | c7;
    const b0 = HEX_PAIR[((c0 << 7) | c1) & 0x3fff]!, b1 = HEX_PAIR[((c2 << 7) | c3) & 0x3fff]!;
    const b2 = HEX_PAIR[((c4 << 7) | c5) & 0x3fff]!, b3 = HEX_PAIR[((c6 << 7) | c7) & 0x3fff]!;
    bad |= b0 | b1 | b2 | b3;
    out[w] = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3;
  }
  return bad >= 0 && high < 128;
}

export class IdTable {
  /** Words per record: the id's 8 and the caller's. */
  readonly stride: number;
  private readonly pages: Uint32Array[] = [];
  private count = 0;
  private bits = MIN_BITS;
  /** The bits of a hash left for the fingerprint: 2^(32 - bits) - 1. */
  private fpMask = 2 ** (32 - MIN_BITS) - 1;
  private slots = new Uint32Array(1 << MIN_BITS);
  /** The hash's 64-bit key, as two words; random per table. */
  private readonly k0 = randomInt(2 ** 32) | 0;
  private readonly k1 = randomInt(2 ** 32) | 0;
  /** The id being looked up, parsed. */
  private readonly key = new Uint32Array(ID_WORDS);
  /** Where the last `probe` that missed found an empty slot. */
  private emptySlot = 0;

  /** A table whose records carry `extraWords` words beside the id. */
  constructor(extraWords: number) {
    this.stride = ID_WORDS + extraWords;
  }

  /** How many ids the table holds. */
  get size(): number {
    return this.count;
  }

  /** Whether the table holds the id (64 lower-case hex digits). */
  has(hex: string): boolean {
    return this.find(hex) >= 0;
  }

  /** The id's ordinal, or -1 when the table does not hold it. */
  find(hex: string): number {
    return parseId(hex, this.key) ? this.probe(this.hashKey()) : -1;
  }

  /**
   * The id's ordinal, adding the id (its other words zero) when the table
   * does not hold it; `size` grows exactly when it was added. Throws a
   * RangeError for a string that is not an id.
   */
  add(hex: string): number {
    if (!parseId(hex, this.key)) throw new RangeError(`not an id: ${JSON.stringify(hex.slice(0, 80))}`);
    return this.addKey();
  }

  /** As `find`, for the id in the 32 bytes at `bytes[at]`. */
  findBytes(bytes: Uint8Array, at: number): number {
    this.keyOf(bytes, at);
    return this.probe(this.hashKey());
  }

  /** As `add`, for the id in the 32 bytes at `bytes[at]`. */
  addBytes(bytes: Uint8Array, at: number): number {
    this.keyOf(bytes, at);
    return this.addKey();
  }

  /** Reads the id in the 32 bytes at `bytes[at]` into the key. */
  private keyOf(bytes: Uint8Array, at: number): void {
    if (at < 0 || at + ID_WORDS * 4 > bytes.length) throw new RangeError(`no id at ${at} of ${bytes.length} bytes`);
    const k = this.key;
    for (let w = 0, i = at; w < ID_WORDS; w++, i += 4) k[w] = ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0;
  }

  /** `add` of the parsed key. */
  private addKey(): number {
    let h = this.hashKey();
    const found = this.probe(h);
    if (found >= 0) return found;
    const o = this.count;
    if ((o + 1) * 4 > this.slots.length * 3) {
      this.grow();
      h = this.hashKey();
      this.probe(h);
    }
    if ((o & PAGE_MASK) === 0) this.pages.push(new Uint32Array(PAGE_RECORDS * this.stride));
    const p = this.pages[o >>> PAGE_BITS]!;
    const b = (o & PAGE_MASK) * this.stride;
    const k = this.key;
    for (let w = 0; w < ID_WORDS; w++) p[b + w] = k[w]!;
    this.slots[this.emptySlot] = this.slotValue(h, o);
    this.count++;
    return o;
  }

  /** The page that holds an ordinal's record; its words start at `base(o)`. */
  page(o: number): Uint32Array {
    return this.pages[o >>> PAGE_BITS]!;
  }

  /** Where an ordinal's record starts in its page. */
  base(o: number): number {
    return (o & PAGE_MASK) * this.stride;
  }

  /** The id of an ordinal, as hex. */
  hexAt(o: number): string {
    const p = this.page(o);
    const b = this.base(o);
    let s = '';
    for (let w = 0; w < ID_WORDS; w++) s += p[b + w]!.toString(16).padStart(8, '0');
    return s;
  }

  /** Ordinal of the parsed key, or -1 (then `emptySlot` is where it would go). */
  private probe(h: number): number {
    const bits = this.bits;
    const slots = this.slots;
    const mask = slots.length - 1;
    const fp = h & this.fpMask;
    const k = this.key;
    for (let i = h >>> (32 - bits); ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) {
        this.emptySlot = i;
        return -1;
      }
      if (s >>> bits !== fp) continue;
      const o = (s & mask) - 1;
      const p = this.pages[o >>> PAGE_BITS]!;
      const b = (o & PAGE_MASK) * this.stride;
      if (p[b] === k[0] && p[b + 1] === k[1] && p[b + 2] === k[2] && p[b + 3] === k[3]
        && p[b + 4] === k[4] && p[b + 5] === k[5] && p[b + 6] === k[6] && p[b + 7] === k[7]) return o;
    }
  }

  private slotValue(h: number, o: number): number {
    // o + 1 < 2^bits, so the two parts do not overlap. Signed, as the hash:
    // a number past 2^31 - 1 returned from a call not inlined is a heap
    // allocation, and the slots store the same 32 bits either way.
    return ((h & this.fpMask) << this.bits) | (o + 1);
  }

  private hashKey(): number {
    return this.hashWords(this.key, 0);
  }

  /**
   * A keyed hash of the 8 id words at `w[at]`, as a signed 32-bit integer:
   * HalfSipHash-1-3 (SipHash's 32-bit sibling, as the Linux kernel uses for
   * its hash tables) over the words as they are. Every round depends on the
   * key, so ids that collide under one key do not under another.
   */
  private hashWords(w: Uint32Array, at: number): number {
    let v0 = this.k0, v1 = this.k1, v2 = this.k0 ^ 0x6c796765, v3 = this.k1 ^ 0x74656462;
    for (let i = at; i < at + ID_WORDS; i++) {
      const m = w[i]! | 0;
      v3 ^= m;
      v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
      v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
      v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
      v0 ^= m;
    }
    // The length block (32 bytes, in the top byte), then the 3 finishing rounds.
    v3 ^= LENGTH_BLOCK;
    for (let r = 0; r < 4; r++) {
      v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
      v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
      v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
      if (r === 0) {
        v0 ^= LENGTH_BLOCK;
        v2 ^= 0xff;
      }
    }
    return v1 ^ v3;
  }

  /**
   * Makes room for `n` ids in all without growing again: a table filled
   * from index files of known size places each id once, not once per
   * doubling (a sixth of an index's build).
   */
  reserve(n: number): void {
    let bits = this.bits;
    while (bits < MAX_BITS && n * 4 > 2 ** bits * 3) bits++;
    if (bits > this.bits) this.grow(bits);
  }

  /** Doubles the slots (or more, to `bits`) and places every id again. */
  private grow(bits = this.bits + 1): void {
    if (this.bits === MAX_BITS) throw new RangeError(`an id table holds at most ${2 ** MAX_BITS * 0.75} ids`);
    this.bits = bits;
    this.fpMask = 2 ** (32 - this.bits) - 1;
    const slots = new Uint32Array(2 ** this.bits);
    const mask = slots.length - 1;
    for (let o = 0; o < this.count; o++) {
      const h = this.hashWords(this.page(o), this.base(o));
      let i = h >>> (32 - this.bits);
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = this.slotValue(h, o);
    }
    this.slots = slots;
  }
}

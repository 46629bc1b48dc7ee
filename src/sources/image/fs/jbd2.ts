/**
 * Journal replay for ext3/ext4 images, in memory. An image of a mounted
 * filesystem (a snapshot of a live disk) has committed transactions in its
 * journal that were not yet written to their home blocks; reading it without
 * them shows stale directories and inodes. This does what the kernel's
 * recovery does (fs/jbd2/recovery.c), without writing anything:
 *
 *   journal superblock (block 0 of the journal, big-endian): s_start = 0 → clean
 *   from s_start, sequence s_sequence, wrapping from s_maxlen to s_first:
 *     descriptor block: tags (home block, flags), each followed by its data block
 *     revoke block:     home blocks whose earlier journal copies must not be replayed
 *     commit block:     the transaction is complete; sequence + 1
 *   pass 1 finds the last complete transaction, pass 2 collects revokes,
 *   pass 3 maps each home block to its newest journal copy (not revoked by
 *   the same or a later transaction)
 *
 * The result is an overlay: home block → bytes, applied by `OverlaySource`.
 * A transaction without its commit block is not replayed (as the kernel).
 * Checksums are not verified; sequence numbers and magic numbers are. Every
 * count is bounded by the journal's length, so a damaged journal ends the
 * replay early, never loops.
 */
import type { ErrorCode } from '../../../core/errors.js';
import { checkRange, type ByteSource } from './byte-source.js';

const MAGIC = 0xc03b3998;
const DESCRIPTOR = 1;
const COMMIT = 2;
const SUPERBLOCK_V1 = 3;
const SUPERBLOCK_V2 = 4;
const REVOKE = 5;

const INCOMPAT_REVOKE = 0x1;
const INCOMPAT_64BIT = 0x2;
const INCOMPAT_CSUM_V2 = 0x8;
const INCOMPAT_CSUM_V3 = 0x10;
const INCOMPAT_FAST_COMMIT = 0x20;

const FLAG_ESCAPE = 1;
const FLAG_SAME_UUID = 2;
const FLAG_LAST_TAG = 8;

/** Reads journal block `n` (0 = the journal superblock). */
export type JournalBlockReader = (n: number) => Promise<Buffer>;

export interface ReplayResult {
  /** Home block number → its content after replay. */
  readonly blocks: Map<number, Buffer>;
  /** Transactions replayed. */
  readonly transactions: number;
}

/** The journal is damaged in a way that stops replay before it starts. */
export class JournalError extends Error {
  readonly code: ErrorCode = 'FILESYSTEM_DAMAGED';
  constructor(message: string) {
    super(message);
    this.name = 'JournalError';
  }
}

/**
 * Replays the journal into an overlay. `journalBlocks` is the journal's
 * length in filesystem blocks, `fsBlockSize` the filesystem's block size,
 * `fsBlocks` its block count (home blocks beyond it are ignored).
 */
export async function replayJournal(read: JournalBlockReader, journalBlocks: number, fsBlockSize: number, fsBlocks: number, onWarning?: (m: string) => void): Promise<ReplayResult> {
  const sb = await read(0);
  if (sb.readUInt32BE(0) !== MAGIC) throw new JournalError('journal superblock has no magic number');
  const type = sb.readUInt32BE(4);
  if (type !== SUPERBLOCK_V1 && type !== SUPERBLOCK_V2) throw new JournalError(`journal superblock has block type ${type}`);
  const blockSize = sb.readUInt32BE(12);
  if (blockSize !== fsBlockSize) throw new JournalError(`journal block size ${blockSize} differs from the filesystem's ${fsBlockSize}`);
  const maxLen = sb.readUInt32BE(16);
  const first = sb.readUInt32BE(20);
  let sequence = sb.readUInt32BE(24);
  const start = sb.readUInt32BE(28);
  const empty: ReplayResult = { blocks: new Map(), transactions: 0 };
  if (start === 0) return empty;
  if (maxLen > journalBlocks || first < 1 || first >= maxLen || start < first || start >= maxLen) {
    throw new JournalError(`journal bounds are impossible (first ${first}, start ${start}, length ${maxLen} of ${journalBlocks} blocks)`);
  }
  const incompat = type === SUPERBLOCK_V2 ? sb.readUInt32BE(0x28) : 0;
  if (incompat & INCOMPAT_FAST_COMMIT) onWarning?.('the journal uses fast commits, which are not replayed: the newest changes may be missing');
  const csumV3 = (incompat & INCOMPAT_CSUM_V3) !== 0;
  const csumV2 = (incompat & INCOMPAT_CSUM_V2) !== 0;
  const bit64 = (incompat & INCOMPAT_64BIT) !== 0;
  const tagBytes = csumV3 ? 16 : (csumV2 ? 14 : 12) - (bit64 ? 0 : 4);
  const tail = csumV2 || csumV3 ? 4 : 0;
  const revokeEntry = bit64 ? 8 : 4;

  const next = (n: number): number => (n + 1 >= maxLen ? first : n + 1);

  interface Tag {
    readonly home: number;
    readonly escape: boolean;
  }

  const tagsOf = (b: Buffer): Tag[] => {
    const tags: Tag[] = [];
    let o = 12;
    while (o + tagBytes <= b.length - tail) {
      const lo = b.readUInt32BE(o);
      const flags = csumV3 ? b.readUInt32BE(o + 4) : b.readUInt16BE(o + 6);
      const hi = bit64 ? b.readUInt32BE(o + 8) : 0;
      tags.push({ home: hi * 2 ** 32 + lo, escape: (flags & FLAG_ESCAPE) !== 0 });
      o += tagBytes;
      if (!(flags & FLAG_SAME_UUID)) o += 16;
      if (flags & FLAG_LAST_TAG) break;
    }
    return tags;
  };

  /** One pass over the log; `visit` sees each block with the sequence of its transaction. */
  const pass = async (until: number | undefined, visit: (kind: number, b: Buffer, seq: number, at: number) => Promise<void>): Promise<number> => {
    let seq = sequence;
    let at = start;
    for (let steps = 0; steps < maxLen; steps++) {
      if (until !== undefined && seq >= until) break;
      const b = await read(at);
      if (b.readUInt32BE(0) !== MAGIC || b.readUInt32BE(8) !== seq) break;
      const kind = b.readUInt32BE(4);
      if (kind === DESCRIPTOR) {
        await visit(kind, b, seq, at);
        const n = tagsOf(b).length;
        for (let i = 0; i <= n; i++) at = next(at);
        steps += n;
      } else if (kind === COMMIT) {
        seq++;
        at = next(at);
      } else if (kind === REVOKE) {
        await visit(kind, b, seq, at);
        at = next(at);
      } else {
        break;
      }
    }
    return seq;
  };

  // Pass 1: the sequence after the last complete transaction.
  const end = await pass(undefined, async () => undefined);
  if (end === sequence) return empty;
  // Pass 2: revokes (the newest transaction that revoked each block).
  const revoked = new Map<number, number>();
  if (incompat & INCOMPAT_REVOKE) {
    await pass(end, async (kind, b, seq) => {
      if (kind !== REVOKE) return;
      const count = Math.min(b.readUInt32BE(12), b.length - tail);
      for (let o = 16; o + revokeEntry <= count; o += revokeEntry) {
        const home = bit64 ? b.readUInt32BE(o) * 2 ** 32 + b.readUInt32BE(o + 4) : b.readUInt32BE(o);
        revoked.set(home, Math.max(revoked.get(home) ?? 0, seq));
      }
    });
  }
  // Pass 3: the newest copy of every home block.
  const blocks = new Map<number, Buffer>();
  let dropped = 0;
  await pass(end, async (kind, b, seq, at) => {
    if (kind !== DESCRIPTOR) return;
    let data = at;
    for (const tag of tagsOf(b)) {
      data = next(data);
      const r = revoked.get(tag.home);
      if (r !== undefined && r >= seq) continue;
      if (tag.home >= fsBlocks) {
        dropped++;
        continue;
      }
      const copy = Buffer.from(await read(data));
      if (tag.escape) copy.writeUInt32BE(MAGIC, 0);
      blocks.set(tag.home, copy);
    }
  });
  if (dropped) onWarning?.(`the journal names ${dropped} block(s) outside the filesystem; they were ignored`);
  sequence = end;
  return { blocks, transactions: end - sb.readUInt32BE(24) };
}

/** A source with some filesystem blocks replaced (the replayed journal). */
export class OverlaySource implements ByteSource {
  private readonly keys: number[];
  readonly size: number;

  constructor(private readonly inner: ByteSource, private readonly blockSize: number, private readonly blocks: Map<number, Buffer>) {
    this.size = inner.size;
    this.keys = [...blocks.keys()].sort((a, b) => a - b);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange('filesystem', offset, length, this.size);
    const data = await this.inner.read(offset, length);
    const firstBlock = Math.floor(offset / this.blockSize);
    const lastBlock = Math.floor((offset + Math.max(length, 1) - 1) / this.blockSize);
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.keys[mid]! < firstBlock) lo = mid + 1;
      else hi = mid;
    }
    let out: Buffer | undefined;
    for (let i = lo; i < this.keys.length && this.keys[i]! <= lastBlock; i++) {
      const block = this.keys[i]!;
      out ??= Buffer.from(data); // never write into a buffer a cache below may share
      const content = this.blocks.get(block)!;
      const blockStart = block * this.blockSize;
      const from = Math.max(offset, blockStart);
      const to = Math.min(offset + length, blockStart + this.blockSize);
      content.copy(out, from - offset, from - blockStart, to - blockStart);
    }
    return out ?? data;
  }
}

/**
 * Random access to the bytes of one file of a file snapshot, without reading
 * it from the start: what a mounted snapshot's `read(offset, length)` needs.
 *
 *   open:  the content list (format §5) becomes a table of start offsets:
 *          a whole blob is as long as the copy a reader reads says its
 *          plaintext is (when copies disagree, the repository settles it by
 *          reading the blob: a planted entry may claim any length), a
 *          slice as long as it says, a hole as its number; the total must
 *          be the size the node declares, or the file is damaged
 *   read:  binary search for the first entry the range touches, then for
 *          each entry it touches: zeros for a hole, else the blob (loaded
 *          through the repository, which authenticates it; a few recent
 *          ones kept, concurrent readers of one blob share the load), cut
 *          with `slicePlain` for a slice
 */
import { BlobType } from '../../repo/pack.js';
import { CorruptObjectError } from '../../repo/errors.js';
import { slicePlain, type ContentEntry, type TreeNode } from '../../repo/tree.js';
import { inRange, type RandomAccessSource } from '../../sources/image/random-access.js';

/** What the reader needs of a repository (`Repository` has it). */
export interface ContentLoader {
  /** Loads, authenticates and decompresses one blob of the given type. */
  loadBlob(type: BlobType, id: string): Promise<Buffer>;
  /** The copy of a blob a read takes: its plaintext length is what a content entry naming the whole blob spans. */
  readCopy(id: string): { readonly rawLength: number } | undefined;
  /** Reads the blobs of a content list whose copies disagree on their length, so that `readCopy` gives one of the true length. */
  settleLengths(content: readonly ContentEntry[]): Promise<void>;
}

/** Plaintext blobs kept per reader: a read that spans two chunks, and the next read of a sequential reader, hit them. */
const KEEP_BLOBS = 4;

/** A file of a snapshot opened for reading. */
export class FileContentReader implements RandomAccessSource {
  readonly size: number;
  /** Start offset of each content entry, and the size as the last element. */
  private readonly starts: number[];
  private readonly recent = new Map<string, Promise<Buffer>>();

  /**
   * Throws `CorruptObjectError` for a node marked damaged, a content entry
   * whose blob is not in the index, and content that does not add up to the
   * node's size: such a file cannot be read as what it claims to be.
   */
  private constructor(private readonly repo: ContentLoader, private readonly content: readonly ContentEntry[], node: TreeNode, private readonly what: string) {
    if (node.damaged) throw new CorruptObjectError(what, 'its content was lost in the repository (marked damaged by "repair snapshots")');
    this.starts = new Array<number>(content.length + 1);
    let at = 0;
    content.forEach((c, i) => {
      this.starts[i] = at;
      if (typeof c === 'number') at += c;
      else if (typeof c === 'string') {
        const loc = repo.readCopy(c);
        if (!loc) throw new CorruptObjectError(what, `blob ${c} is not in the repository`);
        at += loc.rawLength;
      } else at += c.length;
    });
    this.starts[content.length] = at;
    if (at !== node.size) throw new CorruptObjectError(what, `its content holds ${at} bytes, its size says ${node.size}`);
    this.size = at;
  }

  /**
   * Opens `node` (a regular file) for reading; rejects as the constructor
   * throws (see there).
   */
  static async open(repo: ContentLoader, node: TreeNode, what: string): Promise<FileContentReader> {
    if (!node.damaged) await repo.settleLengths(node.content ?? []);
    return new FileContentReader(repo, node.content ?? [], node, what);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!inRange(this.size, offset, length)) throw new RangeError(`read of ${length} bytes at ${offset} is outside ${this.what} (${this.size} bytes)`);
    const out = Buffer.alloc(length);
    const end = offset + length;
    for (let i = this.entryAt(offset); i < this.content.length && this.starts[i]! < end; i++) {
      const c = this.content[i]!;
      if (typeof c === 'number') continue;
      const start = this.starts[i]!;
      const plain = typeof c === 'string' ? await this.blob(c) : slicePlain(await this.blob(c.blob), c, `${this.what}, blob ${c.blob}`);
      const from = Math.max(offset, start);
      plain.copy(out, from - offset, from - start, Math.min(end, start + plain.length) - start);
    }
    return out;
  }

  /** The index of the last entry starting at or before `offset`. */
  private entryAt(offset: number): number {
    let lo = 0;
    let hi = this.content.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private blob(id: string): Promise<Buffer> {
    let p = this.recent.get(id);
    if (p) this.recent.delete(id);
    else {
      p = this.repo.loadBlob(BlobType.Data, id);
      p.catch(() => this.recent.delete(id));
    }
    this.recent.set(id, p);
    while (this.recent.size > KEEP_BLOBS) this.recent.delete(this.recent.keys().next().value!);
    return p;
  }
}

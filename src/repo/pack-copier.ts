/**
 * Copies sealed blobs into new packs, without the key: prune's repack and
 * rescue, the snapshot fence, repair's salvage, and `copy` between
 * repositories that share a master key. A sealed blob's AAD binds
 * its type, flags, length and id, not the pack, so the bytes move as they are.
 *
 * A copy must never have the bytes, and so the name, of a pack that exists.
 * Copying every blob of a pack in order would give exactly the pack copied
 * from: its save would "succeed" without writing anything, and deleting the
 * marked original would delete the copy with it. So the copier sets the
 * reserved u16 of the first header entry (docs/format.md §4.3: readers do
 * not check it; backups write 0) to the smallest value from 1 up that gives
 * a name `avoid` does not reject and that no object took meanwhile.
 */
import { sha256 } from '../core/crypto.js';
import type { Backend, OperationOptions } from '../storage/backend.js';
import type { IndexedPack } from './index-file.js';
import { NameTakenError } from './errors.js';
import { io, saveAddressed } from './objects.js';
import { PACK_TRAILER_BYTES, PackWriter, type PackedBlob } from './pack.js';

/** Offset of the first entry's reserved field within the header: version (1) + count (4) + type (1) + flags (1). */
const FIRST_RESERVED = 7;
/** Packs being stored at once: the next one fills while the last ones are written (and fsynced, or uploaded). */
const MAX_IN_FLIGHT = 2;

/** Packs of copied blobs; see the module comment. */
export class PackCopier {
  private writer: PackWriter;
  private readonly written: IndexedPack[] = [];
  /** How many of `written` `takeStored` has handed out. */
  private taken = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /** The first save that failed: every later call throws it. */
  private failure: { error: unknown } | undefined;

  /** `avoid(name)` is true for names a copy must not get: every pack that exists; `opts.signal` is passed to every save. */
  constructor(private readonly backend: Backend, private readonly packSize: number, private readonly avoid: (name: string) => boolean, private readonly opts: OperationOptions = {}) {
    this.writer = this.newWriter();
  }

  /** A writer with room for a full pack, so that it never grows by copying. */
  private newWriter(): PackWriter {
    return new PackWriter(this.packSize + (this.packSize >> 2));
  }

  /** Adds one sealed blob (its bytes are copied in); stores a pack when it is full. */
  async add(b: PackedBlob, sealed: Buffer): Promise<void> {
    this.writer.add(b.type, b.id, b.flags, b.rawLength, sealed);
    if (this.writer.length >= this.packSize) await this.flushPack();
  }

  private async flushPack(): Promise<void> {
    this.rethrow();
    if (this.writer.count === 0) return;
    const { bytes, blobs } = this.writer.finish();
    this.writer = this.newWriter();
    const headerLength = bytes.readUInt32LE(bytes.length - PACK_TRAILER_BYTES);
    const at = bytes.length - PACK_TRAILER_BYTES - headerLength + FIRST_RESERVED;
    const saving: Promise<void> = this.store(bytes, at)
      .then((pack) => void this.written.push({ pack, blobs }), (error: unknown) => void (this.failure ??= { error }))
      .finally(() => this.inFlight.delete(saving));
    this.inFlight.add(saving);
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
    this.rethrow();
  }

  /**
   * Saves a finished pack under the first salt (the reserved u16 at `at`)
   * from 1 up whose name `avoid` does not reject and that is not found taken
   * by other bytes when saved: a name planted after `avoid`'s listing, by a
   * client that predicted it (a copy's packs follow from the source), is
   * passed over like an existing pack's. Returns the name.
   */
  private async store(bytes: Buffer, at: number): Promise<string> {
    for (let salt = 1; salt <= 0xffff; salt++) {
      bytes.writeUInt16LE(salt, at);
      const name = sha256(bytes).toString('hex');
      if (this.avoid(name)) continue;
      try {
        return await saveAddressed(this.backend, 'data', bytes, { ...io(this.opts), name });
      } catch (e) {
        if (!(e instanceof NameTakenError)) throw e;
      }
    }
    throw new Error('cannot give a copied pack a new name');
  }

  private rethrow(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Packs stored since the last call (for a caller that indexes as it goes). */
  takeStored(): IndexedPack[] {
    const out = this.written.slice(this.taken);
    this.taken = this.written.length;
    return out;
  }

  /** Stores the last pack and waits for every save; returns every pack written. */
  async finish(): Promise<IndexedPack[]> {
    await this.flushPack();
    await Promise.all(this.inFlight);
    this.rethrow();
    return this.written;
  }
}

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
 *
 * `copy` between repositories also stores a source pack whose every blob it
 * wants as it is (`addPack`): in the destination its own name is a new one
 * unless `avoid` rejects it or other bytes took it, and then it is salted
 * like the rest (docs/format.md §19).
 */
import { sha256 } from '../core/crypto.js';
import type { Backend, OperationOptions } from '../storage/backend.js';
import type { IndexedPack } from './index-file.js';
import { NameTakenError } from './errors.js';
import { io, saveAddressed } from './objects.js';
import { PACK_TRAILER_BYTES, PackWriter, type PackedBlob } from './pack.js';

/** Offset of the first entry's reserved field within the header: version (1) + count (4) + type (1) + flags (1). */
const FIRST_RESERVED = 7;
/** Packs being stored at once unless the caller says: the next one fills while the last ones are written (and fsynced, or uploaded). */
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

  /**
   * `avoid(name)` is true for names a copy must not get: every pack that
   * exists; `opts.signal` is passed to every save; `opts.maxInFlight` packs
   * (default MAX_IN_FLIGHT) are stored at once.
   */
  constructor(
    private readonly backend: Backend, private readonly packSize: number, private readonly avoid: (name: string) => boolean,
    private readonly opts: OperationOptions & { readonly maxInFlight?: number } = {},
  ) {
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

  /**
   * Stores a whole pack of another repository as it is: `bytes`, whose
   * SHA-256 the caller has checked is `name`, holding `blobs`. It keeps its
   * name when `avoid` does not reject it and no other bytes took it
   * meanwhile, else it is salted as any copy (the module comment). Only for
   * copies between repositories: within one, the pack is one that exists.
   */
  async addPack(name: string, bytes: Buffer, blobs: readonly PackedBlob[]): Promise<void> {
    this.rethrow();
    await this.save(this.store(bytes, name), blobs);
  }

  private async flushPack(): Promise<void> {
    this.rethrow();
    if (this.writer.count === 0) return;
    const { bytes, blobs } = this.writer.finish();
    this.writer = this.newWriter();
    await this.save(this.store(bytes), blobs);
  }

  /** Waits for `storing` in the background, at most MAX_IN_FLIGHT at once. */
  private async save(storing: Promise<string>, blobs: readonly PackedBlob[]): Promise<void> {
    const saving: Promise<void> = storing
      .then((pack) => void this.written.push({ pack, blobs }), (error: unknown) => void (this.failure ??= { error }))
      .finally(() => this.inFlight.delete(saving));
    this.inFlight.add(saving);
    while (this.inFlight.size >= (this.opts.maxInFlight ?? MAX_IN_FLIGHT)) await Promise.race(this.inFlight);
    this.rethrow();
  }

  /**
   * Saves a finished pack: under `name`, its bytes' SHA-256, when given and
   * neither rejected by `avoid` nor found taken by other bytes; else under
   * the first salt (the reserved u16 of its first header entry) from 1 up
   * whose name `avoid` does not reject and that is not found taken by other
   * bytes when saved: a name planted after `avoid`'s listing, by a client
   * that predicted it (a copy's packs follow from the source), is passed
   * over like an existing pack's. Returns the name.
   */
  private async store(bytes: Buffer, name?: string): Promise<string> {
    if (name !== undefined && !this.avoid(name)) {
      try {
        return await saveAddressed(this.backend, 'data', bytes, { ...io(this.opts), name });
      } catch (e) {
        if (!(e instanceof NameTakenError)) throw e;
      }
    }
    const headerLength = bytes.readUInt32LE(bytes.length - PACK_TRAILER_BYTES);
    const at = bytes.length - PACK_TRAILER_BYTES - headerLength + FIRST_RESERVED;
    for (let salt = 1; salt <= 0xffff; salt++) {
      bytes.writeUInt16LE(salt, at);
      const salted = sha256(bytes).toString('hex');
      if (salted === name || this.avoid(salted)) continue;
      try {
        return await saveAddressed(this.backend, 'data', bytes, { ...io(this.opts), name: salted });
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

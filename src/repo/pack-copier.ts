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
 * a name `avoid` does not reject.
 */
import { sha256 } from '../core/crypto.js';
import type { Backend } from '../storage/backend.js';
import type { IndexedPack } from './index-file.js';
import { saveAddressed } from './objects.js';
import { PACK_TRAILER_BYTES, PackWriter, type PackedBlob } from './pack.js';

/** Offset of the first entry's reserved field within the header: version (1) + count (4) + type (1) + flags (1). */
const FIRST_RESERVED = 7;

/** Packs of copied blobs; see the module comment. */
export class PackCopier {
  private writer = new PackWriter();
  private readonly written: IndexedPack[] = [];
  /** How many of `written` `takeStored` has handed out. */
  private taken = 0;

  /** `avoid(name)` is true for names a copy must not get: every pack that exists. */
  constructor(private readonly backend: Backend, private readonly packSize: number, private readonly avoid: (name: string) => boolean) {}

  /** Adds one sealed blob; stores a pack when it is full. */
  async add(b: PackedBlob, sealed: Buffer): Promise<void> {
    this.writer.add(b.type, b.id, b.flags, b.rawLength, Buffer.from(sealed));
    if (this.writer.length >= this.packSize) await this.flushPack();
  }

  private async flushPack(): Promise<void> {
    if (this.writer.count === 0) return;
    const { bytes, blobs } = this.writer.finish();
    this.writer = new PackWriter();
    const headerLength = bytes.readUInt32LE(bytes.length - PACK_TRAILER_BYTES);
    const at = bytes.length - PACK_TRAILER_BYTES - headerLength + FIRST_RESERVED;
    for (let salt = 1; ; salt++) {
      if (salt > 0xffff) throw new Error('cannot give a copied pack a new name');
      bytes.writeUInt16LE(salt, at);
      if (!this.avoid(sha256(bytes).toString('hex'))) break;
    }
    this.written.push({ pack: await saveAddressed(this.backend, 'data', bytes), blobs });
  }

  /** Packs stored since the last call (for a caller that indexes as it goes). */
  takeStored(): IndexedPack[] {
    const out = this.written.slice(this.taken);
    this.taken = this.written.length;
    return out;
  }

  /** Stores the last pack; returns every pack written. */
  async finish(): Promise<IndexedPack[]> {
    await this.flushPack();
    return this.written;
  }
}

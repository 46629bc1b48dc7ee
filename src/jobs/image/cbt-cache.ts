/**
 * The changed-block cache of image backups: a local file, outside the
 * repository, that remembers for each block of a source a fast keyed
 * fingerprint of the bytes read last time and the blob id stored for them. A
 * block whose fingerprint matches, and whose id the repository index still
 * has, costs one read and one fingerprint (Poly1305, ~10 GB/s a core): no
 * keyed id (HMAC-SHA256, ~1.7 GB/s), no compression, no encryption.
 *
 *   fingerprint = Poly1305 tag of the block, as the associated data of a
 *                 ChaCha20-Poly1305 seal of nothing, under the fingerprint key
 *                 (from the repository's id key) and a zero nonce: a universal
 *                 hash with a secret key, so collisions cannot be aimed at
 *   file = "HFCBT\0\0\2" || u32 LE json length || JSON header
 *          || blocks × (16-byte fingerprint || 32-byte blob id)   (all zero: no entry)
 *          || 32-byte MAC = HMAC-SHA256(repository id key, everything before)
 *
 * The MAC (the repository's keyed blob id of the file's bytes) makes a cache
 * that was damaged, or written for another repository, fail as a whole; a
 * failing cache is ignored with a warning. Written to a temporary name and
 * renamed, so a crash leaves the old cache or the new one.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FP_BYTES } from '../../core/crypto.js';

const MAGIC = Buffer.from('HFCBT\0\0\x02', 'latin1');
const ID_BYTES = 32;
export const CBT_ENTRY_BYTES = FP_BYTES + ID_BYTES;
const MAC_BYTES = 32;

/** What the cache needs of a repository. */
export interface CacheKeyring {
  /** The repository id (from its config). */
  readonly repositoryId: string;
  /** Keyed MAC of bytes: the repository's blob id function. */
  mac(data: Uint8Array): string;
}

/** The header of a cache file. */
export interface CbtHeader {
  readonly repository: string;
  /** The snapshot this cache describes. */
  readonly snapshot: string;
  readonly source: string;
  readonly size: number;
  readonly blockSize: number;
  readonly fingerprint: 'poly1305';
}

/** Path of the cache file for one source of one repository, below the cache folder `root` (the caller's choice). */
export function cachePath(root: string, repositoryId: string, source: string): string {
  const h = createHash('sha256').update(source).digest('hex').slice(0, 32);
  return join(root, repositoryId, `image-${h}.cbt`);
}

/** A loaded (or new) cache: one entry per block. */
export class CbtCache {
  private constructor(readonly header: CbtHeader, readonly entries: Buffer) {}

  /** An empty cache for `blocks` blocks. */
  static empty(header: CbtHeader, blocks: number): CbtCache {
    return new CbtCache(header, Buffer.alloc(blocks * CBT_ENTRY_BYTES));
  }

  /** A cache made of entries built by a backup. */
  static fromEntries(header: CbtHeader, entries: Buffer): CbtCache {
    if (entries.length % CBT_ENTRY_BYTES !== 0) throw new RangeError('cache entries are not whole');
    return new CbtCache(header, entries);
  }

  get blocks(): number {
    return this.entries.length / CBT_ENTRY_BYTES;
  }

  /** The cached fingerprint of block b, or undefined. */
  fingerprintOf(b: number): Buffer | undefined {
    if (b >= this.blocks) return undefined;
    const e = this.entries.subarray(b * CBT_ENTRY_BYTES, b * CBT_ENTRY_BYTES + FP_BYTES);
    return e.every((x) => x === 0) ? undefined : e;
  }

  /** The cached blob id of block b (hex), or undefined. */
  idOf(b: number): string | undefined {
    if (b >= this.blocks) return undefined;
    const o = b * CBT_ENTRY_BYTES + FP_BYTES;
    const e = this.entries.subarray(o, o + ID_BYTES);
    return e.every((x) => x === 0) ? undefined : e.toString('hex');
  }

  /**
   * Where block b's entry (fingerprint and id) starts in `entries` when it
   * records the id at `id[at…]` and a fingerprint, else undefined. Compared
   * here, byte by byte, not by a call per block into C++.
   */
  entryAt(b: number, id: Buffer, at: number): number | undefined {
    if (b >= this.blocks) return undefined;
    const e = this.entries;
    const o = b * CBT_ENTRY_BYTES;
    for (let i = 0; i < ID_BYTES; i++) if (e[o + FP_BYTES + i] !== id[at + i]) return undefined;
    let fp = 0;
    for (let i = o; i < o + FP_BYTES; i++) fp |= e[i]!;
    return fp === 0 ? undefined : o;
  }

  /** Records block b. */
  set(b: number, fp: Uint8Array, id: string): void {
    const o = b * CBT_ENTRY_BYTES;
    this.entries.set(fp, o);
    this.entries.write(id, o + FP_BYTES, ID_BYTES, 'hex');
  }

  /** Reads a cache file; undefined (with `why`) when missing, damaged or for something else. */
  static async load(path: string, keys: CacheKeyring, want: Omit<CbtHeader, 'snapshot'>): Promise<{ cache?: CbtCache; why?: string }> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { why: 'no changed-block cache yet' };
      return { why: `cannot read the changed-block cache ${path}: ${(e as Error).message}` };
    }
    const damaged = { why: `the changed-block cache ${path} is damaged or belongs to another repository; reading every block` };
    if (bytes.length < MAGIC.length + 4 + MAC_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return damaged;
    const body = bytes.subarray(0, bytes.length - MAC_BYTES);
    if (keys.mac(body) !== bytes.subarray(bytes.length - MAC_BYTES).toString('hex')) return damaged;
    const jsonLength = bytes.readUInt32LE(MAGIC.length);
    const start = MAGIC.length + 4 + jsonLength;
    if (start > body.length || (body.length - start) % CBT_ENTRY_BYTES !== 0) return damaged;
    let header: CbtHeader;
    try {
      header = JSON.parse(bytes.subarray(MAGIC.length + 4, start).toString('utf8')) as CbtHeader;
    } catch {
      return damaged;
    }
    if (header.repository !== keys.repositoryId || header.fingerprint !== want.fingerprint || header.source !== want.source) return damaged;
    if (header.blockSize !== want.blockSize) return { why: `the changed-block cache is for ${header.blockSize}-byte blocks; reading every block` };
    const entries = Buffer.from(body.subarray(start));
    return { cache: new CbtCache(header, entries) };
  }

  /**
   * Writes the cache atomically (temporary file, rename). Not synced: a
   * file a crash leaves torn fails its MAC and is read as no cache, and an
   * older one is still true (each entry is a fact about the bytes it names),
   * so a sync would buy nothing for its time after every backup.
   */
  async save(path: string, keys: CacheKeyring, header: CbtHeader): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length, 0);
    const body = Buffer.concat([MAGIC, len, json, this.entries]);
    const mac = Buffer.from(keys.mac(body), 'hex');
    const tmp = `${path}.tmp-${randomBytes(8).toString('hex')}`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      try {
        // writeFile goes on after a short write; writev's count is 32 bits (a cache past 2 GiB read as a short write).
        await fh.writeFile(body);
        await fh.writeFile(mac);
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }
}

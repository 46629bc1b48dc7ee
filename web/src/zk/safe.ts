/**
 * A disk safe opened in the browser with its password: the key derived
 * here, every object fetched sealed and opened, decompressed and checked
 * here, so that the server sees neither the password nor a byte of
 * plaintext (docs/format.md §13 is the recipe, §11 what the server sees).
 *
 *   open(source, password)
 *     config: checksum; key files in order of cost: SHA-256 name, scrypt,
 *     AES-GCM open, repository id → master key (else WrongPasswordError);
 *     the config's MAC
 *   snapshots()   each: SHA-256 name, parse, MAC (a failing one is left out, with a warning)
 *   tree(id)      the blob (type tree) → decoded listing
 *   blob(id)      every copy the index files name, in turn: range read,
 *                 AES-GCM with the AAD, zstd to exactly rawLength, the keyed
 *                 id; a copy that fails is warned about and the next read;
 *                 none → DamagedError
 *   fileBytes(node)  its content in order, holes as zeros, the size checked
 *
 * A folder's entries whose names §6.4 refuses are left out of `list` and
 * `walk` (reported), so no name in a tree becomes a path outside the
 * folder a download writes.
 */
import { equalBytes, showText, toHex, utf8, utf8Text } from './bytes.js';
import { DamagedError, RefusedNameError, WrongPasswordError, ZkError } from './errors.js';
import {
  BlobType, MAX_RAW_LENGTH, blobAad, decodeTree, nameProblem, parseConfig, parseIndex, parseKeyFile, parseSnapshot,
  type BlobLocation, type Config, type KeyFile, type Snapshot, type TreeNode,
} from './format.js';
import { aesGcmOpen, aesKey, blake3Keyed, hkdf32, hmac, sha256, scrypt, zstdExact } from './primitives.js';
import type { SafeSource } from './source.js';

/** The master key's parts a reader uses (docs/format.md §3.1). */
interface MasterKey {
  readonly encryption: CryptoKey;
  readonly encryptionRaw: Uint8Array;
  readonly id: Uint8Array;
}

/**
 * An opened safe's config and key, structured-cloneable: what a worker of
 * the same page opens the same safe with (ZkSafe.reopen), without the
 * password. It holds the key: it is posted to the page's own workers only.
 */
export interface OpenedSafe {
  readonly config: Config;
  readonly key: MasterKey;
}

/** How a reader reports what it leaves out and goes on. */
export interface ZkOptions {
  readonly signal?: AbortSignal;
  /** A key file, index file, snapshot or blob copy left out, or an entry refused. */
  readonly onWarning?: (message: string) => void;
}

/** A listing entry with its place, as `walk` yields it. */
export interface WalkEntry {
  /** The path's components below the walk's start, as bytes (each passed §6.4). */
  readonly path: readonly Uint8Array[];
  readonly node: TreeNode;
}

const BLOB_CACHE_BYTES = 64 * 1024 * 1024;
const KEY_AAD = utf8.encode('holdfast key v1');

export class ZkSafe {
  private index: Promise<Map<string, BlobLocation[]>> | undefined;
  private readonly trees = new Map<string, Promise<TreeNode[]>>();
  /** Recently opened data blobs: small files share their batch's blob, so a folder's download opens each once. */
  private readonly blobs = new Map<string, Uint8Array>();
  private cachedBytes = 0;
  private treeKey: Uint8Array | undefined;

  private constructor(readonly source: SafeSource, readonly config: Config, private readonly key: MasterKey, private readonly opts: ZkOptions) {}

  /**
   * Opens the safe with `password`: WrongPasswordError when no key file
   * opens with it, DamagedError when the config fails its checksum or MAC.
   */
  static async open(source: SafeSource, password: string, opts: ZkOptions = {}): Promise<ZkSafe> {
    const warn = opts.onWarning ?? ((): void => undefined);
    const bytes = await source.get('config', 'config', opts.signal);
    const config = parseConfig(bytes, bytes.length >= 36 ? await sha256(bytes.subarray(0, bytes.length - 32)) : new Uint8Array(32));
    const files: KeyFile[] = [];
    for (const name of await source.list('keys', opts.signal)) {
      try {
        const b = await source.get('keys', name, opts.signal);
        if (toHex(await sha256(b)) !== name) throw new DamagedError(`key file ${name}`, 'its bytes do not hash to its name');
        files.push(parseKeyFile(name, b));
      } catch (e) {
        if (!(e instanceof DamagedError)) throw e;
        warn(e.message);
      }
    }
    // The cheapest first: a key file planted with the highest cost is reached only when no other fits (§4.2).
    files.sort((a, b) => a.N * a.r * a.p - b.N * b.r * b.p);
    for (const f of files) {
      opts.signal?.throwIfAborted();
      const wrapping = await aesKey(await scrypt(password, f.salt, f.N, f.r, f.p));
      const plain = await aesGcmOpen(wrapping, f.data, KEY_AAD);
      if (plain === undefined) continue;
      const key = masterKeyOf(plain, config, f.name);
      if (key instanceof DamagedError) {
        warn(key.message);
        continue;
      }
      const master: MasterKey = { encryption: await aesKey(key.encryption), encryptionRaw: key.encryption, id: key.id };
      const mac = await hmac('SHA-256', await hkdf32(key.encryption, 'holdfast/mac/config'), config.macked);
      if (toHex(mac) !== config.mac) {
        throw new DamagedError('the config', 'it fails its MAC: it was changed or planted in storage by someone without the key; the disk safe is not opened');
      }
      return new ZkSafe(source, config, master, opts);
    }
    throw new WrongPasswordError();
  }

  /** This safe's config and key, for ZkSafe.reopen in a worker of this page. */
  get opened(): OpenedSafe {
    return { config: this.config, key: this.key };
  }

  /** The safe `opened` describes, read from `source` (the key already checked by the `open` that made it). */
  static reopen(source: SafeSource, opened: OpenedSafe, opts: ZkOptions = {}): ZkSafe {
    return new ZkSafe(source, opened.config, opened.key, opts);
  }

  private warn(message: string): void {
    this.opts.onWarning?.(message);
  }

  /**
   * Every snapshot that passes its checksum and MAC, oldest first; one that
   * does not is left out with a warning (§4.5: a reader with the key does
   * not follow a snapshot it cannot authenticate).
   */
  async snapshots(): Promise<Snapshot[]> {
    const macKey = await hkdf32(this.key.encryptionRaw, 'holdfast/mac/snapshot');
    const out: Snapshot[] = [];
    for (const name of await this.source.list('snapshots', this.opts.signal)) {
      try {
        out.push(await this.loadSnapshot(name, macKey));
      } catch (e) {
        if (!(e instanceof ZkError)) throw e;
        this.warn(e.message);
      }
    }
    return out.sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  }

  /** One snapshot by id, checked as `snapshots` checks each. */
  async snapshot(id: string): Promise<Snapshot> {
    return this.loadSnapshot(id, await hkdf32(this.key.encryptionRaw, 'holdfast/mac/snapshot'));
  }

  private async loadSnapshot(name: string, macKey: Uint8Array): Promise<Snapshot> {
    if (!/^[0-9a-f]{64}$/.test(name)) throw new DamagedError(`snapshot ${JSON.stringify(name)}`, 'its name is not a snapshot id');
    const b = await this.source.get('snapshots', name, this.opts.signal);
    if (toHex(await sha256(b)) !== name) throw new DamagedError(`snapshot ${name}`, 'its bytes do not hash to its name');
    const s = parseSnapshot(name, b);
    if (!equalBytes(await hmac('SHA-256', macKey, s.macked), s.mac)) {
      throw new DamagedError(`snapshot ${name}`, 'it fails its MAC: it was changed or planted in storage by someone without the key');
    }
    return s;
  }

  /** The map of every blob's copies, from the index files (one that is damaged is left out, with a warning, §4.4). */
  private loadIndex(): Promise<Map<string, BlobLocation[]>> {
    return this.index ??= (async () => {
      const map = new Map<string, BlobLocation[]>();
      for (const name of await this.source.list('index', this.opts.signal)) {
        try {
          const b = await this.source.get('index', name, this.opts.signal);
          if (toHex(await sha256(b)) !== name) throw new DamagedError(`index ${name}`, 'its bytes do not hash to its name');
          for (const loc of parseIndex(name, b)) {
            const copies = map.get(loc.id);
            if (copies) copies.push(loc);
            else map.set(loc.id, [loc]);
          }
        } catch (e) {
          if (!(e instanceof ZkError)) throw e;
          this.warn(`${e.message}; left out of the index`);
        }
      }
      return map;
    })();
  }

  /**
   * The plaintext of blob `id` of `type`: each copy the index names is read
   * (a range of its pack), authenticated, decompressed to exactly its raw
   * length and hashed to its keyed id; DamagedError when no copy passes.
   */
  async blob(id: string, type: BlobType): Promise<Uint8Array> {
    const cached = this.blobs.get(id);
    if (cached) {
      this.blobs.delete(id);
      this.blobs.set(id, cached);
      return cached;
    }
    const what = `${type === BlobType.Tree ? 'tree' : 'data blob'} ${id}`;
    const copies = (await this.loadIndex()).get(id)?.filter((c) => c.type === type) ?? [];
    if (copies.length === 0) throw new DamagedError(what, 'no index file lists it: the safe has lost it');
    let last: DamagedError | undefined;
    for (const c of copies) {
      try {
        const plain = await this.openCopy(c, what);
        if (type === BlobType.Data) this.remember(id, plain);
        return plain;
      } catch (e) {
        if (!(e instanceof DamagedError)) throw e;
        last = e;
        if (copies.length > 1) this.warn(`${e.message} (the copy in pack ${c.pack}); trying another copy`);
      }
    }
    throw last!;
  }

  private async openCopy(c: BlobLocation, what: string): Promise<Uint8Array> {
    if (c.rawLength > MAX_RAW_LENGTH[c.type]) throw new DamagedError(what, `it declares ${c.rawLength} bytes, more than a blob of its type may hold`);
    const sealed = await this.source.range(c.pack, c.offset, c.length, this.opts.signal);
    const payload = await aesGcmOpen(this.key.encryption, sealed, blobAad(c.type, c.flags, c.rawLength, c.id));
    if (payload === undefined) throw new DamagedError(what, 'it fails authentication (it was changed in storage)');
    const plain = c.flags & 1 ? await zstdExact(payload, c.rawLength, what) : payload;
    if (plain.length !== c.rawLength) throw new DamagedError(what, `it holds ${plain.length} bytes, not ${c.rawLength}`);
    // Authentication proves only that a holder of the key sealed it; the id proves it is this blob (§3.4).
    if (toHex(await blake3Keyed(await this.idKey(c.type), plain)) !== c.id) throw new DamagedError(what, 'its content does not match its id');
    return plain;
  }

  /** The id key of a blob type: the id key for data, HMAC-SHA512(id key, "holdfast/blob-type/T")[0..32] otherwise (§3.3). */
  private async idKey(type: BlobType): Promise<Uint8Array> {
    if (type === BlobType.Data) return this.key.id;
    if (type === BlobType.Tree) return this.treeKey ??= (await hmac('SHA-512', this.key.id, utf8.encode('holdfast/blob-type/1'))).subarray(0, 32);
    return (await hmac('SHA-512', this.key.id, utf8.encode(`holdfast/blob-type/${type}`))).subarray(0, 32);
  }

  private remember(id: string, plain: Uint8Array): void {
    this.blobs.set(id, plain);
    this.cachedBytes += plain.length;
    for (const [k, v] of this.blobs) {
      if (this.cachedBytes <= BLOB_CACHE_BYTES || k === id) break;
      this.blobs.delete(k);
      this.cachedBytes -= v.length;
    }
  }

  /** The decoded listing of tree `id` (every node, names unchecked: `list` checks them). */
  tree(id: string): Promise<TreeNode[]> {
    let t = this.trees.get(id);
    if (!t) {
      t = this.blob(id, BlobType.Tree).then((b) => decodeTree(b, `tree ${id}`));
      this.trees.set(id, t);
      t.catch(() => this.trees.delete(id));
    }
    return t;
  }

  /**
   * The entries of tree `id` a reader may show (§6.4); each refused one is
   * reported through onWarning and in `refused`.
   */
  async list(id: string, where: string): Promise<{ entries: TreeNode[]; refused: RefusedNameError[] }> {
    const entries: TreeNode[] = [];
    const refused: RefusedNameError[] = [];
    for (const n of await this.tree(id)) {
      const problem = nameProblem(n.nameBytes);
      if (problem === undefined) {
        entries.push(n);
        continue;
      }
      const e = new RefusedNameError(where, problem);
      refused.push(e);
      this.warn(e.message);
    }
    return { entries, refused };
  }

  /** The tree of the folder at `path` (components as text) below the snapshot's root; DamagedError or ZkError when it is not a folder. */
  async folderTree(snapshot: Snapshot, path: readonly string[]): Promise<string> {
    let tree = snapshot.tree;
    let where = '/';
    for (const part of path) {
      const { entries } = await this.list(tree, where);
      const n = entries.find((e) => e.name === part);
      if (n === undefined || n.type !== 'dir' || n.subtree === undefined) throw new ZkError(`${where}${part} is not a folder of this snapshot`);
      tree = n.subtree;
      where = `${where}${part}/`;
    }
    return tree;
  }

  /**
   * Every entry below tree `id`, depth first, a folder before its
   * entries; refused names are left out (and not descended into).
   */
  async *walk(id: string, where = '/', prefix: readonly Uint8Array[] = []): AsyncGenerator<WalkEntry> {
    const { entries } = await this.list(id, where);
    for (const node of entries) {
      const path = [...prefix, node.nameBytes];
      yield { path, node };
      if (node.type === 'dir' && node.subtree !== undefined && !node.damaged) yield* this.walk(node.subtree, `${where}${node.name}/`, path);
    }
  }

  /**
   * The bytes of a file node, in order, each part as soon as it is opened
   * (a hole as zero bytes, at most 1 MiB at a time); DamagedError when a
   * blob cannot be read, a slice falls outside its blob, or the parts do
   * not add up to the node's size (§6.4). Nothing is yielded for a file
   * marked damaged.
   */
  async *fileBytes(node: TreeNode, what: string): AsyncGenerator<Uint8Array> {
    if (node.damaged) throw new DamagedError(what, 'the disk safe lost part of it (repair marked it damaged)');
    const content = node.content ?? [];
    const total = content.reduce((n, c) => n + (c.kind === 'blob' ? 0 : c.length), 0);
    if (total > node.size) throw new DamagedError(what, `its content adds up to more than its size of ${node.size} bytes`);
    let sent = 0;
    for (const c of content) {
      if (c.kind === 'hole') {
        for (let left = c.length; left > 0; left -= 1 << 20) {
          const n = Math.min(left, 1 << 20);
          sent += n;
          if (sent > node.size) throw new DamagedError(what, `its content adds up to more than its size of ${node.size} bytes`);
          yield new Uint8Array(n);
        }
        continue;
      }
      const plain = await this.blob(c.id, BlobType.Data);
      let part = plain;
      if (c.kind === 'slice') {
        if (c.offset + c.length > plain.length) throw new DamagedError(what, `a slice of blob ${c.id} falls outside it`);
        part = plain.subarray(c.offset, c.offset + c.length);
      }
      sent += part.length;
      if (sent > node.size) throw new DamagedError(what, `its content adds up to more than its size of ${node.size} bytes`);
      yield part;
    }
    if (sent !== node.size) throw new DamagedError(what, `its content adds up to ${sent} bytes, not its size of ${node.size}`);
  }
}

/** The master key in a key file's plaintext, or why it is damaged (§4.2 step 5). */
function masterKeyOf(plain: Uint8Array, config: Config, name: string): { encryption: Uint8Array; id: Uint8Array } | DamagedError {
  const what = `key file ${name}`;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(utf8Text(plain) ?? '') as Record<string, unknown>;
  } catch {
    return new DamagedError(what, 'its master key does not parse');
  }
  if (json['repository'] !== config.id) return new DamagedError(what, 'it belongs to another disk safe');
  const part = (f: string): Uint8Array | undefined => {
    const v = json[f];
    if (typeof v !== 'string') return undefined;
    try {
      const b = Uint8Array.from(atob(v), (ch) => ch.charCodeAt(0));
      return b.length === 32 ? b : undefined;
    } catch {
      return undefined;
    }
  };
  const encryption = part('encryption');
  const id = part('id');
  if (!encryption || !id || !part('chunker')) return new DamagedError(what, 'its master key is not three 32-byte keys');
  return { encryption, id };
}

/** The path of a walk entry as bytes, components joined by `/`. */
export function joinPath(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0) - (parts.length > 0 ? 1 : 0));
  let o = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[o++] = 0x2f;
    out.set(p, o);
    o += p.length;
  });
  return out;
}

/** A path for people: `/` and the components as text. */
export function showPath(parts: readonly Uint8Array[]): string {
  return `/${parts.map(showText).join('/')}`;
}

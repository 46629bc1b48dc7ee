/**
 * A repository in a local folder (or anything mounted as one: NFS, SMB, USB).
 *
 * Layout under the root:
 *
 *   config                                  the single config object
 *   keys/<name>  index/<name>  snapshots/<name>  locks/<name>
 *   deletions/<name>                        prune's pending-deletion markers
 *   data/<first two chars of name>/<name>   256 subfolders, 00 .. ff
 *
 * save, crash-safe and never overwriting:
 *
 *   write .tmp-<random hex> in the target folder, fsync it
 *   link(tmp, final)      fails with EEXIST atomically if the name exists
 *   unlink(tmp), fsync the folder
 *
 * list reads one folder at a time, lazily (opendir, `listPageSize` entries a
 * read), and only the data subfolders a prefix can reach: it never holds a
 * whole listing. A signal is checked between steps; once a save has linked
 * its object into place it finishes, so an aborted save leaves no object or
 * the whole one.
 *
 * Object names (see object-names.ts) cannot start with a dot, so temporary
 * files left behind by a crashed writer never collide with objects and are
 * never listed.
 * Files are created 0600 and folders 0700: a repository is private to the
 * account that writes it.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, type Dir } from 'node:fs';
import path from 'node:path';
import { mapInOrder } from '../core/for-each-limit.js';

import {
  objectLabel,
  AlreadyExistsError,
  NotFoundError,
  ShortReadError,
  type Backend,
  type BackendCapabilities,
  type Handle,
  type ListOptions,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from './backend.js';
import { byteRange, checkHandle, checkMaxBytes, checkPrefix, checkRangeArgs, checkType, nameProblem, OBJECT_FOLDERS as FOLDERS } from './object-names.js';

const DATA_PREFIXES: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** How a `LocalBackend` lists. */
export interface LocalBackendOptions {
  /** Folder entries a listing reads at a time. Default 1000. */
  readonly listPageSize?: number;
}

/** Data folders read at once by a listing of every pack. */
const FOLDERS_AT_ONCE = 16;
/** Sizes asked for at once in a folder's listing. */
const STATS_AT_ONCE = 64;

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * Local-folder implementation of `Backend`. See the module comment for the
 * layout and how `save` stays atomic.
 */
export class LocalBackend implements Backend {
  /** The absolute path of the repository folder. */
  readonly root: string;

  /** `local:` followed by the absolute path of the repository folder. */
  readonly location: string;

  /**
   * See `Backend.capabilities`: a few parallel calls keep a disk busy;
   * removing a missing file is an error; `localPath` is `root`.
   */
  readonly capabilities: BackendCapabilities;

  private readonly pageSize: number;

  /** `root` may be relative; it is resolved against the current directory once, here. */
  constructor(root: string, opts: LocalBackendOptions = {}) {
    this.root = path.resolve(root);
    this.location = `local:${this.root}`;
    this.capabilities = { connections: 4, appendOnly: false, removeMissingIsError: true, localPath: this.root };
    this.pageSize = opts.listPageSize ?? 1000;
    if (!(Number.isSafeInteger(this.pageSize) && this.pageSize > 0)) throw new RangeError(`listPageSize must be a positive integer, got ${this.pageSize}`);
  }

  /** See `Backend.create`. Also fsyncs the parents of new folders so they survive a crash. */
  async create(opts: OperationOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    await fs.mkdir(this.root, { recursive: true, mode: DIR_MODE });
    const data = path.join(this.root, FOLDERS.data);
    await Promise.all(Object.values(FOLDERS).map((f) => fs.mkdir(path.join(this.root, f), { recursive: true, mode: DIR_MODE })));
    await Promise.all(DATA_PREFIXES.map((p) => fs.mkdir(path.join(data, p), { recursive: true, mode: DIR_MODE })));
    await syncDir(path.dirname(this.root));
    await syncDir(this.root);
    await syncDir(data);
  }

  /** See `Backend.entries`: the root folder's entries, 0 when it does not exist. */
  async entries(opts: OperationOptions = {}): Promise<number> {
    opts.signal?.throwIfAborted();
    try {
      return (await fs.readdir(this.root)).length;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw e;
    }
  }

  /** See `Backend.save`. */
  async save(h: Handle, data: Uint8Array, opts: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    const { signal } = opts;
    signal?.throwIfAborted();
    const dir = this.folderOf(h);
    const final = path.join(dir, h.name);
    const tmp = path.join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(tmp, 'wx', FILE_MODE);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') {
        throw new Error(`cannot save ${objectLabel(h)}: folder ${dir} is missing (was the repository created?)`, { cause: err });
      }
      throw err;
    }
    let tmpExists = true;
    try {
      try {
        await fh.writeFile(data, { signal });
        await fh.sync();
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw signal?.aborted ? signal.reason : err;
      }
      await fh.close();
      signal?.throwIfAborted(); // the last moment the save can still leave nothing behind
      try {
        await fs.link(tmp, final);
      } catch (err) {
        if (errorCode(err) === 'EEXIST') throw new AlreadyExistsError(h);
        throw err;
      }
      // The object is in place from here on; a leftover temporary name is
      // harmless (never listed), so failing to remove it must not fail the save.
      tmpExists = false;
      await fs.unlink(tmp).catch(() => undefined);
      await syncDir(dir);
    } catch (err) {
      if (tmpExists) await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  /** See `Backend.load`. Range reads read only the bytes asked for. */
  async load(h: Handle, opts: LoadOptions = {}): Promise<Buffer> {
    checkHandle(h);
    const { offset, length, signal, maxBytes } = opts;
    checkRangeArgs(offset, length, maxBytes);
    signal?.throwIfAborted();
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.pathOf(h), 'r');
    } catch (err) {
      throw errorCode(err) === 'ENOENT' ? new NotFoundError(h) : err;
    }
    try {
      if (offset === undefined && length === undefined && maxBytes === undefined) {
        try {
          return await fh.readFile({ signal });
        } catch (err) {
          throw signal?.aborted ? signal.reason : err;
        }
      }
      // With a limit, the file's size decides before anything is read, and the read fills one buffer of that size.
      const { size } = await fh.stat();
      const [start, end] = byteRange(h, size, offset, length);
      checkMaxBytes(h, end - start, maxBytes);
      const buf = Buffer.allocUnsafe(end - start);
      let done = 0;
      while (done < buf.length) {
        signal?.throwIfAborted();
        const { bytesRead } = await fh.read(buf, done, buf.length - done, start + done);
        if (bytesRead === 0) throw new ShortReadError(h, end, start + done);
        done += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  /** See `Backend.stat`. */
  async stat(h: Handle, opts: OperationOptions = {}): Promise<ObjectInfo | undefined> {
    checkHandle(h);
    opts.signal?.throwIfAborted();
    try {
      const s = await fs.stat(this.pathOf(h));
      return { name: h.name, size: s.size };
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * See `Backend.list`. Reads one folder at a time, `listPageSize` entries a
   * read; for `data`, only the subfolders whose two hex digits the prefix
   * allows, one after the other.
   */
  async *list(type: ObjectType, opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    checkType(type);
    const prefix = checkPrefix(opts.prefix);
    const { signal } = opts;
    signal?.throwIfAborted();
    if (type === 'config') {
      const info = 'config'.startsWith(prefix) ? await this.stat({ type, name: 'config' }, { signal }) : undefined;
      if (info) yield info;
      return;
    }
    const folder = path.join(this.root, FOLDERS[type]);
    if (type !== 'data') {
      yield* this.folder(type, folder, prefix, signal);
      return;
    }
    // The 256 data folders read several at a time, handed on in order (docs/decisions.md, "the job's network beside the walk, listings of every pack").
    const dirs = DATA_PREFIXES.filter((p) => p.startsWith(prefix.slice(0, 2)));
    for await (const infos of mapInOrder(dirs, FOLDERS_AT_ONCE, (p) => collect(this.folder(type, path.join(folder, p), prefix, signal)))) {
      for (const info of infos) {
        signal?.throwIfAborted();
        yield info;
      }
    }
  }

  /**
   * The objects in one folder whose names start with `prefix`, each page of
   * names' sizes asked for at once. Temporary files and anything else `load`
   * could not address are left out.
   */
  private async *folder(type: ObjectType, dir: string, prefix: string, signal: AbortSignal | undefined): AsyncIterable<ObjectInfo> {
    // A data folder holds a 256th of the packs: read at once (one call, where a Dir takes three).
    // The other folders may hold many objects: read a page at a time.
    let entries: Dir | string[];
    try {
      entries = type === 'data' ? await fs.readdir(dir) : await fs.opendir(dir, { bufferSize: this.pageSize });
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      throw err;
    }
    /** The objects of `names`, their sizes asked for at once; nothing more once the signal is aborted. */
    const sized = async function* (names: string[]): AsyncIterable<ObjectInfo> {
      const infos = await Promise.all(names.map(async (name) => {
        try {
          const s = await fs.stat(path.join(dir, name));
          return s.isFile() ? { name, size: s.size } : undefined;
        } catch (err) {
          if (errorCode(err) === 'ENOENT') return undefined; // removed while listing
          throw err;
        }
      }));
      for (const info of infos) {
        signal?.throwIfAborted();
        if (info) yield info;
      }
    };
    const dataFolder = path.basename(dir);
    let page: string[] = [];
    for await (const entry of entries) { // a Dir is closed on break and throw
      signal?.throwIfAborted();
      const name = typeof entry === 'string' ? entry : entry.name;
      if (!name.startsWith(prefix) || nameProblem(type, name) !== undefined) continue;
      if (type === 'data' && !name.startsWith(dataFolder)) continue;
      page.push(name);
      if (page.length === STATS_AT_ONCE) {
        yield* sized(page);
        page = [];
      }
    }
    yield* sized(page);
  }


  /** See `Backend.remove`. Fsyncs the folder so the removal survives a crash. */
  async remove(h: Handle, opts: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    opts.signal?.throwIfAborted();
    try {
      await fs.unlink(this.pathOf(h));
    } catch (err) {
      throw errorCode(err) === 'ENOENT' ? new NotFoundError(h) : err;
    }
    await syncDir(this.folderOf(h));
  }

  /** Nothing to release: every operation opens and closes its own files. */
  async close(): Promise<void> {}

  private folderOf(h: Handle): string {
    if (h.type === 'config') return this.root;
    const folder = path.join(this.root, FOLDERS[h.type]);
    return h.type === 'data' ? path.join(folder, h.name.slice(0, 2)) : folder;
  }

  private pathOf(h: Handle): string {
    return path.join(this.folderOf(h), h.name);
  }
}

/** Makes a folder's entries (new, renamed or removed names) durable. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // folders cannot be opened there; NTFS journals them
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some file systems (certain FUSE and network mounts) do not support it.
    const code = errorCode(err);
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw err;
  } finally {
    await fh.close();
  }
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const i of items) out.push(i);
  return out;
}

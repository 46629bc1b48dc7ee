/**
 * The keyless store: a repository opened without its key. Everything the
 * plain objects say (config, index files, pack headers, snapshots' plain
 * parts and reference lists, deletion markers) with the stored-bytes
 * checksums checked, and writing and removing them. The server, which never
 * sees a customer's key, runs forget, prune, check, repair and copy on it; a
 * keyed `Repository` is opened on top of one (repository.ts).
 *
 * One damage policy: a listing never throws on one damaged object and never
 * prints. It returns what it could read and, apart, why the others could not
 * be read (`Loaded`, `SnapshotList`); the caller decides what damage means.
 * An object removed while it is listed is left out (`loadEvery`).
 *
 * Every method that reads or writes takes `{ signal }` and passes it to
 * each backend call: an abort ends it with the signal's reason.
 *
 * When the config says the repository is append-only, `open` wraps the
 * backend in an `AppendOnlyBackend`, so nothing opened through it can remove
 * anything but its own locks (docs/format.md, "Append-only repositories").
 */
import { AppendOnlyBackend } from '../storage/append-only-backend.js';
import { NotFoundError, type Backend, type ObjectType, type OperationOptions } from '../storage/backend.js';
import type { RepoConfig } from './config.js';
import { decodeMarker, type DeletionMarker } from './deletion-marker.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';
import { checkIndex, decodeIndex, encodeIndex, type IndexFile } from './index-file.js';
import { handleOf, io, listObjects, loadChecked, loadEvery, readConfig, saveAddressed } from './objects.js';
import { PACK_TRAILER_BYTES, parsePackHeader, parsePackTrailer, type PackedBlob } from './pack.js';
import { decodeSnapshot, type Snapshot } from './snapshot.js';

/** Objects of one type, read: the good ones and why the others could not be read. */
export interface Loaded<T> {
  readonly ok: Map<string, T>;
  /** Name → why it could not be read (`CorruptObjectError`, `UnsupportedVersionError`). */
  readonly damaged: Map<string, Error>;
}

/** A snapshot object as stored: its bytes (what a keyless copy stores as they are) and their plain parts. */
export interface StoredSnapshot {
  readonly bytes: Buffer;
  readonly snapshot: Snapshot;
}

/** A snapshot with its id. */
export interface SnapshotEntry {
  readonly id: string;
  readonly snapshot: Snapshot;
}

/** Every snapshot that could be read, oldest first, and why the others could not be. */
export interface SnapshotList {
  readonly ok: SnapshotEntry[];
  /** Id → why it could not be read (with the key also `ForgedObjectError`: it fails its MAC). */
  readonly damaged: Map<string, Error>;
}

/** How a client treats the repository's append-only mode. */
export interface ModeOptions {
  /** Restrict this client to append-only whatever the config says (a credential that may not delete). */
  readonly appendOnly?: boolean;
  /**
   * This client acts for the storage owner (the operator who applies
   * retention): the config's append-only flag is not applied to it. The
   * storage decides whether its removals then succeed.
   */
  readonly storageOwner?: boolean;
}

/** True for an error that means "this object is damaged", as opposed to "storage failed". */
export function isDamage(e: unknown): e is Error {
  return e instanceof CorruptObjectError || e instanceof UnsupportedVersionError;
}

/** Sorts loaded snapshots oldest first (ties by id), keeping the damaged ones apart. */
export function oldestFirst(loaded: Loaded<Snapshot>): SnapshotList {
  const ok = [...loaded.ok].map(([id, snapshot]) => ({ id, snapshot }));
  ok.sort((a, b) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { ok, damaged: loaded.damaged };
}

/** Plain access to a repository; see the module comment. */
export class Store {
  private constructor(
    /** As `open` chose it: wrapped when the client is append-only. */
    readonly backend: Backend,
    /** As read: not authenticated (a keyed `Repository` checks its MAC). */
    readonly config: RepoConfig,
    /** The config's bytes, for a keyed client to authenticate. */
    readonly configBytes: Buffer,
  ) {}

  /**
   * Opens the repository at `backend` without a key: reads the config
   * (`NotARepositoryError` when there is none) and wraps the backend in an
   * `AppendOnlyBackend` when the repository is append-only (unless
   * `storageOwner`), or when `appendOnly` is asked for.
   */
  static async open(backend: Backend, mode: ModeOptions & OperationOptions = {}): Promise<Store> {
    const { bytes, config } = await readConfig(backend, mode);
    const wrap = ((config.appendOnly === true && mode.storageOwner !== true) || mode.appendOnly === true) && !backend.capabilities.appendOnly;
    return new Store(wrap ? new AppendOnlyBackend(backend) : backend, config, bytes);
  }

  /** A store on a repository just created with these config bytes (`Repository.init`). */
  static created(backend: Backend, config: RepoConfig, configBytes: Buffer): Store {
    return new Store(backend, config, configBytes);
  }

  /** The same repository reached through another backend (a wrapper of this one: dry run, faults, a test's view). */
  withBackend(backend: Backend): Store {
    return new Store(backend, this.config, this.configBytes);
  }

  /** True when this client cannot remove anything (append-only). */
  get appendOnly(): boolean {
    return this.backend.capabilities.appendOnly;
  }

  /** Name → size of every object of a type. */
  list(type: ObjectType, opts: OperationOptions = {}): Promise<Map<string, number>> {
    return listObjects(this.backend, type, opts);
  }

  /** Loads every object of a type that `decode` accepts; see the module comment on damage. */
  private async loadAll<T>(type: ObjectType, label: string, decode: (b: Buffer, what: string) => T, opts: OperationOptions): Promise<Loaded<T>> {
    const damaged = new Map<string, Error>();
    const ok = await loadEvery(this.backend, type, async (name) => {
      const what = `${label} ${name}`;
      try {
        return decode(await loadChecked(this.backend, handleOf(type, name), what, opts), what);
      } catch (e) {
        if (!isDamage(e)) throw e;
        damaged.set(name, e);
        return undefined;
      }
    }, opts);
    return { ok, damaged };
  }

  /** Every index file. */
  loadIndexFiles(opts: OperationOptions = {}): Promise<Loaded<IndexFile>> {
    return this.loadAll('index', 'index', decodeIndex, opts);
  }

  /** Every index file, checked (`checkIndex`) and not decoded: what a reader's index is filled from (`MasterIndex.addIndexFile`). */
  loadCheckedIndexFiles(opts: OperationOptions = {}): Promise<Loaded<Buffer>> {
    return this.loadAll('index', 'index', checkIndex, opts);
  }

  /** One index file, checked and not decoded; undefined when it is gone. Throws `CorruptObjectError` when it is damaged. */
  async loadIndexFile(name: string, opts: OperationOptions = {}): Promise<Buffer | undefined> {
    const what = `index ${name}`;
    try {
      return checkIndex(await loadChecked(this.backend, handleOf('index', name), what, opts), what);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  /** Every deletion marker. */
  loadMarkers(opts: OperationOptions = {}): Promise<Loaded<DeletionMarker>> {
    return this.loadAll('deletion', 'deletion marker', decodeMarker, opts);
  }

  /** Every snapshot's plain parts (not authenticated: any client that can add objects can write one). */
  loadSnapshots(opts: OperationOptions = {}): Promise<Loaded<Snapshot>> {
    return this.loadAll('snapshot', 'snapshot', decodeSnapshot, opts);
  }

  /** Every snapshot's bytes and plain parts, each object read once (a keyless copy chooses from them, then stores the bytes). */
  loadStoredSnapshots(opts: OperationOptions = {}): Promise<Loaded<StoredSnapshot>> {
    return this.loadAll('snapshot', 'snapshot', (bytes, what) => ({ bytes, snapshot: decodeSnapshot(bytes, what) }), opts);
  }

  /** Every snapshot, oldest first, as `loadSnapshots` reads them. */
  async listSnapshots(opts: OperationOptions = {}): Promise<SnapshotList> {
    return oldestFirst(await this.loadSnapshots(opts));
  }

  /** Loads one snapshot's plain parts and checks its bytes against its name. */
  async loadSnapshot(id: string, opts: OperationOptions = {}): Promise<Snapshot> {
    const what = `snapshot ${id}`;
    return decodeSnapshot(await loadChecked(this.backend, handleOf('snapshot', id), what, opts), what);
  }

  /**
   * Reads one pack's header with two range reads (its size is looked up
   * when not given). Throws `CorruptObjectError` when it is missing or does
   * not parse.
   */
  async readPackHeader(pack: string, size?: number, opts: OperationOptions = {}): Promise<PackedBlob[]> {
    const what = `pack ${pack}`;
    const h = handleOf('data', pack);
    const packSize = size ?? (await this.backend.stat(h, io(opts)))?.size;
    if (packSize === undefined) throw new CorruptObjectError(what, 'missing');
    const trailer = packSize < PACK_TRAILER_BYTES ? Buffer.alloc(0) : await this.backend.load(h, { ...io(opts), offset: packSize - PACK_TRAILER_BYTES, length: PACK_TRAILER_BYTES });
    const headerLength = parsePackTrailer(trailer, packSize, what);
    const header = await this.backend.load(h, { ...io(opts), offset: packSize - PACK_TRAILER_BYTES - headerLength, length: headerLength });
    return parsePackHeader(header, packSize - PACK_TRAILER_BYTES - headerLength, what);
  }

  /** Parses the header of a whole pack held in memory. */
  static parsePack(pack: string, bytes: Buffer): PackedBlob[] {
    const what = `pack ${pack}`;
    const headerLength = parsePackTrailer(bytes.subarray(bytes.length - PACK_TRAILER_BYTES), bytes.length, what);
    const start = bytes.length - PACK_TRAILER_BYTES - headerLength;
    return parsePackHeader(bytes.subarray(start, bytes.length - PACK_TRAILER_BYTES), start, what);
  }

  /** Saves a content-addressed object; returns its name (`saveAddressed`: `NameTakenError` when the name holds other bytes). */
  save(type: ObjectType, bytes: Buffer, opts: OperationOptions = {}): Promise<string> {
    return saveAddressed(this.backend, type, bytes, io(opts));
  }

  /** Writes an index file; returns its name. */
  saveIndex(f: IndexFile, opts: OperationOptions = {}): Promise<string> {
    return this.save('index', encodeIndex(f), opts);
  }

  /** Removes an object; false when it was gone already (another prune or forget, or a retry). */
  async remove(type: ObjectType, name: string, opts: OperationOptions = {}): Promise<boolean> {
    try {
      await this.backend.remove(handleOf(type, name), io(opts));
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
}

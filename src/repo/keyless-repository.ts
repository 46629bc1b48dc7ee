/**
 * What can be done with a repository without its key: read the config, and
 * list, read and remove snapshots (they are plain, docs/format.md §4.5). This
 * is what `forget` and `unlock` work with, so that a server that never holds
 * the key can apply retention.
 *
 * When the config says the repository is append-only, `open` wraps the
 * backend in an `AppendOnlyBackend`, so nothing opened through here can
 * remove anything but its own locks.
 */
import { sha256 } from '../core/crypto.js';
import { AppendOnlyBackend } from '../storage/append-only-backend.js';
import { NotFoundError, type Backend } from '../storage/backend.js';
import { decodeConfig, type RepoConfig } from './config.js';
import { CorruptObjectError, NotARepositoryError, UnsupportedVersionError } from './errors.js';
import { decodeSnapshot, type Snapshot } from './snapshot.js';

/** Reads the config of the repository at `backend`; `NotARepositoryError` when there is none. */
export async function readRepoConfig(backend: Backend): Promise<RepoConfig> {
  try {
    return decodeConfig(await backend.load({ type: 'config', name: 'config' }));
  } catch (e) {
    if (e instanceof NotFoundError) throw new NotARepositoryError(backend.location);
    throw e;
  }
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

/**
 * Reads the config and returns the backend to use with it: wrapped in an
 * `AppendOnlyBackend` when the repository is append-only (unless
 * `storageOwner`), or when `appendOnly` is asked for.
 */
export async function withRepositoryMode(backend: Backend, opts: ModeOptions = {}): Promise<{ backend: Backend; config: RepoConfig }> {
  const config = await readRepoConfig(backend);
  const wrap = ((config.appendOnly === true && opts.storageOwner !== true) || opts.appendOnly === true) && !backend.capabilities.appendOnly;
  return { backend: wrap ? new AppendOnlyBackend(backend) : backend, config };
}

export class KeylessRepository {
  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
  ) {}

  /** Opens the repository at `backend` without a key (see the module comment on append-only). */
  static async open(backend: Backend, opts: ModeOptions = {}): Promise<KeylessRepository> {
    const m = await withRepositoryMode(backend, opts);
    return new KeylessRepository(m.backend, m.config);
  }

  /** True when removals are refused. */
  get appendOnly(): boolean {
    return this.backend.capabilities.appendOnly;
  }

  /** Loads one snapshot and checks its bytes against its name. */
  async loadSnapshot(id: string): Promise<Snapshot> {
    const what = `snapshot ${id}`;
    const bytes = await this.backend.load({ type: 'snapshot', name: id });
    if (sha256(bytes).toString('hex') !== id) throw new CorruptObjectError(what, 'checksum of stored bytes does not match its name');
    return decodeSnapshot(bytes, what);
  }

  /**
   * Every snapshot that can be read, oldest first. One that cannot (damaged,
   * a newer version, or any bytes a client stored under their SHA-256 name)
   * goes to `onUnreadable` and is left out, so that it does not stop
   * retention; one removed while listing is left out.
   */
  async listSnapshots(onUnreadable: (id: string, e: Error) => void): Promise<{ id: string; snapshot: Snapshot }[]> {
    const out: { id: string; snapshot: Snapshot }[] = [];
    for await (const info of this.backend.list('snapshot')) {
      try {
        out.push({ id: info.name, snapshot: await this.loadSnapshot(info.name) });
      } catch (e) {
        if (e instanceof CorruptObjectError || e instanceof UnsupportedVersionError) onUnreadable(info.name, e);
        else if (!(e instanceof NotFoundError)) throw e;
      }
    }
    return out.sort((a, b) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Removes a snapshot object. Returns false when it was gone already (another forget). */
  async removeSnapshot(id: string): Promise<boolean> {
    try {
      await this.backend.remove({ type: 'snapshot', name: id });
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
}

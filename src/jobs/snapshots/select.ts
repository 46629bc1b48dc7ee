/**
 * Choosing snapshots, as the CLI, the agent and the server all do: `latest`
 * or a unique id prefix narrowed by host, path and tag filters (restic's
 * meaning: a snapshot matches when it has every path given, and one of the
 * tag lists), and the parent of a new backup (the latest snapshot of the same
 * host and paths, of the same kind: files or an image).
 */
import type { ErrorCode } from '../../core/errors.js';
import type { ListSnapshotsOptions, Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { isDamage, type SnapshotEntry } from '../../repo/store.js';
import { NotFoundError, type OperationOptions } from '../../storage/backend.js';

/** Which snapshots a command means. */
export interface SnapshotFilter {
  /** Any of these hosts. */
  readonly host?: readonly string[];
  /** Every one of these paths (a trailing slash ignored). */
  readonly path?: readonly string[];
  /** Any of these groups, each "a,b" meaning tags a and b. */
  readonly tag?: readonly string[];
  /** Image snapshots only. */
  readonly image?: boolean;
}

/** True when `s` is one of the snapshots `f` means. */
export function matchesFilter(s: Snapshot, f: SnapshotFilter): boolean {
  if (f.image && !s.image) return false;
  if (f.host?.length && !f.host.includes(s.hostname)) return false;
  if (f.path?.length && !f.path.every((p) => s.paths.includes(p.replace(/(.)\/+$/, '$1')))) return false;
  if (f.tag?.length && !f.tag.some((group) => group.split(',').every((t) => s.tags.includes(t)))) return false;
  return true;
}

/** No snapshot is the one asked for (none matches, none has the id, or several have the prefix). */
export class SnapshotNotFoundError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'SNAPSHOT_NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotNotFoundError';
  }
}

/** A snapshot was named in a way that cannot name one: not `latest` or hex, a parent that is not one snapshot of the right kind. */
export class BadSnapshotNameError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BAD_SNAPSHOT_NAME';
  constructor(message: string) {
    super(message);
    this.name = 'BadSnapshotNameError';
  }
}

/**
 * Every readable snapshot, oldest first; a damaged one is told to
 * `onDamaged` and left out. `opts.blobList: false`: their headers, which is
 * all that choosing one reads (a process kept running asks for that).
 */
export async function readableSnapshots(repo: Repository, onDamaged?: (id: string, e: Error) => void, opts: ListSnapshotsOptions = {}): Promise<SnapshotEntry[]> {
  const { ok, damaged } = await repo.listSnapshots(opts);
  for (const [id, e] of damaged) onDamaged?.(id, e);
  return ok;
}

/**
 * Resolves SNAP: `latest` (the newest snapshot `f` matches; damaged ones told
 * to `onDamaged`) or a unique id prefix. `opts` as `readableSnapshots`'.
 */
export async function findSnapshot(repo: Repository, arg: string, f: SnapshotFilter, onDamaged?: (id: string, e: Error) => void, opts: ListSnapshotsOptions = {}): Promise<SnapshotEntry> {
  if (arg === 'latest') {
    const all = (await readableSnapshots(repo, onDamaged, opts)).filter((s) => matchesFilter(s.snapshot, f));
    const last = all[all.length - 1];
    if (!last) throw new SnapshotNotFoundError(`no ${f.image ? 'image ' : ''}snapshot matches`);
    return last;
  }
  if (!/^[0-9a-f]{1,64}$/.test(arg)) throw new BadSnapshotNameError(`"${arg}" is neither "latest" nor a snapshot id`);
  const ids: string[] = [];
  for await (const info of repo.backend.list('snapshot', { prefix: arg })) ids.push(info.name);
  if (ids.length === 0) throw new SnapshotNotFoundError(`no snapshot with id ${arg}`);
  if (ids.length > 1) throw new SnapshotNotFoundError(`snapshot id prefix ${arg} is ambiguous (${ids.length} snapshots)`);
  return { id: ids[0]!, snapshot: await repo.loadSnapshot(ids[0]!, opts) };
}

/** What a new backup is, for finding its parent. */
export interface ParentQuery {
  readonly hostname: string;
  readonly paths: readonly string[];
  /** An image backup (its parent is an image snapshot), or a backup of files. */
  readonly image: boolean;
  /** A parent named by the user (`--parent`): an id prefix, which must name one snapshot of the same kind. */
  readonly parent?: string;
}

/**
 * The parent of a new backup among `snapshots` (oldest first): the one
 * named, else the latest of the same host, paths and kind; null when there
 * is none.
 */
export function findParent(snapshots: readonly SnapshotEntry[], q: ParentQuery): SnapshotEntry | null {
  const kind = (s: Snapshot): boolean => (s.image !== undefined) === q.image;
  if (q.parent !== undefined) {
    const want = q.parent;
    const named = snapshots.filter((s) => s.id.startsWith(want));
    if (named.length !== 1) throw new BadSnapshotNameError(`--parent ${want} matches ${named.length} snapshots`);
    if (!kind(named[0]!.snapshot)) throw new BadSnapshotNameError(`--parent ${want} is ${q.image ? 'not an image snapshot' : 'an image snapshot'}`);
    return named[0]!;
  }
  const same = snapshots.filter((s) => kind(s.snapshot) && s.snapshot.hostname === q.hostname && s.snapshot.paths.join('\0') === q.paths.join('\0'));
  return same[same.length - 1] ?? null;
}

/**
 * `findParent`, the parent read and authenticated whole before it is used.
 * A listing's headers may come from the client's records
 * (src/repo/snapshot-headers.ts), which say what a name held when it was
 * authenticated, not what storage holds now: a snapshot removed and its name
 * taken by other bytes (anyone who can add objects can do that), or damaged
 * since. Such a parent is told to `onSkip`, forgotten, and the choice made
 * again among the others; a parent named by the user (`--parent`) that fails
 * is the error.
 */
export async function verifiedParent(
  repo: Repository, snapshots: readonly SnapshotEntry[], q: ParentQuery, onSkip: (id: string, e: Error) => void, opts: OperationOptions = {},
): Promise<SnapshotEntry | null> {
  let rest = snapshots;
  for (;;) {
    const p = findParent(rest, q);
    if (p === null) return null;
    try {
      await repo.loadSnapshot(p.id, { ...opts, blobList: false });
      return p;
    } catch (e) {
      if (!isDamage(e) && !(e instanceof NotFoundError)) throw e;
      await repo.forgetSnapshot(p.id);
      if (q.parent !== undefined) throw e;
      onSkip(p.id, e);
      rest = rest.filter((s) => s !== p);
    }
  }
}

/**
 * The snapshot index: each disk safe's snapshots' plain metadata (id, time,
 * host, user, paths, tags, parent, the summary's counts and byte figures;
 * docs/format.md §4.5) kept in the database (`snapshot_index`, migration
 * 0019), so that listing a safe's, a machine's or a customer's snapshots,
 * and a machine's last backup, reads no storage, on any node.
 *
 *   a snapshot saved through the server's storage (an upload of the
 *       repository protocol)             its row added (`IndexingBackend`)
 *   a snapshot removed through it (the
 *       server's forget, a deletion)     its row removed
 *   a safe never indexed (from before
 *       0019, or written by another
 *       server into the same bucket)     read from storage once: every
 *                                        snapshot's plain part (`ensureIndexed`,
 *                                        on first use, and at the server's start)
 *
 * A safe is indexed once (`disk_safes.snapshots_indexed_at`); after that its
 * rows follow what the server saves and removes. A snapshot that cannot be
 * read is left out (it is damage, which `check` reports); one that could not
 * be read for another reason (the storage unreachable) leaves the safe
 * unindexed, to be read again at its next use. The agent's census
 * (census.ts, migration 0021) marks each row vouched for or unauthentic. The
 * rule against backdated snapshots asks the index for the newest snapshot of
 * a host and paths (`newestOfGroup`, snapshot-time-policy.ts), where it read
 * every stored snapshot at each upload.
 */
import type { SnapshotBody } from '../../api/v1.js';
import { snakeKeys } from '../../core/snake-keys.js';
import { forEachLimit } from '../../core/for-each-limit.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../repo/errors.js';
import { loadChecked } from '../../repo/objects.js';
import { decodeSnapshot, type Snapshot } from '../../repo/snapshot.js';
import { NotFoundError, type Backend, type Handle, type OperationOptions } from '../../storage/backend.js';
import { WrapperBackend } from '../../storage/wrapper-backend.js';
import type { Insertable, Kysely } from 'kysely';
import type { ControlPlane, DiskSafe, SnapshotIndexTable } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { NotFound } from './errors.js';
import { findMachine, requireCustomer } from './machines.js';
import { requireRead, sees, type Principal } from './principal.js';
import type { SafeStorage } from './safe-storage.js';
import { snapshotGroupKey, type NewestSnapshot } from './snapshot-time-policy.js';

/** How many snapshot objects a rebuild reads at once. */
const READ_CONCURRENCY = 8;

/** The index row of snapshot `id` of safe `safeId`. */
function rowOf(safeId: string, id: string, s: Snapshot, at: string): Insertable<SnapshotIndexTable> {
  return {
    safe_id: safeId, id, time: new Date(s.time).toISOString(), hostname: s.hostname, username: s.username,
    paths: JSON.stringify(s.paths), tags: JSON.stringify(s.tags), parent: s.parent ?? null,
    incomplete: s.incomplete === true ? 1 : 0, image: s.image === undefined ? 0 : 1, summary: JSON.stringify(s.summary), stored_at: at,
    group_key: snapshotGroupKey(s.hostname, s.paths),
  };
}

async function insertRow(db: Kysely<ControlPlane>, row: Insertable<SnapshotIndexTable>): Promise<void> {
  await db.insertInto('snapshot_index').values(row).onConflict((oc) => oc.columns(['safe_id', 'id']).doNothing()).execute();
}

/**
 * The server's safe storage with every snapshot saved or removed through a
 * safe's backend reflected in the index; `db` and `now` are the server's.
 */
export function indexingStorage(raw: SafeStorage, db: Kysely<ControlPlane>, now: () => Date): SafeStorage {
  const made = new Map<string, Backend>();
  return {
    shown: raw.shown,
    backendOf: (safe) => {
      let b = made.get(safe.location);
      if (b === undefined) {
        b = new IndexingBackend(raw.backendOf(safe), db, safe.location, now);
        made.set(safe.location, b);
      }
      return b;
    },
    removePlace: async (safe) => {
      made.delete(safe.location);
      await raw.removePlace(safe);
    },
    close: () => raw.close(),
  };
}

/** A safe's storage whose snapshot saves and removals change the index. */
class IndexingBackend extends WrapperBackend {
  private safeId: string | undefined;

  constructor(inner: Backend, private readonly db: Kysely<ControlPlane>, private readonly place: string, private readonly now: () => Date) {
    super(inner);
  }

  /** The safe stored here (its location is its own for ever). */
  private async safe(): Promise<string | undefined> {
    this.safeId ??= (await this.db.selectFrom('disk_safes').select('id').where('location', '=', this.place).executeTakeFirst())?.id;
    return this.safeId;
  }

  /** See `Backend.save`: a snapshot, once stored, is indexed (a snapshot the server cannot read is stored but not indexed). */
  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    await this.inner.save(h, data, opts);
    if (h.type !== 'snapshot') return;
    let s: Snapshot;
    try {
      s = decodeSnapshot(Buffer.from(data.buffer, data.byteOffset, data.byteLength), `snapshot ${h.name}`, { blobList: false });
    } catch {
      return;
    }
    const safeId = await this.safe();
    if (safeId !== undefined) await insertRow(this.db, rowOf(safeId, h.name, s, this.now().toISOString()));
  }

  /** See `Backend.remove`: a removed snapshot leaves the index. */
  override async remove(h: Handle, opts?: OperationOptions): Promise<void> {
    await this.inner.remove(h, opts);
    if (h.type !== 'snapshot') return;
    const safeId = await this.safe();
    if (safeId !== undefined) await this.db.deleteFrom('snapshot_index').where('safe_id', '=', safeId).where('id', '=', h.name).execute();
  }
}

/**
 * Indexes `safe`'s snapshots from storage unless it was indexed already
 * (see the module comment); a safe with no repository yet counts as indexed
 * with none.
 */
export async function ensureIndexed(ctx: ServiceContext, safe: Pick<DiskSafe, 'id' | 'location' | 'snapshots_indexed_at'>): Promise<void> {
  if (safe.snapshots_indexed_at !== null) return;
  const backend = ctx.safeStorage.backendOf(safe);
  const names: string[] = [];
  for await (const o of backend.list('snapshot')) names.push(o.name);
  const at = ctx.now().toISOString();
  await forEachLimit(names, READ_CONCURRENCY, async (name) => {
    let s: Snapshot;
    try {
      // Its bytes checked against its name, as a Store reads a snapshot: damage is not a snapshot to list, nor to date others by.
      s = decodeSnapshot(await loadChecked(backend, { type: 'snapshot', name }, `snapshot ${name}`), `snapshot ${name}`, { blobList: false });
    } catch (e) {
      if (e instanceof CorruptObjectError || e instanceof UnsupportedVersionError || e instanceof NotFoundError) return; // damaged, or gone meanwhile
      throw e;
    }
    await insertRow(ctx.db, rowOf(safe.id, name, s, at));
  });
  await ctx.db.updateTable('disk_safes').set({ snapshots_indexed_at: at }).where('id', '=', safe.id).where('snapshots_indexed_at', 'is', null).execute();
}

/**
 * The newest snapshot of `safe` whose host name and paths have key
 * `groupKey` (`snapshotGroupKey`), from the index (built from storage first
 * if it never was): the backdating rule's `NewestOfGroup`. Every indexed
 * snapshot counts, those the census found unauthentic too: the rule counts
 * every readable stored snapshot, as storage holds them.
 */
export async function newestOfGroup(ctx: ServiceContext, safe: Pick<DiskSafe, 'id' | 'location' | 'snapshots_indexed_at'>, groupKey: string): Promise<NewestSnapshot | undefined> {
  await ensureIndexed(ctx, safe);
  const row = await ctx.db.selectFrom('snapshot_index').select(['id', 'time']).where('safe_id', '=', safe.id).where('group_key', '=', groupKey)
    .orderBy('time', 'desc').limit(1).executeTakeFirst();
  return row === undefined ? undefined : { id: row.id, time: Date.parse(row.time) };
}

/** Indexes, a few at a time, every safe never indexed (the server's start: an older server's safes, or a bucket another server wrote); errors leave a safe for its first use. */
export async function indexUnindexedSafes(ctx: ServiceContext, signal: AbortSignal): Promise<void> {
  const safes = await ctx.db.selectFrom('disk_safes').select(['id', 'location', 'snapshots_indexed_at']).where('snapshots_indexed_at', 'is', null).where('deleting_at', 'is', null).execute();
  await forEachLimit(safes, 2, async (s) => {
    if (!signal.aborted) await ensureIndexed(ctx, s).catch(() => undefined);
  });
}

/** Which snapshots a listing shows: those of some safes, newest first, a page of them. */
export interface SnapshotQuery {
  /** At most this many (default 100). */
  readonly limit?: number;
  /** After skipping this many (default 0). */
  readonly offset?: number;
}

export const DEFAULT_SNAPSHOT_PAGE = 100;

/** The snapshots of `safes` (each indexed first if it never was), newest first, as the API shows them. */
export async function listIndexedSnapshots(ctx: ServiceContext, safes: readonly DiskSafe[], q: SnapshotQuery): Promise<SnapshotBody[]> {
  if (safes.length === 0) return [];
  for (const s of safes) await ensureIndexed(ctx, s);
  const byId = new Map(safes.map((s) => [s.id, s]));
  const rows = await ctx.db.selectFrom('snapshot_index').selectAll().where('safe_id', 'in', [...byId.keys()])
    .orderBy('time', 'desc').orderBy('id').limit(q.limit ?? DEFAULT_SNAPSHOT_PAGE).offset(q.offset ?? 0).execute();
  return rows.map((r) => {
    const safe = byId.get(r.safe_id)!;
    return {
      id: r.id, short_id: r.id.slice(0, 8), safe_id: r.safe_id, safe_name: safe.name, machine_id: safe.machine_id, time: r.time, hostname: r.hostname, username: r.username,
      paths: JSON.parse(r.paths) as string[], tags: JSON.parse(r.tags) as string[], parent: r.parent, incomplete: r.incomplete === 1, image: r.image === 1,
      summary: snakeKeys(JSON.parse(r.summary)) as Record<string, number | string>,
      ...(r.unauthentic === 1 ? { unauthentic: true } : {}),
    };
  });
}

/**
 * The time of the newest snapshot of each of `machineIds`' disk safes (from
 * the index; a machine with none is left out). In a safe with a census
 * (census.ts), only a snapshot its agent vouched for: one planted without
 * the key moves no machine's last backup.
 */
export async function lastBackups(ctx: ServiceContext, machineIds: readonly string[]): Promise<Map<string, string>> {
  if (machineIds.length === 0) return new Map();
  const rows = await ctx.db.selectFrom('snapshot_index').innerJoin('disk_safes', 'disk_safes.id', 'snapshot_index.safe_id')
    .select(['disk_safes.machine_id', (eb) => eb.fn.max('snapshot_index.time').as('last')])
    .where('disk_safes.machine_id', 'in', [...machineIds]).where('snapshot_index.unauthentic', '=', 0)
    .where((eb) => eb.or([eb('disk_safes.census_at', 'is', null), eb('snapshot_index.census_at', 'is not', null)]))
    .groupBy('disk_safes.machine_id').execute();
  return new Map(rows.map((r) => [r.machine_id!, r.last]));
}

/** Disk safe `id`'s snapshots, for a caller who sees it (NotFound otherwise). */
export async function listSafeSnapshots(ctx: ServiceContext, p: Principal, id: string, q: SnapshotQuery): Promise<SnapshotBody[]> {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!safe || !sees(p, safe)) throw new NotFound('disk safe', id);
  requireRead(p);
  return listIndexedSnapshots(ctx, [safe], q);
}

/** The snapshots of every disk safe of machine `id` (its safes now), for a caller who sees it. */
export async function listMachineSnapshots(ctx: ServiceContext, p: Principal, id: string, q: SnapshotQuery): Promise<SnapshotBody[]> {
  const m = await findMachine(ctx, p, id);
  requireRead(p);
  return listIndexedSnapshots(ctx, await ctx.db.selectFrom('disk_safes').selectAll().where('machine_id', '=', m.id).where('deleting_at', 'is', null).execute(), q);
}

/** The snapshots of every disk safe of customer `id` the caller sees (a machine's token: its machine's), newest first. */
export async function listCustomerSnapshots(ctx: ServiceContext, p: Principal, id: string, q: SnapshotQuery): Promise<SnapshotBody[]> {
  await requireCustomer(ctx, p, id);
  requireRead(p);
  const safes = (await ctx.db.selectFrom('disk_safes').selectAll().where('customer_id', '=', id).where('deleting_at', 'is', null).execute()).filter((s) => sees(p, s));
  return listIndexedSnapshots(ctx, safes, q);
}

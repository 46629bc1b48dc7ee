/**
 * How many bytes each disk safe takes in storage, accounted without the key
 * from the safe's objects (packs, indexes, snapshots, keys, markers, the
 * config: every stored byte but the lock objects, which are bookkeeping
 * bounded per token, src/server/services/lock-owners.ts, and must not count
 * against a quota that would then keep prune from its lock), through the
 * `Backend` interface, so that it is the same on a local folder and on S3.
 * The numbers are kept in the database (`safe_usage`, migration 0018), so
 * that every server node sharing it counts the same bytes:
 *
 *   first use of a safe in this process    count: list every object type, sum the sizes
 *                                          (a listing of many, recordedBytesOf: the database's
 *                                          number when there is one, counted only when not)
 *   a save through `storage`               + its bytes, once stored (an increment in the database)
 *   a removal through `storage`            − its bytes (stat before remove)
 *   recount(safe)                          count again
 *
 * and each change is sampled per hour (`usage_samples`: the bytes at the
 * end of each hour in which they changed; usage-history.ts reads them).
 *
 * `storage` is the server's `SafeStorage` (safe-storage.ts) as every service
 * uses it (`ctx.safeStorage`): the repository protocol's uploads and lock
 * removals, and the server's own prune, are counted without doing anything.
 *
 * A count waits for this node's saves and removals of the safe in flight
 * to end and holds new ones back until it is done, so that none is counted
 * twice or missed; another node's save during a first count may be counted
 * twice (its increment and the listing), which `recount` corrects. The
 * reservations of uploads being received (quota.ts) are rows of
 * `usage_reservations`, so that two nodes receiving uploads for one
 * customer see each other's.
 */
import { forEachLimit } from '../../core/for-each-limit.js';
import { OBJECT_TYPES, type Backend, type Handle, type OperationOptions } from '../../storage/backend.js';
import { WrapperBackend } from '../../storage/wrapper-backend.js';
import type { Kysely } from 'kysely';
import type { ControlPlane } from '../db/schema.js';
import type { SafeStorage } from './safe-storage.js';

/** A disk safe as the ledger knows it: by where it is stored (`safes/ID`). */
export interface StoredSafe {
  readonly location: string;
}

/** The bytes of an upload being received, held against the quotas until `release`. */
export interface Reservation {
  /** Gives the bytes back; idempotent. */
  release(): Promise<void>;
}

/** A reservation that holds nothing (an upload to a safe and customer without quotas). */
export const NO_RESERVATION: Reservation = { release: () => Promise.resolve() };

/** The hour a time falls in, as `usage_samples` keys it. */
export const hourOf = (d: Date): string => `${d.toISOString().slice(0, 13)}:00:00.000Z`;

/** How many safes are counted at once when a customer's are all needed. */
const COUNT_CONCURRENCY = 4;
/** How many safes' bytes one query reads (well under SQLite's and PostgreSQL's limits on a statement's parameters). */
const LOCATIONS_PER_QUERY = 5000;

interface SafeTally {
  /** Saves and removals through `storage` under way. */
  writes: number;
  /** The count running now, if one is. */
  counting: Promise<number> | undefined;
  /** Wakes a count waiting for the writes under way to end. */
  drained: (() => void) | undefined;
}

/** The server's record of its disk safes' stored bytes; one per server process. */
export class UsageLedger {
  /**
   * The safes' storage, with every save and removal made through a safe's
   * backend counted; the same backend object for the same safe.
   */
  readonly storage: SafeStorage;
  private readonly tallies = new Map<string, SafeTally>();
  /** The safes this process has counted from storage. */
  private readonly countedHere = new Set<string>();
  private readonly closing = new AbortController();

  /** `raw`: the server's safe storage; the ledger lists through it and wraps its backends. `db`, `now`: the server's. */
  constructor(private readonly raw: SafeStorage, private readonly db: Kysely<ControlPlane>, private readonly now: () => Date) {
    const counted = new Map<string, Backend>();
    this.storage = {
      shown: raw.shown,
      backendOf: (safe) => {
        let b = counted.get(safe.location);
        if (b === undefined) {
          b = new CountedBackend(raw.backendOf(safe), this, safe.location);
          counted.set(safe.location, b);
        }
        return b;
      },
      removePlace: async (safe) => {
        counted.delete(safe.location);
        this.tallies.delete(safe.location);
        this.countedHere.delete(safe.location);
        await raw.removePlace(safe);
        await db.deleteFrom('safe_usage').where('location', '=', safe.location).execute();
        await db.deleteFrom('usage_samples').where('location', '=', safe.location).execute();
      },
      close: () => raw.close(),
    };
  }

  /**
   * The safe's stored bytes, counted from storage first when this process
   * has not yet (so that a crash between storing an object and counting it
   * leaves no error behind a restart); then the database's, which every
   * node's saves and removals change.
   */
  async storedBytes(safe: StoredSafe): Promise<number> {
    if (!this.countedHere.has(safe.location)) return this.count(safe);
    const row = await this.db.selectFrom('safe_usage').select('stored_bytes').where('location', '=', safe.location).executeTakeFirst();
    return row?.stored_bytes ?? this.count(safe);
  }

  /** The stored bytes of each of `safes`, by location (counted where needed, a few at once). */
  async storedBytesOf(safes: readonly StoredSafe[]): Promise<Map<string, number>> {
    // The safes counted here already are read in one query, whatever their number; the others are counted.
    return this.readOrCount(safes, safes.filter((s) => this.countedHere.has(s.location)));
  }

  /** The database's numbers of `recorded` (one query per LOCATIONS_PER_QUERY), and each of `safes` without one counted (storedBytes). */
  private async readOrCount(safes: readonly StoredSafe[], recorded: readonly StoredSafe[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const locations = recorded.map((s) => s.location);
    for (let i = 0; i < locations.length; i += LOCATIONS_PER_QUERY) {
      const rows = await this.db.selectFrom('safe_usage').select(['location', 'stored_bytes']).where('location', 'in', locations.slice(i, i + LOCATIONS_PER_QUERY)).execute();
      for (const r of rows) out.set(r.location, r.stored_bytes);
    }
    await forEachLimit(safes.filter((s) => !out.has(s.location)), COUNT_CONCURRENCY, async (s) => {
      out.set(s.location, await this.storedBytes(s));
    });
    return out;
  }

  /**
   * The stored bytes of each of `safes` as last recorded in the database
   * (by any node or process), by location; a safe never counted is counted
   * now. For a listing of many safes (the fleet's): right after a start it
   * does not list every safe's storage first, as storedBytesOf does, so it
   * may show what a crash left uncounted until the safe's next use counts it.
   */
  recordedBytesOf(safes: readonly StoredSafe[]): Promise<Map<string, number>> {
    return this.readOrCount(safes, safes);
  }

  /**
   * Counts the safe again from storage and returns its stored bytes: for a
   * safe whose objects changed other than through `storage` (by hand, or a
   * process that does not share this ledger).
   */
  recount(safe: StoredSafe): Promise<number> {
    return this.count(safe);
  }

  /** Stops the counts under way (the server is closing). */
  close(): void {
    this.closing.abort(new Error('the server is closing'));
  }

  /** Called by `CountedBackend` before a save or removal: waits out a count. */
  async beginWrite(location: string): Promise<void> {
    const t = this.tally(location);
    while (t.counting) await t.counting.catch(() => undefined);
    t.writes++;
  }

  /** Called by `CountedBackend` when a save or removal ended; `bytes` were added (negative: removed). */
  async endWrite(location: string, bytes: number): Promise<void> {
    const t = this.tally(location);
    try {
      if (bytes === 0) return;
      // An increment, not a write of this node's number: other nodes add to the same row. A safe never counted gets its row at its first count.
      const row = await this.db.updateTable('safe_usage').set((eb) => ({ stored_bytes: eb('stored_bytes', '+', bytes) })).where('location', '=', location)
        .returning('stored_bytes').executeTakeFirst();
      if (row !== undefined) await this.sample(location, row.stored_bytes);
    } finally {
      if (--t.writes === 0) t.drained?.();
    }
  }

  /** Records `stored` as the safe's bytes at the end of this hour so far. */
  private async sample(location: string, stored: number): Promise<void> {
    await this.db.insertInto('usage_samples').values({ location, hour: hourOf(this.now()), stored_bytes: stored })
      .onConflict((oc) => oc.columns(['location', 'hour']).doUpdateSet({ stored_bytes: stored })).execute();
  }

  private tally(location: string): SafeTally {
    let t = this.tallies.get(location);
    if (t === undefined) {
      t = { writes: 0, counting: undefined, drained: undefined };
      this.tallies.set(location, t);
    }
    return t;
  }

  /** One count of the safe at a time; a second caller waits for the first's. */
  private count(safe: StoredSafe): Promise<number> {
    const t = this.tally(safe.location);
    t.counting ??= (async () => {
      if (t.writes > 0) await new Promise<void>((resolve) => { t.drained = resolve; });
      t.drained = undefined;
      const backend = this.raw.backendOf(safe);
      let total = 0;
      for (const type of OBJECT_TYPES) {
        if (type === 'lock') continue;
        for await (const o of backend.list(type, { signal: this.closing.signal })) total += o.size;
      }
      const now = this.now().toISOString();
      await this.db.insertInto('safe_usage').values({ location: safe.location, stored_bytes: total, counted_at: now })
        .onConflict((oc) => oc.column('location').doUpdateSet({ stored_bytes: total, counted_at: now })).execute();
      await this.sample(safe.location, total);
      this.countedHere.add(safe.location);
      return total;
    })().finally(() => {
      t.counting = undefined;
    });
    return t.counting;
  }
}

/** A safe's storage whose saves and removals change the safe's count in the ledger. */
class CountedBackend extends WrapperBackend {
  constructor(inner: Backend, private readonly ledger: UsageLedger, private readonly safe: string) {
    super(inner);
  }

  /** See `Backend.save`: the bytes count once stored (not when the name existed). */
  override async save(h: Handle, data: Uint8Array, opts?: OperationOptions): Promise<void> {
    if (h.type === 'lock') return this.inner.save(h, data, opts);
    await this.ledger.beginWrite(this.safe);
    let added = 0;
    try {
      await this.inner.save(h, data, opts);
      added = data.length;
    } finally {
      await this.ledger.endWrite(this.safe, added);
    }
  }

  /** See `Backend.remove`: the object's size (asked first) stops counting once it is removed. */
  override async remove(h: Handle, opts?: OperationOptions): Promise<void> {
    if (h.type === 'lock') return this.inner.remove(h, opts);
    await this.ledger.beginWrite(this.safe);
    let removed = 0;
    try {
      const info = await this.inner.stat(h, opts);
      await this.inner.remove(h, opts);
      removed = info?.size ?? 0;
    } finally {
      await this.ledger.endWrite(this.safe, -removed);
    }
  }
}

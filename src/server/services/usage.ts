/**
 * How many bytes each disk safe takes in storage, accounted without the key
 * from the safe's objects (packs, indexes, snapshots, keys, markers, the
 * config: every stored byte but the lock objects, which are bookkeeping
 * bounded per token, src/server/services/lock-owners.ts, and must not count
 * against a quota that would then keep prune from its lock), through the
 * `Backend` interface, so that it is the same on a local folder and on S3.
 *
 *   first use of a safe in this process    count: list every object type, sum the sizes
 *   a save through `storage`               + its bytes, once stored
 *   a removal through `storage`            − its bytes (stat before remove)
 *   recount(safe)                          count again
 *   reserve(safe, n)                       n bytes of an upload in flight, until it ends
 *
 * `storage` is the server's `SafeStorage` (safe-storage.ts) as every service
 * uses it (`ctx.safeStorage`): the repository protocol's uploads and lock
 * removals, and the server's own prune, are counted without doing anything.
 *
 * The numbers live in this process: a server start counts each safe again
 * on its first use, so a crash between storing an object and counting it
 * leaves no error behind. A count waits for the safe's saves and removals in
 * flight to end and holds new ones back until it is done, so that none is
 * counted twice or missed. Reservations let quota checks
 * (src/server/services/quota.ts) see the uploads that are being received:
 * concurrent uploads cannot together pass a hard quota.
 */
import { forEachLimit } from '../../core/for-each-limit.js';
import { OBJECT_TYPES, type Backend, type Handle, type OperationOptions } from '../../storage/backend.js';
import { WrapperBackend } from '../../storage/wrapper-backend.js';
import type { SafeStorage } from './safe-storage.js';

/** A disk safe as the ledger knows it: by where it is stored (`safes/ID`). */
export interface StoredSafe {
  readonly location: string;
}

/** The bytes of an upload being received, held against the quotas until `release`. */
export interface Reservation {
  /** Gives the bytes back; idempotent. */
  release(): void;
}

/** How many safes are counted at once when a customer's are all needed. */
const COUNT_CONCURRENCY = 4;

interface SafeTally {
  /** The safe's bytes in storage; undefined until counted in this process. */
  stored: number | undefined;
  /** Bytes of uploads to the safe being received now. */
  reserved: number;
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
  private readonly closing = new AbortController();

  /** `raw`: the server's safe storage; the ledger lists through it and wraps its backends. */
  constructor(private readonly raw: SafeStorage) {
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
        await raw.removePlace(safe);
      },
      close: () => raw.close(),
    };
  }

  /** The safe's stored bytes, counted from storage first when this process has not yet. */
  async storedBytes(safe: StoredSafe): Promise<number> {
    return this.tally(safe.location).stored ?? this.count(safe);
  }

  /** The stored bytes of each of `safes`, by location (counted where needed, a few at once). */
  async storedBytesOf(safes: readonly StoredSafe[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    await forEachLimit(safes, COUNT_CONCURRENCY, async (s) => {
      out.set(s.location, await this.storedBytes(s));
    });
    return out;
  }

  /**
   * Counts the safe again from storage and returns its stored bytes: for a
   * safe whose objects changed other than through `storage` (by hand, or a
   * process that does not share this ledger).
   */
  recount(safe: StoredSafe): Promise<number> {
    return this.count(safe);
  }

  /** Bytes reserved by uploads under way to the safe. */
  reservedBytes(safe: StoredSafe): number {
    return this.tallies.get(safe.location)?.reserved ?? 0;
  }

  /**
   * Holds `size` bytes of an upload to the safe until the reservation is
   * released (the caller checked the quotas with the same numbers, with no
   * await in between).
   */
  reserve(safe: StoredSafe, size: number): Reservation {
    const t = this.tally(safe.location);
    t.reserved += size;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        t.reserved -= size;
      },
    };
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
  endWrite(location: string, bytes: number): void {
    const t = this.tally(location);
    if (t.stored !== undefined) t.stored += bytes;
    if (--t.writes === 0) t.drained?.();
  }

  private tally(location: string): SafeTally {
    let t = this.tallies.get(location);
    if (t === undefined) {
      t = { stored: undefined, reserved: 0, writes: 0, counting: undefined, drained: undefined };
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
      t.stored = total;
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
      this.ledger.endWrite(this.safe, added);
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
      this.ledger.endWrite(this.safe, -removed);
    }
  }
}

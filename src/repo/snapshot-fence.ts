/**
 * The snapshot fence: the writer's half of safe garbage collection
 * (docs/format.md §15). A snapshot is written only when every blob it lists
 * sits in a pack that exists and that no prune has marked for deletion, and
 * it must be durable within the commit window of that check:
 *
 *   repeat (at most 3 times):
 *     t0      = now
 *     marked  = packs in deletions/        a pack marked after this is deleted
 *     present = packs in data/             ≥ min grace later, by a prune that
 *                                          lists snapshots first and sees ours
 *     for each blob the snapshot lists:
 *       in a present, unmarked pack (our index, else fresh index files) → fine
 *       else in a present, marked pack → copy its sealed bytes into a new pack
 *       else → lost: refuse (BlobsLostError); the backup must run again
 *     store the copies (packs, then one index file)
 *     write the snapshot
 *     durable within the commit window of t0 → done
 *     else (the process stalled: a prune may have swept meanwhile) → remove it, repeat
 *
 * Copies need no key: a sealed blob's AAD binds its type, flags, length and
 * id, not the pack it is in.
 */
import { performance } from 'node:perf_hooks';
import { NotFoundError, ShortReadError, type OperationOptions } from '../storage/backend.js';
import { AppendOnlyError } from '../storage/append-only-backend.js';
import { condemnedPacks, formatDurationMs } from './deletion-marker.js';
import type { BlobLocation, MasterIndex } from './index-file.js';
import { handleOf, io } from './objects.js';
import { PackCopier } from './pack-copier.js';
import { blobIdBytes } from './snapshot.js';
import { ID_BYTES } from '../core/ids.js';
import type { Store } from './store.js';
import type { ErrorCode } from '../core/errors.js';

/** What the fence needs from a repository. */
export interface FenceTarget {
  readonly store: Store;
  /** The repository's index; copies made by the fence are added to it. */
  readonly index: MasterIndex;
  /** How long a commit may take (`commitWindowMs` of the minimum grace period). */
  readonly commitWindowMs: number;
  /** Told the name of the index file of the copies, which the index then holds. */
  indexSaved?(name: string): void;
}

/** Some blobs a snapshot lists exist nowhere any more (a prune removed them): the snapshot was not written. */
export class BlobsLostError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BLOBS_LOST';
  constructor(readonly ids: readonly string[]) {
    super(`${ids.length} blob(s) this snapshot references are no longer in the repository (removed by a prune while this backup ran, `
      + `or missing from the start; first: ${ids[0] ?? '?'}); no snapshot was written: run the backup again`);
    this.name = 'BlobsLostError';
  }
}

const ATTEMPTS = 3;

/** Elapsed milliseconds since `start`, by both clocks (the monotonic one stops while the machine sleeps). */
function since(start: { mono: number; wall: number }): number {
  return Math.max(performance.now() - start.mono, Date.now() - start.wall);
}

/** Writes a snapshot (`bytes`, encoded, listing `blobs`) behind the fence described in the module comment; returns its id. */
export async function commitSnapshot(t: FenceTarget, blobs: readonly string[], bytes: Buffer, opts: OperationOptions = {}): Promise<string> {
  const [id] = await commitSnapshots(t, [{ blobs, bytes }], opts);
  if (id instanceof BlobsLostError) throw id;
  return id!;
}

/** A snapshot to write behind the fence: its encoded bytes and the blobs it lists. */
export interface SnapshotToCommit {
  readonly blobs: readonly string[];
  readonly bytes: Buffer;
}

/**
 * Writes snapshots, in their order, behind one fence for as many as fit its
 * commit window: the markers and packs are listed once, not once per
 * snapshot (a copy writes many), and each snapshot is written while the
 * window of that one check lasts. One durable only after it is removed, and
 * it and the rest are fenced again. A snapshot some of whose blobs are lost
 * is not written, and the others are fenced again without it. Returns, per
 * snapshot, its id or the BlobsLostError that kept it out.
 */
export async function commitSnapshots(t: FenceTarget, items: readonly SnapshotToCommit[], opts: OperationOptions = {}): Promise<(string | BlobsLostError)[]> {
  const out: (string | BlobsLostError)[] = [];
  let rest = items.map((_, i) => i);
  for (let attempt = 1; rest.length > 0; attempt++) {
    const start = { mono: performance.now(), wall: Date.now() };
    try {
      // One snapshot's list as it is: a blob listed twice is looked at twice, no more.
      await protectBlobs(t, rest.length === 1 ? items[rest[0]!]!.blobs : [...new Set(rest.flatMap((i) => items[i]!.blobs))], opts);
    } catch (e) {
      if (e instanceof BlobsLostError) {
        const lost = new Set(e.ids);
        for (const i of rest) {
          const its = items[i]!.blobs.filter((id) => lost.has(id));
          if (its.length > 0) out[i] = new BlobsLostError(its);
        }
        rest = rest.filter((i) => out[i] === undefined);
        attempt--; // not a failed attempt: the rest is fenced again
        continue;
      }
      // A marked pack vanished while we copied from it: look again (a prune may have rescued the blob).
      if (attempt < ATTEMPTS && (e instanceof NotFoundError || e instanceof ShortReadError)) continue;
      throw e;
    }
    let took = 0;
    while (rest.length > 0) {
      opts.signal?.throwIfAborted();
      const id = await t.store.save('snapshot', items[rest[0]!]!.bytes, opts);
      took = since(start);
      if (took > t.commitWindowMs) {
        try {
          await t.store.backend.remove(handleOf('snapshot', id), io(opts));
          break;
        } catch (e) {
          if (!(e instanceof AppendOnlyError)) throw e; // nothing is ever deleted from this repository: it stays
        }
      }
      out[rest.shift()!] = id;
      attempt = 0; // a snapshot written: the attempts count again for the rest
    }
    if (rest.length > 0 && attempt >= ATTEMPTS) {
      throw new Error(`writing the snapshot took ${formatDurationMs(took)}, longer than the commit window of ${formatDurationMs(t.commitWindowMs)} `
        + `(${ATTEMPTS} times); it was removed again so that it cannot reference data a concurrent prune deleted; run the backup again`);
    }
  }
  return out;
}

/**
 * Makes sure every blob in `ids` is in a present, unmarked pack, copying the
 * ones that are only in marked packs. Throws `BlobsLostError` for blobs that
 * are nowhere.
 */
export async function protectBlobs(t: FenceTarget, ids: readonly string[], opts: OperationOptions = {}): Promise<void> {
  const condemned = condemnedPacks((await t.store.loadMarkers(opts)).ok.values());
  const present = await t.store.list('data', opts);
  const usable = (pack: string): boolean => present.has(pack) && !condemned.has(pack);
  const unsafe: string[] = [];
  // A list made from bytes (a disk's worth of block ids) is looked up from them, id i at i × 32.
  const bytes = blobIdBytes(ids);
  for (let i = 0; i < ids.length; i++) {
    const pack = bytes ? t.index.packOfBytes(bytes, i * ID_BYTES) : t.index.packOf(ids[i]!);
    if (pack === undefined || !usable(pack)) unsafe.push(ids[i]!);
  }
  if (unsafe.length === 0) return;

  // Look wider: index files written since ours was loaded, and the markers' own lists.
  const others = await freshLocations(t.store, new Set(unsafe), opts);
  for (const p of condemned.values()) for (const b of p.blobs) if (others.has(b.id)) others.get(b.id)!.push({ ...b, pack: p.pack });
  const copies: BlobLocation[] = [];
  const lost: string[] = [];
  for (const id of unsafe) {
    const candidates = [t.index.lookup(id), ...(others.get(id) ?? [])].filter((l): l is BlobLocation => l !== undefined);
    const live = candidates.find((l) => usable(l.pack));
    if (live) continue;
    const marked = candidates.find((l) => present.has(l.pack));
    if (marked) copies.push(marked);
    else lost.push(id);
  }
  if (lost.length > 0) throw new BlobsLostError(lost);
  await copyBlobs(t, copies, present, opts);
}

/** Every location the current index files give for `wanted` blobs. Damaged index files are passed over (check reports them). */
async function freshLocations(store: Store, wanted: ReadonlySet<string>, opts: OperationOptions): Promise<Map<string, BlobLocation[]>> {
  const out = new Map<string, BlobLocation[]>([...wanted].map((id) => [id, []]));
  for (const f of (await store.loadIndexFiles(opts)).ok.values()) {
    for (const p of f.packs) for (const b of p.blobs) out.get(b.id)?.push({ ...b, pack: p.pack });
  }
  return out;
}

/** Copies sealed blobs into new packs, then writes one index file for them and adds them to the writer's index. */
async function copyBlobs(t: FenceTarget, blobs: readonly BlobLocation[], present: ReadonlyMap<string, number>, opts: OperationOptions): Promise<void> {
  if (blobs.length === 0) return;
  const copier = new PackCopier(t.store.backend, t.store.config.packSize, (name) => present.has(name), opts);
  for (const b of blobs) await copier.add(b, await t.store.backend.load(handleOf('data', b.pack), { ...io(opts), offset: b.offset, length: b.length }));
  const written = await copier.finish();
  t.indexSaved?.(await t.store.saveIndex({ packs: written, supersedes: [] }, opts));
  for (const p of written) t.index.addPack(p);
}

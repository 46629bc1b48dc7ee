/**
 * Takes damaged packs out of use, without the key: one pending-deletion
 * marker (docs/format.md §15) names them, as a prune's phase 1 names the
 * packs it condemns. While it exists, writers do not deduplicate against
 * their blobs (the next backup stores again whatever it still has of them),
 * an interrupted backup's orphans never adopt them, and readers still read
 * what can be read of them; a later prune's sweep deletes them after the
 * grace period, keeping a copy of any blob still referenced that no intact
 * pack holds (its rescue). The server's verification calls it for the packs
 * it found damaged (src/server/services/verification.ts).
 *
 *   packs → what they hold: what the index files say, else the header
 *   (a pack that is gone: what the index files say, so that no writer
 *   deduplicates against blobs nothing holds)
 *   those already marked, or that nothing says anything of, are left out
 *   one marker for the rest (nothing written when none is left)
 */
import { encodeMarker, newMarker } from '../../repo/deletion-marker.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../repo/errors.js';
import type { IndexedPack } from '../../repo/index-file.js';
import { RepoState } from '../../repo/repo-state.js';
import type { Store } from '../../repo/store.js';
import type { OperationOptions } from '../../storage/backend.js';

export interface CondemnReport {
  /** The marker written; absent when every pack was marked already, or is gone. */
  readonly marker?: string;
  /** The packs it names. */
  readonly condemned: readonly string[];
}

/** Marks `packs` of `store` for deletion; see the module comment. `now` stamps the marker (its grace period counts from it). */
export async function condemnDamagedPacks(store: Store, packs: Iterable<string>, now: Date, opts: OperationOptions = {}): Promise<CondemnReport> {
  const state = await RepoState.load(store, opts);
  const marked: IndexedPack[] = [];
  for (const pack of new Set(packs)) {
    if (state.condemned.has(pack)) continue;
    let blobs = state.claims(pack);
    if (blobs.length === 0 && state.packs.has(pack)) {
      // No index file names it (an orphan): its header, if it can still be read, says what it holds.
      blobs = await state.readHeader(store, pack, opts).catch((e: unknown) => {
        if (e instanceof CorruptObjectError || e instanceof UnsupportedVersionError) return [];
        throw e;
      });
    }
    if (blobs.length > 0) marked.push({ pack, blobs });
  }
  if (marked.length === 0) return { condemned: [] };
  const marker = await store.save('deletion', encodeMarker(newMarker(marked, [], now)), opts);
  return { marker, condemned: marked.map((p) => p.pack) };
}

/**
 * `repair index`: rebuilds the index from the packs themselves, without the key.
 *
 *   list index/ (these are what the new index replaces; files written later stay)
 *   list data/; for each pack read its header (two range reads), marked
 *     packs too: a marker is a claim any client can write, and readers
 *     still treat a pack a marker names as pending deletion
 *     header unreadable → keep every entry the old index files had for it, as
 *                         far as those blobs still fit in the pack (a truncated
 *                         pack keeps the blobs before the cut); else report it
 *   write one index file for all of them, superseding the listed ones
 *   then remove the listed ones (not in an append-only repository)
 *
 * Index files are listed before packs, so a pack a concurrent backup stores
 * after the pack listing is named by an index file written after the index
 * listing, which is kept.
 */
import { entryKey, type IndexedPack } from '../../repo/index-file.js';
import type { PackedBlob } from '../../repo/pack.js';
import type { Store } from '../../repo/store.js';
import { CorruptObjectError, UnsupportedVersionError } from '../../repo/errors.js';

export interface RebuildIndexOptions {
  readonly onWarning?: (message: string) => void;
  readonly onProgress?: (done: number, total: number) => void;
  /** Called before the old index files are removed (e.g. to refresh a lock). */
  readonly beforeDelete?: () => Promise<void>;
  readonly signal?: AbortSignal;
}

export interface RebuildIndexReport {
  /** The index file written. */
  readonly index?: string;
  readonly packs: number;
  readonly blobs: number;
  /** Packs whose header could not be read, and how many blobs were kept for each from the old index. */
  readonly unreadable: { readonly pack: string; readonly reason: string; readonly salvaged: number }[];
  readonly indexFilesRemoved: number;
  /** Old index files left in place because the repository is append-only. */
  readonly indexFilesKept: number;
}

/** Rebuilds the index; see the module comment. */
export async function rebuildIndex(repo: Store, opts: RebuildIndexOptions = {}): Promise<RebuildIndexReport> {
  const io = opts.signal ? { signal: opts.signal } : {};
  const old = await repo.loadIndexFiles(io);
  const oldNames = [...old.ok.keys(), ...old.damaged.keys()];
  const packs = await repo.list('data', io);
  // Every entry any old index file had for a pack (a client can add index files, so no one of them is the truth).
  // A record may list one blob any number of times: entries are told apart by key, in linear time.
  const previously = new Map<string, PackedBlob[]>();
  const seen = new Set<string>();
  for (const f of old.ok.values()) {
    for (const p of f.packs) {
      let l = previously.get(p.pack);
      if (!l) previously.set(p.pack, (l = []));
      for (const b of p.blobs) {
        const key = entryKey(p.pack, b);
        if (!seen.has(key)) l.push(b);
        seen.add(key);
      }
    }
  }

  const out: IndexedPack[] = [];
  const unreadable: { pack: string; reason: string; salvaged: number }[] = [];
  let blobs = 0;
  let done = 0;
  for (const [pack, size] of packs) {
    opts.signal?.throwIfAborted();
    opts.onProgress?.(++done, packs.size);
    try {
      const p = { pack, blobs: await repo.readPackHeader(pack, size, io) };
      out.push(p);
      blobs += p.blobs.length;
    } catch (e) {
      // Damage only: an I/O error is not a reason to rewrite what the index says, so it stops the repair.
      if (!(e instanceof CorruptObjectError || e instanceof UnsupportedVersionError)) throw e;
      const reason = e.message;
      const kept = (previously.get(pack) ?? []).filter((b) => b.offset + b.length <= size);
      if (kept.length > 0) {
        out.push({ pack, blobs: kept });
        blobs += kept.length;
      }
      unreadable.push({ pack, reason, salvaged: kept.length });
      opts.onWarning?.(`pack ${pack}: header cannot be read (${reason}); ${kept.length > 0 ? `kept ${kept.length} blob(s) the old index listed` : 'nothing known about its blobs'}`);
    }
  }
  const index = out.length > 0 || oldNames.length > 0 ? await repo.saveIndex({ packs: out, supersedes: oldNames }, io) : undefined;
  let removed = 0;
  let kept = 0;
  const stale = oldNames.filter((n) => n !== index);
  if (repo.appendOnly) {
    kept = stale.length;
  } else if (stale.length > 0) {
    await opts.beforeDelete?.();
    for (const name of stale) if (await repo.remove('index', name, io)) removed++;
  }
  return { ...(index ? { index } : {}), packs: out.length, blobs, unreadable, indexFilesRemoved: removed, indexFilesKept: kept };
}

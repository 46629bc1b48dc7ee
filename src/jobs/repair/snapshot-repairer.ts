/**
 * `repair snapshots`: deals with snapshots that reference lost blobs, by an
 * explicit choice, never by filling the gaps with zeros.
 *
 *   check (structure; with readData also the pack contents) → lost blobs
 *   a snapshot that references blobs only packs no index file lists hold
 *     (not lost: check reads those packs' headers) is left as it is, and
 *     "repair index" named
 *   --forget-damaged   remove every snapshot that references a lost blob,
 *                      and every snapshot object that cannot be read
 *   --mark-damaged     (needs the key) write a new snapshot in place of each:
 *                      a file that lost content gets `damaged: true` and
 *                      loses the lost ids from its content list; a folder
 *                      whose listing is lost gets `damaged: true` and the
 *                      empty tree; the snapshot is marked incomplete and
 *                      names the original; then the original is removed.
 *                      Restore and dump refuse damaged files and report them.
 *   then, with the key: packs that failed their checksum are salvaged: every
 *     blob in them that still decrypts to its id and that a snapshot needs is
 *     copied into a new pack (even where another pack holds it too), and the
 *     damaged packs are marked for deletion (the next prune after the grace
 *     period removes them); a pack whose bytes match its name but that holds
 *     blobs that do not authenticate (planted) is removed at once, after
 *     every blob in it that does authenticate has been copied
 *
 * Without the key only certain losses are acted on (missing packs, blobs cut
 * off by truncation); a pack that merely fails its checksum may have intact
 * blobs, which only the key can tell.
 */
import { contentBlobs, entryBlob, type TreeNode } from '../../repo/tree.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { RepoState } from '../../repo/repo-state.js';
import { Store } from '../../repo/store.js';
import { encodeMarker, newMarker } from '../../repo/deletion-marker.js';
import { PackCopier } from '../../repo/pack-copier.js';
import { handleOf, io, loadBounded } from '../../repo/objects.js';
import { recordKey, type IndexedPack } from '../../repo/index-file.js';
import type { PackedBlob } from '../../repo/pack.js';
import { Checker, type CheckReport, type KeyedReader } from '../check/checker.js';
import type { DataSelection } from '../check/subset.js';
import type { OperationOptions } from '../../storage/backend.js';

/** What --mark-damaged writes with: trees and snapshots (a `RepositoryWriter`). */
export interface SnapshotWriter {
  saveTree(nodes: TreeNode[]): Promise<string>;
  flush(): Promise<void>;
  saveSnapshot(s: Snapshot): Promise<string>;
}

/** What --mark-damaged needs: reading with the key, and a write session (`Repository` has both). */
export interface KeyedRepository extends KeyedReader {
  newWriter(opts: { signal?: AbortSignal }): SnapshotWriter;
}

export interface RepairSnapshotsOptions {
  readonly mode: 'forget' | 'mark';
  /** Also read pack contents to find damaged blobs (all, or a subset). */
  readonly readData?: DataSelection;
  /** The repository opened with the key; required for 'mark'. */
  readonly keyed?: KeyedRepository;
  /** Report what would be done; change nothing. */
  readonly dryRun?: boolean;
  /** Called before anything is removed (e.g. to refresh a lock). */
  readonly beforeDelete?: () => Promise<void>;
  readonly onWarning?: (message: string) => void;
  readonly signal?: AbortSignal;
}

export interface RepairedSnapshot {
  readonly from: string;
  readonly to: string;
  readonly files: string[];
  readonly dirs: string[];
}

export interface RepairSnapshotsReport {
  readonly check: CheckReport;
  /** Snapshots removed (--forget-damaged), with why. */
  readonly removed: { readonly id: string; readonly reason: string }[];
  /** Snapshots rewritten with their damaged files marked (--mark-damaged). */
  readonly rewritten: RepairedSnapshot[];
  /** Snapshots left as they were, with why. */
  readonly skipped: { readonly id: string; readonly reason: string }[];
  /** Blobs copied out of damaged packs, and the marker that condemns those packs. */
  readonly salvagedBlobs: number;
  readonly marker?: string;
  /** Packs removed because blobs in them fail authentication although their bytes match their names (their intact blobs copied first). */
  readonly removedPacks: string[];
}

/** Runs the repair; see the module comment. */
export async function repairSnapshots(repo: Store, opts: RepairSnapshotsOptions): Promise<RepairSnapshotsReport> {
  if (opts.mode === 'mark' && !opts.keyed) throw new Error('--mark-damaged needs the password: the file names are encrypted');
  const check = await new Checker(repo, { ...(opts.readData ? { readData: opts.readData } : {}), ...(opts.keyed ? { keyed: opts.keyed } : {}), ...(opts.signal ? { signal: opts.signal } : {}) }).run();
  const lost = new Set(check.lostBlobs);
  const removed: { id: string; reason: string }[] = [];
  const rewritten: RepairedSnapshot[] = [];
  const skipped: { id: string; reason: string }[] = [];
  const toRemove: string[] = [];
  let writer: SnapshotWriter | undefined;

  const snaps = await repo.loadSnapshots(io(opts));
  // Blobs in packs no index file lists are not lost: such a snapshot is left alone until the packs are indexed.
  const unindexed = new Set(check.unindexedBlobs);
  const waiting = new Set<string>();
  if (unindexed.size > 0) {
    for (const [id, s] of snaps.ok) {
      const n = s.blobs.filter((b) => unindexed.has(b)).length;
      if (n === 0) continue;
      waiting.add(id);
      skipped.push({ id, reason: `references ${n} blob(s) that are not lost but in packs no index file lists; run "holdfast repair index" first` });
    }
  }
  for (const [id, why] of snaps.damaged) {
    if (opts.mode === 'forget') {
      removed.push({ id, reason: `cannot be read: ${why.message}` });
      toRemove.push(id);
    } else {
      skipped.push({ id, reason: `cannot be read (${why.message}); use --forget-damaged to remove it` });
    }
  }
  for (const d of check.damaged) {
    opts.signal?.throwIfAborted();
    if (waiting.has(d.id)) continue;
    if (!d.certain) {
      skipped.push({ id: d.id, reason: 'in a pack that fails its checksum; which blobs are bad can only be told with the password' });
      continue;
    }
    const reason = `references ${d.blobs} lost blob(s)`;
    if (opts.mode === 'forget') {
      removed.push({ id: d.id, reason });
      toRemove.push(d.id);
      continue;
    }
    if (!snaps.ok.has(d.id)) continue;
    let s: Snapshot;
    try {
      // Authenticated: the rewritten copy gets a MAC, which must never vouch for a forged original.
      s = await opts.keyed!.loadSnapshot(d.id, io(opts));
    } catch (e) {
      skipped.push({ id: d.id, reason: (e as Error).message });
      continue;
    }
    if (s.image) {
      skipped.push({ id: d.id, reason: `image snapshot with ${d.imageBlocks ?? '?'} lost block(s); use --forget-damaged to remove it` });
      continue;
    }
    if (d.rootLost) {
      skipped.push({ id: d.id, reason: 'its root listing is lost, nothing can be kept; use --forget-damaged to remove it' });
      continue;
    }
    if (opts.dryRun) {
      rewritten.push({ from: d.id, to: '', files: d.files ?? [], dirs: d.dirs ?? [] });
      continue;
    }
    writer ??= opts.keyed!.newWriter(opts.signal ? { signal: opts.signal } : {});
    const r = await markDamaged(opts.keyed!, writer, d.id, s, lost, io(opts));
    rewritten.push(r);
    toRemove.push(d.id);
  }

  let salvagedBlobs = 0;
  let marker: string | undefined;
  let removedPacks: string[] = [];
  if (!opts.dryRun) {
    if (toRemove.length > 0) {
      await opts.beforeDelete?.();
      for (const id of toRemove) await repo.remove('snapshot', id, io(opts));
    }
    if (opts.keyed && (check.damagedPacks.length > 0 || check.badCopies.length > 0)) {
      ({ salvagedBlobs, marker, removedPacks } = await salvage(repo, opts.keyed, check, opts));
    }
  }
  return { check, removed, rewritten, skipped, salvagedBlobs, ...(marker ? { marker } : {}), removedPacks };
}

/** Writes the marked copy of one snapshot (its blobs flushed first); returns what it marked. */
async function markDamaged(keyed: KeyedReader, writer: SnapshotWriter, id: string, s: Snapshot, lost: ReadonlySet<string>, opts: OperationOptions): Promise<RepairedSnapshot> {
  const files: string[] = [];
  const dirs: string[] = [];
  const blobs = new Set<string>();
  let empty: string | undefined;
  const emptyTree = async (): Promise<string> => {
    empty ??= await writer.saveTree([]);
    blobs.add(empty);
    return empty;
  };
  const rewrite = async (tree: string, path: string): Promise<string | undefined> => {
    let nodes: TreeNode[];
    try {
      if (lost.has(tree)) return undefined;
      nodes = await keyed.loadTree(tree, opts);
    } catch {
      opts.signal?.throwIfAborted();
      return undefined;
    }
    const out: TreeNode[] = [];
    for (const n of nodes) {
      const p = `${path}/${n.name.toString()}`;
      if (n.type === 'dir' && n.subtree) {
        const sub = await rewrite(n.subtree, p);
        if (sub === undefined) {
          dirs.push(p);
          out.push({ ...n, damaged: true, subtree: await emptyTree() });
        } else {
          out.push({ ...n, subtree: sub });
        }
        continue;
      }
      const content = n.content ?? [];
      const hit = content.some((c) => lost.has(entryBlob(c) ?? ''));
      const kept = hit ? content.filter((c) => !lost.has(entryBlob(c) ?? '')) : content;
      for (const id of contentBlobs(kept)) blobs.add(id);
      if (hit) {
        files.push(p);
        out.push({ ...n, damaged: true, content: kept });
      } else {
        out.push(n);
      }
    }
    const newId = await writer.saveTree(out);
    blobs.add(newId);
    return newId;
  };
  const root = await rewrite(s.tree, '');
  if (root === undefined) throw new Error(`snapshot ${id}: root listing lost`);
  await writer.flush();
  const repaired = { ...s, tree: root, incomplete: true as const, original: id, blobs: [...blobs] };
  const to = await writer.saveSnapshot(repaired);
  return { from: id, to, files, dirs };
}

/**
 * Copies every blob of a damaged pack that decrypts to its id and that some
 * snapshot needs into new packs (as the same bytes, which is what lets a
 * keyless sweep delete the pack); then marks the damaged packs for deletion.
 *
 * A pack whose bytes match its name but that holds blobs that do not
 * authenticate was written that way: planted by a client, or by a faulty
 * writer. A keyless sweep cannot tell its copies from genuine ones and keeps
 * them (§15.10), so it is removed here, under the exclusive lock, once every
 * blob in it that does authenticate has been copied (needed or not: a backup
 * may have deduplicated against any of them), and the index files naming it
 * are rewritten without it.
 */
async function salvage(repo: Store, keyed: KeyedReader, check: CheckReport, opts: RepairSnapshotsOptions): Promise<{ salvagedBlobs: number; marker?: string; removedPacks: string[] }> {
  const state = await RepoState.load(repo, io(opts));
  const snaps = await repo.loadSnapshots(io(opts));
  const needed = new Set<string>();
  for (const s of snaps.ok.values()) for (const b of s.blobs) needed.add(b);
  const damaged = new Set(check.damagedPacks.filter((p) => state.packs.has(p) && !state.condemned.has(p)));
  const planted = new Set(check.badCopies.map((c) => c.pack).filter((p) => state.packs.has(p) && !state.condemned.has(p) && !damaged.has(p)));
  const bad = new Set(check.badCopies.map((c) => `${c.pack}/${c.id}`));
  const copier = new PackCopier(repo.backend, repo.config.packSize, (name) => state.packs.has(name), io(opts));
  let salvaged = 0;
  const intact = (pack: string, b: PackedBlob, sealed: Buffer): boolean => {
    try {
      keyed.openBlob(b, sealed, `pack ${pack}, blob ${b.id}`);
      return true;
    } catch {
      return false;
    }
  };
  const condemned: IndexedPack[] = [];
  for (const pack of [...damaged, ...planted]) {
    opts.signal?.throwIfAborted();
    const bytes = await loadBounded(repo.backend, handleOf('data', pack), `pack ${pack}`, io(opts));
    let blobs: readonly PackedBlob[];
    try {
      blobs = Store.parsePack(pack, bytes);
    } catch {
      blobs = state.claims(pack);
    }
    if (blobs.length === 0) {
      opts.onWarning?.(`pack ${pack} is damaged and no index lists its blobs; left in place (run "holdfast repair index")`);
      continue;
    }
    // Every intact copy is kept, even where another pack holds the blob: a keyless sweep keeps a damaged pack's copy unless the same bytes stay (§15.10).
    for (const b of blobs) {
      if ((damaged.has(pack) && !needed.has(b.id)) || bad.has(`${pack}/${b.id}`) || b.offset + b.length > bytes.length) continue;
      const sealed = bytes.subarray(b.offset, b.offset + b.length);
      if (!intact(pack, b, sealed)) continue;
      await copier.add(b, sealed);
      salvaged++;
    }
    if (damaged.has(pack)) condemned.push({ pack, blobs });
  }
  const written = await copier.finish();
  // The index files that name a planted pack are replaced by one that keeps everything else they say.
  const replaced = new Set<string>();
  for (const pack of planted) for (const f of state.packIndexFiles.get(pack) ?? []) replaced.add(f);
  const kept = new Map<string, IndexedPack>();
  for (const f of replaced) for (const p of state.indexFiles.get(f)?.packs ?? []) if (!planted.has(p.pack)) kept.set(recordKey(p), p);
  if (written.length > 0 || replaced.size > 0) await repo.saveIndex({ packs: [...written, ...kept.values()], supersedes: [...replaced] }, io(opts));
  if (planted.size > 0) {
    await opts.beforeDelete?.();
    for (const pack of planted) await repo.remove('data', pack, io(opts));
    for (const f of replaced) await repo.remove('index', f, io(opts));
  }
  const removedPacks = [...planted];
  if (condemned.length === 0) return { salvagedBlobs: salvaged, removedPacks };
  const marker = await repo.save('deletion', encodeMarker(newMarker(condemned, [])), io(opts));
  return { salvagedBlobs: salvaged, marker, removedPacks };
}

/**
 * Sizes and ratios of a set of snapshots (`holdfast stats`, and what the
 * server shows of a disk safe): logical size, unique data, stored size,
 * deduplication and compression, from the snapshots' plain reference lists
 * and the index alone (no file metadata is decrypted).
 */
import type { Repository } from '../../repo/repository.js';
import type { SnapshotEntry } from '../../repo/store.js';

export interface RepositoryStats {
  readonly snapshots: number;
  /** Files the snapshots hold, counted once per snapshot. */
  readonly files: number;
  /** Bytes the snapshots hold, counted once per snapshot. */
  readonly logicalBytes: number;
  /** Distinct blobs the snapshots reference. */
  readonly uniqueBlobs: number;
  /** Their bytes before compression and encryption. */
  readonly rawBytes: number;
  /** Their bytes as stored. */
  readonly storedBytes: number;
  /** Every data, index, snapshot, key and config object of the repository. */
  readonly repositoryBytes: number;
  readonly dedupRatio: number;
  readonly compressionRatio: number;
  readonly totalRatio: number;
  /** Referenced blobs that are in no index (check tells more). */
  readonly missingBlobs: number;
}

/** The statistics of `snapshots` in `repo` (index loaded). */
export async function repositoryStats(repo: Repository, snapshots: readonly SnapshotEntry[]): Promise<RepositoryStats> {
  const unique = new Set<string>();
  let logical = 0;
  let files = 0;
  for (const { snapshot: s } of snapshots) {
    logical += s.summary.totalBytes;
    files += s.summary.filesNew + s.summary.filesChanged + s.summary.filesUnchanged;
    for (const b of s.blobs) unique.add(b);
  }
  let raw = 0;
  let stored = 0;
  let missing = 0;
  for (const id of unique) {
    const loc = repo.index.lookup(id);
    if (!loc) {
      missing++;
      continue;
    }
    raw += loc.rawLength;
    stored += loc.length;
  }
  let repoSize = 0;
  for (const type of ['data', 'index', 'snapshot', 'key', 'config'] as const) for await (const o of repo.backend.list(type)) repoSize += o.size;
  return {
    snapshots: snapshots.length,
    files,
    logicalBytes: logical,
    uniqueBlobs: unique.size,
    rawBytes: raw,
    storedBytes: stored,
    repositoryBytes: repoSize,
    dedupRatio: raw > 0 ? logical / raw : 1,
    compressionRatio: stored > 0 ? raw / stored : 1,
    totalRatio: stored > 0 ? logical / stored : 1,
    missingBlobs: missing,
  };
}

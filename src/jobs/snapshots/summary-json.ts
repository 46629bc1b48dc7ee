/**
 * A snapshot's summary as `--json` prints it and the agent reports it (a
 * backup job's result): restic's field names where
 * restic has the figure (`files_new`, `data_added`, `total_bytes_processed`,
 * …), the same snake_case for the ones only holdfast has. The summary stored
 * in the snapshot keeps its own names (docs/format.md §11).
 */
import type { SnapshotSummary } from '../../repo/snapshot.js';

/** The counts a snapshot's summary has (those written before holdfast counted them lack some). */
function counted(counts: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter((e): e is [string, number] => e[1] !== undefined));
}

/** The summary under the names `--json` prints. */
export function summaryJson(s: SnapshotSummary): Record<string, number | string> {
  return {
    files_new: s.filesNew,
    files_changed: s.filesChanged,
    files_unmodified: s.filesUnchanged,
    total_files_processed: s.filesNew + s.filesChanged + s.filesUnchanged,
    ...counted({ dirs_new: s.dirsNew, dirs_changed: s.dirsChanged, dirs_unmodified: s.dirsUnchanged }),
    total_dirs_processed: s.dirs,
    other_nodes: s.otherNodes,
    // restic's name in its status lines; one name for the count everywhere.
    error_count: s.errors,
    total_bytes_processed: s.totalBytes,
    bytes_read: s.bytesRead,
    ...counted({ data_blobs: s.dataBlobs, tree_blobs: s.treeBlobs }),
    blobs_added: s.blobsAdded,
    data_added: s.dataAdded,
    data_added_packed: s.dataAddedStored,
    backup_start: s.start,
    backup_end: s.end,
  };
}

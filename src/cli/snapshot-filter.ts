/**
 * Choosing snapshots on the command line: the --host/--path/--tag options,
 * and `latest` or an id prefix resolved by src/jobs/snapshots/select.ts, with
 * damaged snapshots warned about.
 */
import type { Command } from 'commander';
import type { Repository } from '../repo/repository.js';
import type { SnapshotEntry } from '../repo/store.js';
import { findSnapshot as find, type SnapshotFilter } from '../jobs/snapshots/select.js';
import { collect, warn } from './context.js';

export { matchesFilter, type SnapshotFilter } from '../jobs/snapshots/select.js';
export type FoundSnapshot = SnapshotEntry;

/** Adds --host, --path and --tag to a command. */
export function withFilterOptions(cmd: Command): Command {
  return cmd
    .option('--host <host>', 'only snapshots of this host (repeatable)', collect)
    .option('--path <path>', 'only snapshots that include this path (repeatable)', collect)
    .option('--tag <tag[,tag]>', 'only snapshots with these tags (repeatable)', collect);
}

/** Resolves SNAP: `latest` (narrowed by the filter) or a unique id prefix; a damaged snapshot is warned about. */
export function findSnapshot(repo: Repository, arg: string, f: SnapshotFilter): Promise<FoundSnapshot> {
  return find(repo, arg, f, (id, e) => warn(`skipping snapshot ${id}: ${e.message}`));
}

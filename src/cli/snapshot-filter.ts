/**
 * Choosing snapshots on the command line: the --host/--path/--tag options,
 * and `latest` or an id prefix resolved by src/jobs/snapshots/select.ts, with
 * damaged snapshots warned about.
 */
import type { Command } from 'commander';
import type { Repository } from '../repo/repository.js';
import type { SnapshotEntry } from '../repo/store.js';
import { findSnapshot as find, type SnapshotFilter } from '../jobs/snapshots/select.js';
import { localIso } from '../core/local-time.js';
import { collect, skipDamaged, type GlobalOptions } from './context.js';
import { printable } from './printable.js';

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
  return find(repo, arg, f, skipDamaged);
}

/**
 * Names on stderr the snapshot that `latest` or an id prefix resolved to, for
 * a command whose stdout is the data (`dump`, `ls`): an operator learns what
 * they got. Not with --quiet or --json.
 */
export function tellResolved(g: GlobalOptions, doing: string, { id, snapshot }: FoundSnapshot): void {
  if (!g.quiet && !g.json) process.stderr.write(`${printable(`${doing} snapshot ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} at ${localIso(snapshot.time)} (${snapshot.hostname})`)}\n`);
}

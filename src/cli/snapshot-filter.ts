/**
 * Choosing snapshots on the command line: `latest`, a unique id prefix, and
 * the --host/--path/--tag filters (restic's meaning: a snapshot matches when
 * it has every --path given, and one of the --tag lists).
 */
import type { Command } from 'commander';
import type { Repository } from '../repo/repository.js';
import type { Snapshot } from '../repo/snapshot.js';
import { collect, snapshotsOf } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';

export interface SnapshotFilter {
  host?: string[];
  path?: string[];
  tag?: string[];
}

/** Adds --host, --path and --tag to a command. */
export function withFilterOptions(cmd: Command): Command {
  return cmd
    .option('--host <host>', 'only snapshots of this host (repeatable)', collect)
    .option('--path <path>', 'only snapshots that include this path (repeatable)', collect)
    .option('--tag <tag[,tag]>', 'only snapshots with these tags (repeatable)', collect);
}

export function matches(s: Snapshot, f: SnapshotFilter): boolean {
  if (f.host?.length && !f.host.includes(s.hostname)) return false;
  if (f.path?.length && !f.path.every((p) => s.paths.includes(p.replace(/(.)\/+$/, '$1')))) return false;
  if (f.tag?.length && !f.tag.some((group) => group.split(',').every((t) => s.tags.includes(t)))) return false;
  return true;
}

export interface FoundSnapshot {
  readonly id: string;
  readonly snapshot: Snapshot;
}

/** Resolves SNAP: `latest` (narrowed by the filter) or a unique id prefix. */
export async function findSnapshot(repo: Repository, arg: string, f: SnapshotFilter): Promise<FoundSnapshot> {
  if (arg === 'latest') {
    const all = (await snapshotsOf(repo)).filter((s) => matches(s.snapshot, f));
    const last = all[all.length - 1];
    if (!last) throw new ExitError('no snapshot matches', EXIT.failed);
    return last;
  }
  if (!/^[0-9a-f]{1,64}$/.test(arg)) throw new ExitError(`"${arg}" is neither "latest" nor a snapshot id`, EXIT.usage);
  const ids: string[] = [];
  for await (const info of repo.backend.list('snapshot', { prefix: arg })) ids.push(info.name);
  if (ids.length === 0) throw new ExitError(`no snapshot with id ${arg}`, EXIT.failed);
  if (ids.length > 1) throw new ExitError(`snapshot id prefix ${arg} is ambiguous (${ids.length} snapshots)`, EXIT.failed);
  return { id: ids[0]!, snapshot: await repo.loadSnapshot(ids[0]!) };
}

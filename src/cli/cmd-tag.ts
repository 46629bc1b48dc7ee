/**
 * `holdfast tag --add|--remove|--set TAG[,TAG] [SNAP-ID...]`: changes the
 * tags of snapshots (restic's `tag`). A snapshot object is immutable and
 * named by its hash, so a change is a new snapshot object, written through
 * the repository's own save (which also seals its MAC), and then the removal
 * of the old one, as restic does: a crash between the two leaves both, never
 * neither. Removing is what append-only clients cannot do, so they are
 * refused before anything is written.
 */
import type { Command } from 'commander';
import { acquireLock } from '../repo/lock.js';
import type { Repository } from '../repo/repository.js';
import { collect, globals, lockedByMe, openRepo, plural, refuseIfAppendOnly, say, snapshotsOf } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { findSnapshot, matchesFilter, withFilterOptions, type FoundSnapshot, type SnapshotFilter } from './snapshot-filter.js';

interface TagFlags extends SnapshotFilter {
  add?: string[];
  remove?: string[];
  set?: string[];
}

/** The tags of repeatable, comma-separated values ("" for none). */
const tagsOf = (values: readonly string[]): string[] => [...new Set(values.flatMap((v) => v.split(',')).map((t) => t.trim()).filter((t) => t !== ''))];

/** The tags after the change (restic's rule: --set replaces; else --add, then --remove). */
function changed(tags: readonly string[], f: TagFlags): string[] {
  if (f.set) return tagsOf(f.set);
  const removed = new Set(tagsOf(f.remove ?? []));
  return [...new Set([...tags, ...tagsOf(f.add ?? [])])].filter((t) => !removed.has(t));
}

async function chosen(repo: Repository, ids: readonly string[], f: TagFlags): Promise<FoundSnapshot[]> {
  if (ids.length === 0) return (await snapshotsOf(repo)).filter((s) => matchesFilter(s.snapshot, f));
  const out = new Map<string, FoundSnapshot>();
  for (const id of ids) {
    const found = await findSnapshot(repo, id, f);
    if (matchesFilter(found.snapshot, f)) out.set(found.id, found);
  }
  return [...out.values()];
}

export function register(program: Command): void {
  withFilterOptions(program.command('tag'))
    .description('add, remove or set the tags of snapshots (all that match the filters, or those named)')
    .argument('[snapshot-id...]', 'only these snapshots (id prefixes, or "latest")')
    .option('--add <tag[,tag]>', 'add these tags (repeatable)', collect)
    .option('--remove <tag[,tag]>', 'remove these tags (repeatable)', collect)
    .option('--set <tag[,tag]>', 'replace the tags with these ("" for none; repeatable)', collect)
    .action(async (ids: string[], f: TagFlags, cmd: Command) => {
      const g = globals(cmd);
      if (!f.add && !f.remove && !f.set) throw new ExitError('nothing to do: give --add, --remove or --set', EXIT.usage);
      if (f.set && (f.add || f.remove)) throw new ExitError('--set replaces the tags: give it alone, not with --add or --remove', EXIT.usage);
      const repo = await openRepo(g);
      refuseIfAppendOnly(repo.backend, 'tag (it replaces snapshot objects)');
      const lock = await acquireLock(repo.backend, { ...lockedByMe(), exclusive: false, operation: 'tag' });
      let modified = 0;
      const writer = repo.newWriter();
      try {
        for (const { id, snapshot } of await chosen(repo, ids, f)) {
          const tags = changed(snapshot.tags, f);
          if (tags.length === snapshot.tags.length && tags.every((t, i) => t === snapshot.tags[i])) continue;
          const newId = await writer.saveSnapshot({ ...snapshot, tags });
          await repo.backend.remove({ type: 'snapshot', name: id });
          say(g, `snapshot ${id.slice(0, 8)} is now ${newId.slice(0, 8)}, tags: ${tags.join(',') || '(none)'}`);
          modified++;
        }
      } finally {
        await lock.release();
      }
      say(g, modified === 0 ? 'no snapshots were modified' : `modified ${plural(modified, 'snapshot')}`);
    });
}

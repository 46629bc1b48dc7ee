/** `holdfast snapshots`: lists snapshots. */
import type { Command } from 'commander';
import { localTime } from '../core/local-time.js';
import { globals, openRepo, say } from './context.js';
import { matches, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

export function register(program: Command): void {
  withFilterOptions(program.command('snapshots').description('list snapshots'))
    .action(async (f: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g, { index: false });
      const list = (await repo.listSnapshots()).filter((s) => matches(s.snapshot, f));
      if (g.json) {
        process.stdout.write(`${JSON.stringify(list.map(({ id, snapshot: s }) => ({
          id,
          short_id: id.slice(0, 8),
          time: s.time,
          hostname: s.hostname,
          username: s.username,
          paths: s.paths,
          tags: s.tags,
          ...(s.parent ? { parent: s.parent } : {}),
          tree: s.tree,
          incomplete: s.incomplete === true,
          summary: s.summary,
        })), null, 2)}\n`);
        return;
      }
      say(g, `${'ID'.padEnd(10)}${'Time'.padEnd(21)}${'Host'.padEnd(16)}${'Tags'.padEnd(16)}Paths`);
      for (const { id, snapshot: s } of list) {
        const local = localTime(Date.parse(s.time));
        const mark = s.incomplete ? ' (incomplete)' : '';
        say(g, `${id.slice(0, 8).padEnd(10)}${local.padEnd(21)}${s.hostname.padEnd(16)}${s.tags.join(',').padEnd(16)}${s.paths.join(' ')}${mark}`);
      }
      say(g, `${list.length} snapshot${list.length === 1 ? '' : 's'}`);
    });
}

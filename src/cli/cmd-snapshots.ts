/** `holdfast snapshots`: lists snapshots. */
import type { Command } from 'commander';
import { localTime } from '../core/local-time.js';
import type { Snapshot } from '../repo/snapshot.js';
import { globals, openRepo, plural, say, snapshotsOf } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { matchesFilter, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { summaryJson } from '../jobs/snapshots/summary-json.js';

export function register(program: Command): void {
  withFilterOptions(program.command('snapshots').description('list snapshots'))
    .option('--latest <n>', 'only the newest n snapshots of each host and paths', positiveCount)
    .action(async (f: SnapshotFilter & { latest?: number }, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g, { index: false });
      const matching = (await snapshotsOf(repo)).filter((s) => matchesFilter(s.snapshot, f));
      const list = f.latest === undefined ? matching : newestOfEach(matching, f.latest);
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
          summary: summaryJson(s.summary),
        })), null, 2)}\n`);
        return;
      }
      say(g, `${'ID'.padEnd(10)}${'Time'.padEnd(21)}${'Host'.padEnd(16)}${'Tags'.padEnd(16)}Paths`);
      for (const { id, snapshot: s } of list) {
        const local = localTime(Date.parse(s.time));
        const mark = s.incomplete ? ' (incomplete)' : '';
        say(g, `${id.slice(0, 8).padEnd(10)}${local.padEnd(21)}${s.hostname.padEnd(16)}${s.tags.join(',').padEnd(16)}${s.paths.join(' ')}${mark}`);
      }
      say(g, plural(list.length, 'snapshot'));
    });
}

/** A count of at least 1 (commander parser). */
function positiveCount(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new ExitError(`--latest "${text}": give a whole number of 1 or more`, EXIT.usage);
  return n;
}

/** The newest `n` of each host and paths (restic's --latest), oldest first as listed. */
function newestOfEach<T extends { snapshot: Snapshot }>(list: readonly T[], n: number): T[] {
  const seen = new Map<string, number>();
  const keep = new Set<T>();
  for (let i = list.length - 1; i >= 0; i--) {
    const s = list[i]!;
    const key = JSON.stringify([s.snapshot.hostname, s.snapshot.paths]);
    const count = seen.get(key) ?? 0;
    if (count < n) keep.add(s);
    seen.set(key, count + 1);
  }
  return list.filter((s) => keep.has(s));
}

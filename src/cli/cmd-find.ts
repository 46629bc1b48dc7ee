/**
 * `holdfast find PATTERN...`: the files and folders whose name matches a
 * pattern, in every snapshot (restic's `find`). A pattern is a glob on the
 * name; one with a "/" is matched against the path, from the root when it
 * starts with "/", else at any depth. Output as
 * restic's: per snapshot a "Found matching entries in snapshot …" line and
 * the paths (`-l` as `ls -l`), or with --json one object per snapshot with
 * its matches.
 */
import type { Command } from 'commander';
import { Minimatch } from 'minimatch';
import { isoFromNanos, localTime } from '../core/local-time.js';
import { LineBatch } from '../jobs/line-batch.js';
import { writeOut } from '../jobs/tar-stream-writer.js';
import { walkTree } from '../jobs/tree-walk.js';
import type { TreeNode } from '../repo/tree.js';
import { longLine } from './cmd-ls.js';
import { collect, globals, openRepo, warn, snapshotsOf } from './context.js';
import { findSnapshot, matchesFilter, withFilterOptions, type FoundSnapshot, type SnapshotFilter } from './snapshot-filter.js';
import { printable } from './printable.js';

interface FindFlags extends SnapshotFilter {
  snapshot?: string[];
  ignoreCase?: boolean;
  long?: boolean;
}

export function register(program: Command): void {
  withFilterOptions(program.command('find'))
    .description('find files and folders whose name matches a pattern, in every snapshot')
    .argument('<pattern...>', 'glob on the name ("*.conf"); with a "/", on the path ("etc/*.conf" at any depth, "/etc/*.conf" from the root)')
    .option('-s, --snapshot <id>', 'only this snapshot (repeatable; "latest" too)', collect)
    .option('-i, --ignore-case', 'ignore case in the patterns')
    .option('-l, --long', 'show mode, owner, size and time')
    .action(async (patterns: string[], f: FindFlags, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      // A relative pattern with a "/" matches at any depth, as restic's filter does.
      const globs = patterns.map((p) => ({ onPath: p.includes('/'), m: new Minimatch(p.includes('/') && !p.startsWith('/') ? `**/${p}` : p, { dot: true, nocase: f.ignoreCase === true }) }));
      const hit = (path: string, name: string): boolean => globs.some((x) => x.m.match(x.onPath ? path : name));
      // With patterns on the name only, whether anything below a folder matches depends on its tree alone: a tree
      // found without matches is not walked again. Folders may list one tree many times (identical folders share
      // it), and 40 levels of two such folders are 2^40 paths to walk.
      const byName = globs.every((x) => !x.onPath);
      const snaps: FoundSnapshot[] = f.snapshot
        ? await Promise.all(f.snapshot.map((id) => findSnapshot(repo, id, f)))
        : (await snapshotsOf(repo)).filter((s) => matchesFilter(s.snapshot, f));
      const out = new LineBatch((t) => writeOut(process.stdout, t));
      if (g.json) await out.push('[');
      let first = true;
      for (const { id, snapshot } of snaps) {
        const found: { path: string; node: TreeNode }[] = [];
        const consider = (path: Buffer, node: TreeNode): void => {
          const p = path.toString();
          if (hit(p, node.name.toString())) found.push({ path: p, node });
        };
        const noMatch = new Set<string>();
        /** For each folder being walked, how many matches there were when it was entered. */
        const entered: number[] = [];
        for await (const { path, node } of walkTree(repo, snapshot.tree, {
          onUnsafe: (p, why) => warn(`${p}: unsafe name in snapshot ${id.slice(0, 8)} (${why})`),
          filter: (path, node) => {
            if (!(byName && node.subtree !== undefined && noMatch.has(node.subtree))) return true;
            consider(path, node); // the folder's own name still counts
            return false;
          },
          onDirDone: ({ node }) => {
            if (entered.pop() === found.length && node.subtree !== undefined) noMatch.add(node.subtree);
          },
        })) {
          consider(path, node);
          if (node.type === 'dir' && node.subtree !== undefined) entered.push(found.length);
        }
        if (found.length === 0) continue;
        if (g.json) {
          await out.push(`${first ? '' : ','}${JSON.stringify({
            matches: found.map(({ path, node: n }) => ({
              path, type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, user: n.user, group: n.group, size: n.size, mtime: isoFromNanos(n.mtime),
              ...(n.target ? { target: n.target.toString() } : {}),
            })),
            hits: found.length,
            snapshot: id,
          })}`);
          first = false;
          continue;
        }
        await out.push(`Found matching entries in snapshot ${id.slice(0, 8)} from ${localTime(Date.parse(snapshot.time))}\n`);
        for (const { path, node } of found) await out.push(f.long ? longLine(path, node) : `${printable(path)}\n`);
        await out.push('\n');
      }
      if (g.json) await out.push(']\n');
      await out.flush();
    });
}

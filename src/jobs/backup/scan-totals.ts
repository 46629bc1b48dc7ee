/**
 * The count of what a file backup will take, made beside it for the
 * progress figures: the files and bytes below the paths, by the walk's own
 * rules (excludes.ts, --one-file-system), from lstat alone. It runs only
 * when someone sees the progress; until it is done, the figures lean on the
 * parent snapshot's size (src/cli/progress.ts).
 */
import { promises as fsp } from 'node:fs';
import { childPath, toEntryStat } from '../../sources/file-tree.js';
import type { ExcludeRules } from './excludes.js';

/** The count so far; `done` once it is complete. */
export interface ScanTotals {
  files: number;
  bytes: number;
  done: boolean;
}

/** Fills `totals` as the count goes and sets `done` at the end; errors are left to the walk to report. */
export async function scanTotals(paths: readonly string[], rules: ExcludeRules | undefined, oneFileSystem: boolean, totals: ScanTotals, signal?: AbortSignal): Promise<void> {
  const devices = new Set<bigint>();
  const visit = async (path: Buffer, root: boolean): Promise<void> => {
    if (signal?.aborted || rules?.excludesPath(path)) return;
    let st;
    try {
      st = toEntryStat(await fsp.lstat(path, { bigint: true }));
    } catch {
      return;
    }
    if (root) devices.add(st.device);
    if (rules?.excludesSize(st.type, st.size)) return;
    if (st.type === 'file') {
      totals.files++;
      totals.bytes += st.size;
    } else if (st.type === 'dir' && (!oneFileSystem || devices.has(st.device))) {
      let names: Buffer[];
      try {
        names = await fsp.readdir(path, { encoding: 'buffer' });
      } catch {
        return;
      }
      const kept = rules?.keptIn(path, names.length, (i) => names[i]!);
      for (const n of names) if (kept === undefined || kept(n)) await visit(childPath(path, n), false);
    }
  };
  for (const p of paths) await visit(Buffer.from(p), true);
  totals.done = true;
}

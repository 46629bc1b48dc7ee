/**
 * `holdfast repair index` (rebuild the index from the packs, no password) and
 * `holdfast repair snapshots --forget-damaged | --mark-damaged` (decide what
 * happens to snapshots that reference lost data; never a silent zero-fill).
 */
import type { Command } from 'commander';
import { rebuildIndex } from '../jobs/repair/index-rebuilder.js';
import { repairSnapshots } from '../jobs/repair/snapshot-repairer.js';
import { globals, refuseIfAppendOnly, say, warn } from './context.js';
import { printJson } from './json-output.js';
import { ExitError, EXIT } from './exit-codes.js';
import { holdLock, openMaintenance, passwordGiven } from './maintenance.js';
import { dataSelection, print as printCheck } from './cmd-check.js';

interface SnapshotFlags {
  forgetDamaged?: boolean;
  markDamaged?: boolean;
  readData?: boolean;
  readDataSubset?: string;
  dryRun?: boolean;
}

export function register(program: Command): void {
  const repair = program.command('repair').description('repair the index, or snapshots that reference lost data');

  repair
    .command('index')
    .description('rebuild the index from the pack headers (needs no password)')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const { plain, stop } = await openMaintenance(g, false);
      const held = await holdLock(plain, 'repair', { exclusive: true, stop });
      try {
        const r = await rebuildIndex(plain, { onWarning: (m) => warn(m), beforeDelete: () => held.lock.refresh(), signal: held.signal });
        if (g.json) {
          printJson(r);
          return;
        }
        say(g, `indexed ${r.blobs} blobs in ${r.packs} packs${r.index ? ` (index ${r.index.slice(0, 8)})` : ''}; removed ${r.indexFilesRemoved} old index files`);
        if (r.indexFilesKept > 0) say(g, `kept ${r.indexFilesKept} old index files: the repository is append-only (they are superseded; readers merge them harmlessly)`);
        if (r.unreadable.length > 0) {
          process.exitCode = EXIT.failed;
          say(g, `${r.unreadable.length} pack(s) have an unreadable header; run "holdfast check --read-data" to see what they affect`);
        }
      } catch (e) {
        throw held.signal.aborted ? held.signal.reason : e;
      } finally {
        await held.release();
      }
    });

  repair
    .command('snapshots')
    .description('remove (--forget-damaged) or rewrite with the damaged files marked (--mark-damaged) every snapshot that references lost data')
    .option('--forget-damaged', 'remove the snapshots that reference lost data (no password needed)')
    .option('--mark-damaged', 'keep them, with the damaged files and folders marked: restore reports them instead of restoring them (needs the password)')
    .option('--read-data', 'also read every pack to find damaged blobs')
    .option('--read-data-subset <subset>', 'also read part of the packs (n/t, x%, SIZE)')
    .option('-n, --dry-run', 'report what would be done; change nothing')
    .action(async (f: SnapshotFlags, cmd: Command) => {
      const g = globals(cmd);
      if (f.forgetDamaged === f.markDamaged) throw new ExitError('choose what to do with damaged snapshots: --forget-damaged or --mark-damaged', EXIT.usage);
      const mode = f.markDamaged ? 'mark' : 'forget';
      if (mode === 'mark' && !passwordGiven(g)) throw new ExitError('--mark-damaged needs the password (file names are encrypted): give it with HOLDFAST_PASSWORD, --password-file or --password-command', EXIT.usage);
      const readData = dataSelection(f);
      const { plain, keyed, stop } = await openMaintenance(g, true);
      if (!f.dryRun) refuseIfAppendOnly(plain.backend, 'repair snapshots');
      const held = await holdLock(plain, 'repair', { exclusive: true, stop });
      try {
        const r = await repairSnapshots(plain, {
          mode,
          ...(readData ? { readData } : {}),
          ...(keyed ? { keyed } : {}),
          dryRun: f.dryRun === true,
          beforeDelete: () => held.lock.refresh(),
          onWarning: (m) => warn(m),
          signal: held.signal,
        });
        if (g.json) {
          printJson({ removed: r.removed, rewritten: r.rewritten, skipped: r.skipped, salvagedBlobs: r.salvagedBlobs, marker: r.marker, removedPacks: r.removedPacks, check: r.check });
          return;
        }
        printCheck({ ...g, quiet: true }, r.check);
        const would = f.dryRun ? 'would ' : '';
        for (const x of r.removed) say(g, `${would}remove snapshot ${x.id.slice(0, 8)}: ${x.reason}`);
        for (const x of r.rewritten) {
          say(g, `${would}replace snapshot ${x.from.slice(0, 8)}${x.to ? ` by ${x.to.slice(0, 8)}` : ''}: ${x.files.length} damaged file(s), ${x.dirs.length} damaged folder(s) marked`);
          for (const p of x.dirs) say(g, `  folder ${p}`);
          for (const p of x.files) say(g, `  file ${p}`);
        }
        for (const x of r.skipped) warn(`snapshot ${x.id.slice(0, 8)} left as it is: ${x.reason}`);
        if (r.marker) say(g, `copied ${r.salvagedBlobs} intact blob(s) out of damaged packs; the damaged packs are marked for deletion (the next prune after the grace period removes them)`);
        if (r.removedPacks.length > 0) {
          say(g, `removed ${r.removedPacks.length} pack(s) whose bytes match their names but hold blobs that fail authentication (planted, or written by a faulty client); the blobs in them that authenticate were copied first`);
        }
        if (r.removed.length + r.rewritten.length + r.skipped.length === 0) say(g, 'no snapshot references lost data');
        if (r.skipped.length > 0) process.exitCode = EXIT.failed;
      } catch (e) {
        throw held.signal.aborted ? held.signal.reason : e;
      } finally {
        await held.release();
      }
    });
}

/**
 * `holdfast prune [--dry-run] [--max-unused PCT] [--grace DURATION]`:
 * garbage collection, in two phases with a grace period, without the key
 * (src/jobs/prune/pruner.ts; docs/format.md §15). When a password is given,
 * it first checks every snapshot's MAC, and refuses while one fails it.
 */
import type { Command } from 'commander';
import { DEFAULT_GRACE_MS, formatDurationMs, parseDuration } from '../repo/deletion-marker.js';
import { minGraceMs } from './environment.js';
import { Pruner, type PruneReport } from '../jobs/prune/pruner.js';
import { ForgedObjectError } from '../repo/errors.js';
import { plural, formatBytes, globals, openRepo, refuseIfAppendOnly, say, warn, type GlobalOptions } from './context.js';
import { printJson } from './json-output.js';
import { localIso } from '../core/local-time.js';
import { ExitError, EXIT } from './exit-codes.js';
import { holdLock, openMaintenance, passwordGiven } from './maintenance.js';

/** The options of `prune`, as commander gives them. */
export interface PruneFlags {
  dryRun?: boolean;
  /** Percentage, default 50. */
  maxUnused?: string;
  /** Duration, default one hour. */
  grace?: string;
}

/** A --grace duration in ms (the default when undefined); shorter than the minimum is a usage error. */
export function parseGrace(s: string | undefined): number {
  if (s === undefined) return Math.max(DEFAULT_GRACE_MS, minGraceMs());
  let ms: number;
  try {
    ms = parseDuration(s);
  } catch (e) {
    throw new ExitError(`--grace: ${(e as Error).message}`, EXIT.usage);
  }
  if (ms < minGraceMs()) {
    throw new ExitError(`--grace ${s} is shorter than the minimum of ${formatDurationMs(minGraceMs())}: a backup running alongside relies on it `
      + '(docs/format.md, "Garbage collection")', EXIT.usage);
  }
  return ms;
}

function parsePercent(s: string): number {
  const v = Number(s.replace(/%$/, ''));
  if (!(v >= 0 && v <= 100)) throw new ExitError(`--max-unused ${s}: give a percentage from 0 to 100`, EXIT.usage);
  return v / 100;
}

export function register(program: Command): void {
  program
    .command('prune')
    .description('remove data no snapshot references (two phases: mark now, delete what was marked at least a grace period ago); needs no password')
    .option('-n, --dry-run', 'report what would be marked and deleted; change nothing')
    .option('--max-unused <percent>', 'repack packs with more than this share of unused bytes', '50')
    .option('--grace <duration>', `how long marked packs stay before a later prune deletes them (default ${formatDurationMs(DEFAULT_GRACE_MS)})`)
    .action(async (f: PruneFlags, cmd: Command) => {
      await runPrune(globals(cmd), f);
    });
}

/**
 * Runs a prune for the command line (also for `forget --prune`): opens the
 * repository without the key, takes a shared lock (and backs off if another
 * prune runs), prints the report.
 */
export async function runPrune(g: GlobalOptions, f: PruneFlags): Promise<PruneReport> {
  const graceMs = parseGrace(f.grace);
  const maxUnused = parsePercent(f.maxUnused ?? '50');
  const { plain, stop } = await openMaintenance(g, false);
  if (!f.dryRun) refuseIfAppendOnly(plain.backend, 'prune');
  if (passwordGiven(g)) await refuseForgedSnapshots(g);
  const held = await holdLock(plain, 'prune', { alone: true, stop });
  let report: PruneReport;
  try {
    report = await new Pruner(plain, {
      dryRun: f.dryRun === true,
      maxUnused,
      graceMs,
      minGraceMs: minGraceMs(),
      otherLocks: () => held.otherLocks(),
      beforeDelete: () => held.lock.refresh(),
      onWarning: (m) => warn(m),
      signal: held.signal,
    }).run();
  } catch (e) {
    throw held.signal.aborted ? held.signal.reason : e;
  } finally {
    await held.release();
  }
  print(g, report, graceMs);
  return report;
}

/**
 * With a password, prune trusts no plain blob list it can authenticate and
 * finds forged: a snapshot changed in storage may have had ids dropped, and
 * pruning by its list would delete data a real snapshot needs (docs/format.md §11).
 */
async function refuseForgedSnapshots(g: GlobalOptions): Promise<void> {
  const { damaged } = await (await openRepo(g, { index: false })).listSnapshots();
  const forged = [...damaged].filter(([, e]) => e instanceof ForgedObjectError).map(([id]) => id);
  if (forged.length > 0) {
    throw new ExitError(`refusing to prune: ${forged.length} snapshot(s) fail their MAC (first: ${forged[0]}): changed or planted in storage, `
      + 'their blob lists cannot say what to keep. "holdfast check" with the password names them; remove them with "holdfast forget ID" (docs/format.md §11)', EXIT.failed);
  }
}

function print(g: GlobalOptions, r: PruneReport, graceMs: number): void {
  if (g.json) {
    printJson({ ...r, graceSeconds: graceMs / 1000 });
    return;
  }
  say(g, `repository: ${plural(r.snapshots, 'snapshot')}, ${plural(r.packs, 'pack')}, ${formatBytes(r.packBytes)}${r.dryRun ? ' (dry run: nothing is changed)' : ''}`);
  const s = r.sweep;
  if (s.markersSwept > 0) {
    say(g, `${r.dryRun ? 'would delete now' : 'deleted now'}: ${plural(s.packsDeleted, 'pack')} (${formatBytes(s.bytesFreed)}) and ${plural(s.indexFilesDeleted, 'index file')} marked at least ${formatDurationMs(graceMs)} ago`);
    if (s.blobsRescued > 0) say(g, `  ${r.dryRun ? 'would first copy' : 'first copied'} ${plural(s.blobsRescued, 'blob')} (${formatBytes(s.bytesRescued)}) that snapshots written since still reference`);
  }
  // In the order they become deletable, not the listing's (by name).
  const waiting = [...s.markersWaiting].sort((a, b) => Date.parse(a.dueAt) - Date.parse(b.dueAt));
  for (const w of waiting) say(g, `waiting: marker ${w.marker.slice(0, 8)} becomes deletable at ${localIso(w.dueAt)} (${w.reason})`);
  const m = r.mark;
  if (m.unusedPacks + m.repackedPacks === 0) {
    say(g, 'marked now: nothing (no unused packs' + (m.damagedPacks.length ? '; damaged packs left alone' : '') + ')');
  } else {
    say(g, `${r.dryRun ? 'would mark now' : 'marked now'}: ${plural(m.unusedPacks, 'unused pack')} (${formatBytes(m.unusedBytes)}) and ${plural(m.repackedPacks, 'mostly unused pack')} (${formatBytes(m.repackedBytes)}) for deletion`);
    if (m.blobsCopied > 0) say(g, `  ${r.dryRun ? 'would copy' : 'copied'} their ${plural(m.blobsCopied, 'live blob')} (${formatBytes(m.bytesCopied)}) into ${r.dryRun ? 'new packs' : plural(m.packsWritten, 'new pack')}`);
    const after = m.deletableAt ? localIso(m.deletableAt) : `the grace period of ${formatDurationMs(graceMs)}`;
    const usual = parseGrace(undefined);
    // The prune that deletes counts its own grace from the marker's time: a plain one waits the default.
    say(g, graceMs === usual
      ? `  this frees ${formatBytes(m.bytesToFree)} when a prune runs after ${after}`
      : `  this frees ${formatBytes(m.bytesToFree)} when a prune with --grace ${formatDurationMs(graceMs)} runs after ${after}; a prune without --grace waits ${formatDurationMs(usual)} from now`);
  }
  if (m.orphansAdopted > 0) say(g, `indexed ${m.orphansAdopted} packs left by interrupted backups`);
}

/**
 * `holdfast copy --from-repo SRC [--host H] [--path P] [--tag T] [SNAP...]`:
 * copies snapshots from another repository that shares this one's master key
 * (made with `init --copy-from`) into the repository of -r/--repo, without a
 * password (src/jobs/copy/snapshot-copier.ts; docs/format.md §19).
 */
import type { Command } from 'commander';
import { CopyRefusedError, SnapshotCopier, type CopyProgress, type CopyReport } from '../jobs/copy/snapshot-copier.js';
import { acquireLock, LockedError, type RepositoryLock } from '../repo/lock.js';
import type { Loaded, Store, StoredSnapshot } from '../repo/store.js';
import { formatBytes, globals, lockedByMe, openKeyless, openSourceStore, plural, say, warn, type GlobalOptions } from './context.js';
import { printJson } from './json-output.js';
import { localIso } from '../core/local-time.js';
import { ExitError, EXIT } from './exit-codes.js';
import { holdLock } from './maintenance.js';
import { Progress, type Totals } from './progress.js';
import { minGraceMs } from './environment.js';
import { matchesFilter, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

interface CopyFlags extends SnapshotFilter {
  fromRepo?: string;
}

export function register(program: Command): void {
  withFilterOptions(program
    .command('copy')
    .description('copy snapshots from another repository that shares this one\'s key (made with "init --copy-from"), only the data this one lacks; needs no password')
    .argument('[snapshot...]', 'snapshot ids (or unique prefixes) or "latest"; default: every snapshot the filters match')
    .option('--from-repo <location>', 'the repository to copy from (or HOLDFAST_FROM_REPOSITORY)'))
    .action(async (snaps: string[], f: CopyFlags, cmd: Command) => {
      await runCopy(globals(cmd), f, snaps);
    });
}

/** The snapshots of the source (`loaded`, read once: the copy takes their bytes from it) that `args` and the filter choose (full ids). */
function chooseSnapshots(loaded: Loaded<StoredSnapshot>, args: readonly string[], f: SnapshotFilter): string[] {
  const { ok, damaged } = loaded;
  const byTime = [...ok].filter(([, s]) => matchesFilter(s.snapshot, f)).sort(([, a], [, b]) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time));
  if (args.length === 0) {
    for (const [id, e] of damaged) warn(`skipping snapshot ${id} of the source: ${e.message}`);
    return byTime.map(([id]) => id);
  }
  const out: string[] = [];
  for (const arg of args) {
    if (arg === 'latest') {
      const last = byTime[byTime.length - 1];
      if (!last) throw new ExitError('no snapshot of the source matches', EXIT.failed);
      out.push(last[0]);
      continue;
    }
    if (!/^[0-9a-f]{1,64}$/.test(arg)) throw new ExitError(`"${arg}" is neither "latest" nor a snapshot id`, EXIT.usage);
    const ids = [...ok.keys(), ...damaged.keys()].filter((id) => id.startsWith(arg));
    if (ids.length === 0) throw new ExitError(`no snapshot with id ${arg} in the source`, EXIT.failed);
    if (ids.length > 1) throw new ExitError(`snapshot id prefix ${arg} is ambiguous in the source (${ids.length} snapshots)`, EXIT.failed);
    out.push(ids[0]!);
  }
  return out;
}

/**
 * A shared lock on the source, so that a prune there keeps the packs being
 * read; storage that takes none (a read-only medium) only gets a warning.
 */
async function lockSource(src: Store): Promise<RepositoryLock | undefined> {
  try {
    return await acquireLock(src.backend, { ...lockedByMe(), exclusive: false, operation: 'copy', onLost: (e) => warn(`${e.message} (the source); a prune there may remove packs being read`) });
  } catch (e) {
    if (e instanceof LockedError) throw e;
    warn(`could not take a lock on the source (${(e as Error).message}); copying without one`);
    return undefined;
  }
}

/** Runs a copy for the command line and prints what it did. */
async function runCopy(g: GlobalOptions, f: CopyFlags, args: readonly string[]): Promise<void> {
  const from = f.fromRepo ?? process.env['HOLDFAST_FROM_REPOSITORY'];
  if (!from) throw new ExitError('no repository to copy from: use --from-repo or HOLDFAST_FROM_REPOSITORY', EXIT.usage);
  // Ctrl-C and a lost lock (the held lock's signal) end the backends' waits too: a
  // --limit-upload wait for one pack lasts minutes, and the job's own checks come between packs.
  const stop = new AbortController();
  const dst = await openKeyless(g, stop.signal);
  const src = await openSourceStore(from, g, stop.signal);
  const source = await src.loadStoredSnapshots();
  const ids = chooseSnapshots(source, args, f);
  const held = await holdLock(dst, 'copy', { stop });
  const sourceLock = await lockSource(src).catch(async (e: unknown) => {
    await held.release();
    throw e;
  });
  let report: CopyReport;
  // A bar on a terminal; with --json, stdout holds only the report.
  const totals: Totals = { files: 0, bytes: 0, done: true };
  const progress = new Progress({ ...g, json: false }, totals, { unit: 'packs' });
  const onProgress = (p: CopyProgress): void => {
    totals.files = p.packsTotal;
    totals.bytes = p.bytesTotal;
    progress.update({ files: p.packsDone, bytes: p.bytesCopied });
  };
  try {
    report = await new SnapshotCopier(src, dst, { signal: held.signal, onWarning: warn, onProgress, minGraceMs: minGraceMs() }).run(ids, source);
  } catch (e) {
    if (e instanceof CopyRefusedError) throw new ExitError(`refusing to copy: ${e.message}`, EXIT.failed);
    throw held.signal.aborted ? held.signal.reason : e;
  } finally {
    progress.stop();
    await sourceLock?.release();
    await held.release();
  }
  print(g, report, source.ok);
  if (report.failed.length > 0) {
    throw new ExitError(`${report.failed.length} snapshot(s) were not copied; the destination is consistent, and what was copied stays`, EXIT.failed);
  }
}

function print(g: GlobalOptions, r: CopyReport, snapshots: ReadonlyMap<string, StoredSnapshot>): void {
  for (const { id, reason } of r.failed) warn(`snapshot ${id} not copied: ${reason}`);
  if (g.json) {
    printJson(r);
    return;
  }
  for (const id of r.copied) {
    const s = snapshots.get(id)?.snapshot;
    say(g, `copied snapshot ${id.slice(0, 8)}${s ? ` of ${s.hostname} at ${localIso(s.time)} (${s.paths.join(', ')})` : ''}`);
  }
  if (r.orphansIndexed > 0) say(g, `indexed ${r.orphansIndexed} packs an interrupted run had left in the destination`);
  const present = r.present.length === 1 ? '1 snapshot was' : `${r.present.length} snapshots were`;
  say(g, `copied ${plural(r.copied.length, 'snapshot')}: ${plural(r.blobsCopied, 'blob')} (${formatBytes(r.bytesCopied)}) from ${plural(r.packsRead, 'pack')} into ${plural(r.packsWritten, 'new pack')}`
    + (r.present.length > 0 ? `; ${present} in the destination already` : ''));
}

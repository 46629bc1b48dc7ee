/** `holdfast restore SNAP --target DIR`: restores files. */
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { collect, fileInTheWay, formatBytes, globals, openRepo, plural, processPool, say, verboseItem, warn } from './context.js';
import { localIso } from '../core/local-time.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';
import { Progress, type Figures, type ProgressState } from './progress.js';
import { findSnapshot, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { isImageSnapshot, openImageFiles, restorerFor } from '../jobs/image-files/open-image-files.js';
import { OVERWRITE_CHOICES, type Overwrite } from '../jobs/restore/overwrite.js';
import { Excludes } from '../jobs/backup/excludes.js';
import { MAX_FAILED_LISTED, type RestoreProgress } from '../jobs/restore/restorer.js';
import { BLOB_WORKER } from '../jobs/pool/worker-pool.js';
import { printable } from './printable.js';

interface RestoreFlags extends SnapshotFilter {
  target?: string;
  include?: string[];
  verify?: boolean;
  overwrite: Overwrite;
  exclude?: string[];
  iexclude?: string[];
}

/** A restore's progress as the bar and its fraction count it: files and bytes restored or left as they are. */
interface RestoreStatus extends ProgressState {
  readonly restore: RestoreProgress;
}

const status = (p: RestoreProgress): RestoreStatus => ({ files: p.files + p.filesSkipped, bytes: p.bytes + p.bytesSkipped, errors: p.errors, current: p.current, restore: p });

/** The figures a restore's status lines and its summary share, restic's restore names. */
function restoreFigures(p: RestoreProgress, totalFiles: number | undefined, totalBytes: number | undefined): Record<string, unknown> {
  return {
    total_files: totalFiles, files_restored: p.files, files_skipped: p.filesSkipped,
    total_bytes: totalBytes, bytes_restored: p.bytes, bytes_skipped: p.bytesSkipped, error_count: p.errors,
  };
}

const restoreStatus = (s: RestoreStatus, f: Figures): Record<string, unknown> => ({ percent_done: f.fraction, ...restoreFigures(s.restore, f.totalFiles, f.totalBytes) });

export function register(program: Command): void {
  withFilterOptions(program.command('restore'))
    .description('restore a snapshot below a target folder (TARGET + the original absolute paths)')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .requiredOption('-t, --target <dir>', 'folder to restore into')
    .option('-i, --include <path>', 'restore only this path of the snapshot (repeatable)', collect)
    .option('-e, --exclude <pattern>', 'leave out paths matching a pattern, as backup --exclude (repeatable)', collect)
    .option('--iexclude <pattern>', 'like --exclude, ignoring case (repeatable)', collect)
    .option('--verify', 'read the restored files back and check them against the snapshot')
    .addOption(new Option('--overwrite <when>', 'files already in the target: replace them (always), keep those with the snapshot\'s size and mtime (if-changed), or leave them alone (never)')
      .choices(OVERWRITE_CHOICES).default('always'))
    .action(async (snap: string, flags: RestoreFlags, cmd: Command) => {
      const g = globals(cmd);
      // Refused before anything is said or made: mkdir would fail later with a raw EEXIST or ENOTDIR.
      const inTheWay = await fileInTheWay(resolve(flags.target!));
      if (inTheWay !== undefined) {
        throw new ExitError(`cannot restore to ${flags.target}: ${inTheWay === resolve(flags.target!) ? 'it' : inTheWay} exists and is not a folder; nothing was restored`, EXIT.failed);
      }
      processPool().warm(BLOB_WORKER); // the blob workers boot while the key is derived
      const repo = await openRepo(g);
      const { id, snapshot } = await findSnapshot(repo, snap, flags);
      // Image snapshots: files are read out of the image's filesystems (src/jobs/image-files).
      const image = isImageSnapshot(snapshot) ? await openImageFiles(repo, snapshot, id, warn) : undefined;
      if (!g.json) say(g, `restoring snapshot ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} at ${localIso(snapshot.time)} to ${flags.target}`);
      const abort = new AbortController();
      const onInterrupted = (): void => abort.abort(new ExitError('interrupted: the restore is NOT complete', EXIT.interrupted));
      const offInterrupt = onInterrupt(onInterrupted);
      const started = Date.now();
      // Until the walk has seen everything, a whole restore is estimated by the snapshot's own counts.
      const s = snapshot.summary;
      const excludes = new Excludes(flags.exclude ?? [], flags.iexclude ?? []);
      const whole = !image && (flags.include ?? []).length === 0 && excludes.patterns.length + excludes.insensitive.length === 0;
      const totals = { files: whole ? s.filesNew + s.filesChanged + s.filesUnchanged : 0, bytes: whole ? s.totalBytes : 0, done: whole };
      const progress = new Progress<RestoreStatus>(g, totals, { fields: restoreStatus });
      let result;
      try {
        result = await restorerFor(image, repo, flags.target!, {
          includes: flags.include ?? [],
          excludes,
          verify: flags.verify === true,
          overwrite: flags.overwrite,
          signal: abort.signal,
          pool: processPool(),
          privileged: process.getuid?.() === 0,
          onWarning: (path, message) => {
            progress.stop();
            warn(`${path}: ${message}`);
          },
          onProgress: (p) => {
            if (p.walked || p.totalFiles > totals.files || p.totalBytes > totals.bytes) {
              totals.files = p.totalFiles;
              totals.bytes = p.totalBytes;
              totals.done = p.walked;
            }
            progress.update(status(p));
          },
          onRestored: (path) => verboseItem(g, 'restored', path),
          onUnchanged: (path) => verboseItem(g, 'unchanged', path),
        }).run(snapshot.tree);
        // The last status line says what the summary says.
        Object.assign(totals, { files: result.progress.totalFiles, bytes: result.progress.totalBytes, done: true });
        progress.update(status(result.progress), true);
      } finally {
        progress.stop();
        offInterrupt();
      }
      const p = result.progress;
      if (g.json) {
        // With --quiet too: restic drops the status lines, not the summary.
        process.stdout.write(`${JSON.stringify({
          message_type: 'summary', seconds_elapsed: Math.round((Date.now() - started) / 1000),
          ...restoreFigures(p, p.totalFiles, p.totalBytes), dirs_restored: p.dirs,
          ...(flags.verify ? { files_verified: result.verified, verify_failed: result.verifyFailed.length } : {}),
        })}\n`);
      } else {
        say(g, `restored ${plural(p.files, 'file')}, ${plural(p.dirs, 'folder')}, ${formatBytes(p.bytes)}${p.filesSkipped > 0 ? `; ${plural(p.filesSkipped, 'file')} (${formatBytes(p.bytesSkipped)}) already there were left as they are` : ''}`);
      }
      if (flags.verify && !g.json) {
        if (result.verifyFailed.length > 0) say(g, `VERIFY FAILED for ${result.verifyFailed.length} file(s)`);
        else if (p.errors > 0) say(g, `verified ${plural(result.verified, 'file')}; ${plural(p.errors, 'path')} not restored`);
        else say(g, `verified ${plural(result.verified, 'file')}: all match the snapshot`);
      }
      const count = p.errors + result.verifyFailed.length;
      if (count > 0) {
        const listed = [...result.failed, ...result.verifyFailed].slice(0, MAX_FAILED_LISTED);
        const lines = listed.map((f) => `  ${printable(`${f.path}: ${f.error}`)}`);
        if (count > listed.length) lines.push(`  … and ${count - listed.length} more`);
        throw new ExitError(`restore INCOMPLETE: ${count} path(s) not restored correctly:\n${lines.join('\n')}`, EXIT.failed);
      }
    });
}

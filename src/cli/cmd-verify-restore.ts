/**
 * `holdfast verify-restore SNAP [--share P%] [--min-files N] [--seed N]
 * [--scratch DIR]`: proves that a snapshot restores (src/jobs/verify-restore).
 * A snapshot of files: a random sample is restored into a scratch folder,
 * compared with the snapshot and removed; an image snapshot: e2fsck and a
 * read of every file, per ext2/3/4 file system. Exit 17 when it does not
 * restore exactly, 1 when the test itself could not run.
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBytes, globals, openRepo, plural, processPool, say, warn, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';
import { printJson } from './json-output.js';
import { printable } from './printable.js';
import { localIso } from '../core/local-time.js';
import { findSnapshot, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { DEFAULT_SAMPLE, randomSeed, verifyRestore, type FilesystemResult, type PathProblem, type VerifyRestoreResult } from '../jobs/verify-restore/verify-restore.js';

interface VerifyFlags extends SnapshotFilter {
  share: string;
  minFiles: string;
  seed?: string;
  scratch?: string;
}

const DEFAULT_SHARE = `${DEFAULT_SAMPLE.share * 100}%`;
const DEFAULT_MIN_FILES = String(DEFAULT_SAMPLE.minFiles);
/** Failures listed by the text output (--json lists all). */
const SHOW = 50;

/** "5%" or "0.5%" as a fraction in (0, 1]. */
function parseShare(s: string): number {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(s.trim());
  const v = m ? Number(m[1]) / 100 : NaN;
  if (!(v > 0 && v <= 1)) throw new ExitError(`--share wants a percentage above 0 and at most 100, such as 5% or 0.5%; got "${s}"`, EXIT.usage);
  return v;
}

function parseCount(flag: string, s: string): number {
  if (!/^\d{1,9}$/.test(s.trim())) throw new ExitError(`${flag} wants a whole number, got "${s}"`, EXIT.usage);
  return Number(s);
}

export function register(program: Command): void {
  withFilterOptions(program.command('verify-restore'))
    .description('prove that a snapshot restores: restore a random sample of its files into a scratch folder and compare them (an image snapshot: e2fsck and read each ext2/3/4 file system)')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .option('--share <P%>', 'the share of the files to restore', DEFAULT_SHARE)
    .option('--min-files <N>', 'restore at least this many files (all, when the snapshot has fewer)', DEFAULT_MIN_FILES)
    .option('--seed <N>', 'choose the sample with this seed (printed by every run): the same seed restores the same files')
    .option('--scratch <dir>', 'an empty folder to restore into, or one to create (default: a new private folder in the temporary folder); emptied afterwards')
    .action(async (snap: string, flags: VerifyFlags, cmd: Command) => {
      const g = globals(cmd);
      const share = parseShare(flags.share);
      const minFiles = parseCount('--min-files', flags.minFiles);
      if (flags.seed !== undefined && !/^\d{1,15}$/.test(flags.seed)) throw new ExitError(`--seed wants a whole number of at most 15 digits (as a run prints it), got "${flags.seed}"`, EXIT.usage);
      const seed = flags.seed ?? randomSeed();
      const scratch = flags.scratch ?? join(tmpdir(), `holdfast-verify-${randomBytes(6).toString('hex')}`);
      const repo = await openRepo(g);
      const { id, snapshot } = await findSnapshot(repo, snap, flags);
      if (!g.json) say(g, `verifying ${snapshot.image ? 'image snapshot' : 'snapshot'} ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} at ${localIso(snapshot.time)}`);
      const abort = new AbortController();
      const offInterrupt = onInterrupt(() => abort.abort(new ExitError('interrupted: the restore test did not complete (its scratch folder was removed)', EXIT.interrupted)));
      let result: VerifyRestoreResult;
      try {
        result = await verifyRestore(repo, id, snapshot, {
          scratch, share, minFiles, seed,
          privileged: process.getuid?.() === 0,
          pool: processPool(),
          signal: abort.signal,
          onWarning: warn,
          onSample: (s) => {
            if (!g.json) say(g, `restoring ${plural(s.sampled, 'file')} of ${s.candidates} (${formatBytes(s.bytes)}; seed ${seed}) into ${s.scratch}`);
          },
          // A failure is printed even with --quiet.
          onFilesystem: (f) => {
            if (!g.json && (!g.quiet || !f.restorable)) process.stdout.write(`${filesystemLines(f).map((l) => printable(l)).join('\n')}\n`);
          },
        });
      } finally {
        offInterrupt();
      }
      if (g.json) printJson(result);
      else print(g, result);
      if (!result.restorable) process.exitCode = EXIT.notRestorable;
    });
}

function problems(list: readonly PathProblem[], indent: string): string[] {
  const lines = list.slice(0, SHOW).map((p) => `${indent}${printable(`${p.path}: ${p.error}`)}`);
  if (list.length > SHOW) lines.push(`${indent}… and ${list.length - SHOW} more`);
  return lines;
}

function filesystemLines(f: FilesystemResult): string[] {
  const head = `  ${f.path} (${f.kind ?? 'nothing recognised'}, ${formatBytes(f.size)} at byte ${f.offset})`;
  if (!f.checked) return [`${head}: not checked (${f.reason})`];
  const e = f.e2fsck!;
  const fsck = e.status === 'clean' ? 'e2fsck found it clean'
    : e.status === 'skipped' ? `e2fsck skipped: ${e.reason}`
      : e.status === 'damaged' ? `e2fsck FOUND ERRORS (exit ${e.exitCode})`
        : `e2fsck could not check it (${e.exitCode === undefined ? e.reason : `exit ${e.exitCode}`})`;
  const lines = [`${head}: ${fsck}; ${plural(f.files, 'file')} (${formatBytes(f.bytes)}) read${f.failed.length > 0 ? `, ${f.failed.length} could NOT be read` : ''}`];
  if (e.output && e.status !== 'clean') lines.push(...e.output.trimEnd().split('\n').map((l) => `    | ${printable(l)}`));
  lines.push(...problems(f.failed, '    '));
  return lines;
}

function print(g: GlobalOptions, r: VerifyRestoreResult): void {
  if (r.files) {
    const f = r.files;
    if (r.restorable) {
      say(g, `restorable: ${plural(f.verified, 'sampled file')} (${formatBytes(f.bytes)}) restored exactly in ${r.seconds} s (seed ${f.seed})`);
      return;
    }
    process.stdout.write(`${[`NOT RESTORABLE: ${plural(f.failed.length, 'path')} of the sample (${plural(f.paths.length, 'file')}, seed ${f.seed}) did not restore exactly:`, ...problems(f.failed, '  ')].join('\n')}\n`);
    return;
  }
  // Each file system was printed as its check ended.
  const checked = (r.filesystems ?? []).filter((f) => f.checked);
  const bad = checked.filter((f) => !f.restorable);
  if (r.restorable) say(g, `restorable: ${plural(checked.length, 'file system')} checked in ${r.seconds} s`);
  else process.stdout.write(`${printable(`NOT RESTORABLE: ${bad.length} of ${plural(checked.length, 'file system')} failed: ${bad.map((f) => f.path).join(', ')}`)}\n`);
}

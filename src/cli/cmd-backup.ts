/**
 * `holdfast backup PATH...`, `holdfast backup --stdin`,
 * `holdfast backup --stdin-from-command -- CMD ARGS...`, and
 * `holdfast backup --postgres URL` / `--mysql URL` (database dumps).
 */
import type { Command } from 'commander';
import type { CompressionMode } from '../core/compress.js';
import { Archiver, type BackupProgress, type BackupResult } from '../jobs/backup/archiver.js';
import { CACHEDIR_TAG, ExcludeRules, readPatterns } from '../jobs/backup/excludes.js';
import { parseSize } from '../core/size.js';
import { scanTotals } from '../jobs/backup/scan-totals.js';
import { commandOutput } from '../sources/command-output.js';
import type { Repository } from '../repo/repository.js';
import { collect, compressionMode, formatBytes, formatDuration, globals, plural, processPool, say, skipDamaged, snapshotsOf, verboseItem, warn, type GlobalOptions } from './context.js';
import { verifiedParent } from '../jobs/snapshots/select.js';
import { backupSession, hooksOf, parseTime, splitTags, withHookOptions } from './backup-session.js';
import { backupTargets } from './backup-targets.js';
import { ExitError, EXIT } from './exit-codes.js';
import { Progress, type Totals } from './progress.js';
import { summaryJson } from '../jobs/snapshots/summary-json.js';
import { FS_SNAPSHOT_DIR, withFsSnapshots, type PathView, type SnapshotKind } from '../sources/fs-snapshots/fs-snapshots.js';
import { backupDatabase, databaseSnapshotPath, type DatabaseSource } from '../jobs/backup/database-backup.js';
import { backupImageCommand, withImageOptions, type ImageBackupFlags } from './cmd-backup-image.js';

interface BackupFlags extends ImageBackupFlags {
  exclude?: string[];
  excludeFile?: string[];
  iexclude?: string[];
  iexcludeFile?: string[];
  excludeCaches?: boolean;
  excludeIfPresent?: string[];
  excludeLargerThan?: number;
  filesFrom?: string[];
  filesFromVerbatim?: string[];
  filesFromRaw?: string[];
  oneFileSystem?: boolean;
  tag?: string[];
  host?: string;
  time?: string;
  parent?: string;
  force?: boolean;
  dryRun?: boolean;
  stdin?: boolean;
  stdinFilename?: string;
  stdinFromCommand?: boolean;
  postgres?: string;
  mysql?: string;
  compression?: CompressionMode;
  fsSnapshot?: SnapshotKind;
  freeze?: boolean;
  lvmSnapshotSize?: string;
}

export function register(program: Command): void {
  const backup = withImageOptions(program
    .command('backup'))
    .description('back up files and folders, or a stream from stdin or a command')
    .argument('[paths...]', 'files and folders to back up, or the command after --stdin-from-command')
    .option('-e, --exclude <glob>', 'exclude a pattern (repeatable)', collect)
    .option('--exclude-file <file>', 'read exclude patterns from a file (repeatable)', collect)
    .option('--iexclude <glob>', 'like --exclude, ignoring case (repeatable)', collect)
    .option('--iexclude-file <file>', 'like --exclude-file, ignoring case (repeatable)', collect)
    .option('--exclude-caches', 'skip the contents of folders holding a CACHEDIR.TAG')
    .option('--exclude-if-present <filename[:header]>', 'skip the contents of folders holding this file (beginning with header, when given) (repeatable)', collect)
    .option('--exclude-larger-than <size>', 'skip files larger than size (suffixes k, m, g, t: powers of 1024)', sizeOption('--exclude-larger-than'))
    .option('--files-from <file>', 'back up the paths listed in file, one glob pattern a line; "#" starts a comment; "-" is stdin (repeatable)', collect)
    .option('--files-from-verbatim <file>', 'back up the paths listed in file, one a line, as they are (repeatable)', collect)
    .option('--files-from-raw <file>', 'back up the paths listed in file, each ended by a NUL byte (repeatable)', collect)
    .option('-x, --one-file-system', 'do not cross file system boundaries')
    .option('--tag <tag[,tag]>', 'add tags to the snapshot (repeatable)', collect)
    .option('--host <hostname>', 'host name to record (default: this host)')
    .option('--time <time>', 'snapshot time "YYYY-MM-DD HH:MM:SS" (local time)')
    .option('--parent <snapshot>', 'parent snapshot for change detection (default: latest of same host and paths)')
    .option('-f, --force', 'read every file again, trusting no metadata of the parent snapshot')
    .option('-n, --dry-run', 'read and chunk everything but write nothing: no data, no snapshot, no lock; report what would be added')
    .option('--stdin', 'back up what is read from stdin')
    .option('--stdin-filename <name>', 'file name for --stdin and --stdin-from-command (default: "stdin"), and for image streams (default: "stdin.img")')
    .option('--stdin-from-command', 'run the command given as arguments and back up its output; fails if it fails')
    .option('--postgres <url>', 'dump the databases of a PostgreSQL server (postgres://USER@HOST:PORT/, or a libpq key=value string; a database in the URL: only that one) with pg_dump, into one snapshot')
    .option('--mysql <url>', 'dump the databases of a MariaDB or MySQL server (mysql://USER@HOST:PORT/ or mariadb://...; a database in the URL: only that one) with mysqldump, into one snapshot')
    .option('--compression <mode>', 'off, default (zstd 1; 3 for disk-image blocks), better (zstd 3), max (zstd 19) (default: the repository default)', compressionMode)
    .option('--fs-snapshot <kind>', 'read the files from a snapshot of their file system, taken at the start and removed at the end: btrfs, lvm, or auto (whichever fits each path; others are read in place)', (text) => {
      if (text !== 'btrfs' && text !== 'lvm' && text !== 'auto') throw new ExitError(`bad --fs-snapshot "${text}": use btrfs, lvm or auto`, EXIT.usage);
      return text;
    })
    .option('--freeze', 'with --fs-snapshot: freeze each file system (fsfreeze, at most 10s) while its LVM snapshot is taken')
    .option('--lvm-snapshot-size <size>', 'with --fs-snapshot: the space of an LVM snapshot, as lvcreate takes it: 2G, or 20%ORIGIN (default: 10%ORIGIN)');
  withHookOptions(backup)
    .action(async (paths: string[], flags: BackupFlags, cmd: Command) => {
      if (flags.image !== undefined || flags.imageFromCommand) {
        if (flags.fsSnapshot !== undefined) throw new ExitError('--fs-snapshot is for files and folders; for --image, snapshot the device first (an LVM snapshot, a VM snapshot) and back that up', EXIT.usage);
        if (flags.dryRun) throw new ExitError('--dry-run does not work with --image yet; nothing was written', EXIT.usage);
        return backupImageCommand(paths, flags, cmd);
      }
      const g = globals(cmd);
      if (flags.postgres !== undefined || flags.mysql !== undefined) return backupDatabaseCommand(g, paths, flags);
      const stream = flags.stdin === true || flags.stdinFromCommand === true;
      if (stream && (flags.filesFrom ?? flags.filesFromVerbatim ?? flags.filesFromRaw)) throw new ExitError('--stdin and --stdin-from-command take no --files-from lists', EXIT.usage);
      if (stream && flags.fsSnapshot !== undefined) throw new ExitError('--fs-snapshot is for files and folders, not --stdin or --stdin-from-command', EXIT.usage);
      if (flags.fsSnapshot === undefined && (flags.freeze || flags.lvmSnapshotSize !== undefined)) throw new ExitError('--freeze and --lvm-snapshot-size go with --fs-snapshot', EXIT.usage);
      // Before the session: when no path exists, not even a lock is written.
      const targets = stream ? undefined : await backupTargets(paths, flags, warn);
      const hooks = hooksOf(flags);
      await backupSession(g, async (repo, signal) => {
        const result = targets
          ? await backupFiles(repo, g, flags, targets.paths, signal)
          : await backupStream(repo, g, flags, paths, signal);
        report(g, result);
        const incomplete = result.snapshot.incomplete === true || (targets?.skipped ?? 0) > 0;
        if (incomplete) process.exitCode = EXIT.incomplete;
        return { outcome: incomplete ? 'incomplete' : 'success', ...(result.id === undefined ? {} : { snapshotId: result.id }) };
      }, {
        dryRun: flags.dryRun === true,
        ...(hooks ? { hooks: { hooks, paths: targets ? targets.paths : [`/${flags.stdinFilename ?? 'stdin'}`], kind: targets ? 'files' : 'stream' } } : {}),
      });
    });
}

async function backupFiles(repo: Repository, g: GlobalOptions, flags: BackupFlags, paths: string[], signal: AbortSignal): Promise<BackupResult> {
  const excludes = await excludeRules(flags);
  const hostname = flags.host;
  // With --force the parent is still the parent: it is recorded, and tells unchanged files from changed ones by content.
  const host = hostname ?? (await import('node:os')).hostname();
  const parent = await verifiedParent(repo, await snapshotsOf(repo, { blobList: false }), { hostname: host, paths, image: false, ...(flags.parent === undefined ? {} : { parent: flags.parent }) }, skipDamaged);
  if (parent && !g.quiet && !g.json) say(g, `using parent snapshot ${parent.id.slice(0, 8)}${flags.force ? ' (--force: every file is read again)' : ''}`);
  // Until the count beside the backup is done, the parent snapshot's size stands for the whole.
  const ps = parent?.snapshot.summary;
  const totals: Totals = { files: 0, bytes: 0, done: false, ...(ps ? { estimate: { files: ps.filesNew + ps.filesChanged + ps.filesUnchanged, bytes: ps.totalBytes } } : {}) };
  const progress = new Progress(g, totals);
  // The count only feeds the progress figures; nobody sees them with --quiet or without a terminal and --json.
  const scan = new AbortController();
  const shown = !g.quiet && (g.json === true || process.stderr.isTTY === true);
  if (shown) void scanTotals(paths, excludes, flags.oneFileSystem === true, totals, AbortSignal.any([signal, scan.signal]));
  let last: BackupProgress | undefined;
  const backup = (views: readonly PathView[]): Promise<BackupResult> => new Archiver(repo, {
    paths,
    excludes,
    oneFileSystem: flags.oneFileSystem === true,
    tags: splitTags(flags.tag),
    ...(hostname ? { hostname } : {}),
    ...(flags.time ? { time: parseTime(flags.time) } : {}),
    parent,
    force: flags.force === true,
    dryRun: flags.dryRun === true,
    ...(flags.compression ? { compression: flags.compression } : {}),
    signal,
    pool: processPool(),
    onWarning: (path, message) => {
      progress.stop();
      warn(`${path}: ${message}`);
    },
    onProgress: (p) => {
      last = p;
      progress.update(p);
    },
    onFile: (path, action) => verboseItem(g, action, path),
    ...(views.length > 0 ? { views } : {}),
  }).run();
  try {
    const result = flags.fsSnapshot === undefined ? await backup([]) : await withFsSnapshots(paths, {
      kind: flags.fsSnapshot,
      host: (await import('node:os')).hostname(),
      stateDir: FS_SNAPSHOT_DIR,
      freeze: flags.freeze === true,
      ...(flags.lvmSnapshotSize === undefined ? {} : { lvmSize: flags.lvmSnapshotSize }),
      onWarning: (m) => {
        progress.stop();
        warn(m);
      },
      onNote: (m) => {
        if (!g.quiet) warn(m);
      },
    }, backup);
    if (last) {
      // Done: what there was to do is what was done, whether or not the count beside it finished first.
      Object.assign(totals, { files: last.files, bytes: last.bytes, done: true });
      progress.update(last, true);
    }
    return result;
  } finally {
    scan.abort();
    progress.stop();
  }
}

/** The exclusion rules of the flags; files of patterns are read here. */
async function excludeRules(flags: BackupFlags): Promise<ExcludeRules> {
  let patterns: string[];
  let insensitive: string[];
  try {
    patterns = await readPatterns(flags.exclude ?? [], flags.excludeFile ?? []);
    insensitive = await readPatterns(flags.iexclude ?? [], flags.iexcludeFile ?? []);
  } catch (e) {
    throw new ExitError(`cannot read an exclude file: ${(e as Error).message}`, EXIT.usage);
  }
  const ifPresent = [...(flags.excludeIfPresent ?? []), ...(flags.excludeCaches ? [CACHEDIR_TAG] : [])];
  try {
    return new ExcludeRules({ patterns, insensitive, ifPresent, ...(flags.excludeLargerThan === undefined ? {} : { largerThan: flags.excludeLargerThan }) });
  } catch (e) {
    throw new ExitError((e as Error).message, EXIT.usage);
  }
}

/** A commander parser for a size option. */
function sizeOption(option: string): (text: string) => number {
  return (text) => {
    const bytes = parseSize(text);
    if (bytes === undefined) throw new ExitError(`bad ${option} "${text}": use a size such as 500k, 20M or 2G`, EXIT.usage);
    return bytes;
  };
}

async function backupStream(repo: Repository, g: GlobalOptions, flags: BackupFlags, args: string[], signal: AbortSignal): Promise<BackupResult> {
  const name = flags.stdinFilename ?? 'stdin';
  if (name === '' || name.includes('/') || name === '.' || name === '..') throw new ExitError(`bad --stdin-filename "${name}"`, EXIT.usage);
  let source: AsyncIterable<Uint8Array>;
  if (flags.stdinFromCommand) {
    if (args.length === 0) throw new ExitError('--stdin-from-command needs a command: holdfast backup --stdin-from-command -- CMD ARGS...', EXIT.usage);
    source = commandOutput(args, { signal });
  } else {
    if (args.length > 0) throw new ExitError('--stdin takes no paths', EXIT.usage);
    if (process.stdin.isTTY) throw new ExitError('--stdin given but stdin is a terminal', EXIT.usage);
    source = process.stdin;
  }
  const progress = new Progress(g);
  try {
    return await new Archiver(repo, { paths: [], ...streamSnapshotOptions(flags, signal, progress) }).runStreams([], [{ name, open: () => source }]);
  } finally {
    progress.stop();
  }
}

/** What a stream's or a database's backup takes from the flags: the snapshot's fields, the run's signal, pool and progress. */
function streamSnapshotOptions(flags: BackupFlags, signal: AbortSignal, progress: Progress) {
  return {
    dryRun: flags.dryRun === true,
    tags: splitTags(flags.tag),
    ...(flags.host ? { hostname: flags.host } : {}),
    ...(flags.time ? { time: parseTime(flags.time) } : {}),
    ...(flags.compression ? { compression: flags.compression } : {}),
    signal,
    pool: processPool(),
    onProgress: (p: BackupProgress) => progress.update(p),
  };
}

/** `backup --postgres URL` and `backup --mysql URL`: the client tools run with our environment (PATH, PGPASSFILE, ~/.my.cnf's HOME). */
async function backupDatabaseCommand(g: GlobalOptions, args: string[], flags: BackupFlags): Promise<void> {
  if (flags.postgres !== undefined && flags.mysql !== undefined) throw new ExitError('--postgres and --mysql are two backups: give one of them', EXIT.usage);
  const other = args.length > 0 ? 'paths' : flags.stdin ? '--stdin' : flags.stdinFromCommand ? '--stdin-from-command' : flags.stdinFilename !== undefined ? '--stdin-filename'
    : flags.fsSnapshot !== undefined ? '--fs-snapshot' : undefined;
  if (other) throw new ExitError(`--postgres and --mysql take no ${other}: the dumps are named after the databases`, EXIT.usage);
  const source: DatabaseSource = flags.postgres !== undefined
    ? { kind: 'postgres', url: flags.postgres, env: process.env }
    : { kind: 'mysql', url: flags.mysql!, env: process.env };
  // A URL that cannot be read is refused before the repository is opened.
  const path = databaseSnapshotPath(source);
  const hooks = hooksOf(flags);
  await backupSession(g, async (repo, signal) => {
    const progress = new Progress(g);
    let result: BackupResult;
    try {
      result = await backupDatabase(repo, {
        source,
        ...streamSnapshotOptions(flags, signal, progress),
        onWarning: (what, message) => {
          progress.stop();
          warn(`${what}: ${message}`);
        },
      });
    } finally {
      progress.stop();
    }
    report(g, result);
    return { outcome: 'success', ...(result.id === undefined ? {} : { snapshotId: result.id }) };
  }, {
    dryRun: flags.dryRun === true,
    ...(hooks ? { hooks: { hooks, paths: [path], kind: 'stream' } } : {}),
  });
}

function report(g: GlobalOptions, r: BackupResult): void {
  const s = r.snapshot.summary;
  const seconds = (Date.parse(s.end) - Date.parse(s.start)) / 1000;
  if (g.json) {
    const outcome = r.id === undefined ? { dry_run: true } : { snapshot_id: r.id };
    // With --quiet too: restic drops the status lines, not the summary.
    process.stdout.write(`${JSON.stringify({ message_type: 'summary', ...outcome, incomplete: r.snapshot.incomplete === true, total_duration: seconds, ...summaryJson(s) })}\n`);
    return;
  }
  say(g, `Files:       ${s.filesNew} new, ${s.filesChanged} changed, ${s.filesUnchanged} unchanged`);
  say(g, `Dirs:        ${s.dirsNew ?? 0} new, ${s.dirsChanged ?? 0} changed, ${s.dirsUnchanged ?? 0} unchanged`);
  say(g, `${r.id === undefined ? 'Would add:' : 'Added:    '}   ${formatBytes(s.dataAdded)} (${formatBytes(s.dataAddedStored)} stored)`);
  say(g, `Processed:   ${plural(s.filesNew + s.filesChanged + s.filesUnchanged, 'file')}, ${formatBytes(s.totalBytes)} in ${formatDuration(seconds)}`);
  const incomplete = r.snapshot.incomplete ? `, INCOMPLETE: ${s.errors} file(s) could not be read (see warnings)` : '';
  if (r.id === undefined) say(g, `dry run: nothing was written${incomplete}`);
  else say(g, `snapshot ${r.id.slice(0, 8)} saved${incomplete}`);
}

#!/usr/bin/env node
/**
 * The `holdfast` command line: global options, the commands (one file each),
 * and the mapping of errors to exit codes and plain messages.
 */
import { Command, CommanderError } from 'commander';
import { ExitError, EXIT } from './exit-codes.js';
import { closeRepositories, kibPerSecond, warningsLeftOut } from './context.js';
import { CorruptObjectError, NotARepositoryError, UnsupportedVersionError, WrongPasswordError } from '../repo/errors.js';
import * as backup from './cmd-backup.js';
import * as diff from './cmd-diff.js';
import * as dump from './cmd-dump.js';
import * as init from './cmd-init.js';
import * as key from './cmd-key.js';
import * as ls from './cmd-ls.js';
import * as mount from './cmd-mount.js';
import * as restore from './cmd-restore.js';
import * as snapshots from './cmd-snapshots.js';
import * as stats from './cmd-stats.js';
import * as forget from './cmd-forget.js';
import * as unlock from './cmd-unlock.js';
import * as restoreImage from './cmd-restore-image.js';
import * as serveNbd from './cmd-serve-nbd.js';
import * as prune from './cmd-prune.js';
import * as check from './cmd-check.js';
import * as repair from './cmd-repair.js';
import * as tag from './cmd-tag.js';
import * as cat from './cmd-cat.js';
import * as find from './cmd-find.js';
import * as completion from './cmd-completion.js';
import * as version from './cmd-version.js';
import { LockedError, LockLostError } from '../repo/lock.js';
import { AppendOnlyError } from '../storage/append-only-backend.js';

function exitCodeOf(e: unknown): number {
  if (e instanceof ExitError) return e.code;
  if (e instanceof WrongPasswordError) return EXIT.wrongPassword;
  if (e instanceof NotARepositoryError) return EXIT.noRepository;
  if (e instanceof LockedError || e instanceof LockLostError) return EXIT.locked;
  if (e instanceof AppendOnlyError) return EXIT.appendOnly;
  return EXIT.failed;
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('holdfast')
    .version(version.VERSION)
    .description('deduplicated, compressed, encrypted backups')
    .option('-r, --repo <location>', 'repository location (or HOLDFAST_REPOSITORY)')
    .option('--password-file <file>', 'read the password from a file (or HOLDFAST_PASSWORD_FILE)')
    .option('--password-command <command>', 'run a command that prints the password (or HOLDFAST_PASSWORD_COMMAND)')
    .option('-q, --quiet', 'print nothing but warnings and errors')
    .option('--json', 'machine-readable output')
    .option('-v, --verbose', 'list each file a backup stores or a restore writes (-v -v: unchanged files too)', (_: string, n: number) => n + 1, 0)
    .option('--limit-upload <KiB/s>', 'limit uploads to the repository to this many KiB a second (default 0: unlimited)', kibPerSecond('--limit-upload'))
    .option('--limit-download <KiB/s>', 'limit downloads from the repository to this many KiB a second (default 0: unlimited)', kibPerSecond('--limit-download'))
    .exitOverride()
    .showSuggestionAfterError();
  for (const m of [init, backup, snapshots, ls, diff, stats, restore, dump, mount, key, forget, unlock, serveNbd, restoreImage, prune, check, repair, tag, cat, find, version, completion]) m.register(program);
  try {
    await program.parseAsync(argv);
    warningsLeftOut();
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    warningsLeftOut();
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const known = e instanceof ExitError || e instanceof WrongPasswordError || e instanceof NotARepositoryError
      || e instanceof CorruptObjectError || e instanceof UnsupportedVersionError
      || e instanceof LockedError || e instanceof LockLostError || e instanceof AppendOnlyError;
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`holdfast: ${msg}\n`);
    if (!known && process.env['HOLDFAST_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return exitCodeOf(e);
  } finally {
    closeRepositories();
  }
}

/**
 * A reader that went away (`holdfast ls | head`) ends the command as it ends
 * other tools (and restic): killed by SIGPIPE, with no message. Node ignores
 * SIGPIPE; adding and removing a listener puts back the default action.
 */
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') {
    const none = (): void => undefined;
    process.on('SIGPIPE', none).off('SIGPIPE', none);
    process.kill(process.pid, 'SIGPIPE');
  }
  process.stderr.write(`holdfast: writing the output: ${e.message}\n`);
  process.exit(EXIT.failed);
});

process.exitCode = await main(process.argv);

/** `holdfast init`: creates a repository, with a key of its own or (--copy-from) sharing another's. */
import type { Command } from 'commander';
import { Repository } from '../repo/repository.js';
import type { CompressionMode } from '../core/compress.js';
import { backendFor, closeWithCommand, compressionMode, globals, openSourceStore, plural, repoLocation, say, warn, type GlobalOptions } from './context.js';
import { getNewPassword, getPassword, passwordOrigin, withPassword } from './password.js';
import { WrongPasswordError } from '../repo/errors.js';
import { readKeyHint, saveHints } from './key-hint.js';
import { scryptParams } from './environment.js';

interface InitFlags {
  compression: CompressionMode;
  appendOnly?: boolean;
  copyFrom?: string;
  fromPasswordFile?: string;
  fromPasswordCommand?: string;
}

export function register(program: Command): void {
  program
    .command('init')
    .description('create a new repository')
    .option('--compression <mode>', 'default compression: off, default (zstd 1; 3 for disk-image blocks), better (zstd 3), max (zstd 19)', compressionMode, 'default')
    .option('--append-only', 'snapshots can be added, nothing can be removed by clients (docs/format.md, "Append-only repositories")')
    .option('--copy-from <location>', 'share the master key and chunker parameters of this repository, so that "copy" moves snapshots between the two without a password (needs its password once)')
    .option('--from-password-file <file>', 'with --copy-from: read its password from a file (or HOLDFAST_FROM_PASSWORD_FILE)')
    .option('--from-password-command <command>', 'with --copy-from: run a command that prints its password (or HOLDFAST_FROM_PASSWORD_COMMAND)')
    .action(async (opts: InitFlags, cmd: Command) => {
      const g = globals(cmd);
      const backend = await backendFor(g, true);
      // Like restic, init goes ahead beside other entries, but says so: a mistyped
      // location into a folder or bucket of other things should not pass unnoticed.
      const foreign = await backend.entries?.() ?? 0;
      const source = opts.copyFrom === undefined ? undefined : await openSource(g, opts.copyFrom, opts);
      const hasSource = g.passwordFile || g.passwordCommand || process.env['HOLDFAST_PASSWORD'] !== undefined
        || process.env['HOLDFAST_PASSWORD_FILE'] || process.env['HOLDFAST_PASSWORD_COMMAND'];
      const create = { compression: opts.compression, appendOnly: opts.appendOnly === true, scrypt: scryptParams() };
      const repo = await withPassword(hasSource ? getPassword(g) : getNewPassword(undefined),
        (password) => source ? source.initSharingKey(backend, password, create) : Repository.init(backend, password, create));
      closeWithCommand(repo);
      saveHints(repoLocation(g), repo);
      say(g, `created holdfast repository ${repo.config.id.slice(0, 10)} at ${backend.location}`);
      if (source) say(g, `it shares the master key and chunker parameters of ${source.config.id.slice(0, 10)} at ${source.backend.location}: "holdfast copy" moves snapshots between the two without a password`);
      const them = foreign === 1 ? 'it' : 'them';
      if (foreign > 0) warn(`${backend.location} was not empty (${plural(foreign, 'entry', 'entries')}); the repository is created beside ${them}, and holdfast leaves ${them} alone`);
      say(g, 'keep the password safe: losing it means losing the data in the repository');
      if (opts.appendOnly) say(g, 'append-only: clients cannot remove anything; make the storage enforce it too (docs/format.md, "Append-only repositories")');
    });
}

/** Opens the repository of --copy-from with its own password (closed with the command). */
async function openSource(g: GlobalOptions, location: string, opts: InitFlags): Promise<Repository> {
  const store = await openSourceStore(location, g);
  const given = { passwordFile: opts.fromPasswordFile, passwordCommand: opts.fromPasswordCommand };
  const password = getPassword(given, 'enter password for the repository copied from: ', true);
  const source = await withPassword(password, (pw) => Repository.open(store, pw, { preferKey: readKeyHint, onWarning: warn })).catch((e: unknown) => {
    if (!(e instanceof WrongPasswordError)) throw e;
    throw new WrongPasswordError(`wrong password for the source repository ${store.backend.location} (${passwordOrigin(given, true)}): no key there opens with it`);
  });
  closeWithCommand(source);
  return source;
}

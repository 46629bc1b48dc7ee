/** `holdfast init`: creates a repository. */
import type { Command } from 'commander';
import { Repository } from '../repo/repository.js';
import type { CompressionMode } from '../core/compress.js';
import { backendFor, closeWithCommand, compressionMode, globals, say } from './context.js';
import { getNewPassword, getPassword, withPassword } from './password.js';
import { saveKeyHint } from './key-hint.js';
import { scryptParams } from './environment.js';

export function register(program: Command): void {
  program
    .command('init')
    .description('create a new repository')
    .option('--compression <mode>', 'default compression: off, default (zstd 1), better (zstd 3), max (zstd 19)', compressionMode, 'default')
    .option('--append-only', 'snapshots can be added, nothing can be removed by clients (docs/format.md, "Append-only repositories")')
    .action(async (opts: { compression: CompressionMode; appendOnly?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const backend = await backendFor(g, true);
      const hasSource = g.passwordFile || g.passwordCommand || process.env['HOLDFAST_PASSWORD'] !== undefined
        || process.env['HOLDFAST_PASSWORD_FILE'] || process.env['HOLDFAST_PASSWORD_COMMAND'];
      const repo = await withPassword(hasSource ? getPassword(g) : getNewPassword(undefined), (password) => Repository.init(backend, password, { compression: opts.compression, appendOnly: opts.appendOnly === true, scrypt: scryptParams() }));
      closeWithCommand(repo);
      saveKeyHint(repo.config.id, repo.keyId);
      say(g, `created holdfast repository ${repo.config.id.slice(0, 10)} at ${backend.location}`);
      say(g, 'keep the password safe: losing it means losing the data in the repository');
      if (opts.appendOnly) say(g, 'append-only: clients cannot remove anything; make the storage enforce it too (docs/format.md, "Append-only repositories")');
    });
}

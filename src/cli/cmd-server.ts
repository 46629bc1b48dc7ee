/**
 * `holdfast server --data DIR [--listen HOST:PORT] [--db URL] [--storage
 * s3:…]`: runs the
 * backup server (src/server/backup-server.ts) until SIGINT/SIGTERM, with its
 * log (JSON lines) on stderr; `holdfast server info --data DIR` shows what a
 * data directory's server uses without starting it. The admin commands
 * over a server's API (`server login`, `server customer …`, …) are in the
 * cmd-server-*.ts files; they never load the server's own modules (fastify,
 * the databases), which these two commands import when they run. This file
 * is flags and printing only.
 */
import type { Command } from 'commander';
import { loadSettings } from '../server/server-settings.js';
import { globals, honours, say } from './context.js';
import { minGraceMs, s3Settings } from './environment.js';
import { VERSION } from './cmd-version.js';
import { ExitError, EXIT } from './exit-codes.js';
import { untilInterrupted } from './interrupt.js';
import * as customer from './cmd-server-customer.js';
import * as job from './cmd-server-job.js';
import * as login from './cmd-server-login.js';
import * as machine from './cmd-server-machine.js';
import * as notification from './cmd-server-notification.js';
import * as policy from './cmd-server-policy.js';
import * as safe from './cmd-server-safe.js';
import * as token from './cmd-server-token.js';
import * as user from './cmd-server-user.js';

interface ServerFlags {
  data?: string;
  listen?: string;
  db?: string;
  storage?: string;
  notificationsAllow?: string;
}

/** The server's library, with its own refusals as the command's message and exit code 1. */
async function serverLibrary() {
  const [lib, { MigrationError }, { DatabaseUrlError }] = await Promise.all([
    import('../server/backup-server.js'), import('../server/db/migrations.js'), import('../server/db/open-database.js'),
  ]);
  const explained = (e: unknown): never => {
    if (e instanceof lib.ServerSetupError || e instanceof MigrationError || e instanceof DatabaseUrlError) throw new ExitError(e.message, EXIT.failed);
    throw e;
  };
  return { ...lib, explained };
}

export function register(program: Command): void {
  const server = honours(program.command('server'), 'cacert', 'quiet')
    .description('run the backup server (HTTPS API and disk safes) until Ctrl-C or SIGTERM')
    .option('--data <dir>', 'data directory (made on first start, mode 0700); required')
    .option('--listen <host:port>', 'address to listen on (default 0.0.0.0:8443, or the one recorded at the last start)')
    .option('--db <url>', 'control-plane database: postgres://USER:PASSWORD@HOST:PORT/DB (default: DIR/holdfast.db, SQLite)')
    .option('--storage <s3:…>', 'keep the disk safes in an S3 bucket, s3:https://HOST:PORT/BUCKET/PREFIX, with the AWS_* credentials (default: DIR/safes)')
    .option('--notifications-allow <list>', 'internal hosts and networks notifications may be sent to, comma-separated: smtp.internal,10.0.0.0/8 (default: none)')
    .action(async (flags: ServerFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.data === undefined) throw new ExitError('holdfast server needs --data DIR: the folder of its database, certificate and disk safes', EXIT.usage);
      const dataDir = flags.data;
      // Signals are caught before the address is printed, so that whoever waits for that line can stop us at once.
      const { interrupted, off } = untilInterrupted();
      try {
        const { startServer, explained } = await serverLibrary();
        // The server holds upload bodies whole until stored, at most the upload budget at once, and reads
        // packs whole for GETs: the allocator keeps such blocks for reuse instead of mapping each afresh
        // (docs/decisions.md, "Upload bodies in reused buffers").
        const [{ native }, { DEFAULT_MAX_BYTES_IN_FLIGHT }] = await Promise.all([import('../sources/native.js'), import('../server/http/repo-routes.js')]);
        native.keepLargeBlocks(DEFAULT_MAX_BYTES_IN_FLIGHT);
        // The AWS environment is read only for a server whose safes are in a bucket (this start's storage or the recorded one).
        const storage = flags.storage ?? (await loadSettings(dataDir).catch(() => undefined))?.storage;
        const s3 = storage === undefined ? undefined : await s3Settings(g.cacert);
        const s = await startServer({
          dataDir, listen: flags.listen, db: flags.db, ...(flags.storage === undefined ? {} : { storage: flags.storage }), ...(s3 ? { s3 } : {}),
          logStream: process.stderr, version: VERSION, minGraceMs: minGraceMs(),
          ...(flags.notificationsAllow === undefined ? {} : { delivery: { allowInternal: flags.notificationsAllow.split(',') } }),
        }).catch(explained);
        try {
          const host = s.host.includes(':') ? `[${s.host}]` : s.host;
          say(g, `holdfast server listening on https://${host}:${s.port}`);
          say(g, `certificate fingerprint: ${s.fingerprint}${s.certificateCreated ? ' (new self-signed certificate)' : ''}`);
          say(g, `database: ${s.database}`);
          say(g, `disk safes: ${s.storage}`);
          if (s.firstAdmin) {
            // Printed even with --quiet: it is shown this once and never again.
            process.stdout.write(`first admin account: ${s.firstAdmin.name}\none-time password: ${s.firstAdmin.password}\n`
              + '(shown only now; it must be changed at the first login: holdfast server login asks for a new one)\n');
          }
          await interrupted;
          say(g, 'stopping');
        } finally {
          await s.close();
        }
      } finally {
        off();
      }
    });

  honours(server.command('info'), 'json')
    .description('show a server\'s certificate fingerprint, listen address, database and disk safe folder')
    .option('--data <dir>', 'the server\'s data directory; required')
    .action(async (flags: { data?: string }, cmd: Command) => {
      const g = globals(cmd);
      // `server info --data DIR`: the parent command, which has --data too, may have taken it.
      const dataDir = flags.data ?? (cmd.parent?.opts() as ServerFlags | undefined)?.data;
      if (dataDir === undefined) throw new ExitError('holdfast server info needs --data DIR: the server\'s data directory', EXIT.usage);
      const { serverInfo, explained } = await serverLibrary();
      const info = await serverInfo(dataDir).catch(explained);
      if (g.json) {
        process.stdout.write(`${JSON.stringify({ fingerprint: info.fingerprint, listen: info.listen, database: info.database, safes: info.storage })}\n`);
        return;
      }
      process.stdout.write(`certificate fingerprint: ${info.fingerprint}\nlisten: ${info.listen}\ndatabase: ${info.database}\ndisk safes: ${info.storage}\n`);
    });

  login.registerSubcommands(server);
  const own = new Set(server.commands);
  for (const admin of [customer, user, token, machine, safe, job, notification, policy]) admin.registerSubcommands(server);
  // The admin commands speak to the server's API: its TLS options and the output's.
  for (const c of server.commands) if (!own.has(c)) honours(c, 'fingerprint', 'cacert', 'json', 'quiet');
}

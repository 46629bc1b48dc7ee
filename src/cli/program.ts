/**
 * The `holdfast` command line: global options, the commands (one file each),
 * and the mapping of errors to exit codes and plain messages. Loaded by
 * main.ts once the key derivation has started.
 */
import { Command, CommanderError } from 'commander';
import { EXIT, exitOf } from './exit-codes.js';
import { closeCommand, honouredGlobals, kibPerSecond, useKeyDerivation, warningsLeftOut } from './context.js';
import { commandLine } from './early-key.js';
import type { KeyDerivation } from '../repo/key-file.js';
import { VERSION } from './cmd-version.js';
import { printableMessage } from './printable.js';

/** A command module: registers its command (options, help, action) on the program. */
interface CommandModule {
  register(program: Command): void;
}

/**
 * Every command, in the order help lists them, each loaded only when needed:
 * loading all of them cost every start 55–95 ms of CPU (by the command) for
 * modules it does not run (docs/decisions.md, "Fixed costs per run").
 */
const COMMANDS: readonly (readonly [string, () => Promise<CommandModule>])[] = [
  ['init', () => import('./cmd-init.js')],
  ['backup', () => import('./cmd-backup.js')],
  ['snapshots', () => import('./cmd-snapshots.js')],
  ['ls', () => import('./cmd-ls.js')],
  ['diff', () => import('./cmd-diff.js')],
  ['stats', () => import('./cmd-stats.js')],
  ['restore', () => import('./cmd-restore.js')],
  ['dump', () => import('./cmd-dump.js')],
  ['mount', () => import('./cmd-mount.js')],
  ['key', () => import('./cmd-key.js')],
  ['forget', () => import('./cmd-forget.js')],
  ['unlock', () => import('./cmd-unlock.js')],
  ['serve-nbd', () => import('./cmd-serve-nbd.js')],
  ['server', () => import('./cmd-server.js')],
  ['agent', () => import('./cmd-agent.js')],
  ['escrow', () => import('./cmd-escrow.js')],
  ['restore-image', () => import('./cmd-restore-image.js')],
  ['prune', () => import('./cmd-prune.js')],
  ['check', () => import('./cmd-check.js')],
  ['verify-restore', () => import('./cmd-verify-restore.js')],
  ['repair', () => import('./cmd-repair.js')],
  ['copy', () => import('./cmd-copy.js')],
  ['tag', () => import('./cmd-tag.js')],
  ['cat', () => import('./cmd-cat.js')],
  ['find', () => import('./cmd-find.js')],
  ['version', () => import('./cmd-version.js')],
  ['completion', () => import('./cmd-completion.js')],
];

/**
 * The command modules `argv` needs: the one it names; all of them when it
 * names none or an unknown one (help, the suggestion) or asks for a
 * completion script (made from every command's definition).
 */
async function commandsFor(argv: readonly string[]): Promise<CommandModule[]> {
  const { name } = commandLine(argv);
  const named = COMMANDS.find(([n]) => n === name && n !== 'completion');
  return Promise.all((named ? [named] : COMMANDS).map(([, load]) => load()));
}

// The AWS SDK (the S3 backend) warns on stderr, once per process, that its
// releases from 2027 will need Node 22; that is for whoever upgrades the SDK,
// not for the user of a backup, and it is the SDK's one warning this turns off.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

/** Runs the command `argv` names, with the key derivation main.ts started for it; the exit code. */
export async function run(argv: string[], derivation: KeyDerivation | undefined): Promise<number> {
  useKeyDerivation(derivation);
  const program = new Command('holdfast')
    .version(VERSION)
    .description('deduplicated, compressed, encrypted backups')
    .option('-r, --repo <location>', 'repository location (or HOLDFAST_REPOSITORY)')
    .option('--password-file <file>', 'read the password from a file (or HOLDFAST_PASSWORD_FILE; HOLDFAST_PASSWORD holds the password itself)')
    .option('--password-command <command>', 'run a command that prints the password (or HOLDFAST_PASSWORD_COMMAND)')
    .option('-q, --quiet', 'print nothing but warnings and errors')
    .option('--json', 'machine-readable output')
    .option('-v, --verbose', 'list each file a backup stores or a restore writes (-v -v: unchanged files too)', (_: string, n: number) => n + 1, 0)
    .option('--limit-upload <KiB/s>', 'limit uploads to the repository to this many KiB a second (default 0: unlimited)', kibPerSecond('--limit-upload'))
    .option('--limit-download <KiB/s>', 'limit downloads from the repository to this many KiB a second (default 0: unlimited)', kibPerSecond('--limit-download'))
    .option('--cacert <file>', 'trust the CA certificate in this PEM file for an S3 endpoint or a holdfast server, besides the system\'s (or HOLDFAST_CACERT)')
    .option('--fingerprint <SHA256:…>', 'for a holdfast server (https://HOST:PORT/safes/NAME): accept only the certificate with this SHA-256 fingerprint, whoever signed it (or HOLDFAST_FINGERPRINT)')
    // Each command's help lists the global options it honours, not only its own.
    .configureHelp({ showGlobalOptions: true, visibleGlobalOptions: honouredGlobals })
    .exitOverride()
    // Argument errors begin as every other error does ("holdfast: …"), not with commander's "error: ".
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'holdfast: ')) })
    .showSuggestionAfterError();
  try {
    for (const m of await commandsFor(argv)) m.register(program);
    await program.parseAsync(argv);
    warningsLeftOut();
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    warningsLeftOut();
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const { code, known } = exitOf(e);
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`holdfast: ${printableMessage(msg)}\n`);
    if (!known && process.env['HOLDFAST_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return code;
  } finally {
    await closeCommand();
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

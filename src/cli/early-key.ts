/**
 * The key derivation a command will need, started before the command's
 * modules load. scrypt (about a quarter of a second) runs on the thread pool
 * while this thread loads and compiles the rest of holdfast (about a tenth
 * of a second), instead of after it (docs/decisions.md, "Fixed costs per
 * run").
 *
 * Only the likely case is started: a command that opens the repository with
 * its key, named before the command with nothing after it naming another or
 * asking for help; a local repository with one key file, a regular file of
 * at most the default cost, or a repository reached over the network whose
 * key derivation this machine recorded when it last opened it (key-hint.ts);
 * and a password from the environment or a regular file (a password command
 * is run once, by the command; a prompt waits for the command; a pipe is
 * read once). Nothing depends on
 * the guess: the repository takes the derivation only for the key file and
 * password it was started for (`KeyDerivation.take`), and any other is
 * derived as before. This module loads only what that needs.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { validScryptParams } from '../core/crypto.js';
import { costTimes, decodeKeyFile, KeyDerivation, type KeyFile } from '../repo/key-file.js';
import { isNetworkLocation, splitLocation } from '../storage/location.js';
import { MAX_SMALL_OBJECT_BYTES, OBJECT_FOLDERS } from '../storage/object-names.js';
import { readKdfHint, smallFile } from './key-hint.js';
import { getPassword, passwordOrigin, type PasswordOptions } from './password.js';

/** Global options that take a value: the word after one is not the command. */
const GLOBAL_VALUE_OPTIONS = new Set(['-r', '--repo', '--password-file', '--password-command', '--limit-upload', '--limit-download', '--cacert', '--fingerprint']);

/** The command `argv` names (its first word past the global options), where it is, and the values of the global options before it. */
export function commandLine(argv: readonly string[]): { name: string | undefined; at: number; globals: Map<string, string> } {
  const globals = new Map<string, string>();
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (!a.startsWith('-')) return { name: a, at: i, globals };
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) globals.set(a.slice(0, eq), a.slice(eq + 1));
    else if (GLOBAL_VALUE_OPTIONS.has(a) && i + 1 < argv.length) globals.set(a, argv[++i]!);
  }
  return { name: undefined, at: argv.length, globals };
}

/** Commands that open the repository with its key whenever they run. */
const KEYED = new Set(['backup', 'snapshots', 'ls', 'diff', 'stats', 'restore', 'dump', 'mount', 'restore-image', 'serve-nbd', 'verify-restore', 'find', 'cat', 'tag']);

/**
 * Words after the command that name another repository or password, or ask
 * for help: the command may then read something other than the guess, or
 * nothing at all, and no guess is made.
 */
const LATER = /^(-r|--repo|--password-file|--password-command|-h|--help)(=|$)/;

/** The key derivation of the one key file of the local repository at `path`, when it is a regular file of key size. */
function localKdf(path: string): KeyFile['kdf'] | undefined {
  const keys = join(resolve(path), OBJECT_FOLDERS.key);
  const entries = readdirSync(keys, { withFileTypes: true });
  if (entries.length !== 1 || !entries[0]!.isFile()) return undefined;
  // A larger key file is left to the command, which refuses it.
  const bytes = smallFile(join(keys, entries[0]!.name), MAX_SMALL_OBJECT_BYTES);
  return bytes === undefined ? undefined : decodeKeyFile(bytes, 'key').kdf;
}

/**
 * Starts deriving the key of the repository `argv` (or the environment)
 * names, when the command will open it with its key; undefined when anything
 * is not as above or cannot be read (the command then says what, as before).
 */
export async function startKeyDerivation(argv: readonly string[]): Promise<KeyDerivation | undefined> {
  const { name, at, globals } = commandLine(argv);
  if (name === undefined || !KEYED.has(name) || argv.slice(at + 1).some((a) => LATER.test(a))) return undefined;
  const location = globals.get('--repo') ?? globals.get('-r') ?? process.env['HOLDFAST_REPOSITORY'];
  if (!location) return undefined;
  const { scheme, rest } = splitLocation(location);
  const local = scheme === undefined || scheme === 'local';
  if ((!local && !isNetworkLocation(location)) || rest === '') return undefined;
  const o: PasswordOptions = { passwordFile: globals.get('--password-file'), passwordCommand: globals.get('--password-command') };
  const origin = passwordOrigin(o);
  try {
    // Only a password that reads the same twice (here and in the command): the environment's, or a regular file's (a pipe or a FIFO gives its bytes once).
    const file = origin === '--password-file' ? o.passwordFile : origin === 'HOLDFAST_PASSWORD_FILE' ? process.env['HOLDFAST_PASSWORD_FILE'] : undefined;
    if (origin !== 'HOLDFAST_PASSWORD' && (file === undefined || !statSync(file).isFile())) return undefined;
    const kdf = local ? localKdf(rest) : readKdfHint(location);
    if (kdf === undefined || !validScryptParams(kdf) || costTimes(kdf) > 1) return undefined;
    const password = await getPassword(o);
    try {
      return new KeyDerivation(kdf, password);
    } finally {
      password.fill(0);
    }
  } catch {
    return undefined;
  }
}

/**
 * The key derivation a command will need, started before the command's
 * modules load. scrypt (about a quarter of a second) runs on the thread pool
 * while this thread loads and compiles the rest of holdfast (about a tenth
 * of a second), instead of after it (docs/decisions.md, "Fixed costs per
 * run").
 *
 * Only the likely case is started: a command that opens the repository with
 * its key, a local repository with one key file of at most the default cost,
 * and a password from the environment or a file (a password command is run
 * once, by the command; a prompt waits for the command). Nothing depends on
 * the guess: the repository takes the derivation only for the key file and
 * password it was started for (`KeyDerivation.take`), and any other is
 * derived as before. This module loads only what that needs.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { costTimes, decodeKeyFile, KeyDerivation } from '../repo/key-file.js';
import { splitLocation } from '../storage/location.js';
import { OBJECT_FOLDERS } from '../storage/object-names.js';
import { getPassword, passwordOrigin, type PasswordOptions } from './password.js';

/** Global options that take a value: the word after one is not the command. */
export const GLOBAL_VALUE_OPTIONS = new Set(['-r', '--repo', '--password-file', '--password-command', '--limit-upload', '--limit-download', '--cacert', '--fingerprint']);

/** The command `argv` names (its first word past the global options), and the values of the global options before it. */
export function commandLine(argv: readonly string[]): { name: string | undefined; globals: Map<string, string> } {
  const globals = new Map<string, string>();
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (!a.startsWith('-')) return { name: a, globals };
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) globals.set(a.slice(0, eq), a.slice(eq + 1));
    else if (GLOBAL_VALUE_OPTIONS.has(a) && i + 1 < argv.length) globals.set(a, argv[++i]!);
  }
  return { name: undefined, globals };
}

/** Commands that open the repository with its key whenever they run. */
const KEYED = new Set(['backup', 'snapshots', 'ls', 'diff', 'stats', 'restore', 'dump', 'mount', 'restore-image', 'serve-nbd', 'verify-restore', 'find', 'cat', 'tag']);

/** A key file is a few hundred bytes (`MAX_OBJECT_BYTES`); a larger one is left to the command, which refuses it. */
const MAX_KEY_BYTES = 64 * 1024;

/**
 * Starts deriving the key of the repository `argv` (or the environment)
 * names, when the command will open it with its key; undefined when anything
 * is not as above or cannot be read (the command then says what, as before).
 */
export async function startKeyDerivation(argv: readonly string[]): Promise<KeyDerivation | undefined> {
  const { name, globals } = commandLine(argv);
  if (name === undefined || !KEYED.has(name)) return undefined;
  const location = globals.get('--repo') ?? globals.get('-r') ?? process.env['HOLDFAST_REPOSITORY'];
  if (!location) return undefined;
  const { scheme, rest } = splitLocation(location);
  if ((scheme !== undefined && scheme !== 'local') || rest === '') return undefined;
  const o: PasswordOptions = { passwordFile: globals.get('--password-file'), passwordCommand: globals.get('--password-command') };
  const origin = passwordOrigin(o);
  if (origin === undefined || origin === 'the prompt' || origin.endsWith('-command') || origin.endsWith('_COMMAND')) return undefined;
  try {
    const keys = join(resolve(rest), OBJECT_FOLDERS.key);
    const names = readdirSync(keys);
    if (names.length !== 1) return undefined;
    const file = join(keys, names[0]!);
    if (statSync(file).size > MAX_KEY_BYTES) return undefined;
    const kdf = decodeKeyFile(readFileSync(file), 'key').kdf;
    if (costTimes(kdf) > 1) return undefined;
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

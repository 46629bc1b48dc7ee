/**
 * `holdfast escrow keygen --out FILE` makes a customer's recovery key pair
 * (docs/format.md §2.8): the private key file stays with the customer, off
 * the server; the public key is registered on the server (holdfast server
 * customer recovery-key --set), and agents seal their disk safes' passwords
 * for it. `holdfast escrow recover --key FILE --safe NAME` fetches a safe's
 * sealed password as the admin commands reach the server (`holdfast server
 * login`'s session, or HOLDFAST_SERVER and HOLDFAST_SERVER_TOKEN;
 * --server names the server) and opens it here. Flags and printing only.
 */
import type { Command } from 'commander';
import { open as openFile, readFile } from 'node:fs/promises';
import type { EscrowBody, SafeBody } from '../api/v1.js';
import { ServerApiError } from '../agent/server-api.js';
import { AuthenticationError } from '../core/crypto.js';
import { decodeRecoveryKeyFile, encodeRecoveryKeyFile, EscrowFormatError, newRecoveryKeyPair, openRecoveryBox, WrongPassphraseError, WrongRecoveryKeyError } from '../core/escrow.js';
import { globals, honours, say } from './context.js';
import { scryptParams } from './environment.js';
import { ExitError, EXIT } from './exit-codes.js';
import { getNewPassword, prompt, readPasswordFile, withPassword } from './password.js';
import { withServer } from './server-client.js';

/** Writes `text` to a new file `path`, mode 0600; a file already there is refused (it may be the only copy of a key). */
async function writeNew(path: string, text: string | Buffer, what: string): Promise<void> {
  const f = await openFile(path, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
    throw new ExitError(e.code === 'EEXIST' ? `${path} exists: the ${what} is never written over an existing file` : `cannot write the ${what} to ${path}: ${e.message}`, EXIT.failed);
  });
  try {
    await f.chmod(0o600); // whatever the umask
    await f.writeFile(text);
    await f.sync();
  } finally {
    await f.close();
  }
}

interface KeygenFlags {
  out?: string;
  publicOut?: string;
  passphraseFile?: string;
  passphrase?: boolean;
}

interface RecoverFlags {
  key?: string;
  server?: string;
  safe?: string;
  out?: string;
  passphraseFile?: string;
}

/** The escrow's errors become plain messages and exit code 1. */
function explained(e: unknown): never {
  if (e instanceof ServerApiError || e instanceof EscrowFormatError || e instanceof WrongRecoveryKeyError || e instanceof WrongPassphraseError) throw new ExitError(e.message, EXIT.failed);
  if (e instanceof AuthenticationError) throw new ExitError('the escrowed password does not open: it was altered on the server, or it is another safe\'s', EXIT.failed);
  throw e;
}

export function register(program: Command): void {
  const escrow = program.command('escrow').description('a customer\'s recovery key, for which agents escrow their disk safes\' passwords on the server');

  honours(escrow.command('keygen'), 'quiet')
    .description('make a recovery key pair: the private key file stays with you, the public key is registered on the server')
    .option('--out <file>', 'where to write the private key file (mode 0600; never over an existing file); required')
    .option('--public-out <file>', 'also write the public key to this file')
    .option('--passphrase', 'seal the private key file with a passphrase, asked twice on the terminal')
    .option('--passphrase-file <file>', 'seal the private key file with the passphrase in the first line of this file')
    .action(async (flags: KeygenFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.out === undefined) throw new ExitError('holdfast escrow keygen needs --out FILE: where the private key goes', EXIT.usage);
      const pair = newRecoveryKeyPair();
      try {
        const text = flags.passphrase || flags.passphraseFile !== undefined
          ? await withPassword(getNewPassword(flags.passphraseFile, '--passphrase-file'), (pw) => encodeRecoveryKeyFile(pair, pw, scryptParams()))
          : await encodeRecoveryKeyFile(pair);
        await writeNew(flags.out, text, 'private key');
        if (flags.publicOut !== undefined) await writeNew(flags.publicOut, `${pair.publicKey}\n`, 'public key');
      } finally {
        pair.privateKey.fill(0);
      }
      say(g, `private key written to ${flags.out} (mode 0600): keep it, and a copy, off the server; whoever holds it can read every escrowed password`);
      say(g, 'public key (register it: holdfast server customer recovery-key CUSTOMER --set KEY):');
      process.stdout.write(`${pair.publicKey}\n`);
    });

  honours(escrow.command('recover'), 'fingerprint', 'cacert', 'quiet')
    .description('fetch a disk safe\'s escrowed password from the server and open it with the private key (as a customer admin: holdfast server login, or HOLDFAST_SERVER_TOKEN)')
    .option('--key <file>', 'the private key file made by holdfast escrow keygen; required')
    .option('--server <url>', 'the server, https://HOST:PORT (default: the one holdfast server login or HOLDFAST_SERVER names)')
    .option('--safe <name>', 'the disk safe\'s name (or id); required')
    .option('--out <file>', 'write the password to this file (mode 0600) instead of printing it')
    .option('--passphrase-file <file>', 'the private key file\'s passphrase, in the first line of this file (else asked on the terminal)')
    .action(async (flags: RecoverFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.key === undefined || flags.safe === undefined) throw new ExitError('holdfast escrow recover needs --key FILE and --safe NAME', EXIT.usage);
      const keyText = await readFile(flags.key, 'utf8').catch((e: Error) => {
        throw new ExitError(`cannot read the private key file ${flags.key!}: ${e.message}`, EXIT.failed);
      });
      const file = (() => {
        try {
          return decodeRecoveryKeyFile(keyText, flags.key);
        } catch (e) {
          return explained(e);
        }
      })();
      let privateKey: Buffer;
      if (!file.sealed) {
        privateKey = await file.privateKey();
      } else {
        if (flags.passphraseFile === undefined && !process.stdin.isTTY) throw new ExitError(`${flags.key} is sealed with a passphrase: give it with --passphrase-file`, EXIT.failed);
        const pass = flags.passphraseFile !== undefined ? readPasswordFile(flags.passphraseFile, '--passphrase-file') : prompt(`passphrase of ${flags.key}: `).then((a) => Buffer.from(a, 'utf8'));
        privateKey = await withPassword(pass, (pw) => file.privateKey(pw)).catch(explained);
      }
      let password: Buffer;
      try {
        password = await withServer(g, async (c) => {
          const safes = await c.get<SafeBody[]>('/safes');
        // Names are unique within a customer: one who sees several customers' safes (provider staff) may meet the name twice.
          const named = safes.filter((s) => s.id === flags.safe || s.name === flags.safe);
          const safe = named[0];
          if (safe === undefined) throw new ExitError(`the server has no disk safe ${flags.safe} that you may read (disk safes: holdfast server safe list)`, EXIT.failed);
          if (named.length > 1) {
            throw new ExitError(`${named.length} disk safes are named ${flags.safe}: give --safe the id of one (${named.map((s) => `${s.id} of customer ${s.customer_id}`).join(', ')})`, EXIT.usage);
          }
          const escrowed = await c.get<EscrowBody>(`/safes/${encodeURIComponent(safe.id)}/escrow`);
          try {
            return openRecoveryBox(privateKey, Buffer.from(escrowed.wrapped_password, 'base64'), safe.name);
          } catch (e) {
            return explained(e);
          }
        }, flags.server);
      } finally {
        privateKey.fill(0);
      }
      try {
        if (flags.out !== undefined) {
          await writeNew(flags.out, Buffer.concat([password, Buffer.from('\n')]), 'password');
          say(g, `the password of disk safe ${flags.safe} is in ${flags.out} (mode 0600): use it with --password-file ${flags.out}`);
        } else {
          process.stdout.write(Buffer.concat([password, Buffer.from('\n')]));
        }
      } finally {
        password.fill(0);
      }
    });
}

/**
 * `holdfast escrow keygen --out FILE` makes a customer's recovery key pair
 * (docs/format.md §2.8): the private key file stays with the customer, off
 * the server; the public key is registered on the server, and agents seal
 * their disk safes' passwords for it. `holdfast escrow recover --key FILE
 * --server https://HOST:PORT --safe NAME` fetches a safe's sealed password
 * with a customer admin's token (HOLDFAST_TOKEN: a session or an API token
 * with the read right) and opens it here. Flags and printing only.
 */
import type { Command } from 'commander';
import { open as openFile, readFile } from 'node:fs/promises';
import type { EscrowBody, SafeBody } from '../api/v1.js';
import { ServerApi, ServerApiError } from '../agent/server-api.js';
import { AuthenticationError } from '../core/crypto.js';
import { decodeRecoveryKeyFile, encodeRecoveryKeyFile, EscrowFormatError, newRecoveryKeyPair, openRecoveryBox, WrongPassphraseError, WrongRecoveryKeyError } from '../core/escrow.js';
import { globals, honours, say } from './context.js';
import { httpSettings, scryptParams } from './environment.js';
import { ExitError, EXIT } from './exit-codes.js';
import { getNewPassword, prompt, readPasswordFile, withPassword } from './password.js';

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
      say(g, 'public key (register it: PUT /api/v1/customers/CUSTOMER/recovery-key {"public_key": …}):');
      process.stdout.write(`${pair.publicKey}\n`);
    });

  honours(escrow.command('recover'), 'fingerprint', 'cacert', 'quiet')
    .description('fetch a disk safe\'s escrowed password from the server and open it with the private key (HOLDFAST_TOKEN: a customer admin\'s session or token)')
    .option('--key <file>', 'the private key file made by holdfast escrow keygen; required')
    .option('--server <url>', 'the server, https://HOST:PORT; required')
    .option('--safe <name>', 'the disk safe\'s name (or id); required')
    .option('--out <file>', 'write the password to this file (mode 0600) instead of printing it')
    .option('--passphrase-file <file>', 'the private key file\'s passphrase, in the first line of this file (else asked on the terminal)')
    .action(async (flags: RecoverFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.key === undefined || flags.server === undefined || flags.safe === undefined) {
        throw new ExitError('holdfast escrow recover needs --key FILE, --server https://HOST:PORT and --safe NAME', EXIT.usage);
      }
      const http = await httpSettings(g.fingerprint, g.cacert);
      if (http.token === undefined) throw new ExitError('holdfast escrow recover needs HOLDFAST_TOKEN: a customer admin\'s session token (POST /api/v1/login) or an API token with the read right', EXIT.usage);
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
      const api = new ServerApi({ server: flags.server, token: http.token, ...(http.fingerprint ? { fingerprint: http.fingerprint } : {}), ...(http.ca ? { ca: http.ca } : {}) });
      let password: Buffer;
      try {
        const safes = (await api.call<SafeBody[]>('GET', '/api/v1/safes').catch(explained)).body;
        // Names are unique within a customer: one who sees several customers' safes (provider staff) may meet the name twice.
        const named = safes.filter((s) => s.id === flags.safe || s.name === flags.safe);
        const safe = named[0];
        if (safe === undefined) throw new ExitError(`the server has no disk safe ${flags.safe} that this token may read`, EXIT.failed);
        if (named.length > 1) {
          throw new ExitError(`${named.length} disk safes are named ${flags.safe}: give --safe the id of one (${named.map((s) => `${s.id} of customer ${s.customer_id}`).join(', ')})`, EXIT.usage);
        }
        const escrowed = (await api.call<EscrowBody>('GET', `/api/v1/safes/${encodeURIComponent(safe.id)}/escrow`).catch(explained)).body;
        password = (() => {
          try {
            return openRecoveryBox(privateKey, Buffer.from(escrowed.wrapped_password, 'base64'), safe.name);
          } catch (e) {
            return explained(e);
          }
        })();
      } finally {
        api.close();
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

/**
 * `holdfast server login --server https://HOST:PORT [--user NAME]
 * [--fingerprint SHA256:…] [--password-file FILE] [--new-password-file FILE]
 * [--with-token]` and `holdfast server logout`: a person logs in with their
 * password (a session of the server's, kept until it expires), or keeps an
 * API token read from stdin, in the session file of server-client.ts. A
 * first login with a one-time password changes it on the way. Flags and
 * printing only.
 */
import type { Command } from 'commander';
import type { MeBody, SessionBody } from '../api/v1.js';
import { globals, honours, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { getNewPassword, readSecret } from './password.js';
import { clientFor, forgetSession, readSession, saveSession, serverOrigin, type SavedSession } from './server-client.js';
import { printBody, when } from './server-output.js';

/** The first account a server makes, which `--user` names by default. */
const FIRST_ADMIN = 'admin';

interface LoginFlags {
  server?: string;
  user: string;
  newPasswordFile?: string;
  withToken?: boolean;
}

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  honours(server.command('login'), 'fingerprint', 'cacert', 'passwordFile', 'json', 'quiet')
    .description('log in to a holdfast server\'s API for the other "holdfast server" commands: the password is read from --password-file, '
      + 'else from stdin when it is not a terminal, else asked; the session is kept, mode 0600, in ~/.config/holdfast/server-session.json')
    .option('--server <url>', 'the server, https://HOST:PORT (or HOLDFAST_SERVER); required')
    .option('--user <name>', 'the account to log in as', FIRST_ADMIN)
    .option('--new-password-file <file>', 'at a first login with a one-time password: read the new password from this file (else asked twice on the terminal)')
    .option('--with-token', 'keep an API token read from stdin instead of logging in with a password')
    .action(async (flags: LoginFlags, cmd: Command) => {
      const g = globals(cmd);
      const given = flags.server ?? (process.env['HOLDFAST_SERVER'] || undefined);
      if (given === undefined) throw new ExitError('holdfast server login needs --server https://HOST:PORT (or HOLDFAST_SERVER)', EXIT.usage);
      const server = serverOrigin(given, '--server');
      // The fingerprint pinned now is kept with the session: later commands pin it too.
      const previous = await readSession();
      const pinned = g.fingerprint ?? (process.env['HOLDFAST_FINGERPRINT'] || undefined) ?? (previous?.server === server ? previous.fingerprint : undefined);
      let saved: SavedSession;
      if (flags.withToken) {
        const token = await readSecret(undefined, '--with-token', 'API token: ');
        const c = await clientFor(g, server, token, pinned, 'the token is refused');
        try {
          const me = await c.get<MeBody>('/me');
          saved = { server, ...(pinned ? { fingerprint: pinned } : {}), token, kind: 'token', name: me.token?.name ?? '', expires_at: me.token?.expires_at ?? null };
        } finally {
          c.close();
        }
      } else {
        const password = await readSecret(g.passwordFile, '--password-file', `password of ${flags.user} at ${server}: `);
        const c = await clientFor(g, server, undefined, pinned, 'check the user name and password');
        let session: SessionBody;
        try {
          session = await c.post<SessionBody>('/login', { name: flags.user, password });
        } finally {
          c.close();
        }
        if (session.user.must_change_password) await changeOneTimePassword(g, server, pinned, session.token, password, flags.newPasswordFile);
        saved = { server, ...(pinned ? { fingerprint: pinned } : {}), token: session.token, kind: 'session', name: session.user.name, expires_at: session.expires_at };
      }
      const file = await saveSession(saved);
      if (g.json) {
        printBody({ server, kind: saved.kind, name: saved.name, expires_at: saved.expires_at, session_file: file });
        return;
      }
      const who = saved.kind === 'session' ? `as ${saved.name}` : `with the API token ${JSON.stringify(saved.name)}`;
      say(g, `logged in to ${server} ${who}${saved.expires_at ? ` until ${when(saved.expires_at)}` : ''}; kept in ${file}`);
    });

  honours(server.command('logout'), 'fingerprint', 'cacert', 'quiet')
    .description('end the session kept by "holdfast server login" (an API token kept instead is forgotten here, not revoked)')
    .action(async (_flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const saved = await readSession();
      if (saved === undefined) {
        say(g, 'not logged in');
        return;
      }
      if (saved.kind === 'session') {
        const c = await clientFor(g, saved.server, saved.token, saved.fingerprint, '');
        // A session that expired or was ended elsewhere is over already; the file goes either way.
        await c.post('/logout').catch((e: unknown) => {
          if (!(e instanceof ExitError && e.exitCode === EXIT.wrongPassword)) throw e;
        }).finally(() => c.close());
      }
      await forgetSession();
      say(g, `logged out of ${saved.server}`);
    });
}

/** A first login: the one-time password is replaced by one from `file`, else asked twice on the terminal. */
async function changeOneTimePassword(g: ReturnType<typeof globals>, server: string, pinned: string | undefined, token: string, current: string, file: string | undefined): Promise<void> {
  if (file === undefined && !process.stdin.isTTY) {
    throw new ExitError('this is the account\'s one-time password, which must be changed at the first login: give the new one with --new-password-file FILE', EXIT.failed);
  }
  if (file === undefined) process.stderr.write('the password is a one-time password: choose a new one (at least 12 characters)\n');
  const fresh = await getNewPassword(file);
  const c = await clientFor(g, server, token, pinned, '');
  try {
    await c.post('/me/password', { current_password: current, new_password: fresh.toString('utf8') });
  } finally {
    fresh.fill(0);
    c.close();
  }
  say(g, 'the one-time password is changed');
}

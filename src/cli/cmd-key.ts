/** `holdfast key add | list | remove | passwd`: the passwords of a repository. */
import type { Command } from 'commander';
import { globals, openRepo, refuseIfAppendOnly, say } from './context.js';
import { localIso } from '../core/local-time.js';
import { getNewPassword, withPassword } from './password.js';
import { scryptParams } from './environment.js';
import { ExitError, EXIT } from './exit-codes.js';

export function register(program: Command): void {
  const key = program.command('key').description('manage the passwords (keys) of the repository');
  key.command('list').description('list keys').action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    const repo = await openRepo(g, { index: false });
    const keys = await repo.listKeys();
    if (g.json) {
      process.stdout.write(`${JSON.stringify(keys.map((k) => (k.file
        ? { id: k.id, current: k.current, created: k.file.created, hostname: k.file.hostname, username: k.file.username, kdf: { algorithm: k.file.kdf.algorithm, n: k.file.kdf.N, r: k.file.kdf.r, p: k.file.kdf.p } }
        : { id: k.id, current: false, problem: k.problem })), null, 2)}\n`);
      return;
    }
    say(g, ` ${'ID'.padEnd(10)}${'User'.padEnd(12)}${'Host'.padEnd(16)}Created`);
    for (const k of keys) {
      say(g, k.file
        ? `${k.current ? '*' : ' '}${k.id.slice(0, 8).padEnd(10)}${k.file.username.padEnd(12)}${k.file.hostname.padEnd(16)}${localIso(k.file.created)}`
        : ` ${k.id.slice(0, 8).padEnd(10)}unusable: ${k.problem ?? ''}`);
    }
  });
  key.command('add').description('add a password').option('--new-password-file <file>', 'read the new password from a file')
    .action(async (o: { newPasswordFile?: string }, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g, { index: false });
      const id = await withPassword(getNewPassword(o.newPasswordFile), (pw) => repo.addKey(pw, scryptParams()));
      say(g, `added key ${id.slice(0, 8)}`);
    });
  key.command('remove').description('remove a key').argument('<id>', 'key id or unique prefix')
    .action(async (prefix: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g, { index: false });
      refuseIfAppendOnly(repo.backend, 'key remove');
      const matching = (await repo.listKeys()).filter((k) => k.id.startsWith(prefix));
      if (matching.length !== 1) throw new ExitError(`key id ${prefix} matches ${matching.length} keys`, EXIT.failed);
      await repo.removeKey(matching[0]!.id);
      say(g, `removed key ${matching[0]!.id.slice(0, 8)}`);
    });
  key.command('passwd').description('change the password in use').option('--new-password-file <file>', 'read the new password from a file')
    .action(async (o: { newPasswordFile?: string }, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g, { index: false });
      refuseIfAppendOnly(repo.backend, 'key passwd (it removes the old key)');
      const id = await withPassword(getNewPassword(o.newPasswordFile), (pw) => repo.addKey(pw, scryptParams()));
      await repo.removeKey(repo.keyId, true);
      say(g, `password changed (key ${id.slice(0, 8)} replaces ${repo.keyId.slice(0, 8)})`);
    });
}

/**
 * `holdfast server user list | create NAME --role ROLE [--customer
 * CUSTOMER] | show USER`: the people who log in to the server, through the
 * API. A new user's one-time password is printed once. Flags and printing only.
 */
import { Option, type Command } from 'commander';
import { ROLE_NAMES, type CreatedUserBody, type UserBody } from '../api/v1.js';
import { globals } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, namesOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const user = server.command('user').description('the people who log in: list, create (with a one-time password, shown once), show');

  user.command('list').description('the users the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers] = await withServer(g, async (c) => [await c.get<UserBody[]>('/users'), await namesOf(c, '/customers')] as const);
      if (g.json) return printBody(all);
      printTable(g, 'no users', ['ID', 'NAME', 'ROLE', 'CUSTOMER', 'CREATED'],
        all.map((u) => [u.id, u.name, u.role, u.customer_id === null ? '-' : customers.get(u.customer_id) ?? u.customer_id, when(u.created_at)]));
    });

  user.command('create').description('add a user; the server makes a one-time password, printed once and changed at the first login')
    .argument('<name>')
    .addOption(new Option('--role <role>', 'the user\'s role; required').choices(ROLE_NAMES))
    .option('--customer <customer>', 'the customer (a name or an id) of a customer-admin or customer-viewer')
    .action(async (name: string, flags: { role?: (typeof ROLE_NAMES)[number]; customer?: string }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.role === undefined) throw new ExitError(`holdfast server user create needs --role (${ROLE_NAMES.join(', ')})`, EXIT.usage);
      const made = await withServer(g, async (c) => c.post<CreatedUserBody>('/users', {
        name, role: flags.role, ...(flags.customer === undefined ? {} : { customer_id: await idOf(c, 'customer', flags.customer) }),
      }));
      if (g.json) return printBody(made);
      // Printed even with --quiet: it is shown this once and never again.
      process.stdout.write(`created user ${made.user.name} (${made.user.role}): ${made.user.id}\none-time password: ${made.password}\n`
        + `(shown only now; it must be changed at the first login: holdfast server login --user ${made.user.name})\n`);
    });

  user.command('show').description('one user').argument('<user>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [u, customer] = await withServer(g, async (c) => {
        const got = await c.get<UserBody>(`/users/${await idOf(c, 'user', ref)}`);
        return [got, await labelOf(c, '/customers', got.customer_id)] as const;
      });
      if (g.json) return printBody(u);
      printFields(g, [['id', u.id], ['name', u.name], ['role', u.role], ['customer', customer],
        ['must change password', u.must_change_password ? 'yes' : 'no'], ['created', when(u.created_at)]]);
    });
}

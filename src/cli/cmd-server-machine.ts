/**
 * `holdfast server machine list | create NAME --customer CUSTOMER | show
 * MACHINE | delete MACHINE`: the protected machines, through the API (an
 * agent's enrolment makes its machine; `create` is for a machine set up by
 * hand; `delete` retires one, keeping its disk safes). MACHINE is a name or
 * an id. Flags and printing only.
 */
import type { Command } from 'commander';
import type { MachineBody } from '../api/v1.js';
import { globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, namesOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const machine = server.command('machine').description('the protected machines: list, create, show, delete (last seen: its agent\'s last poll or report)');

  machine.command('list').description('the machines the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers] = await withServer(g, async (c) => [await c.get<MachineBody[]>('/machines'), await namesOf(c, '/customers')] as const);
      if (g.json) return printBody(all);
      printTable(g, 'no machines', ['ID', 'NAME', 'CUSTOMER', 'LAST SEEN'],
        all.map((m) => [m.id, m.name, customers.get(m.customer_id) ?? m.customer_id, when(m.last_seen_at)]));
    });

  machine.command('create').description('add a machine of a customer').argument('<name>')
    .option('--customer <customer>', 'its customer (a name or an id); required')
    .action(async (name: string, flags: { customer?: string }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.customer === undefined) throw new ExitError('holdfast server machine create needs --customer CUSTOMER', EXIT.usage);
      const made = await withServer(g, async (c) => c.post<MachineBody>('/machines', { customer_id: await idOf(c, 'customer', flags.customer!), name }));
      if (g.json) return printBody(made);
      say(g, `created machine ${made.name}: ${made.id}`);
    });

  machine.command('show').description('one machine').argument('<machine>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [m, customer] = await withServer(g, async (c) => {
        const got = await c.get<MachineBody>(`/machines/${await idOf(c, 'machine', ref)}`);
        return [got, await labelOf(c, '/customers', got.customer_id)] as const;
      });
      if (g.json) return printBody(m);
      printFields(g, [['id', m.id], ['name', m.name], ['customer', customer], ['created', when(m.created_at)], ['last seen', when(m.last_seen_at)],
        ['last backup', m.last_backup_at === null ? 'never' : when(m.last_backup_at)],
        ['proven restorable', m.proven_restorable_at === null ? 'never (no restore test has passed)' : `${when(m.proven_restorable_at)}: snapshot ${m.proven_restorable_snapshot!.slice(0, 8)}`],
        ...(m.retired_at === null ? [] : [['retired', when(m.retired_at)] as const])]);
    });

  machine.command('delete').description('retire a machine: its tokens revoked, its queued jobs cancelled; its disk safes are kept, for a replacement machine to take over')
    .argument('<machine>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const m = await withServer(g, async (c) => c.delete<MachineBody>(`/machines/${await idOf(c, 'machine', ref)}`));
      if (g.json) return printBody(m);
      say(g, `retired machine ${m.name} (${m.id}): its tokens are revoked; its disk safes are kept, without a machine (holdfast agent enroll --safe NAME on a new machine takes one over)`);
    });
}

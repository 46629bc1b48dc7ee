/**
 * `holdfast server customer list | create NAME | show CUSTOMER`: the
 * server's customers (tenants), through the API. CUSTOMER is a name or an
 * id. Flags and printing only.
 */
import type { Command } from 'commander';
import type { CustomerBody } from '../api/v1.js';
import { globals, say } from './context.js';
import { idOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const customer = server.command('customer').description('the server\'s customers: list, create (provider admins), show');

  customer.command('list').description('the customers the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const all = await withServer(g, (c) => c.get<CustomerBody[]>('/customers'));
      if (g.json) return printBody(all);
      printTable(g, 'no customers', ['ID', 'NAME', 'CREATED'], all.map((r) => [r.id, r.name, when(r.created_at)]));
    });

  customer.command('create').description('add a customer').argument('<name>')
    .action(async (name: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const made = await withServer(g, (c) => c.post<CustomerBody>('/customers', { name }));
      if (g.json) return printBody(made);
      say(g, `created customer ${made.name}: ${made.id}`);
    });

  customer.command('show').description('one customer').argument('<customer>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const r = await withServer(g, async (c) => c.get<CustomerBody>(`/customers/${await idOf(c, 'customer', ref)}`));
      if (g.json) return printBody(r);
      printFields(g, [['id', r.id], ['name', r.name], ['created', when(r.created_at)]]);
    });
}

/**
 * `holdfast server customer list | create NAME | show CUSTOMER | quota
 * CUSTOMER [--hard SIZE|none] [--soft SIZE|none] | recovery-key CUSTOMER
 * [--set PUBLIC_KEY | --set-file FILE]`: the server's customers (tenants),
 * through the API. CUSTOMER is a name or an id. Flags and printing only.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { CustomerBody, RecoveryKeyBody } from '../api/v1.js';
import { quotaLine, quotaOrNone, quotaText, quotaUpdate, type QuotaFlags } from './cmd-server-safe.js';
import { formatBytes, globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const customer = server.command('customer').description('the server\'s customers: list, create (provider admins), show, quota, recovery-key');

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
      printFields(g, [['id', r.id], ['name', r.name], ['stored', formatBytes(r.stored_bytes)], ['soft quota', quotaText(r.quota_soft)], ['hard quota', quotaText(r.quota_hard)],
        ['created', when(r.created_at)]]);
    });

  customer.command('quota').description('show a customer\'s quotas (all its disk safes together) and stored bytes, or set them (provider roles only)').argument('<customer>', 'its name or id')
    .option('--hard <size>', 'refuse uploads past this many stored bytes (such as 500G, 2T), or none', quotaOrNone('--hard'))
    .option('--soft <size>', 'warn past this many stored bytes, or none', quotaOrNone('--soft'))
    .action(async (ref: string, flags: QuotaFlags, cmd: Command) => {
      const g = globals(cmd);
      const change = quotaUpdate(flags);
      const r = await withServer(g, async (c) => {
        const id = await idOf(c, 'customer', ref);
        return change === undefined ? c.get<CustomerBody>(`/customers/${id}`) : c.patch<CustomerBody>(`/customers/${id}`, change);
      });
      if (g.json) return printBody(r);
      say(g, `customer ${r.name}: ${quotaLine(r)}`);
    });

  customer.command('recovery-key').description('show the customer\'s recovery public key (agents escrow their disk safes\' passwords for it), or set it (holdfast escrow keygen makes one)')
    .argument('<customer>', 'its name or id')
    .option('--set <public-key>', 'register this public key (the line holdfast escrow keygen prints)')
    .option('--set-file <file>', 'register the public key in this file (holdfast escrow keygen --public-out)')
    .action(async (ref: string, flags: { set?: string; setFile?: string }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.set !== undefined && flags.setFile !== undefined) throw new ExitError('give the public key with --set or with --set-file, not both', EXIT.usage);
      const key = flags.setFile === undefined ? flags.set : (await readFile(flags.setFile, 'utf8').catch((e: Error) => {
        throw new ExitError(`cannot read the public key file ${flags.setFile!}: ${e.message}`, EXIT.failed);
      })).trim();
      const [name, r] = await withServer(g, async (c) => {
        const id = await idOf(c, 'customer', ref);
        const named = (await c.get<CustomerBody>(`/customers/${id}`)).name;
        return [named, key === undefined ? await c.get<RecoveryKeyBody>(`/customers/${id}/recovery-key`) : await c.put<RecoveryKeyBody>(`/customers/${id}/recovery-key`, { public_key: key })] as const;
      });
      if (g.json) return printBody(r);
      if (key !== undefined) say(g, `registered the recovery key of customer ${name}: its agents seal their disk safes' passwords for it at their next poll`);
      printFields(g, [['customer', name], ['public key', r.public_key], ['set', `${when(r.set_at)} by ${r.set_by}`]]);
    });
}

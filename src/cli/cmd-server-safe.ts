/**
 * `holdfast server safe list | create NAME --customer CUSTOMER [--machine
 * MACHINE] [--quota-hard SIZE] [--quota-soft SIZE] | show SAFE`: the disk
 * safes, through the API. SAFE is a name or an id. Flags and printing only.
 */
import type { Command } from 'commander';
import type { SafeBody } from '../api/v1.js';
import { parseSize } from '../core/size.js';
import { formatBytes, globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, namesOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

interface CreateFlags {
  customer?: string;
  machine?: string;
  quotaHard?: number;
  quotaSoft?: number;
}

/** A commander parser for a quota: a size of at least one byte ("500G", "2T"). */
function quota(option: string): (text: string) => number {
  return (text) => {
    const n = parseSize(text);
    if (n === undefined || n < 1) throw new ExitError(`${option} "${text}": give a size such as 500G or 2T`, EXIT.usage);
    return n;
  };
}

const quotaText = (n: number | null): string => (n === null ? '-' : formatBytes(n));

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const safe = server.command('safe').description('the disk safes: list, create, show');

  safe.command('list').description('the disk safes the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers, machines] = await withServer(g, async (c) => [
        await c.get<SafeBody[]>('/safes'), await namesOf(c, '/customers'), await namesOf(c, '/machines'),
      ] as const);
      if (g.json) return printBody(all);
      printTable(g, 'no disk safes', ['NAME', 'ID', 'CUSTOMER', 'MACHINE', 'QUOTA (SOFT / HARD)'], all.map((s) => [
        s.name, s.id, customers.get(s.customer_id) ?? s.customer_id, s.machine_id === null ? '-' : machines.get(s.machine_id) ?? s.machine_id,
        `${quotaText(s.quota_soft)} / ${quotaText(s.quota_hard)}`,
      ]));
    });

  safe.command('create').description('add a disk safe of a customer (NAME is its name in https://HOST:PORT/safes/NAME)').argument('<name>')
    .option('--customer <customer>', 'its customer (a name or an id); required')
    .option('--machine <machine>', 'the machine it belongs to (a name or an id)')
    .option('--quota-hard <size>', 'refuse uploads past this many stored bytes (provider roles only)', quota('--quota-hard'))
    .option('--quota-soft <size>', 'warn past this many stored bytes (provider roles only)', quota('--quota-soft'))
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.customer === undefined) throw new ExitError('holdfast server safe create needs --customer CUSTOMER', EXIT.usage);
      const made = await withServer(g, async (c) => c.post<SafeBody>('/safes', {
        customer_id: await idOf(c, 'customer', flags.customer!), name,
        ...(flags.machine === undefined ? {} : { machine_id: await idOf(c, 'machine', flags.machine) }),
        ...(flags.quotaHard === undefined ? {} : { quota_hard: flags.quotaHard }),
        ...(flags.quotaSoft === undefined ? {} : { quota_soft: flags.quotaSoft }),
      }));
      if (g.json) return printBody(made);
      say(g, `created disk safe ${made.name}: ${made.id}`);
    });

  safe.command('show').description('one disk safe').argument('<safe>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const s = await withServer(g, async (c) => c.get<SafeBody>(`/safes/${await idOf(c, 'safe', ref)}`));
      if (g.json) return printBody(s);
      printFields(g, [['id', s.id], ['name', s.name], ['customer', s.customer_id], ['machine', s.machine_id ?? '-'],
        ['soft quota', quotaText(s.quota_soft)], ['hard quota', quotaText(s.quota_hard)], ['created', when(s.created_at)]]);
    });
}

/**
 * `holdfast server token list | create --customer CUSTOMER --name NAME
 * --rights R[,R] [--machine MACHINE] [--take-over SAFE] [--expires WHEN] |
 * show ID | revoke ID`: API tokens, through the API. A new token's secret is
 * printed once.
 * Flags and printing only.
 */
import type { Command } from 'commander';
import { CREATABLE_RIGHT_NAMES, type CreatedTokenBody, type TokenBody } from '../api/v1.js';
import { parseDuration } from '../repo/deletion-marker.js';
import { globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, namesOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

type Right = (typeof CREATABLE_RIGHT_NAMES)[number];

interface CreateFlags {
  customer?: string;
  name?: string;
  rights?: Right[];
  machine?: string;
  takeOver?: string;
  expires?: string;
}

/** `read,backup` → the rights, each one of CREATABLE_RIGHT_NAMES (commander parser). */
function rights(text: string): Right[] {
  const list = text.split(',').map((r) => r.trim()).filter(Boolean);
  const bad = list.filter((r) => !(CREATABLE_RIGHT_NAMES as readonly string[]).includes(r));
  if (list.length === 0 || bad.length > 0) throw new ExitError(`--rights "${text}": give one or more of ${CREATABLE_RIGHT_NAMES.join(', ')}, separated by commas`
    + `${bad.includes('restore') ? ' (a restore token reads one disk safe: holdfast server safe restore-token SAFE makes one)' : ''}`, EXIT.usage);
  return [...new Set(list)] as Right[];
}

/** `--expires`: a duration from now (`90d`, `12h`) or a date and time (`2027-01-31`, ISO 8601), as ISO 8601 UTC. */
function expiry(text: string): string {
  if (/^\d+(\.\d+)?(ms|s|m|h|d)/.test(text)) {
    try {
      return new Date(Date.now() + parseDuration(text)).toISOString();
    } catch {
      // Said below, with both forms.
    }
  } else if (/^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(Date.parse(text))) {
    return new Date(text).toISOString();
  }
  throw new ExitError(`--expires "${text}": give a duration from now (90d, 12h) or a date (2027-01-31, or an ISO 8601 time)`, EXIT.usage);
}

function state(t: TokenBody): string {
  if (t.revoked_at !== null) return 'revoked';
  if (t.expires_at !== null && Date.parse(t.expires_at) <= Date.now()) return 'expired';
  return 'live';
}

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const token = server.command('token').description('API tokens: list, create (the secret printed once), show, revoke');

  token.command('list').description('the tokens the caller can see (never their secrets)')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers, machines, safes] = await withServer(g, async (c) => [
        await c.get<TokenBody[]>('/tokens'), await namesOf(c, '/customers'), await namesOf(c, '/machines'), await namesOf(c, '/safes'),
      ] as const);
      if (g.json) return printBody(all);
      // SAFE: the one disk safe a takeover or restore token is for.
      printTable(g, 'no tokens', ['ID', 'NAME', 'CUSTOMER', 'MACHINE', 'SAFE', 'RIGHTS', 'EXPIRES', 'STATE'], all.map((t) => [
        t.id, t.name, customers.get(t.customer_id) ?? t.customer_id, t.machine_id === null ? '-' : machines.get(t.machine_id) ?? t.machine_id,
        t.safe_id === null ? '-' : safes.get(t.safe_id) ?? t.safe_id, t.rights.join(','), when(t.expires_at), state(t),
      ]));
    });

  token.command('create').description('make a token of a customer (or of one of its machines); its secret is printed this once')
    .option('--customer <customer>', 'the customer (a name or an id); required')
    .option('--name <name>', 'what the token is for; required')
    .option('--rights <rights>', `what it may do, separated by commas: ${CREATABLE_RIGHT_NAMES.join(', ')}; required`, rights)
    .option('--machine <machine>', 'only this machine of the customer (a name or an id)')
    .option('--take-over <safe>', 'with --rights enroll: the token enrols one machine onto this disk safe of the customer (a name or an id) once its machine is retired, and nothing else')
    .option('--expires <when>', 'when it stops working: a duration from now (90d) or a date (2027-01-31)', expiry)
    .action(async (flags: CreateFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.customer === undefined || flags.name === undefined || flags.rights === undefined) {
        throw new ExitError('holdfast server token create needs --customer CUSTOMER, --name NAME and --rights RIGHTS', EXIT.usage);
      }
      const made = await withServer(g, async (c) => {
        const customer = await idOf(c, 'customer', flags.customer!);
        return c.post<CreatedTokenBody>('/tokens', {
          customer_id: customer, name: flags.name, rights: flags.rights,
          ...(flags.machine === undefined ? {} : { machine_id: await idOf(c, 'machine', flags.machine, customer) }),
          ...(flags.takeOver === undefined ? {} : { take_over: await idOf(c, 'safe', flags.takeOver, customer) }),
          ...(flags.expires === undefined ? {} : { expires_at: flags.expires }),
        });
      });
      if (g.json) return printBody(made);
      // Printed even with --quiet: it is shown this once and never again.
      process.stdout.write(`created token ${made.token.id} (${made.token.rights.join(',')}${made.token.safe_id === null ? '' : `, to take over disk safe ${flags.takeOver!}`}`
        + `${made.token.expires_at ? `, until ${when(made.token.expires_at)}` : ''})\n`
        + `secret: ${made.secret}\n(shown only now: the server keeps only its hash)\n`);
    });

  token.command('show').description('one token (never its secret)').argument('<id>')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [t, customer, machine, safe] = await withServer(g, async (c) => {
        const got = await c.get<TokenBody>(`/tokens/${encodeURIComponent(id)}`);
        return [got, await labelOf(c, '/customers', got.customer_id), await labelOf(c, '/machines', got.machine_id), await labelOf(c, '/safes', got.safe_id)] as const;
      });
      if (g.json) return printBody(t);
      printFields(g, [['id', t.id], ['name', t.name], ['customer', customer], ['machine', machine],
        ...(t.safe_id === null ? [] : [[t.rights.includes('enroll') ? 'takes over safe' : 'safe', safe] as const]), ['rights', t.rights.join(',')],
        ['created', `${when(t.created_at)} by ${t.created_by}`], ['expires', when(t.expires_at)], ['revoked', when(t.revoked_at)], ['state', state(t)]]);
    });

  token.command('revoke').description('revoke a token: the next request with it is refused').argument('<id>')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const t = await withServer(g, (c) => c.delete<TokenBody>(`/tokens/${encodeURIComponent(id)}`));
      if (g.json) return printBody(t);
      say(g, `revoked token ${t.id} (${t.name}) at ${when(t.revoked_at)}`);
    });
}

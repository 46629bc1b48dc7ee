/**
 * `holdfast server notification list | create NAME (--webhook URL | --smtp
 * HOST --from ADDR --to ADDR[,ADDR]) [--customer CUSTOMER] [--events
 * E[,E]] | show CHANNEL | update CHANNEL | delete CHANNEL | test CHANNEL |
 * deliveries CHANNEL`: notification channels, through the API; and
 * `holdfast server metrics-token [--remove]`. CHANNEL is a name or an id.
 * Secrets never go on the command line: a webhook's secret is made by the
 * server and printed once (or read from HOLDFAST_WEBHOOK_SECRET), an SMTP
 * password is read from HOLDFAST_SMTP_PASSWORD. Flags and printing only.
 */
import type { Command } from 'commander';
import {
  EVENT_KIND_NAMES, SMTP_SECURITY_NAMES, type ChannelBody, type ChannelTestBody, type CreatedChannelBody, type DeliveryBody, type EmailSettings, type EventKindName,
} from '../api/v1.js';
import { globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, namesOf, withServer, type AdminClient } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

interface ChannelFlags {
  customer?: string;
  events?: EventKindName[];
  webhook?: string;
  smtp?: string;
  port?: number;
  security?: EmailSettings['security'];
  user?: string;
  from?: string;
  to?: string[];
}

/** `job.failed,machine.stale` → the kinds, each one of EVENT_KIND_NAMES; `all`: every kind (commander parser). */
function events(text: string): EventKindName[] {
  if (text === 'all') return [...EVENT_KIND_NAMES];
  const list = [...new Set(text.split(',').map((e) => e.trim()).filter(Boolean))];
  const bad = list.filter((e) => !(EVENT_KIND_NAMES as readonly string[]).includes(e));
  if (list.length === 0 || bad.length > 0) throw new ExitError(`--events "${text}": give all, or one or more of ${EVENT_KIND_NAMES.join(', ')}, separated by commas`, EXIT.usage);
  return list as EventKindName[];
}

function port(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ExitError(`--port "${text}": give a port number (1-65535)`, EXIT.usage);
  return n;
}

function security(text: string): EmailSettings['security'] {
  if (!(SMTP_SECURITY_NAMES as readonly string[]).includes(text)) throw new ExitError(`--security "${text}": give ${SMTP_SECURITY_NAMES.join(', ')}`, EXIT.usage);
  return text as EmailSettings['security'];
}

const list = (text: string): string[] => text.split(',').map((s) => s.trim()).filter(Boolean);

/** The settings the flags give (webhook or e-mail), with the secrets from the environment; undefined when they give none. */
function settingsOf(flags: ChannelFlags, env: NodeJS.ProcessEnv): { webhook: { url: string; secret?: string } } | { email: EmailSettings } | undefined {
  if (flags.webhook !== undefined && flags.smtp !== undefined) throw new ExitError('a channel is a webhook (--webhook URL) or e-mail (--smtp HOST), not both', EXIT.usage);
  if (flags.webhook !== undefined) return { webhook: { url: flags.webhook, ...(env['HOLDFAST_WEBHOOK_SECRET'] ? { secret: env['HOLDFAST_WEBHOOK_SECRET'] } : {}) } };
  if (flags.smtp === undefined) return undefined;
  if (flags.from === undefined || flags.to === undefined) throw new ExitError('an e-mail channel needs --from ADDRESS and --to ADDRESS[,ADDRESS]', EXIT.usage);
  const password = env['HOLDFAST_SMTP_PASSWORD'];
  if (password && flags.user === undefined) throw new ExitError('HOLDFAST_SMTP_PASSWORD is set but --user is not: an SMTP login needs both', EXIT.usage);
  return {
    email: {
      host: flags.smtp, from: flags.from, to: flags.to, ...(flags.port === undefined ? {} : { port: flags.port }), ...(flags.security === undefined ? {} : { security: flags.security }),
      ...(flags.user === undefined ? {} : { username: flags.user }), ...(password ? { password } : {}),
    },
  };
}

function withSettingsFlags(cmd: Command): Command {
  return cmd
    .option('--webhook <url>', 'a webhook: POST the events as JSON to this http(s) URL, signed (its secret: HOLDFAST_WEBHOOK_SECRET, or made by the server and printed once)')
    .option('--smtp <host>', 'e-mail: through this SMTP server')
    .option('--port <port>', 'the SMTP server\'s port (default 587 with starttls, 465 with tls, 25 with none)', port)
    .option('--security <how>', `${SMTP_SECURITY_NAMES.join(', ')}: STARTTLS required (default), TLS from the start, or neither (a local relay)`, security)
    .option('--user <name>', 'the SMTP login (its password: HOLDFAST_SMTP_PASSWORD)')
    .option('--from <address>', 'the e-mails\' sender')
    .option('--to <addresses>', 'who receives the e-mails, separated by commas', list);
}

/** The id of channel `text` (a name or an id) among the caller's. */
async function channelId(c: AdminClient, text: string): Promise<string> {
  const all = await c.get<ChannelBody[]>('/notifications');
  const found = all.filter((ch) => ch.id === text || ch.name === text);
  if (found.length === 1) return found[0]!.id;
  if (found.length === 0) throw new ExitError(`no notification channel named ${JSON.stringify(text)} (channels: holdfast server notification list)`, EXIT.failed);
  throw new ExitError(`${found.length} channels are named ${JSON.stringify(text)}: give the id of one (${found.map((ch) => ch.id).join(', ')})`, EXIT.usage);
}

const target = (ch: ChannelBody): string => (ch.webhook ? ch.webhook.url : `${ch.email!.to.join(',')} via ${ch.email!.host}:${ch.email!.port}`);

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const n = server.command('notification').description('notification channels (webhook, e-mail) and the events each receives: list, create, show, update, delete, test, deliveries');

  n.command('list').description('the channels the caller can see (never their secrets)')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers] = await withServer(g, async (c) => [await c.get<ChannelBody[]>('/notifications'), await namesOf(c, '/customers')] as const);
      if (g.json) return printBody(all);
      printTable(g, 'no notification channels', ['ID', 'NAME', 'CUSTOMER', 'KIND', 'TO', 'EVENTS', 'ENABLED'], all.map((ch) => [
        ch.id, ch.name, ch.customer_id === null ? '(provider)' : customers.get(ch.customer_id) ?? ch.customer_id, ch.kind, target(ch), ch.events.join(','), ch.enabled ? 'yes' : 'no',
      ]));
    });

  withSettingsFlags(n.command('create').description('make a channel of a customer (--customer), or of the provider (every customer\'s events)').argument('<name>'))
    .option('--customer <customer>', 'the customer (a name or an id); none: the provider\'s channel')
    .option('--events <kinds>', `what it receives, separated by commas: ${EVENT_KIND_NAMES.join(', ')}; or all (default)`, events)
    .action(async (name: string, flags: ChannelFlags, cmd: Command) => {
      const g = globals(cmd);
      const settings = settingsOf(flags, process.env);
      if (settings === undefined) throw new ExitError('holdfast server notification create needs --webhook URL or --smtp HOST (with --from and --to)', EXIT.usage);
      const made = await withServer(g, async (c) => c.post<CreatedChannelBody>('/notifications', {
        name, kind: 'webhook' in settings ? 'webhook' : 'email', events: flags.events ?? [...EVENT_KIND_NAMES], ...settings,
        ...(flags.customer === undefined ? {} : { customer_id: await idOf(c, 'customer', flags.customer) }),
      }));
      if (g.json) return printBody(made);
      say(g, `created notification channel ${made.channel.name}: ${made.channel.id}`);
      // Printed even with --quiet: it is shown this once and never again.
      if (made.secret !== null) process.stdout.write(`webhook secret: ${made.secret}\n(shown only now: the receiver checks the holdfast-signature header with it)\n`);
    });

  n.command('show').description('one channel (never its secret)').argument('<channel>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const ch = await withServer(g, async (c) => c.get<ChannelBody>(`/notifications/${await channelId(c, ref)}`));
      if (g.json) return printBody(ch);
      printFields(g, [['id', ch.id], ['name', ch.name], ['customer', ch.customer_id ?? '(provider: every customer)'], ['kind', ch.kind], ['to', target(ch)],
        ...(ch.email ? [['security', ch.email.security] as const, ['from', ch.email.from] as const, ['login', ch.email.username ?? '-'] as const] : []),
        ['events', ch.events.join(',')], ['enabled', ch.enabled ? 'yes' : 'no'], ['secret', ch.has_secret ? 'stored' : 'none'], ['created', `${when(ch.created_at)} by ${ch.created_by}`]]);
    });

  withSettingsFlags(n.command('update').description('change a channel: its events, enabled or not, its settings (a new secret only when given)').argument('<channel>', 'its name or id'))
    .option('--events <kinds>', 'what it receives, separated by commas; or all', events)
    .option('--enable', 'send to it again')
    .option('--disable', 'send nothing to it (what is waiting for it is given up)')
    .action(async (ref: string, flags: ChannelFlags & { enable?: boolean; disable?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.enable && flags.disable) throw new ExitError('--enable or --disable, not both', EXIT.usage);
      const settings = settingsOf(flags, process.env);
      const ch = await withServer(g, async (c) => c.patch<ChannelBody>(`/notifications/${await channelId(c, ref)}`, {
        ...(flags.events === undefined ? {} : { events: flags.events }), ...(flags.enable ? { enabled: true } : flags.disable ? { enabled: false } : {}), ...settings,
      }));
      if (g.json) return printBody(ch);
      say(g, `updated notification channel ${ch.name}: ${ch.enabled ? 'enabled' : 'disabled'}, events ${ch.events.join(',')}`);
    });

  n.command('delete').description('remove a channel and its deliveries').argument('<channel>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const id = await withServer(g, async (c) => {
        const found = await channelId(c, ref);
        await c.delete(`/notifications/${found}`);
        return found;
      });
      if (g.json) return printBody({ id });
      say(g, `deleted notification channel ${ref}`);
    });

  n.command('test').description('send a test event to the channel now; exits 1 when it did not arrive').argument('<channel>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const r = await withServer(g, async (c) => c.post<ChannelTestBody>(`/notifications/${await channelId(c, ref)}/test`));
      if (g.json) printBody(r);
      else if (r.delivered) say(g, `the test reached ${ref}`);
      if (!r.delivered) throw new ExitError(`the test did not reach ${ref}: ${r.error ?? 'no reason given'}`, EXIT.failed);
    });

  n.command('deliveries').description('the channel\'s last 100 deliveries, newest first: sent, pending (and when it is tried next), failed (and why)').argument('<channel>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const all = await withServer(g, async (c) => c.get<DeliveryBody[]>(`/notifications/${await channelId(c, ref)}/deliveries`));
      if (g.json) return printBody(all);
      printTable(g, 'no deliveries', ['CREATED', 'EVENT', 'STATE', 'ATTEMPTS', 'NEXT / DONE', 'SUMMARY / ERROR'], all.map((d) => [
        when(d.created_at), d.event, d.state, String(d.attempts), d.state === 'pending' ? when(d.next_attempt_at) : when(d.finished_at), d.last_error ?? d.summary,
      ]));
    });

  server.command('metrics-token').description('make the token Prometheus reads /metrics with (printed once; the one there was stops working), or --remove it')
    .option('--remove', 'remove it: /metrics is then read with a provider admin\'s or operator\'s session only')
    .action(async (flags: { remove?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.remove) {
        await withServer(g, (c) => c.delete('/metrics-token'));
        if (g.json) return printBody({ removed: true });
        return say(g, 'removed the metrics token');
      }
      const made = await withServer(g, (c) => c.post<{ token: string }>('/metrics-token'));
      if (g.json) return printBody(made);
      process.stdout.write(`metrics token: ${made.token}\n(shown only now: give it to Prometheus as a bearer token, e.g. authorization: { credentials_file: … })\n`);
    });
}

/**
 * Notification channels and the events sent to them.
 *
 * A channel is a webhook or an e-mail address list, of one customer (it
 * receives that customer's events) or of the provider (`customer_id` null:
 * every customer's events); its `events` are its rule: the kinds it
 * receives. Customers' callers see and change their own channels only (any
 * other is NotFound); provider channels are the provider roles'. Secrets
 * (the webhook's signing secret, the SMTP password) are stored as they are
 * needed to be used, and never shown again.
 *
 *   raiseEvent(ctx, event)     the event's names looked up, one outbox row per
 *                              channel whose rule takes it (in the caller's
 *                              transaction when it gives one), the delivery
 *                              nudged (notification-delivery.ts sends it)
 *   testChannel                sends a test event at once, not through the outbox
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type {
  ChannelBody, ChannelTestBody, CreateChannelRequest, CreatedChannelBody, DeliveryBody, EmailSettings, EventKindName, EventPayload, UpdateChannelRequest,
} from '../../api/v1.js';
import type { ControlPlane, Job, NotificationChannel, OutboxRow } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { BadRequest, Conflict, Forbidden, NotFound } from './errors.js';
import { requireCustomer } from './machines.js';
import { isProvider, mayManage, requireManage, requireProvider, requireRead, type Principal } from './principal.js';
import { DeliveryError, sendEmail, sendWebhook, SMTP_PORTS, type SendOptions, type StoredEmailSettings } from './notification-senders.js';
import { redactedUrl, TargetRefused } from './notification-targets.js';

/** Something that happened which channels may be told of (raiseEvent). */
export interface AlertEvent {
  readonly kind: EventKindName;
  /** Whose it is: the customer's channels and the provider's receive it. */
  readonly customerId: string;
  readonly machineId?: string | null;
  readonly safeId?: string | null;
  readonly jobId?: string | null;
  /** What happened and why, for people, without the names (raiseEvent puts the machine's or safe's and the customer's before it). */
  readonly message: string;
  /** The kind's figures (a job's error, a quota's usage and limit, a threshold), sent as the payload's `details`. */
  readonly details?: Record<string, unknown>;
}

/**
 * Records `event` for every enabled channel whose rule takes it (the
 * event's customer's and the provider's), in `db` (a transaction of the
 * caller's, so that the event is recorded exactly when the change that
 * raised it is), and nudges the delivery. Returns how many deliveries it
 * queued. A caller that gives its transaction nudges the delivery itself
 * (`ctx.notifier.kick()`) once it has committed: a look at the outbox
 * before does not see the rows (PostgreSQL), and they would wait for the
 * next poll or the next send's end.
 */
export async function raiseEvent(ctx: ServiceContext, event: AlertEvent, db: Kysely<ControlPlane> = ctx.db): Promise<number> {
  const channels = (await db.selectFrom('notification_channels').select(['id', 'events'])
    .where('enabled', '=', 1).where((eb) => eb.or([eb('customer_id', '=', event.customerId), eb('customer_id', 'is', null)])).execute())
    .filter((c) => c.events.split(',').includes(event.kind));
  if (channels.length === 0) return 0;
  const payload = await describe(db, event, ctx.now());
  const text = JSON.stringify(payload);
  const now = ctx.now().toISOString();
  await db.insertInto('notification_outbox').values(channels.map((c): OutboxRow => ({
    id: randomUUID(), channel_id: c.id, event_id: payload.id, event: event.kind, customer_id: event.customerId, payload: text,
    state: 'pending', attempts: 0, created_at: now, next_attempt_at: now, leased_by: null, lease_until: null, finished_at: null, last_error: null,
  }))).execute();
  if (db === ctx.db) ctx.notifier.kick();
  return channels.length;
}

/**
 * The most notification channels one customer may have (enabled or not):
 * each event goes to every channel that takes it, so without a cap a
 * customer's events could be made as many deliveries as it likes.
 */
export const MAX_CHANNELS_PER_CUSTOMER = 20;

/** The longest an agent's text (a job's error) goes into an alert. */
const AGENT_TEXT_MAX = 500;

/**
 * `text` from an agent, fit for an alert's summary and an e-mail's subject:
 * control characters (which would forge lines or headers) as spaces, and cut
 * to AGENT_TEXT_MAX characters.
 */
export function agentText(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it removes
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  return clean.length > AGENT_TEXT_MAX ? `${clean.slice(0, AGENT_TEXT_MAX - 1)}…` : clean;
}

/** The `job.failed` event of job `j`, which failed (or was interrupted: it will not finish) with `error`. */
export function jobFailed(j: Pick<Job, 'id' | 'kind' | 'customer_id' | 'machine_id' | 'safe_id'>, agentError: string, state: 'failed' | 'interrupted' = 'failed'): AlertEvent {
  const error = agentText(agentError);
  return {
    kind: 'job.failed', customerId: j.customer_id, machineId: j.machine_id, safeId: j.safe_id, jobId: j.id,
    message: `the ${j.kind} job ${state === 'failed' ? 'failed' : 'was interrupted'}: ${error}`, details: { state, error },
  };
}

/** The payload of `event`: its records' names looked up, and the summary that names the machine (or disk safe, or customer) and the reason. */
async function describe(db: Kysely<ControlPlane>, event: AlertEvent, at: Date): Promise<EventPayload> {
  const customer = await db.selectFrom('customers').select(['id', 'name']).where('id', '=', event.customerId).executeTakeFirst();
  const safe = event.safeId ? await db.selectFrom('disk_safes').select(['id', 'name', 'machine_id']).where('id', '=', event.safeId).executeTakeFirst() : undefined;
  const machineId = event.machineId ?? safe?.machine_id ?? null;
  const machine = machineId ? await db.selectFrom('machines').select(['id', 'name']).where('id', '=', machineId).executeTakeFirst() : undefined;
  const job = event.jobId ? await db.selectFrom('jobs').select(['id', 'kind']).where('id', '=', event.jobId).executeTakeFirst() : undefined;
  const of = customer ? ` of ${customer.name}` : '';
  const subject = machine ? `machine ${machine.name}${of}` : safe ? `disk safe ${safe.name}${of}` : customer ? `customer ${customer.name}` : 'the server';
  return {
    id: randomUUID(), event: event.kind, at: at.toISOString(),
    customer: customer ?? null, machine: machine ?? null, safe: safe ? { id: safe.id, name: safe.name } : null, job: job ?? null,
    summary: `${subject}: ${event.message}`, details: event.details ?? {},
  };
}

/** A channel's settings as stored (`config`). */
type StoredConfig = { url: string } | StoredEmailSettings;

/** Channel `c` as `p` sees it: a webhook's URL whole only to who may change the channel (a Slack or Teams URL is itself a secret), else its scheme and host. */
function channelBody(c: NotificationChannel, p: Principal): ChannelBody {
  const config = JSON.parse(c.config) as StoredConfig;
  const url = c.kind === 'webhook' ? (config as { url: string }).url : '';
  return {
    id: c.id, customer_id: c.customer_id, name: c.name, kind: c.kind, events: c.events.split(',') as EventKindName[], enabled: c.enabled === 1,
    webhook: c.kind === 'webhook' ? { url: mayManage(p) ? url : redactedUrl(url) } : null,
    email: c.kind === 'email' ? config as StoredEmailSettings : null,
    has_secret: c.secret !== null, created_by: c.created_by, created_at: c.created_at,
  };
}

/** The channel `id` if the caller may know of it: its customer's callers (not a machine's token), provider roles for every channel. */
async function findChannel(ctx: ServiceContext, p: Principal, id: string): Promise<NotificationChannel> {
  const c = await ctx.db.selectFrom('notification_channels').selectAll().where('id', '=', id).executeTakeFirst();
  const seen = c !== undefined && (isProvider(p) || (c.customer_id !== null && c.customer_id === p.customerId && p.machineId === null));
  if (!seen) throw new NotFound('notification channel', id);
  return c;
}

/** Who may change channel `c` (or make one of `customerId`): provider roles for a provider channel, else whoever may manage the customer's records. */
function requireManageChannel(p: Principal, customerId: string | null): void {
  if (customerId === null) requireProvider(p);
  else requireManage(p);
}

/** The stored settings and secret of `kind` from a request; `kept`: the secret stored now (kept unless a new one is given). */
function settingsOf(kind: ChannelBody['kind'], req: { webhook?: CreateChannelRequest['webhook']; email?: EmailSettings }, kept: string | null): { config: string; secret: string | null; made: string | null } {
  if (kind === 'webhook') {
    if (req.email !== undefined) throw new BadRequest('a webhook channel takes webhook settings, not email');
    if (req.webhook === undefined) throw new BadRequest('a webhook channel needs its settings: webhook: {url, secret?}');
    const made = req.webhook.secret === undefined && kept === null ? randomBytes(32).toString('base64url') : null;
    return { config: JSON.stringify({ url: req.webhook.url }), secret: req.webhook.secret ?? kept ?? made, made };
  }
  if (req.webhook !== undefined) throw new BadRequest('an email channel takes email settings, not webhook');
  if (req.email === undefined) throw new BadRequest('an email channel needs its settings: email: {host, port?, security?, username?, password?, from, to}');
  const e = req.email;
  if (e.password !== undefined && e.username === undefined) throw new BadRequest('an SMTP password needs its username');
  const security = e.security ?? 'starttls';
  const stored: StoredEmailSettings = { host: e.host, port: e.port ?? SMTP_PORTS[security], security, username: e.username ?? null, from: e.from, to: e.to };
  return { config: JSON.stringify(stored), secret: e.username === undefined ? null : e.password ?? kept, made: null };
}

/** Refuses (400) a webhook URL or SMTP host on an internal network the provider did not allow (notification-targets.ts). */
async function refuseInternalTarget(ctx: ServiceContext, config: string): Promise<void> {
  const stored = JSON.parse(config) as StoredConfig;
  let host: string;
  try {
    host = 'url' in stored ? new URL(stored.url).hostname : stored.host;
  } catch {
    throw new BadRequest('the webhook URL is not a URL');
  }
  try {
    await ctx.notifier.targets.resolve(host);
  } catch (e) {
    if (e instanceof TargetRefused) throw new BadRequest(e.message);
    throw e;
  }
}

async function refuseTakenName(ctx: ServiceContext, customerId: string | null, name: string, except?: string): Promise<void> {
  let q = ctx.db.selectFrom('notification_channels').select('id').where('name', '=', name);
  q = customerId === null ? q.where('customer_id', 'is', null) : q.where('customer_id', '=', customerId);
  const taken = await q.executeTakeFirst();
  if (taken !== undefined && taken.id !== except) throw new Conflict(`a notification channel named "${name}" exists already${customerId === null ? ' among the provider\'s' : ' for this customer'}`);
}

/** Refuses (409) a customer's channel past MAX_CHANNELS_PER_CUSTOMER; in `trx`, with the customer's row locked on PostgreSQL, so that two at once do not both pass. */
async function refuseOverChannelCap(ctx: ServiceContext, trx: Kysely<ControlPlane>, customerId: string): Promise<void> {
  if (ctx.dbKind === 'postgres') await trx.selectFrom('customers').select('id').where('id', '=', customerId).forUpdate().execute();
  const { n } = await trx.selectFrom('notification_channels').select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('customer_id', '=', customerId).executeTakeFirstOrThrow();
  if (Number(n) >= MAX_CHANNELS_PER_CUSTOMER) {
    throw new Conflict(`the customer has ${Number(n)} notification channels, the most a customer may have (${MAX_CHANNELS_PER_CUSTOMER}): `
      + 'remove one (holdfast server notification delete NAME) or add events to one that exists');
  }
}

/** The channels the caller sees: a customer's callers their customer's, provider roles every channel (the provider's first). */
export async function listChannels(ctx: ServiceContext, p: Principal): Promise<ChannelBody[]> {
  requireRead(p);
  if (p.machineId !== null) return [];
  let q = ctx.db.selectFrom('notification_channels').selectAll().orderBy('customer_id').orderBy('name');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  return (await q.execute()).map((c) => channelBody(c, p));
}

export async function getChannel(ctx: ServiceContext, p: Principal, id: string): Promise<ChannelBody> {
  const c = await findChannel(ctx, p, id);
  requireRead(p);
  return channelBody(c, p);
}

/** Makes a channel; a webhook's secret, when none was given, is made here and answered this once. */
export async function createChannel(ctx: ServiceContext, p: Principal, req: CreateChannelRequest): Promise<CreatedChannelBody> {
  const customerId = req.customer_id ?? null;
  if (customerId !== null) {
    await requireCustomer(ctx, p, customerId);
    if (p.machineId !== null) throw new Forbidden('a machine\'s token may not make notification channels');
  }
  requireManageChannel(p, customerId);
  const { config, secret, made } = settingsOf(req.kind, req, null);
  await refuseInternalTarget(ctx, config);
  await refuseTakenName(ctx, customerId, req.name);
  const row: NotificationChannel = {
    id: randomUUID(), customer_id: customerId, name: req.name, kind: req.kind, config, secret, events: req.events.join(','),
    enabled: req.enabled === false ? 0 : 1, created_by: p.actor, created_at: ctx.now().toISOString(),
  };
  await ctx.db.transaction().execute(async (trx) => {
    if (customerId !== null) await refuseOverChannelCap(ctx, trx, customerId);
    await trx.insertInto('notification_channels').values(row).execute();
  });
  await audit(ctx, p, 'notification.create', row.id, customerId);
  return { channel: channelBody(row, p), secret: made };
}

export async function updateChannel(ctx: ServiceContext, p: Principal, id: string, req: UpdateChannelRequest): Promise<ChannelBody> {
  const c = await findChannel(ctx, p, id);
  requireManageChannel(p, c.customer_id);
  const next: Partial<NotificationChannel> = {};
  if (req.name !== undefined && req.name !== c.name) {
    await refuseTakenName(ctx, c.customer_id, req.name, c.id);
    next.name = req.name;
  }
  if (req.events !== undefined) next.events = req.events.join(',');
  if (req.enabled !== undefined) next.enabled = req.enabled ? 1 : 0;
  if (req.webhook !== undefined || req.email !== undefined) {
    const { config, secret } = settingsOf(c.kind, req, c.secret);
    await refuseInternalTarget(ctx, config);
    next.config = config;
    next.secret = secret;
  }
  if (Object.keys(next).length > 0) await ctx.db.updateTable('notification_channels').set(next).where('id', '=', id).execute();
  await audit(ctx, p, 'notification.update', id, c.customer_id);
  return channelBody({ ...c, ...next }, p);
}

/** Removes the channel and its deliveries (sent, given up, or still waiting: they go nowhere now). */
export async function deleteChannel(ctx: ServiceContext, p: Principal, id: string): Promise<void> {
  const c = await findChannel(ctx, p, id);
  requireManageChannel(p, c.customer_id);
  await ctx.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('notification_outbox').where('channel_id', '=', id).execute();
    await trx.deleteFrom('notification_channels').where('id', '=', id).execute();
  });
  await audit(ctx, p, 'notification.delete', id, c.customer_id);
}

/** The channel's deliveries, newest first (the last 100). */
export async function listDeliveries(ctx: ServiceContext, p: Principal, id: string): Promise<DeliveryBody[]> {
  await findChannel(ctx, p, id);
  requireRead(p);
  const rows = await ctx.db.selectFrom('notification_outbox').selectAll().where('channel_id', '=', id).orderBy('created_at', 'desc').orderBy('id').limit(100).execute();
  return rows.map((r) => ({
    id: r.id, channel_id: r.channel_id, event_id: r.event_id, event: r.event, summary: (JSON.parse(r.payload) as EventPayload).summary, state: r.state,
    attempts: r.attempts, created_at: r.created_at, next_attempt_at: r.next_attempt_at, finished_at: r.finished_at, last_error: r.last_error,
  }));
}

/** Sends `payload` to channel `c` (throws DeliveryError when it did not arrive). */
export async function sendToChannel(c: NotificationChannel, payload: EventPayload, opts: SendOptions): Promise<void> {
  const config = JSON.parse(c.config) as StoredConfig;
  if (c.kind === 'webhook') await sendWebhook((config as { url: string }).url, c.secret ?? '', payload, opts);
  else await sendEmail(config as StoredEmailSettings, c.secret, payload, opts);
}

/** "Send a test": a test event sent to the channel now (not through the outbox, not retried), and what came of it. */
export async function testChannel(ctx: ServiceContext, p: Principal, id: string): Promise<ChannelTestBody> {
  const c = await findChannel(ctx, p, id);
  requireManageChannel(p, c.customer_id);
  const customer = c.customer_id === null ? undefined : await ctx.db.selectFrom('customers').select(['id', 'name']).where('id', '=', c.customer_id).executeTakeFirst();
  const now = ctx.now();
  const payload: EventPayload = {
    id: randomUUID(), event: 'test', at: now.toISOString(), customer: customer ?? null, machine: null, safe: null, job: null,
    summary: `a test of notification channel ${c.name}, sent by ${p.actor}`, details: {},
  };
  await audit(ctx, p, 'notification.test', id, c.customer_id);
  try {
    await sendToChannel(c, payload, { timeoutMs: ctx.notifier.policy.timeoutMs, now, deliveryId: payload.id, targets: ctx.notifier.targets });
    return { delivered: true, error: null };
  } catch (e) {
    if (e instanceof DeliveryError) return { delivered: false, error: e.message };
    throw e;
  }
}

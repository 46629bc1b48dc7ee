/**
 * The outbox's delivery: sends the notifications raiseEvent queued
 * (notifications.ts), from the database, so that a notification queued
 * before a restart, or on another node, is sent all the same.
 *
 *   at start: the rows this node had leased (it died mid-send) are let go
 *   every pollMs, when an event is raised, and when a send ends, while a slot is free:
 *     the channels with a pending row due (next_attempt_at <= now) and none
 *     leased, oldest due first; for each, unless this node sends to its
 *     customer `perCustomer` times already:
 *       claim its oldest due row: a conditional UPDATE that sets this node's
 *             lease, which one node wins (SQLite and PostgreSQL alike), and
 *             only while no row of the channel is leased; a lease that ran
 *             out (its node died mid-send) may be taken over
 *       send it (notification-senders.ts), within the deadline `timeoutMs`,
 *       beside the others in flight (at most `concurrency`)
 *       delivered            → sent
 *       a retryable failure  → pending again, next_attempt_at after a backoff
 *                              (firstDelayMs, doubling, at most maxDelayMs)
 *       a final failure, or the last of `attempts` → failed, with its error
 *
 * So a receiver that is slow, or hostile, holds one slot for one deadline
 * at a time and never more than `perCustomer` slots of its customer: every
 * other customer's alerts go out beside it.
 *
 * A node that dies after sending and before recording it sends that one
 * again when it starts (or another node when its lease runs out): a
 * receiver may see a delivery twice (the event id tells it), never not at all.
 */
import type { EventPayload } from '../../api/v1.js';
import type { ExpressionBuilder } from 'kysely';
import type { ControlPlane, OutboxRow } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { sendToChannel } from './notifications.js';
import { DeliveryError } from './notification-senders.js';
import { TargetPolicy, type HostResolver } from './notification-targets.js';

/** How deliveries are tried. */
export interface DeliveryPolicy {
  /** Attempts before a delivery is given up. */
  readonly attempts: number;
  /** The wait after the first failure (milliseconds); each next one doubles, up to `maxDelayMs`. */
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  /** One send's overall deadline (milliseconds): connection, TLS, the SMTP dialogue or HTTP exchange and the answer, all together. */
  readonly timeoutMs: number;
  /** How many deliveries one node sends at once (to different channels: a channel gets one at a time, across nodes). */
  readonly concurrency: number;
  /** Of those, how many may go to one customer's channels (the provider's channels count as one customer). */
  readonly perCustomer: number;
  /** How long a claimed delivery is this node's (milliseconds): longer than a send may take. */
  readonly leaseMs: number;
  /** How often the outbox is looked at without a nudge (milliseconds). */
  readonly pollMs: number;
  /** The internal hosts, addresses and networks (CIDR) notifications may reach (`--notifications-allow`; notification-targets.ts). */
  readonly allowInternal: readonly string[];
  /** How target names are resolved (the system's resolver when absent; tests give their own). */
  readonly resolver?: HostResolver;
}

/** 8 attempts over about 2 hours (30 s, 1, 2, 4, 8, 16, 32, 60 minutes). */
export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = {
  attempts: 8, firstDelayMs: 30_000, maxDelayMs: 3_600_000, timeoutMs: 10_000, concurrency: 8, perCustomer: 2, leaseMs: 120_000, pollMs: 5_000, allowInternal: [],
};

/**
 * How many channels with something due one look at the outbox takes, oldest
 * first. Enough to fill the free slots past the channels of the customers
 * this node sends to their `perCustomer` times already (each has at most
 * MAX_CHANNELS_PER_CUSTOMER channels).
 */
const CHANNELS_LOOKED_AT = 100;

/** A delivery being sent by this node. */
interface InFlight {
  readonly channel: string;
  /** Whose channel it is: its customer's id, or '' for the provider's. */
  readonly owner: string;
  readonly done: Promise<void>;
}

/** The outbox's sender of one server node. */
export class Notifier {
  private ctx: ServiceContext | undefined;
  private timer: NodeJS.Timeout | undefined;
  private filling: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Aborts the sends in flight when the node stops (they go back to the outbox). */
  private readonly closing = new AbortController();
  private readonly inFlight = new Map<string, InFlight>();

  /** Where notifications may go (the policy's `allowInternal`). */
  readonly targets: TargetPolicy;

  constructor(readonly policy: DeliveryPolicy = DEFAULT_DELIVERY_POLICY) {
    this.targets = new TargetPolicy(policy.allowInternal, policy.resolver);
  }

  /**
   * Lets go of the deliveries this node had leased and not recorded (it was
   * killed while it sent them: it has just started, so it sends none of them
   * now), so that they go out at once rather than after their lease.
   * Returns how many.
   */
  async releaseOwn(ctx: ServiceContext): Promise<number> {
    const done = await ctx.db.updateTable('notification_outbox').set({ leased_by: null, lease_until: null })
      .where('leased_by', '=', ctx.node).where('state', '=', 'pending').executeTakeFirst();
    return Number(done.numUpdatedRows);
  }

  /** Starts the periodic look at the outbox for `ctx`'s database. */
  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    this.timer = setInterval(() => this.kick(), this.policy.pollMs);
    this.timer.unref();
    this.kick();
  }

  /** Fills the free slots soon (again after the filling running, when one runs); nothing before `start` or after `close`. */
  kick(): void {
    if (this.ctx === undefined || this.closed) return;
    if (this.filling !== undefined) {
      this.again = true;
      return;
    }
    const ctx = this.ctx;
    this.filling = (async () => {
      do {
        this.again = false;
        await this.fill(ctx).catch(() => undefined); // the database is away: the next look tries again
      } while (this.again && !this.closed);
    })().finally(() => {
      this.filling = undefined;
    });
  }

  /** Sends what is due now and waits until it and what became due meanwhile ended (tests; `kick` in the background otherwise). */
  async deliverDue(): Promise<void> {
    this.kick();
    await this.idle();
  }

  /** Claims due deliveries and starts sending them while a slot is free (see the module comment). */
  private async fill(ctx: ServiceContext): Promise<void> {
    while (!this.closed && this.inFlight.size < this.policy.concurrency) {
      const now = ctx.now().toISOString();
      const channels = await ctx.db.selectFrom('notification_outbox as o').innerJoin('notification_channels as c', 'c.id', 'o.channel_id')
        .select(['o.channel_id', 'c.customer_id', (eb) => eb.fn.min('o.next_attempt_at').as('due')])
        .where('o.state', '=', 'pending').where('o.next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('o.lease_until', 'is', null), eb('o.lease_until', '<=', now)]))
        .where(({ not, exists, selectFrom }) => not(exists(this.leasedOfChannel(selectFrom, now))))
        .groupBy(['o.channel_id', 'c.customer_id']).orderBy('due').orderBy('o.channel_id').limit(CHANNELS_LOOKED_AT).execute();
      let started = 0;
      for (const c of channels) {
        if (this.closed || this.inFlight.size >= this.policy.concurrency) break;
        const owner = c.customer_id ?? '';
        if ([...this.inFlight.values()].some((f) => f.channel === c.channel_id)) continue;
        if ([...this.inFlight.values()].filter((f) => f.owner === owner).length >= this.policy.perCustomer) continue;
        const id = await this.claimOldest(ctx, c.channel_id);
        if (id === undefined) continue;
        const done = this.deliver(ctx, id).catch(() => undefined).finally(() => { // the database is away: the lease runs out
          this.inFlight.delete(id);
          this.kick();
        });
        this.inFlight.set(id, { channel: c.channel_id, owner, done });
        started++;
      }
      if (started === 0) return;
    }
  }

  /** The rows of the outer row's channel (`o`) that a node holds now. */
  private leasedOfChannel(selectFrom: ExpressionBuilder<ControlPlane & { o: OutboxRow }, 'o'>['selectFrom'], now: string) {
    return selectFrom('notification_outbox as held').select('held.id')
      .whereRef('held.channel_id', '=', 'o.channel_id').where('held.state', '=', 'pending').where('held.lease_until', '>', now);
  }

  /**
   * Takes the channel's oldest due delivery for this node, unless another
   * node holds it or any other row of the channel, or it was sent meanwhile;
   * returns its id.
   */
  private async claimOldest(ctx: ServiceContext, channelId: string): Promise<string | undefined> {
    const now = ctx.now();
    const at = now.toISOString();
    const row = await ctx.db.selectFrom('notification_outbox').select('id')
      .where('channel_id', '=', channelId).where('state', '=', 'pending').where('next_attempt_at', '<=', at)
      .orderBy('next_attempt_at').orderBy('id').limit(1).executeTakeFirst();
    if (row === undefined) return undefined;
    const done = await ctx.db.updateTable('notification_outbox as o')
      .set({ leased_by: ctx.node, lease_until: new Date(now.getTime() + this.policy.leaseMs).toISOString() })
      .where('o.id', '=', row.id).where('o.state', '=', 'pending')
      .where((eb) => eb.or([eb('o.lease_until', 'is', null), eb('o.lease_until', '<=', at)]))
      .where(({ not, exists, selectFrom }) => not(exists(this.leasedOfChannel(selectFrom, at))))
      .executeTakeFirst();
    return done.numUpdatedRows > 0n ? row.id : undefined;
  }

  private async deliver(ctx: ServiceContext, id: string): Promise<void> {
    const row = await ctx.db.selectFrom('notification_outbox').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const channel = await ctx.db.selectFrom('notification_channels').selectAll().where('id', '=', row.channel_id).executeTakeFirst();
    const attempts = row.attempts + 1;
    let failure: DeliveryError | undefined;
    if (channel === undefined || channel.enabled !== 1) failure = new DeliveryError('the channel was disabled before the notification was sent', false);
    else {
      try {
        await sendToChannel(channel, JSON.parse(row.payload) as EventPayload, {
          timeoutMs: this.policy.timeoutMs, signal: this.closing.signal, now: ctx.now(), deliveryId: row.id, targets: this.targets,
        });
      } catch (e) {
        failure = e instanceof DeliveryError ? e : new DeliveryError(e instanceof Error ? e.message : String(e), true);
      }
    }
    const mine = ctx.db.updateTable('notification_outbox').where('id', '=', id).where('leased_by', '=', ctx.node);
    if (failure !== undefined && this.closing.signal.aborted) {
      // Cut off by the node stopping, not by the receiver: back to the outbox as it was, for the next node or start.
      await mine.set({ leased_by: null, lease_until: null }).execute();
      return;
    }
    const now = ctx.now();
    const last = failure !== undefined && (!failure.retryable || attempts >= this.policy.attempts);
    const end = failure === undefined
      ? { state: 'sent' as const, finished_at: now.toISOString(), last_error: null }
      : last
        ? { state: 'failed' as const, finished_at: now.toISOString(), last_error: failure.retryable ? `gave up after ${attempts} attempts: ${failure.message}` : failure.message }
        : { state: 'pending' as const, next_attempt_at: new Date(now.getTime() + this.backoff(attempts)).toISOString(), last_error: failure.message };
    await mine.set({ ...end, attempts, leased_by: null, lease_until: null }).execute();
  }

  /** The wait after failed attempt number `attempts` (1 for the first). */
  private backoff(attempts: number): number {
    return Math.min(this.policy.maxDelayMs, this.policy.firstDelayMs * 2 ** (attempts - 1));
  }

  /** Waits until nothing is being claimed or sent (the sends in flight, and what their ends started). */
  async idle(): Promise<void> {
    while (this.filling !== undefined || this.inFlight.size > 0) {
      await Promise.all([this.filling, ...[...this.inFlight.values()].map((f) => f.done)]);
    }
  }

  /** Stops claiming, cuts the sends in flight off (they go back to the outbox) and waits for them; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.closing.abort();
    await this.idle();
  }
}

/**
 * The outbox's delivery: sends the notifications raiseEvent queued
 * (notifications.ts), from the database, so that a notification queued
 * before a restart, or on another node, is sent all the same.
 *
 *   every pollMs, and at once when an event is raised:
 *     for each pending row due (next_attempt_at <= now) and not leased:
 *       claim it: a conditional UPDATE that sets this node's lease, which
 *                 one node wins (SQLite and PostgreSQL alike); a lease
 *                 that ran out (its node died mid-send) may be taken over
 *       send it to its channel (notification-senders.ts)
 *       delivered            → sent
 *       a retryable failure  → pending again, next_attempt_at after a backoff
 *                              (firstDelayMs, doubling, at most maxDelayMs)
 *       a final failure, or the last of `attempts` → failed, with its error
 *
 * A node that dies after sending and before recording it sends that one
 * again when its lease runs out: a receiver may see a delivery twice (the
 * event id tells it), never not at all.
 */
import type { EventPayload } from '../../api/v1.js';
import type { ServiceContext } from './context.js';
import { sendToChannel } from './notifications.js';
import { DeliveryError } from './notification-senders.js';
import { TargetPolicy } from './notification-targets.js';

/** How deliveries are tried. */
export interface DeliveryPolicy {
  /** Attempts before a delivery is given up. */
  readonly attempts: number;
  /** The wait after the first failure (milliseconds); each next one doubles, up to `maxDelayMs`. */
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  /** How long one send may take before the receiver counts as not answering (milliseconds). */
  readonly timeoutMs: number;
  /** How long a claimed delivery is this node's (milliseconds): longer than a send may take. */
  readonly leaseMs: number;
  /** How often the outbox is looked at without a nudge (milliseconds). */
  readonly pollMs: number;
  /** The internal hosts, addresses and networks (CIDR) notifications may reach (`--notifications-allow`; notification-targets.ts). */
  readonly allowInternal: readonly string[];
}

/** 8 attempts over about 2 hours (30 s, 1, 2, 4, 8, 16, 32, 60 minutes). */
export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = { attempts: 8, firstDelayMs: 30_000, maxDelayMs: 3_600_000, timeoutMs: 10_000, leaseMs: 120_000, pollMs: 5_000, allowInternal: [] };

/** How many due rows one pass looks at. */
const BATCH = 20;

/** The outbox's sender of one server node. */
export class Notifier {
  private ctx: ServiceContext | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;
  private closed = false;

  /** Where notifications may go (the policy's `allowInternal`). */
  readonly targets: TargetPolicy;

  constructor(readonly policy: DeliveryPolicy = DEFAULT_DELIVERY_POLICY) {
    this.targets = new TargetPolicy(policy.allowInternal);
  }

  /** Starts the periodic pass over the outbox for `ctx`'s database. */
  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    this.timer = setInterval(() => this.kick(), this.policy.pollMs);
    this.timer.unref();
    this.kick();
  }

  /** Runs a pass soon (one after the running one, when one runs); nothing before `start` or after `close`. */
  kick(): void {
    if (this.ctx === undefined || this.closed) return;
    if (this.pass !== undefined) {
      this.again = true;
      return;
    }
    const ctx = this.ctx;
    this.pass = (async () => {
      do {
        this.again = false;
        await this.deliverDue(ctx).catch(() => undefined); // the database is away: the next pass tries again
      } while (this.again && !this.closed);
    })().finally(() => {
      this.pass = undefined;
    });
  }

  /** Sends what is due now and waits for it (tests; `kick` in the background otherwise). Returns how many deliveries it ended or rescheduled. */
  async deliverDue(ctx: ServiceContext): Promise<number> {
    let handled = 0;
    for (;;) {
      const now = ctx.now().toISOString();
      const due = await ctx.db.selectFrom('notification_outbox').select('id')
        .where('state', '=', 'pending').where('next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
        .orderBy('next_attempt_at').orderBy('id').limit(BATCH).execute();
      let claimed = 0;
      for (const { id } of due) {
        if (this.closed) return handled;
        if (!await this.claim(ctx, id)) continue;
        claimed++;
        await this.deliver(ctx, id);
        handled++;
      }
      if (claimed === 0 || due.length < BATCH) return handled;
    }
  }

  /** Takes delivery `id` for this node, unless another node holds it or it was sent meanwhile. */
  private async claim(ctx: ServiceContext, id: string): Promise<boolean> {
    const now = ctx.now();
    const done = await ctx.db.updateTable('notification_outbox')
      .set({ leased_by: ctx.node, lease_until: new Date(now.getTime() + this.policy.leaseMs).toISOString() })
      .where('id', '=', id).where('state', '=', 'pending')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now.toISOString())]))
      .executeTakeFirst();
    return done.numUpdatedRows > 0n;
  }

  private async deliver(ctx: ServiceContext, id: string): Promise<void> {
    const row = await ctx.db.selectFrom('notification_outbox').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const channel = await ctx.db.selectFrom('notification_channels').selectAll().where('id', '=', row.channel_id).executeTakeFirst();
    const attempts = row.attempts + 1;
    let failure: DeliveryError | undefined;
    if (channel === undefined || channel.enabled !== 1) failure = new DeliveryError('the channel was disabled before the notification was sent', false);
    else {
      try {
        await sendToChannel(channel, JSON.parse(row.payload) as EventPayload, { timeoutMs: this.policy.timeoutMs, now: ctx.now(), deliveryId: row.id, targets: this.targets });
      } catch (e) {
        failure = e instanceof DeliveryError ? e : new DeliveryError(e instanceof Error ? e.message : String(e), true);
      }
    }
    const now = ctx.now();
    const last = failure !== undefined && (!failure.retryable || attempts >= this.policy.attempts);
    const end = failure === undefined
      ? { state: 'sent' as const, finished_at: now.toISOString(), last_error: null }
      : last
        ? { state: 'failed' as const, finished_at: now.toISOString(), last_error: failure.retryable ? `gave up after ${attempts} attempts: ${failure.message}` : failure.message }
        : { state: 'pending' as const, next_attempt_at: new Date(now.getTime() + this.backoff(attempts)).toISOString(), last_error: failure.message };
    await ctx.db.updateTable('notification_outbox').set({ ...end, attempts, leased_by: null, lease_until: null })
      .where('id', '=', id).where('leased_by', '=', ctx.node).execute();
  }

  /** The wait after failed attempt number `attempts` (1 for the first). */
  private backoff(attempts: number): number {
    return Math.min(this.policy.maxDelayMs, this.policy.firstDelayMs * 2 ** (attempts - 1));
  }

  /** Waits until no pass runs (the one running, and the ones kicked meanwhile). */
  async idle(): Promise<void> {
    while (this.pass !== undefined) await this.pass;
  }

  /** Stops the passes and waits for the one running; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.pass;
  }
}

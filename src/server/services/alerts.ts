/**
 * The alert that matters most: a machine whose last successful backup is
 * older than its threshold. A periodic tick of its own (not a request)
 * looks at every live machine that has a disk safe:
 *
 *   last success = the newest succeeded backup job's end (the machine's
 *                  enrolment when it never had one)
 *   stale        = now − last success > threshold (3× the backup interval of
 *                  the machine's policy; the server's default without a schedule)
 *   stale, and stale_since unset   → set it to when the threshold was
 *                                    crossed (last success + threshold,
 *                                    not the check that saw it);
 *                                    machine.stale raised
 *   not stale, and stale_since set → clear it; machine.recovered raised,
 *                                    stale for: new success − stale_since
 *
 * Each change of state is a conditional UPDATE (… where stale_since is
 * null / is not null) in one transaction with its event's outbox rows:
 * only the node whose UPDATE changed the row raises the event, so several
 * nodes ticking together, or a restart, never send it twice.
 */
import { BACKUP_JOB_KINDS } from '../../api/v1.js';
import type { ServiceContext } from './context.js';
import { raiseEvent } from './notifications.js';
import { effectivePolicy, type EffectivePolicy } from './policies.js';

/** 3 days: three times a daily backup's interval, the threshold of a machine without a schedule. */
export const DEFAULT_STALE_AFTER_MS = 3 * 24 * 3600 * 1000;

/** What the stale check needs besides the context. */
export interface StaleCheckOptions {
  /** The threshold of a machine whose schedule says none (milliseconds). */
  readonly staleAfterMs: number;
}

/** How many backup intervals without a success make a machine stale. */
export const STALE_INTERVALS = 3;

/** The stale threshold (ms) of a machine whose effective policy is `policy`: 3× its schedule's backup interval, or `defaultMs` without one. */
export function staleThreshold(policy: Pick<EffectivePolicy, 'intervalSeconds'>, defaultMs: number): number {
  return policy.intervalSeconds === null ? defaultMs : STALE_INTERVALS * policy.intervalSeconds * 1000;
}

/** Machine `machineId`'s stale threshold (staleThreshold of its effective policy). */
async function staleThresholdMs(ctx: ServiceContext, machineId: string, opts: StaleCheckOptions): Promise<number> {
  return staleThreshold(await effectivePolicy(ctx, { machineId }), opts.staleAfterMs);
}

/** "3 d 4 h", "2 h 5 min", "40 s": a span for people. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  return m > 0 ? `${m} min` : `${s} s`;
}

/** Every live machine with a disk safe, with the end of its newest succeeded backup (null: none yet). */
export async function machinesWithLastSuccess(ctx: ServiceContext): Promise<{ id: string; customer_id: string; name: string; created_at: string; stale_since: string | null; last_success: string | null }[]> {
  return ctx.db.selectFrom('machines')
    .leftJoin('jobs', (j) => j.onRef('jobs.machine_id', '=', 'machines.id').on('jobs.state', '=', 'succeeded').on('jobs.kind', 'in', BACKUP_JOB_KINDS))
    .select((eb) => ['machines.id', 'machines.customer_id', 'machines.name', 'machines.created_at', 'machines.stale_since', eb.fn.max('jobs.finished_at').as('last_success')])
    .where('machines.retired_at', 'is', null)
    .where((eb) => eb.exists(eb.selectFrom('disk_safes').select('disk_safes.id').whereRef('disk_safes.machine_id', '=', 'machines.id')))
    .groupBy(['machines.id', 'machines.customer_id', 'machines.name', 'machines.created_at', 'machines.stale_since'])
    .execute();
}

/** Raises machine.stale and machine.recovered where a machine's state changed (see the module comment); returns how many it raised. */
export async function checkStaleMachines(ctx: ServiceContext, opts: StaleCheckOptions): Promise<number> {
  const now = ctx.now();
  let raised = 0;
  for (const m of await machinesWithLastSuccess(ctx)) {
    const threshold = await staleThresholdMs(ctx, m.id, opts);
    const since = m.last_success ?? m.created_at;
    const age = now.getTime() - Date.parse(since);
    const stale = age > threshold;
    if (stale === (m.stale_since !== null)) continue;
    const crossed = new Date(Date.parse(since) + threshold).toISOString();
    const details = stale
      ? { last_success: m.last_success, threshold_seconds: Math.round(threshold / 1000), stale_since: crossed }
      : { last_success: m.last_success, threshold_seconds: Math.round(threshold / 1000), stale_since: m.stale_since, stale_seconds: Math.round((Date.parse(since) - Date.parse(m.stale_since!)) / 1000) };
    await ctx.db.transaction().execute(async (trx) => {
      const changed = await trx.updateTable('machines').set({ stale_since: stale ? crossed : null })
        .where('id', '=', m.id).where('stale_since', stale ? 'is' : 'is not', null).executeTakeFirst();
      if (changed.numUpdatedRows === 0n) return; // another node saw it first
      raised++;
      const message = stale
        ? (m.last_success === null
          ? `no successful backup since it was enrolled ${formatSpan(age)} ago (its threshold is ${formatSpan(threshold)})`
          : `no successful backup for ${formatSpan(age)}, since ${m.last_success} (its threshold is ${formatSpan(threshold)})`)
        : `backed up again at ${m.last_success ?? since}, after ${formatSpan(Date.parse(since) - Date.parse(m.stale_since!))} stale`;
      await raiseEvent(ctx, { kind: stale ? 'machine.stale' : 'machine.recovered', customerId: m.customer_id, machineId: m.id, message, details }, trx);
    });
  }
  if (raised > 0) ctx.notifier.kick();
  return raised;
}

/** The stale check on a timer, one per server node. */
export class AlertTicker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly ctx: ServiceContext, private readonly opts: StaleCheckOptions & { readonly tickMs: number }) {}

  start(): void {
    this.timer = setInterval(() => void this.tick().catch(() => undefined), this.opts.tickMs);
    this.timer.unref();
  }

  /** Runs the check now (after the one running, if one is). */
  async tick(): Promise<number> {
    await this.running?.catch(() => undefined);
    const run = checkStaleMachines(this.ctx, this.opts);
    this.running = run;
    return run;
  }

  /** Stops the timer and waits for a check that runs; idempotent. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }
}

/**
 * Prometheus metrics (GET /metrics, http/metrics.ts), read by the metrics
 * token (`hfm_…`, one per server, made by a provider admin) or a provider
 * person's session; nothing else reads them, as they name every customer.
 *
 * Read from the database at each scrape (the same on every node):
 *   holdfast_machine_last_backup_success_timestamp_seconds{customer,machine}
 *   holdfast_machine_last_seen_timestamp_seconds{customer,machine}
 *   holdfast_machine_stale{customer,machine}                 1 while stale
 *   holdfast_safe_stored_bytes{customer,safe}, holdfast_customer_stored_bytes{customer}
 *   holdfast_jobs{runner,state}                              queued and running: the queue
 *   holdfast_notifications{state}                            the outbox: pending, failed
 *   holdfast_database_up                                     0 when the database does not answer
 * Counted by this node as it records jobs' ends (sum them over the nodes):
 *   holdfast_job_duration_seconds{kind,state}                histogram
 *   holdfast_job_bytes_total{kind,measure}                   processed, added
 *   holdfast_scheduler_tick_seconds                          histogram: how long each scheduler tick took
 * And the process's own (process_*, nodejs_*).
 *
 * Labels are names of customers, machines and disk safes, and kinds and
 * states from fixed lists: as many series as the fleet has records, never
 * one per job.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Job } from '../db/schema.js';
import { machinesWithLastSuccess } from './alerts.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { Unauthenticated } from './errors.js';
import { isProvider, requireProvider, type Principal } from './principal.js';
import { mintSecret, parseSecret, secretMatches } from './secrets.js';

/** The buckets of a job's duration (seconds): from a 15-minute incremental's seconds to a first backup's hours. */
const DURATION_BUCKETS = [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];

/** The buckets of a scheduler tick's duration (seconds): from a small fleet's milliseconds to a tick that takes most of its 30 s. */
const TICK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type Labels<T extends string> = Record<T, string>;

/** A gauge whose series are set anew at each scrape (a record gone is a series gone). */
function fresh<T extends string>(registry: Registry, name: string, help: string, labelNames: readonly T[]): Gauge<T> {
  return new Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
}

/** The metrics of one server node. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly durations = new Histogram({
    name: 'holdfast_job_duration_seconds', help: 'How long the jobs whose end this node recorded ran, by kind and how they ended', labelNames: ['kind', 'state'], buckets: DURATION_BUCKETS, registers: [this.registry],
  });
  private readonly bytes = new Counter({
    name: 'holdfast_job_bytes_total', help: 'Bytes of the backups whose end this node recorded: read from the sources (processed) and new to the disk safe (added)', labelNames: ['kind', 'measure'], registers: [this.registry],
  });
  private readonly ticks = new Histogram({
    name: 'holdfast_scheduler_tick_seconds', help: 'How long this node\'s scheduler ticks took (due jobs made, timed-out ones cancelled, waiting ones admitted)', buckets: TICK_BUCKETS, registers: [this.registry],
  });
  private readonly lastSuccess = fresh(this.registry, 'holdfast_machine_last_backup_success_timestamp_seconds', 'When the machine\'s newest successful backup job ended (absent: none yet)', ['customer', 'machine']);
  private readonly lastSeen = fresh(this.registry, 'holdfast_machine_last_seen_timestamp_seconds', 'When the machine\'s agent last polled or reported (absent: never)', ['customer', 'machine']);
  private readonly stale = fresh(this.registry, 'holdfast_machine_stale', '1 while the machine\'s last successful backup is older than its threshold', ['customer', 'machine']);
  private readonly safeBytes = fresh(this.registry, 'holdfast_safe_stored_bytes', 'Bytes the disk safe takes in storage', ['customer', 'safe']);
  private readonly customerBytes = fresh(this.registry, 'holdfast_customer_stored_bytes', 'Bytes all the customer\'s disk safes take in storage', ['customer']);
  private readonly jobs = fresh(this.registry, 'holdfast_jobs', 'Jobs queued and running (the queue\'s depth), by runner', ['runner', 'state']);
  private readonly outbox = fresh(this.registry, 'holdfast_notifications', 'Notifications waiting to be sent (pending) and given up (failed)', ['state']);
  private readonly databaseUp = fresh(this.registry, 'holdfast_database_up', '1 when the control-plane database answered this scrape', []);

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Counts a job whose end this node recorded (its duration, and a backup's bytes from its result). */
  jobEnded(job: Pick<Job, 'kind' | 'started_at'>, state: string, finishedAt: string, result: Record<string, unknown> | null): void {
    if (job.started_at !== null) this.durations.observe({ kind: job.kind, state }, Math.max(0, (Date.parse(finishedAt) - Date.parse(job.started_at)) / 1000));
    if (result === null) return;
    // A file or stream backup's figures are the result's own; an image backup has one set per source.
    const parts = Array.isArray(result['snapshots']) ? result['snapshots'] as Record<string, unknown>[] : [result];
    for (const [measure, field] of [['processed', 'total_bytes_processed'], ['added', 'data_added']] as const) {
      const n = parts.reduce((sum, p) => sum + (typeof p[field] === 'number' ? p[field] : 0), 0);
      if (n > 0) this.bytes.inc({ kind: job.kind, measure }, n);
    }
  }

  /** Counts a scheduler tick of this node that took `seconds`. */
  tickEnded(seconds: number): void {
    this.ticks.observe(seconds);
  }

  /** The exposition text, the database's figures read now. */
  async scrape(ctx: ServiceContext): Promise<string> {
    try {
      await this.readDatabase(ctx);
      this.databaseUp.set(1);
    } catch {
      this.databaseUp.set(0);
    }
    return this.registry.metrics();
  }

  /** Content-Type of the exposition. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private async readDatabase(ctx: ServiceContext): Promise<void> {
    const customers = new Map((await ctx.db.selectFrom('customers').select(['id', 'name']).execute()).map((c) => [c.id, c.name]));
    const machines = await machinesWithLastSuccess(ctx);
    const seen = await ctx.db.selectFrom('machines').select(['id', 'customer_id', 'name', 'last_seen_at']).where('retired_at', 'is', null).execute();
    const safes = await ctx.db.selectFrom('disk_safes').selectAll().where('deleting_at', 'is', null).execute();
    const stored = await ctx.usage.storedBytesOf(safes);
    const jobs = await ctx.db.selectFrom('jobs').select((eb) => ['runner', 'state', eb.fn.countAll<number | string>().as('n')])
      .where('state', 'in', ['queued', 'running']).groupBy(['runner', 'state']).execute();
    const outbox = await ctx.db.selectFrom('notification_outbox').select((eb) => ['state', eb.fn.countAll<number | string>().as('n')])
      .where('state', 'in', ['pending', 'failed']).groupBy('state').execute();

    const name = (id: string): string => customers.get(id) ?? id;
    for (const g of [this.lastSuccess, this.lastSeen, this.stale, this.safeBytes, this.customerBytes, this.jobs, this.outbox]) g.reset();
    for (const m of machines) {
      const l: Labels<'customer' | 'machine'> = { customer: name(m.customer_id), machine: m.name };
      if (m.last_success !== null) this.lastSuccess.set(l, Date.parse(m.last_success) / 1000);
      this.stale.set(l, m.stale_since === null ? 0 : 1);
    }
    for (const m of seen) if (m.last_seen_at !== null) this.lastSeen.set({ customer: name(m.customer_id), machine: m.name }, Date.parse(m.last_seen_at) / 1000);
    const perCustomer = new Map<string, number>([...customers.keys()].map((id) => [id, 0]));
    for (const s of safes) {
      const bytes = stored.get(s.location) ?? 0;
      this.safeBytes.set({ customer: name(s.customer_id), safe: s.name }, bytes);
      perCustomer.set(s.customer_id, (perCustomer.get(s.customer_id) ?? 0) + bytes);
    }
    for (const [id, bytes] of perCustomer) this.customerBytes.set({ customer: name(id) }, bytes);
    for (const runner of ['agent', 'server']) for (const state of ['queued', 'running']) this.jobs.set({ runner, state }, 0);
    for (const j of jobs) this.jobs.set({ runner: j.runner, state: j.state }, Number(j.n));
    for (const state of ['pending', 'failed']) this.outbox.set({ state }, Number(outbox.find((o) => o.state === state)?.n ?? 0));
  }
}

/**
 * Throws Unauthenticated unless `bearer` may read /metrics: the metrics
 * token, or a provider person's session (authenticate: `principal`).
 */
export async function authorizeScrape(ctx: ServiceContext, bearer: string | undefined, principal: () => Promise<Principal>): Promise<void> {
  const parsed = bearer === undefined ? undefined : parseSecret(bearer);
  if (parsed?.kind === 'metrics') {
    const t = await ctx.db.selectFrom('metrics_tokens').select('secret_hash').where('id', '=', parsed.id).executeTakeFirst();
    if (!t || !secretMatches(parsed.secret, t.secret_hash)) throw new Unauthenticated('the metrics token is unknown (made again since?)');
    return;
  }
  const p = await principal();
  if (!isProvider(p) || p.user?.must_change_password === 1) throw new Unauthenticated('/metrics is read with the metrics token (holdfast server metrics-token) or a provider admin\'s or operator\'s session');
}

/** Makes the metrics token (provider admins only), replacing the one there was; its secret is answered this once. */
export async function makeMetricsToken(ctx: ServiceContext, p: Principal): Promise<{ token: string }> {
  requireProvider(p, true);
  const minted = mintSecret('metrics');
  await ctx.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('metrics_tokens').execute();
    await trx.insertInto('metrics_tokens').values({ id: minted.id, secret_hash: minted.secretHash, created_by: p.actor, created_at: ctx.now().toISOString() }).execute();
  });
  await audit(ctx, p, 'metrics-token.create', minted.id, null);
  return { token: minted.token };
}

/** Removes the metrics token: /metrics is then read with a provider session only. */
export async function removeMetricsToken(ctx: ServiceContext, p: Principal): Promise<void> {
  requireProvider(p, true);
  await ctx.db.deleteFrom('metrics_tokens').execute();
  await audit(ctx, p, 'metrics-token.delete', 'metrics', null);
}

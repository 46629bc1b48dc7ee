/**
 * What every service works with: the database, the disk safes' storage and
 * their usage, the clock, the login limiter, the agents' waiting polls, the
 * server's own jobs, the notifications' delivery, the metrics.
 * One per server; the HTTP layer hands it to the service functions with the
 * caller's `Principal`.
 */
import type { Kysely } from 'kysely';
import type { ProcessIdentity } from '../../repo/lock.js';
import type { DatabaseKind } from '../db/open-database.js';
import type { ControlPlane } from '../db/schema.js';
import type { JobSignals } from './job-signals.js';
import type { LoginLimiter } from './login-limiter.js';
import type { ServerMetrics } from './metrics.js';
import type { Notifier } from './notification-delivery.js';
import type { SafeStorage } from './safe-storage.js';
import type { ServerJobs } from './server-jobs.js';
import type { UsageLedger } from './usage.js';

export interface ServiceContext {
  readonly db: Kysely<ControlPlane>;
  /** Which engine `db` is (a few queries are spelt per engine: FOR UPDATE SKIP LOCKED on PostgreSQL). */
  readonly dbKind: DatabaseKind;
  readonly limiter: LoginLimiter;
  /** Where the disk safes' repositories are: every safe's `Backend` comes from here. */
  readonly safeStorage: SafeStorage;
  /** The agents' polls waiting for a job. */
  readonly jobSignals: JobSignals;
  /** A running job whose agent has said nothing for this long is interrupted (milliseconds). */
  readonly jobSilenceLimitMs: number;
  /** The disk safes' storage and their stored bytes (usage.ts). */
  readonly usage: UsageLedger;
  /** The server's clock (tests may set it). */
  now(): Date;
  /** Who holds the repository locks the server takes itself (forget, prune): this process. */
  readonly identity: ProcessIdentity;
  /** The shortest grace period of the safes' prunes, which the backups' commit window is half of (docs/format.md §15.5). */
  readonly minGraceMs: number;
  /** This server node's id (server.json's `node`): the `runner_node` of the jobs it runs. */
  readonly node: string;
  /** The jobs the server runs itself (prune), claimed by one node at a time (server-jobs.ts). */
  readonly serverJobs: ServerJobs;
  /** Sends the notifications in the outbox (notification-delivery.ts); raiseEvent nudges it. */
  readonly notifier: Notifier;
  /** This node's Prometheus metrics (metrics.ts): jobs' ends are counted in it. */
  readonly metrics: ServerMetrics;
  /** The stale threshold of a machine whose policy has no schedule (milliseconds): the alerts' and the fleet's status. */
  readonly staleAfterMs: number;
}

/** A database error that says a unique name is taken (SQLite and PostgreSQL word it differently). */
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return err.code === '23505' || err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/**
 * The control plane's migrations, in code: each is a function of the
 * database, named by a sortable key, run in order by kysely's Migrator and
 * recorded in its own table (docs/decisions.md, "Control-plane database").
 * A migration, once released, never changes; a change of schema is a new
 * entry at the end. src/server/db/schema.ts must describe the result.
 */
import { Migrator, sql, type Kysely, type Migration } from 'kysely';
import { snapshotGroupKey } from '../services/snapshot-time-policy.js';
import type { DatabaseKind } from './open-database.js';

/** Raised when the database cannot be brought to the schema this version needs. */
export class MigrationError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

function migrations(kind: DatabaseKind): Record<string, Migration> {
  return {
    '0001-initial': {
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('customers')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('customer_id', 'text', (c) => c.references('customers.id'))
          .addColumn('password_hash', 'text', (c) => c.notNull())
          .addColumn('must_change_password', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('sessions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addColumn('address', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('machines')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('customer_id', 'text', (c) => c.notNull().references('customers.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('machines_customer_name', ['customer_id', 'name'])
          .execute();
        await db.schema.createTable('api_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('customer_id', 'text', (c) => c.notNull().references('customers.id'))
          .addColumn('machine_id', 'text', (c) => c.references('machines.id'))
          .addColumn('rights', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text')
          .addColumn('revoked_at', 'text')
          .execute();
        await db.schema.createTable('disk_safes')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('customer_id', 'text', (c) => c.notNull().references('customers.id'))
          .addColumn('machine_id', 'text', (c) => c.references('machines.id'))
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('location', 'text', (c) => c.notNull())
          .addColumn('quota_hard', 'bigint')
          .addColumn('quota_soft', 'bigint')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        // An ever-growing sequence orders the log (times may tie); each engine spells it its own way.
        await db.schema.createTable('audit_log')
          .addColumn('seq', kind === 'postgres' ? 'bigserial' : 'integer', (c) => (kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('customer_id', 'text')
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('target', 'text', (c) => c.notNull())
          .addColumn('address', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_log_customer').on('audit_log').columns(['customer_id', 'seq']).execute();
        await db.schema.createIndex('sessions_user').on('sessions').column('user_id').execute();
      },
    },
    '0002-jobs': {
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('machines').addColumn('last_seen_at', 'text').execute();
        await db.schema.createTable('jobs')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('customer_id', 'text', (c) => c.notNull().references('customers.id'))
          .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id'))
          .addColumn('safe_id', 'text', (c) => c.notNull().references('disk_safes.id'))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('spec', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('started_at', 'text')
          .addColumn('last_report_at', 'text')
          .addColumn('finished_at', 'text')
          .addColumn('result', 'text')
          .addColumn('error', 'text')
          .execute();
        await db.schema.createIndex('jobs_machine_state').on('jobs').columns(['machine_id', 'state', 'created_at']).execute();
        await db.schema.createTable('job_events')
          .addColumn('seq', kind === 'postgres' ? 'bigserial' : 'integer', (c) => (kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id'))
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('message', 'text', (c) => c.notNull())
          .addColumn('data', 'text')
          .execute();
        await db.schema.createIndex('job_events_job').on('job_events').columns(['job_id', 'seq']).execute();
      },
    },
    // A customer's quotas bound the stored bytes of all its disk safes together; usage itself is counted from storage (services/usage.ts).
    '0003-quotas': {
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('customers').addColumn('quota_hard', 'bigint').execute();
        await db.schema.alterTable('customers').addColumn('quota_soft', 'bigint').execute();
      },
    },
    '0004-escrow': {
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('recovery_keys')
          .addColumn('customer_id', 'text', (c) => c.primaryKey().references('customers.id'))
          .addColumn('public_key', 'text', (c) => c.notNull())
          .addColumn('set_by', 'text', (c) => c.notNull())
          .addColumn('set_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('safe_escrows')
          .addColumn('safe_id', 'text', (c) => c.primaryKey().references('disk_safes.id'))
          .addColumn('recovery_key', 'text', (c) => c.notNull())
          .addColumn('wrapped_password', 'text', (c) => c.notNull())
          .addColumn('stored_by', 'text', (c) => c.notNull())
          .addColumn('stored_at', 'text', (c) => c.notNull())
          .execute();
        // A restore token reads one disk safe only.
        await db.schema.alterTable('api_tokens').addColumn('safe_id', 'text', (c) => c.references('disk_safes.id')).execute();
      },
    },
    '0005-server-jobs': {
      // Jobs the server runs itself (prune of a disk safe): who runs a job, and a machine only for an agent's (a safe may belong to none).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('jobs').addColumn('runner', 'text', (c) => c.notNull().defaultTo('agent')).execute();
        if (kind === 'postgres') await db.schema.alterTable('jobs').alterColumn('machine_id', (c) => c.dropNotNull()).execute();
        else await sqliteDropNotNull(db, 'jobs', 'machine_id');
      },
    },
    '0006-lock-owners': {
      // Which principal added which lock object of a safe: an append token removes its own after a restart too.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('lock_owners')
          .addColumn('safe_id', 'text', (c) => c.notNull().references('disk_safes.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('principal', 'text', (c) => c.notNull())
          .addColumn('added_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('lock_owners_pk', ['safe_id', 'name'])
          .execute();
      },
    },
    '0007-job-expiry': {
      // A queued job ends `expired` when no agent took it in time; anyone who may start a job may cancel it (who is recorded).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('jobs').addColumn('expires_at', 'text').execute();
        await db.schema.alterTable('jobs').addColumn('cancelled_by', 'text').execute();
      },
    },
    '0008-machine-retire': {
      // A retired machine keeps its record (its jobs and audit entries name it), and its name is free for a machine that replaces it.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('machines').addColumn('retired_at', 'text').execute();
        if (kind === 'postgres') await db.schema.alterTable('machines').dropConstraint('machines_customer_name').execute();
        else await sqliteRebuild(db, 'machines', (def) => def.replace(/,\s*constraint "machines_customer_name" unique \("customer_id", "name"\)/i, ''));
        await db.schema.createIndex('machines_live_name').on('machines').columns(['customer_id', 'name']).unique().where(sql.ref('retired_at'), 'is', null).execute();
      },
    },
    '0009-safe-names': {
      // A disk safe's name is unique within its customer, not server-wide: a taken name told another customer that it exists.
      async up(db: Kysely<unknown>): Promise<void> {
        if (kind === 'postgres') {
          await db.schema.alterTable('disk_safes').dropConstraint('disk_safes_name_key').execute();
          await db.schema.alterTable('disk_safes').addUniqueConstraint('disk_safes_customer_name', ['customer_id', 'name']).execute();
        } else {
          const unique = /("name" text not null) unique/i;
          await sqliteRebuild(db, 'disk_safes', (def) => {
            if (!unique.test(def)) throw new MigrationError(`cannot find the unique name of disk_safes in: ${def}`);
            return def.replace(unique, '$1').replace(/\)\s*$/, ', constraint "disk_safes_customer_name" unique ("customer_id", "name"))');
          });
        }
      },
    },
    '0010-safe-deleting': {
      // A safe being deleted is marked first: its repository answers 404 while its objects go, and a deletion cut short is finished by a repeated DELETE.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('disk_safes').addColumn('deleting_at', 'text').execute();
      },
    },
    '0011-job-node-safe-deleted': {
      // Which server node runs a server job: a node that starts again ends its own running jobs at once, and only its own (several nodes share one database).
      // When a live machine's disk safe was deleted: its agent is told that it has no safe any more (one never given a safe is not).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('jobs').addColumn('runner_node', 'text').execute();
        await db.schema.alterTable('machines').addColumn('safe_deleted_at', 'text').execute();
      },
    },
    '0012-policies': {
      // What the server does on schedule, attached to a customer, a machine or a disk safe (one policy each); settings as JSON (services/policies.ts).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('policies')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('customer_id', 'text', (c) => c.notNull().references('customers.id'))
          .addColumn('machine_id', 'text', (c) => c.references('machines.id'))
          .addColumn('safe_id', 'text', (c) => c.references('disk_safes.id'))
          .addColumn('target', 'text', (c) => c.notNull().unique())
          .addColumn('settings', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('updated_by', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('policies_customer').on('policies').column('customer_id').execute();
      },
    },
    '0014-notifications': {
      // Notification channels (a customer's, or the provider's with no customer) and the outbox their deliveries wait in; the alert state
      // that makes each alert fire once: a machine's staleness and a quota's level (services/alerts.ts, quota.ts).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('notification_channels')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('customer_id', 'text', (c) => c.references('customers.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('config', 'text', (c) => c.notNull())
          .addColumn('secret', 'text')
          .addColumn('events', 'text', (c) => c.notNull())
          .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('notification_channels_customer').on('notification_channels').columns(['customer_id', 'name']).execute();
        await db.schema.createTable('notification_outbox')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('channel_id', 'text', (c) => c.notNull().references('notification_channels.id'))
          .addColumn('event_id', 'text', (c) => c.notNull())
          .addColumn('event', 'text', (c) => c.notNull())
          .addColumn('customer_id', 'text')
          .addColumn('payload', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('leased_by', 'text')
          .addColumn('lease_until', 'text')
          .addColumn('finished_at', 'text')
          .addColumn('last_error', 'text')
          .execute();
        await db.schema.createIndex('notification_outbox_due').on('notification_outbox').columns(['state', 'next_attempt_at']).execute();
        await db.schema.createIndex('notification_outbox_channel').on('notification_outbox').columns(['channel_id', 'created_at']).execute();
        await db.schema.alterTable('machines').addColumn('stale_since', 'text').execute();
        await db.schema.alterTable('disk_safes').addColumn('quota_alert', 'text').execute();
        await db.schema.alterTable('customers').addColumn('quota_alert', 'text').execute();
      },
    },
    '0015-metrics-token': {
      // The token Prometheus scrapes /metrics with: provider-wide, read-only, and no API token (those belong to one customer).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('metrics_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0016-verification': {
      // Server-run verification (services/verification.ts): where each safe's rotation of read slices stands, and the damaged packs and snapshots found.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createTable('safe_verifications')
          .addColumn('safe_id', 'text', (c) => c.primaryKey().references('disk_safes.id'))
          .addColumn('slices', 'integer', (c) => c.notNull())
          .addColumn('next_slice', 'integer', (c) => c.notNull())
          .addColumn('verified_at', 'text')
          .execute();
        await db.schema.createTable('damaged_packs')
          .addColumn('safe_id', 'text', (c) => c.notNull().references('disk_safes.id'))
          .addColumn('pack', 'text', (c) => c.notNull())
          .addColumn('found_at', 'text', (c) => c.notNull())
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('damaged_packs_pk', ['safe_id', 'pack'])
          .execute();
        await db.schema.createTable('damaged_snapshots')
          .addColumn('safe_id', 'text', (c) => c.notNull().references('disk_safes.id'))
          .addColumn('snapshot_id', 'text', (c) => c.notNull())
          .addColumn('found_at', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('damaged_snapshots_pk', ['safe_id', 'snapshot_id'])
          .execute();
      },
    },
    '0017-restore-tests': {
      // "Last proven restorable" of each machine: its last restore test that passed (services/restore-tests.ts).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('machines').addColumn('proven_restorable_at', 'text').execute();
        await db.schema.alterTable('machines').addColumn('proven_restorable_snapshot', 'text').execute();
      },
    },
    '0018-job-leases-usage': {
      // Several server nodes on one database (docs/decisions.md, "Several server nodes"):
      // a server job is queued, claimed by one node with a lease it renews, and taken over by another node once the lease runs out;
      // the safes' stored bytes, the uploads' reservations against the quotas and the hourly usage samples are shared by every node.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('jobs').addColumn('lease_until', 'text').execute();
        await db.schema.alterTable('jobs').addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
        await db.schema.createIndex('jobs_runner_state').on('jobs').columns(['runner', 'state', 'created_at']).execute();
        await db.schema.createTable('safe_usage')
          .addColumn('location', 'text', (c) => c.primaryKey())
          .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
          .addColumn('counted_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('usage_reservations')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('location', 'text', (c) => c.notNull())
          .addColumn('customer_id', 'text', (c) => c.notNull())
          .addColumn('bytes', 'bigint', (c) => c.notNull())
          .addColumn('node', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('usage_reservations_customer').on('usage_reservations').columns(['customer_id', 'location']).execute();
        await db.schema.createTable('usage_samples')
          .addColumn('location', 'text', (c) => c.notNull())
          .addColumn('hour', 'text', (c) => c.notNull())
          .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('usage_samples_pk', ['location', 'hour'])
          .execute();
      },
    },
    '0019-snapshot-index': {
      // The plain metadata of every safe's snapshots, so that listings do not read the storage; a safe is indexed once (snapshots_indexed_at), then kept up to date.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('disk_safes').addColumn('snapshots_indexed_at', 'text').execute();
        await db.schema.createTable('snapshot_index')
          .addColumn('safe_id', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('time', 'text', (c) => c.notNull())
          .addColumn('hostname', 'text', (c) => c.notNull())
          .addColumn('username', 'text', (c) => c.notNull())
          .addColumn('paths', 'text', (c) => c.notNull())
          .addColumn('tags', 'text', (c) => c.notNull())
          .addColumn('parent', 'text')
          .addColumn('incomplete', 'integer', (c) => c.notNull())
          .addColumn('image', 'integer', (c) => c.notNull())
          .addColumn('summary', 'text', (c) => c.notNull())
          .addColumn('stored_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('snapshot_index_pk', ['safe_id', 'id'])
          .execute();
        await db.schema.createIndex('snapshot_index_time').on('snapshot_index').columns(['safe_id', 'time']).execute();
      },
    },
    '0013-scheduled-jobs': {
      // A scheduled job names its slot: two ticks (of one node or several) make one job per safe, kind and slot (NULLs, the jobs people start, never collide).
      // A queued job waits in the fair queue until admitted (people's jobs are admitted at once); a running one past its timeout is cancelled.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('jobs').addColumn('slot_at', 'text').execute();
        await db.schema.alterTable('jobs').addColumn('admitted_at', 'text').execute();
        await db.schema.alterTable('jobs').addColumn('timeout_seconds', 'integer').execute();
        await db.updateTable('jobs' as never).set({ admitted_at: sql.ref('created_at') } as never).execute();
        await db.schema.createIndex('jobs_slot').on('jobs').columns(['safe_id', 'kind', 'slot_at']).unique().execute();
        await db.schema.createIndex('jobs_state_admitted').on('jobs').columns(['state', 'admitted_at']).execute();
      },
    },
    '0020-fleet-status': {
      // The fleet's status (services/fleet-status.ts) reads each machine's newest finished jobs: a seek per machine, not a scan of its history.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.createIndex('jobs_machine_finished').on('jobs').columns(['machine_id', 'finished_at']).execute();
      },
    },
    '0021-snapshot-census': {
      // The machine's agent's census of its safe (services/census.ts): when it last listed the safe with the key, and per snapshot whether that census vouched for it or found it failing its MAC.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('disk_safes').addColumn('census_at', 'text').execute();
        await db.schema.alterTable('snapshot_index').addColumn('census_at', 'text').execute();
        await db.schema.alterTable('snapshot_index').addColumn('unauthentic', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      },
    },
    '0022-policy-removed': {
      // When a policy that applied to the safe was last removed: the scheduler's slots count from it as from a policy's change (services/scheduler.ts).
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('disk_safes').addColumn('policy_removed_at', 'text').execute();
      },
    },
    '0023-snapshot-group': {
      // The backdating rule (services/snapshot-time-policy.ts) asks the index for the newest snapshot of a host and paths: a key of the group per row (a digest, one length whatever the paths), computed here for the rows before it, and an index to seek by it.
      async up(db: Kysely<unknown>): Promise<void> {
        await db.schema.alterTable('snapshot_index').addColumn('group_key', 'text', (c) => c.notNull().defaultTo('')).execute();
        const rows = await sql<{ safe_id: string; id: string; hostname: string; paths: string }>`select safe_id, id, hostname, paths from snapshot_index`.execute(db);
        for (const r of rows.rows) {
          const key = snapshotGroupKey(r.hostname, JSON.parse(r.paths) as string[]);
          await sql`update snapshot_index set group_key = ${key} where safe_id = ${r.safe_id} and id = ${r.id}`.execute(db);
        }
        await db.schema.createIndex('snapshot_index_group').on('snapshot_index').columns(['safe_id', 'group_key', 'time']).execute();
      },
    },
  };
}

/** Drops NOT NULL from `table`.`column` in SQLite, which cannot alter a column (see sqliteRebuild). */
async function sqliteDropNotNull(db: Kysely<unknown>, table: string, column: string): Promise<void> {
  const notNull = new RegExp(`("${column}" [a-z]+) not null`, 'i');
  await sqliteRebuild(db, table, (def) => {
    if (!notNull.test(def)) throw new MigrationError(`cannot find the NOT NULL of ${table}.${column} to drop in: ${def}`);
    return def.replace(notNull, '$1');
  });
}

/**
 * Makes SQLite's `table` anew from its own definition as `edit` changes it
 * (SQLite cannot alter a column or drop a constraint): the new table made,
 * the rows copied, the old one dropped and the new one renamed, its indexes
 * made again (SQLite's "generalized ALTER TABLE procedure", foreign keys off
 * meanwhile, checked before the commit). `edit` must change the definition.
 */
async function sqliteRebuild(db: Kysely<unknown>, table: string, edit: (def: string) => string): Promise<void> {
  const def = (await sql<{ sql: string }>`select sql from sqlite_master where type = 'table' and name = ${table}`.execute(db)).rows[0]?.sql;
  const indexes = (await sql<{ sql: string }>`select sql from sqlite_master where type = 'index' and tbl_name = ${table} and sql is not null`.execute(db)).rows;
  const head = new RegExp(`^create table "${table}"`, 'i');
  if (def === undefined || !head.test(def)) throw new MigrationError(`cannot read the definition of ${table}: ${def ?? 'no such table'}`);
  const edited = edit(def);
  if (edited === def) throw new MigrationError(`the definition of ${table} is not the one this migration changes: ${def}`);
  const rebuilt = `${table}_rebuilt`;
  await sql`pragma foreign_keys = off`.execute(db);
  try {
    await sql`begin`.execute(db);
    try {
      await sql.raw(edited.replace(head, `create table "${rebuilt}"`)).execute(db);
      await sql.raw(`insert into "${rebuilt}" select * from "${table}"`).execute(db);
      await sql.raw(`drop table "${table}"`).execute(db);
      await sql.raw(`alter table "${rebuilt}" rename to "${table}"`).execute(db);
      for (const i of indexes) await sql.raw(i.sql).execute(db);
      const broken = (await sql`pragma foreign_key_check`.execute(db)).rows;
      if (broken.length > 0) throw new MigrationError(`rebuilding ${table} broke ${broken.length} foreign key(s)`);
      await sql`commit`.execute(db);
    } catch (e) {
      await sql`rollback`.execute(db);
      throw e;
    }
  } finally {
    await sql`pragma foreign_keys = on`.execute(db);
  }
}

/** The migrations' names, in order (what the newest schema consists of). */
export const MIGRATION_NAMES: readonly string[] = Object.keys(migrations('sqlite')).sort();

/**
 * Brings the database to the newest schema (tests of an upgrade: only up to
 * migration `upTo`). Refuses a database that a newer holdfast has migrated
 * further (kysely's Migrator stops at an unknown migration), so an old
 * server never runs on a schema it does not know.
 */
export async function migrateToLatest(db: Kysely<unknown>, kind: DatabaseKind, upTo?: string): Promise<void> {
  const all = migrations(kind);
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(all) },
    migrationTableName: 'holdfast_migrations',
    migrationLockTableName: 'holdfast_migrations_lock',
  });
  const { error, results } = await (upTo === undefined ? migrator.migrateToLatest() : migrator.migrateTo(upTo));
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    const why = error instanceof Error ? error.message : String(error);
    throw new MigrationError(`the control-plane database could not be migrated${failed ? ` (migration ${failed})` : ''}: ${why}`, { cause: error });
  }
}

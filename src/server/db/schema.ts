/**
 * The control-plane database's tables, as kysely sees them. One schema for
 * SQLite and PostgreSQL: ids are text (random UUIDs, or the public half of a
 * token), times are ISO-8601 UTC text (sortable, the same in both engines),
 * flags are integers 0/1 and byte counts are 64-bit integers read back as
 * numbers (src/server/db/open-database.ts). The tables are made by
 * src/server/db/migrations.ts; this file must say what they say.
 */
import type { Generated, Insertable, Selectable } from 'kysely';
import type { CHANNEL_KIND_NAMES, DAMAGE_SOURCES, DELIVERY_STATE_NAMES, EventKindName, JOB_STATE_NAMES, JobKindName, ServerJobKindName } from '../../api/v1.js';

/** Roles of a person. Provider roles see every customer; customer roles one. */
export const ROLES = ['provider-admin', 'provider-operator', 'customer-admin', 'customer-viewer'] as const;
export type Role = (typeof ROLES)[number];

/** True for the roles that belong to one customer (users.customer_id is set exactly for these). */
export const isCustomerRole = (r: Role): boolean => r === 'customer-admin' || r === 'customer-viewer';

/**
 * What an API token may do: `read` the customer's records through the API,
 * `manage` them (create, revoke), `backup` add to and read its disk safes
 * over the repository protocol (never delete or overwrite), `enroll` register
 * a new machine of its customer with a disk safe and get the machine's agent
 * token (POST /api/v1/agent/enroll; nothing else), `restore` read the one
 * disk safe named by the token's `safe_id` over the repository protocol
 * (nothing else; made by POST /api/v1/safes/ID/restore-tokens).
 */
export const TOKEN_RIGHTS = ['read', 'manage', 'backup', 'enroll', 'restore'] as const;
export type TokenRight = (typeof TOKEN_RIGHTS)[number];

export interface CustomersTable {
  id: string;
  name: string;
  created_at: string;
  /** Bytes, all the customer's disk safes together; an upload that would pass it is refused. Null: none. */
  quota_hard: number | null;
  /** Bytes, all the customer's disk safes together; passing it warns. Null: none. */
  quota_soft: number | null;
  /** The quota alert last raised for it (`warn`, `exceeded`; migration 0014), so that each is raised once; null below 90 % of its quota. */
  quota_alert: QuotaAlert | null;
}

/** The alert a quota's usage has raised: at 90 % of it, or past it. */
export type QuotaAlert = 'warn' | 'exceeded';

export interface UsersTable {
  id: string;
  /** Login name, unique on the server. */
  name: string;
  role: Role;
  /** Set for customer roles, null for provider roles. */
  customer_id: string | null;
  /** `scrypt$N$r$p$salt$hash` (src/server/services/passwords.ts). */
  password_hash: string;
  /** 1 while the password is the one-time one the server made: only /me, password change and logout are allowed. */
  must_change_password: number;
  created_at: string;
}

export interface SessionsTable {
  /** Public half of the session token. */
  id: string;
  /** SHA-256 (hex) of the secret half. */
  secret_hash: string;
  user_id: string;
  created_at: string;
  expires_at: string;
  address: string;
}

export interface ApiTokensTable {
  /** Public half of the token, shown in listings. */
  id: string;
  name: string;
  /** SHA-256 (hex) of the secret half; the secret itself is shown once, at creation. */
  secret_hash: string;
  customer_id: string;
  /** Set when the token is scoped to one machine (an agent's). */
  machine_id: string | null;
  /** Comma-separated TokenRight values. */
  rights: string;
  created_by: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  /** The one disk safe a restore token reads; null for every other token. */
  safe_id: string | null;
}

export interface MachinesTable {
  id: string;
  customer_id: string;
  /** Unique among the live machines of its customer (a retired one's name may be taken again). */
  name: string;
  created_at: string;
  /** When its agent last polled for a job or reported on one (the agent's heartbeat); null before the first. */
  last_seen_at: string | null;
  /** When it was retired (DELETE /machines/ID: its tokens revoked, its disk safes left without a machine); null while live. */
  retired_at: string | null;
  /** When a disk safe of it was deleted while it was live (`live_machine`): with no safe left, its agent is told so (`NO_DISK_SAFE`). */
  safe_deleted_at: string | null;
  /** Since when its last successful backup is older than its threshold (migration 0014; services/alerts.ts); null while it is not. */
  stale_since: string | null;
  /** When its last restore test that passed ended (migration 0017); null before the first. */
  proven_restorable_at: string | null;
  /** The snapshot that test restored. */
  proven_restorable_snapshot: string | null;
}

export interface DiskSafesTable {
  id: string;
  customer_id: string;
  machine_id: string | null;
  /** Unique on the server: the NAME of https://host:port/safes/NAME. */
  name: string;
  /** Where the repository is stored: a folder relative to the data directory, or a backend location. */
  location: string;
  /** Bytes; an upload that would pass it is refused. Null: none. */
  quota_hard: number | null;
  /** Bytes; passing it warns. Null: none. */
  quota_soft: number | null;
  created_at: string;
  /** When its deletion began (migration 0010): its repository is gone for clients, its objects are being removed. Null: a live safe. */
  deleting_at: string | null;
  /** The quota alert last raised for it (`warn`, `exceeded`; migration 0014), so that each is raised once; null below 90 % of its quota. */
  quota_alert: QuotaAlert | null;
  /** When its snapshots were first read into `snapshot_index` (migration 0019); null until then (the index is built on first use). */
  snapshots_indexed_at: Generated<string | null>;
  /** The `started_at` of the last backup job whose agent reported its census of the safe (migration 0021, services/census.ts); null: no census yet. */
  census_at: Generated<string | null>;
  /** When a policy that applied to it was last removed (migration 0022): its schedule, now a less specific policy's, counts its slots from then. Null: never. */
  policy_removed_at: Generated<string | null>;
}

export interface AuditLogTable {
  seq: Generated<number>;
  at: string;
  /** `user:NAME` or `token:ID`, or `server` for what the server did itself. */
  actor: string;
  /** The customer the change concerns (who may read the entry besides the provider); null for provider-wide changes. */
  customer_id: string | null;
  /** e.g. `customer.create`, `token.revoke`, `login.failure`. */
  action: string;
  /** The id (or name) of what was changed. */
  target: string;
  /** The client's address. */
  address: string;
}

/** What an agent can be asked to do (the API's vocabulary: src/api/v1.ts has each kind's spec), or the server does itself on a disk safe (services/retention.ts). */
export type JobKind = JobKindName | ServerJobKindName;

/** Where damage to a snapshot was found. */
export type DamageSource = (typeof DAMAGE_SOURCES)[number];

/** Who runs a job: the machine's agent, or the server itself. */
export type JobRunner = 'agent' | 'server';

/**
 * A job's life: queued until its machine's agent takes it, running until the
 * agent reports its end, or interrupted when the agent went silent or came
 * back without finishing it; cancelled by a person or tool (at once while
 * queued, by its runner once it stopped while running); expired when no
 * agent took it in time.
 */
export type JobState = (typeof JOB_STATE_NAMES)[number];

export interface JobsTable {
  id: string;
  customer_id: string;
  /** The machine whose agent runs it; for a server job, the safe's machine (null when the safe has none). */
  machine_id: string | null;
  /** The disk safe the job works on. */
  safe_id: string;
  /** `agent` (taken by the machine's agent's poll) or `server` (run by the server, never polled). */
  runner: JobRunner;
  /**
   * A server job's node (the `node` of its data directory's server.json): the
   * server that started it, which ends it interrupted when it starts again.
   * Null for an agent's job, and for a server job from before migration 0011.
   */
  runner_node: string | null;
  kind: JobKind;
  /** The kind's spec, JSON. */
  spec: string;
  state: JobState;
  /** Who asked for it (`user:NAME`, `token:ID`). */
  created_by: string;
  created_at: string;
  started_at: string | null;
  /** The runner's last word about it (the server's heartbeat for its own); a running job silent for longer than the limit is interrupted. */
  last_report_at: string | null;
  finished_at: string | null;
  /** What the runner reported at the end, JSON (a snapshot id, counts, a prune report). */
  result: string | null;
  /** Why it failed, was interrupted, cancelled or expired. */
  error: string | null;
  /** A queued agent job that no agent has taken by then ends `expired` (null: never, a server job's). */
  expires_at: string | null;
  /** Who cancelled it (`user:NAME`, `token:ID`); set on a running job when the cancel is asked for, before its runner stops it. */
  cancelled_by: string | null;
  /**
   * A running server job's lease (migration 0018): its node renews it while
   * the job runs; once it has run out, another node takes the job over and
   * runs it again (services/server-jobs.ts). Null for an agent's job and a queued one.
   */
  lease_until: string | null;
  /** How many times a node began a server job (1 for a job run once; more after a takeover). */
  attempts: Generated<number>;
  /** The schedule's slot a scheduled job is for (migration 0013): unique per safe and kind, so two ticks make one job. Null: started by someone. */
  slot_at: string | null;
  /** When the fair queue let the queued job start (its agent may take it from then); people's jobs at once. Null: waiting (services/scheduler.ts). */
  admitted_at: string | null;
  /** A running job past this many seconds since it started is cancelled by the scheduler; null: no limit. */
  timeout_seconds: number | null;
}

export interface JobEventsTable {
  seq: Generated<number>;
  job_id: string;
  /** When the agent saw it happen. */
  at: string;
  /** `progress` or `log`. */
  kind: string;
  message: string;
  /** Progress counters, JSON; null for a log line. */
  data: string | null;
}

/** A customer's recovery public key: what disk safes' passwords are escrowed for (docs/format.md §2.8). */
export interface RecoveryKeysTable {
  customer_id: string;
  /** `hfrk_…` (src/core/escrow.ts); the private half never reaches the server. */
  public_key: string;
  set_by: string;
  set_at: string;
}

/** A disk safe's password, wrapped for a recovery key by the safe's agent; the server cannot open it. */
export interface SafeEscrowsTable {
  safe_id: string;
  /** The public key the box was sealed for (`hfrk_…`), read from the box. */
  recovery_key: string;
  /** The sealed box, base64. */
  wrapped_password: string;
  /** Who uploaded it (`token:ID`, the agent's). */
  stored_by: string;
  stored_at: string;
}

/** A lock object of a disk safe and the principal that added it over the repository protocol (its own to remove). */
export interface LockOwnersTable {
  safe_id: string;
  /** The lock object's name (64 hex). */
  name: string;
  /** `token:ID`, as `SafeAccess.principal`. */
  principal: string;
  added_at: string;
}

/**
 * Where events are sent (services/notifications.ts): a customer's, or with
 * `customer_id` null the provider's (every customer's events).
 */
export interface NotificationChannelsTable {
  id: string;
  customer_id: string | null;
  /** Unique among the channels of its customer (and among the provider's). */
  name: string;
  kind: (typeof CHANNEL_KIND_NAMES)[number];
  /** The settings without the secret, JSON: `{url}` of a webhook, `{host, port, security, username, from, to}` of e-mail. */
  config: string;
  /** The webhook's signing secret or the SMTP password (the server needs them in clear to use them); never shown. */
  secret: string | null;
  /** Comma-separated event kinds it receives (its rule). */
  events: string;
  enabled: number;
  created_by: string;
  created_at: string;
}

/**
 * The outbox: one row per event and channel, written with the change that
 * raised the event, delivered by whichever node claims it (a lease), retried
 * with backoff (services/notification-delivery.ts).
 */
export interface NotificationOutboxTable {
  id: string;
  channel_id: string;
  /** The event's id, the same in each of its rows (receivers may deduplicate by it). */
  event_id: string;
  event: EventKindName;
  /** The event's customer (null for none: a provider channel's test). */
  customer_id: string | null;
  /** The event as sent (an `EventPayload`, JSON). */
  payload: string;
  state: (typeof DELIVERY_STATE_NAMES)[number];
  attempts: number;
  created_at: string;
  /** A pending row is not tried before this. */
  next_attempt_at: string;
  /** The node delivering it now, until `lease_until` (then another may take it over). */
  leased_by: string | null;
  lease_until: string | null;
  /** When it was sent or given up. */
  finished_at: string | null;
  last_error: string | null;
}

/** The token Prometheus reads /metrics with (services/metrics.ts; migration 0015): at most one, replaced when made again. */
export interface MetricsTokensTable {
  /** Public half of the token. */
  id: string;
  /** SHA-256 (hex) of the secret half. */
  secret_hash: string;
  created_by: string;
  created_at: string;
}

/** A safe's stored bytes as every server node counts them (services/usage.ts): counted from storage once, then kept by each save and removal. */
export interface SafeUsageTable {
  /** The safe's `location` (`safes/ID`). */
  location: string;
  stored_bytes: number;
  /** When the safe was last counted from storage. */
  counted_at: string;
}

/** The bytes of an upload being received by some node, held against the quotas until it ends (or, when its node died, until `expires_at`). */
export interface UsageReservationsTable {
  id: string;
  location: string;
  customer_id: string;
  bytes: number;
  /** The node receiving the upload (server.json's `node`): a node that starts again drops its own. */
  node: string;
  expires_at: string;
}

/** A safe's stored bytes at the end of an hour in which they changed (services/usage-history.ts). */
export interface UsageSamplesTable {
  location: string;
  /** The hour, ISO `YYYY-MM-DDTHH:00:00.000Z`. */
  hour: string;
  stored_bytes: number;
}

/** A snapshot's plain metadata (docs/format.md §4.5), kept for listings that do not read the storage (services/snapshot-index.ts). */
export interface SnapshotIndexTable {
  safe_id: string;
  /** The snapshot's id (its object's name). */
  id: string;
  time: string;
  hostname: string;
  username: string;
  /** JSON array of strings. */
  paths: string;
  /** JSON array of strings. */
  tags: string;
  parent: string | null;
  /** 1 when the snapshot says it is incomplete. */
  incomplete: number;
  /** 1 for an image (block-level) snapshot. */
  image: number;
  /** The snapshot's summary, JSON (file counts and byte figures). */
  summary: string;
  /** When the server stored (or first indexed) it. */
  stored_at: string;
  /** The time of the agent's census that judged it (migration 0021, services/census.ts); null: no census has yet. */
  census_at: Generated<string | null>;
  /** 1 when that census found it failing its MAC: planted by someone without the key. */
  unauthentic: Generated<number>;
  /** Its host name's and paths' key (services/snapshot-time-policy.ts `snapshotGroupKey`, migration 0023): the backdating rule's group. */
  group_key: string;
}

/**
 * A policy (migration 0012): what the server does on schedule for a
 * customer, a machine or a disk safe (services/policies.ts).
 */
export interface PoliciesTable {
  id: string;
  customer_id: string;
  /** The machine it is attached to; null for a customer's or a safe's. */
  machine_id: string | null;
  /** The disk safe it is attached to; null for a customer's or a machine's. */
  safe_id: string | null;
  /** `customer:ID`, `machine:ID` or `safe:ID`: unique, one policy each. */
  target: string;
  /** Its settings (PolicySettings of src/api/v1-policies.ts), JSON. */
  settings: string;
  created_at: string;
  updated_at: string;
  /** Who last set it (`user:NAME`, `token:ID`). */
  updated_by: string;
}

/**
 * Where a disk safe's verification stands (migration 0016): its packs are
 * read in `slices` slices (a pack's slice: `bucketOf` in
 * src/jobs/check/subset.ts), one a run, and `next_slice` (1-based) is the
 * one the next run reads; it moves on only when a run has read its slice,
 * so a run that failed or did not happen skips nothing.
 */
export interface SafeVerificationsTable {
  safe_id: string;
  slices: number;
  next_slice: number;
  /** When a verification last read its slice. */
  verified_at: string | null;
}

/** A pack of a disk safe that a verification found damaged (its stored bytes do not match its name, or its header cannot be read). */
export interface DamagedPacksTable {
  safe_id: string;
  pack: string;
  found_at: string;
  /** The verification job that found it. */
  job_id: string;
  reason: string;
}

/** A snapshot of a disk safe found damaged: by a verification (it references a damaged pack's blobs) or a failed restore test. */
export interface DamagedSnapshotsTable {
  safe_id: string;
  snapshot_id: string;
  found_at: string;
  /** `verify` or `restore-test`. */
  source: DamageSource;
  job_id: string;
  reason: string;
}

/** The database as kysely's query builder types it. */
export interface ControlPlane {
  customers: CustomersTable;
  users: UsersTable;
  sessions: SessionsTable;
  api_tokens: ApiTokensTable;
  machines: MachinesTable;
  disk_safes: DiskSafesTable;
  audit_log: AuditLogTable;
  jobs: JobsTable;
  job_events: JobEventsTable;
  recovery_keys: RecoveryKeysTable;
  safe_escrows: SafeEscrowsTable;
  lock_owners: LockOwnersTable;
  notification_channels: NotificationChannelsTable;
  notification_outbox: NotificationOutboxTable;
  metrics_tokens: MetricsTokensTable;
  safe_usage: SafeUsageTable;
  usage_reservations: UsageReservationsTable;
  usage_samples: UsageSamplesTable;
  snapshot_index: SnapshotIndexTable;
  policies: PoliciesTable;
  safe_verifications: SafeVerificationsTable;
  damaged_packs: DamagedPacksTable;
  damaged_snapshots: DamagedSnapshotsTable;
}

export type Customer = Selectable<CustomersTable>;
export type User = Selectable<UsersTable>;
export type ApiToken = Selectable<ApiTokensTable>;
export type Machine = Selectable<MachinesTable>;
export type DiskSafe = Selectable<DiskSafesTable>;
export type AuditEntry = Selectable<AuditLogTable>;
export type Job = Selectable<JobsTable>;
export type NewJob = Insertable<JobsTable>;
export type JobEvent = Selectable<JobEventsTable>;
export type RecoveryKey = Selectable<RecoveryKeysTable>;
export type SafeEscrow = Selectable<SafeEscrowsTable>;
export type NotificationChannel = Selectable<NotificationChannelsTable>;
export type OutboxRow = Selectable<NotificationOutboxTable>;
export type Policy = Selectable<PoliciesTable>;
export type DamagedSnapshot = Selectable<DamagedSnapshotsTable>;
export type NewAuditEntry = Insertable<AuditLogTable>;

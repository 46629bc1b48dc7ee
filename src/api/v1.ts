/**
 * The REST API's request and response shapes (/api/v1), shared by the
 * server, the agent and the web interface: JSON Schemas as data (the server
 * validates requests and serializes responses with them, and @fastify/swagger
 * publishes them at /api/v1/openapi.json) and the TypeScript types they
 * describe, declared beside each. Names are snake_case, times ISO-8601 UTC.
 */

const str = { type: 'string' } as const;
const nullableStr = { type: ['string', 'null'] } as const;
const time = { type: 'string', format: 'date-time' } as const;
const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const;
const id = { type: 'string', minLength: 1, maxLength: 64 } as const;
const bytes = { type: ['integer', 'null'], minimum: 0 } as const;

/** Every error: a stable code and a message for people. */
export const ErrorSchema = { $id: 'Error', type: 'object', required: ['code', 'message'], properties: { code: str, message: str } } as const;
export interface ApiErrorBody { code: string; message: string }

export const ROLE_NAMES = ['provider-admin', 'provider-operator', 'customer-admin', 'customer-viewer'] as const;
export const RIGHT_NAMES = ['read', 'manage', 'backup', 'enroll', 'restore'] as const;
/** The rights POST /tokens gives; a `restore` token is made for one disk safe by POST /safes/ID/restore-tokens. */
export const CREATABLE_RIGHT_NAMES = ['read', 'manage', 'backup', 'enroll'] as const;

const quota = { type: 'integer', minimum: 1 } as const;
const nullableQuota = { type: ['integer', 'null'], minimum: 1 } as const;
const storedBytes = { type: 'integer', minimum: 0 } as const;

/**
 * A customer; `quota_hard` and `quota_soft` bound the stored bytes of all its
 * disk safes together (null: none), and `stored_bytes` is their sum now.
 */
export const CustomerSchema = {
  $id: 'Customer', type: 'object', required: ['id', 'name', 'quota_hard', 'quota_soft', 'stored_bytes', 'created_at'],
  properties: { id: str, name: str, quota_hard: bytes, quota_soft: bytes, stored_bytes: storedBytes, created_at: time },
} as const;
export interface CustomerBody { id: string; name: string; quota_hard: number | null; quota_soft: number | null; stored_bytes: number; created_at: string }

export const CreateCustomerSchema = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 }, quota_hard: quota, quota_soft: quota },
} as const;
export interface CreateCustomerRequest { name: string; quota_hard?: number; quota_soft?: number }

/** New quotas of a customer or a disk safe (provider roles only): a field left out stays, null removes the quota. */
export const UpdateQuotasSchema = {
  type: 'object', additionalProperties: false,
  properties: { quota_hard: nullableQuota, quota_soft: nullableQuota },
} as const;
export interface UpdateQuotasRequest { quota_hard?: number | null; quota_soft?: number | null }

export const UserSchema = {
  $id: 'User', type: 'object', required: ['id', 'name', 'role', 'customer_id', 'must_change_password', 'created_at'],
  properties: { id: str, name: str, role: { type: 'string', enum: ROLE_NAMES }, customer_id: nullableStr, must_change_password: { type: 'boolean' }, created_at: time },
} as const;
export interface UserBody { id: string; name: string; role: (typeof ROLE_NAMES)[number]; customer_id: string | null; must_change_password: boolean; created_at: string }

export const CreateUserSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'role'],
  properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$' }, role: { type: 'string', enum: ROLE_NAMES }, customer_id: id },
} as const;
export interface CreateUserRequest { name: string; role: (typeof ROLE_NAMES)[number]; customer_id?: string }

/** A new user and the one-time password the server made for it (shown once; changed at first login). */
export const CreatedUserSchema = {
  type: 'object', required: ['user', 'password'], properties: { user: { $ref: 'User#' }, password: str },
} as const;
export interface CreatedUserBody { user: UserBody; password: string }

/** A token; `safe_id` is the one disk safe a restore token reads, or the one a takeover token (`enroll`) may take over (null for every other token). */
export const TokenSchema = {
  $id: 'Token', type: 'object', required: ['id', 'name', 'customer_id', 'machine_id', 'safe_id', 'rights', 'created_by', 'created_at', 'expires_at', 'revoked_at'],
  properties: {
    id: str, name: str, customer_id: str, machine_id: nullableStr, safe_id: nullableStr,
    rights: { type: 'array', items: { type: 'string', enum: RIGHT_NAMES } },
    created_by: str, created_at: time, expires_at: nullableTime, revoked_at: nullableTime,
  },
} as const;
export interface TokenBody {
  id: string; name: string; customer_id: string; machine_id: string | null; safe_id: string | null; rights: (typeof RIGHT_NAMES)[number][];
  created_by: string; created_at: string; expires_at: string | null; revoked_at: string | null;
}

export const CreateTokenSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'customer_id', 'rights'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    customer_id: id,
    machine_id: id,
    rights: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: CREATABLE_RIGHT_NAMES } },
    expires_at: time,
    take_over: id,
  },
} as const;
/** A new token; `take_over` (with the rights `["enroll"]` alone): a takeover token, which enrols one machine onto that disk safe of the customer once it has no machine. */
export interface CreateTokenRequest { name: string; customer_id: string; machine_id?: string; rights: (typeof RIGHT_NAMES)[number][]; expires_at?: string; take_over?: string }

/** A new token and its secret: the only time the secret is shown. */
export const CreatedTokenSchema = {
  type: 'object', required: ['token', 'secret'], properties: { token: { $ref: 'Token#' }, secret: str },
} as const;
export interface CreatedTokenBody { token: TokenBody; secret: string }

/**
 * A machine; `last_seen_at` is its agent's last poll or report (null before
 * the first); `retired_at` is when it was retired (DELETE /machines/ID), null
 * while it is live. `proven_restorable_at` and `proven_restorable_snapshot`:
 * when the machine's last restore test that passed ended, and the snapshot it
 * restored ("last proven restorable"; null before the first).
 */
export const MachineSchema = {
  $id: 'Machine', type: 'object', required: ['id', 'customer_id', 'name', 'created_at', 'last_seen_at', 'retired_at', 'last_backup_at', 'proven_restorable_at', 'proven_restorable_snapshot'],
  properties: {
    id: str, customer_id: str, name: str, created_at: time, last_seen_at: nullableTime, retired_at: nullableTime, last_backup_at: nullableTime,
    proven_restorable_at: nullableTime, proven_restorable_snapshot: nullableStr, status: { $ref: 'MachineStatus#' },
  },
} as const;

/** A machine's name (its hostname): no control characters, which would forge lines in an alert's e-mail or a log. */
/**
 * A name shown to people (a machine's, a channel's): no control characters (forged lines in an
 * e-mail or a log) and no bidirectional overrides or isolates (U+202A–U+202E, U+2066–U+2069:
 * `evil\u202egnp.exe` shows as `evilexe.png`).
 */
const SHOWN_NAME_PATTERN = '^[^\\u0000-\\u001f\\u007f\\u202a-\\u202e\\u2066-\\u2069]+$';
const machineName = { type: 'string', minLength: 1, maxLength: 253, pattern: SHOWN_NAME_PATTERN } as const;
/** A position in a paged list (an offset, a sequence number to list after): bounded, so that no database sees a number it cannot hold. */
const pagePosition = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

/**
 * `last_backup_at`: the time of the newest snapshot in the machine's disk safes (from the server's snapshot index; null when none);
 * `status`: its state on the fleet dashboard, in `GET /machines?status=true` only.
 */
export interface MachineBody {
  id: string; customer_id: string; name: string; created_at: string; last_seen_at: string | null; retired_at: string | null; last_backup_at: string | null;
  proven_restorable_at: string | null; proven_restorable_snapshot: string | null;
  status?: MachineStatusBody;
}

/**
 * A machine's state on the fleet dashboard, by the server's clock:
 *
 *   running  a backup of it runs now
 *   failed   its latest finished backup did not succeed (failed, interrupted, expired)
 *   never    no backup of it ever succeeded
 *   stale    its last success is older than `stale_after_seconds` (3 × its policy's backup interval; the server's default without a schedule)
 *   ok       otherwise
 */
export const FLEET_STATUS_NAMES = ['ok', 'running', 'failed', 'stale', 'never'] as const;
export type FleetStatusName = (typeof FLEET_STATUS_NAMES)[number];

/**
 * What the fleet dashboard shows of a machine besides its record:
 * `last_success_at` (its newest succeeded backup job's end or newest
 * snapshot, whichever is later), `next_run_at` (its policy's next
 * scheduled backup, as `GET /machines/ID/policy` gives it), `safe` (the
 * disk safe its backups go to, its first: stored bytes and the quotas that
 * apply to it, its own or its policies'), `customer_name`, and its jobs of
 * any kind that failed in the last 24 hours (how many, and the newest).
 */
export const MachineStatusSchema = {
  $id: 'MachineStatus', type: 'object',
  required: ['status', 'last_success_at', 'stale_after_seconds', 'next_run_at', 'running_job_id', 'customer_name', 'safe', 'failures_24h', 'last_failure'],
  properties: {
    status: { type: 'string', enum: FLEET_STATUS_NAMES }, last_success_at: nullableTime, stale_after_seconds: { type: 'integer' }, next_run_at: nullableTime,
    running_job_id: nullableStr, customer_name: str,
    safe: {
      type: ['object', 'null'], required: ['id', 'name', 'stored_bytes', 'quota_hard', 'quota_soft'],
      properties: { id: str, name: str, stored_bytes: storedBytes, quota_hard: bytes, quota_soft: bytes },
    },
    failures_24h: { type: 'integer' },
    last_failure: {
      type: ['object', 'null'], required: ['job_id', 'kind', 'state', 'finished_at', 'error'],
      properties: { job_id: str, kind: str, state: str, finished_at: time, error: nullableStr },
    },
  },
} as const;
export interface MachineStatusBody {
  status: FleetStatusName; last_success_at: string | null; stale_after_seconds: number; next_run_at: string | null; running_job_id: string | null; customer_name: string;
  safe: { id: string; name: string; stored_bytes: number; quota_hard: number | null; quota_soft: number | null } | null;
  failures_24h: number;
  last_failure: { job_id: string; kind: string; state: string; finished_at: string; error: string | null } | null;
}

/**
 * GET /machines: every live machine the caller sees, by name; `limit` (at
 * most 1000) and `offset` give a page of them; `status=true` adds each
 * one's `status` (the fleet dashboard's one call).
 */
export const MachinesQuerySchema = {
  type: 'object', additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 }, offset: { type: 'integer', minimum: 0 }, status: { type: 'boolean' } },
} as const;
export interface MachinesQuery { limit?: number; offset?: number; status?: boolean }

export const CreateMachineSchema = {
  type: 'object', additionalProperties: false, required: ['customer_id', 'name'],
  properties: { customer_id: id, name: machineName },
} as const;
export interface CreateMachineRequest { customer_id: string; name: string }

/**
 * A snapshot as the server's index knows it, from its plain part (docs/format.md
 * §4.5), read without the key: which safe (and machine) holds it, its time,
 * host, user, paths, tags, parent, whether it is incomplete or an image, and
 * its summary's counts and byte figures (snake_case: `files_new`,
 * `total_bytes`, `data_added_stored`, …).
 */
export const SnapshotSchema = {
  $id: 'Snapshot', type: 'object',
  required: ['id', 'short_id', 'safe_id', 'safe_name', 'machine_id', 'time', 'hostname', 'username', 'paths', 'tags', 'parent', 'incomplete', 'image', 'summary'],
  properties: {
    id: str, short_id: str, safe_id: str, safe_name: str, machine_id: nullableStr, time, hostname: str, username: str,
    paths: { type: 'array', items: str }, tags: { type: 'array', items: str }, parent: nullableStr, incomplete: { type: 'boolean' }, image: { type: 'boolean' },
    summary: { type: 'object', additionalProperties: { type: ['integer', 'string'] } },
    unauthentic: { type: 'boolean' },
  },
} as const;
export interface SnapshotBody {
  id: string; short_id: string; safe_id: string; safe_name: string; machine_id: string | null; time: string; hostname: string; username: string;
  paths: string[]; tags: string[]; parent: string | null; incomplete: boolean; image: boolean; summary: Record<string, number | string>;
  /** Only when true: the machine's agent found it failing its MAC (planted by someone without the key); the server's retention never counts it. */
  unauthentic?: boolean;
}

/** A page of snapshots, newest first: `limit` (default 100, at most 1000) after skipping `offset`. */
export const SnapshotsQuerySchema = {
  type: 'object', additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 }, offset: pagePosition },
} as const;
export interface SnapshotsQuery { limit?: number; offset?: number }

/**
 * Stored bytes over time (a safe's, or a customer's safes' together): per
 * day (UTC), the bytes at its end, from the first day with a record;
 * `growth_per_day` over the period (null with fewer than two days);
 * `fills_at`, when the hard quota fills at that rate (null without a quota
 * or growth).
 */
export const UsageHistorySchema = {
  type: 'object', required: ['days', 'growth_per_day', 'quota_hard', 'fills_at'],
  properties: {
    days: { type: 'array', items: { type: 'object', required: ['day', 'stored_bytes'], properties: { day: str, stored_bytes: { type: 'integer' } } } },
    growth_per_day: { type: ['integer', 'null'] }, quota_hard: bytes, fills_at: nullableTime,
  },
} as const;
export interface UsageHistoryBody { days: { day: string; stored_bytes: number }[]; growth_per_day: number | null; quota_hard: number | null; fills_at: string | null }

/** How many days back (default 30, at most 3660). */
export const UsageHistoryQuerySchema = { type: 'object', additionalProperties: false, properties: { days: { type: 'integer', minimum: 1, maximum: 3660 } } } as const;
export interface UsageHistoryQuery { days?: number }

/** A safe's name is the NAME of https://host:port/safes/NAME. */
export const SAFE_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$';

/** Where damage to a snapshot was found: a verification of the stored bytes (POST /safes/ID/verify), or a restore test through the agent (job kind `verify-restore`). */
export const DAMAGE_SOURCES = ['verify', 'restore-test'] as const;

/**
 * A snapshot found damaged: never the parent of a backup again, so that the
 * next backup stores again whatever was damaged (docs/format.md §2.11). It
 * stays marked after that backup: its own data is gone. `job_id`: the job
 * that found it; `reason`: what it found.
 */
export const DamagedSnapshotSchema = {
  $id: 'DamagedSnapshot', type: 'object', required: ['snapshot_id', 'found_at', 'source', 'job_id', 'reason'],
  properties: { snapshot_id: str, found_at: time, source: { type: 'string', enum: DAMAGE_SOURCES }, job_id: str, reason: str },
} as const;
export interface DamagedSnapshotBody { snapshot_id: string; found_at: string; source: (typeof DAMAGE_SOURCES)[number]; job_id: string; reason: string }

/**
 * A disk safe; `stored_bytes` is every byte its objects take in storage now, counted without the key;
 * `deleting_at` is when its deletion began (its repository answers 404 meanwhile), null for a live safe;
 * `damaged_snapshots`: its snapshots that a verification or a restore test found damaged, oldest first.
 */
export const SafeSchema = {
  $id: 'Safe', type: 'object', required: ['id', 'customer_id', 'machine_id', 'name', 'quota_hard', 'quota_soft', 'stored_bytes', 'created_at', 'deleting_at', 'damaged_snapshots'],
  properties: {
    id: str, customer_id: str, machine_id: nullableStr, name: str, quota_hard: bytes, quota_soft: bytes, stored_bytes: storedBytes, created_at: time, deleting_at: nullableTime,
    damaged_snapshots: { type: 'array', items: { $ref: 'DamagedSnapshot#' } },
  },
} as const;
export interface SafeBody {
  id: string; customer_id: string; machine_id: string | null; name: string; quota_hard: number | null; quota_soft: number | null; stored_bytes: number; created_at: string; deleting_at: string | null;
  damaged_snapshots: DamagedSnapshotBody[];
}

export const CreateSafeSchema = {
  type: 'object', additionalProperties: false, required: ['customer_id', 'name'],
  properties: {
    customer_id: id, machine_id: id, name: { type: 'string', pattern: SAFE_NAME_PATTERN },
    quota_hard: quota, quota_soft: quota,
  },
} as const;
export interface CreateSafeRequest { customer_id: string; machine_id?: string; name: string; quota_hard?: number; quota_soft?: number }

export const AuditEntrySchema = {
  $id: 'AuditEntry', type: 'object', required: ['seq', 'at', 'actor', 'customer_id', 'action', 'target', 'address'],
  properties: { seq: { type: 'integer' }, at: time, actor: str, customer_id: nullableStr, action: str, target: str, address: str },
} as const;
export interface AuditEntryBody { seq: number; at: string; actor: string; customer_id: string | null; action: string; target: string; address: string }

export const AuditQuerySchema = {
  type: 'object', additionalProperties: false,
  properties: { after: pagePosition, limit: { type: 'integer', minimum: 1, maximum: 1000 } },
} as const;
export interface AuditQuery { after?: number; limit?: number }

export const LoginSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'password'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
} as const;
export interface LoginRequest { name: string; password: string }

export const SessionSchema = {
  type: 'object', required: ['token', 'expires_at', 'user'],
  properties: { token: str, expires_at: time, user: { $ref: 'User#' } },
} as const;
export interface SessionBody { token: string; expires_at: string; user: UserBody }

export const ChangePasswordSchema = {
  type: 'object', additionalProperties: false, required: ['current_password', 'new_password'],
  properties: { current_password: { type: 'string', maxLength: 1024 }, new_password: { type: 'string', minLength: 12, maxLength: 1024 } },
} as const;
export interface ChangePasswordRequest { current_password: string; new_password: string }

/**
 * The server node that answered: its TLS certificate's fingerprint (what
 * agents and the CLI pin: `--fingerprint`; null when the node serves plain
 * HTTP behind a proxy that holds the certificate) and its version.
 */
export const ServerInfoSchema = {
  type: 'object', required: ['fingerprint', 'version'],
  properties: { fingerprint: { type: ['string', 'null'] }, version: { type: 'string' } },
} as const;
export interface ServerInfoBody { fingerprint: string | null; version: string }

/** Who the caller is: a person (session) or an API token. */
export const MeSchema = {
  type: 'object', required: ['kind'],
  properties: { kind: { type: 'string', enum: ['session', 'token'] }, user: { $ref: 'User#' }, token: { $ref: 'Token#' } },
} as const;
export interface MeBody { kind: 'session' | 'token'; user?: UserBody; token?: TokenBody }

/** The kinds of an agent's backup (each makes snapshots; a safe never has two of them queued or running at once). */
export const BACKUP_JOB_KINDS = ['backup', 'image-backup', 'command-backup', 'database-backup'] as const;
export const JOB_KIND_NAMES = [...BACKUP_JOB_KINDS, 'restore', 'check', 'verify-restore'] as const;
/** Whether job kind `kind` is one of an agent's backups. */
export const isBackupKind = (kind: string): boolean => (BACKUP_JOB_KINDS as readonly string[]).includes(kind);
/** What the server runs itself on a disk safe (POST /safes/ID/prune, POST /safes/ID/verify; `forget`: the scheduler's retention); never given to an agent. */
export const SERVER_JOB_KIND_NAMES = ['prune', 'verify', 'forget'] as const;
export const JOB_STATE_NAMES = ['queued', 'running', 'succeeded', 'failed', 'interrupted', 'cancelled', 'expired', 'skipped'] as const;
/** The states a job ends in (it changes no more). */
export const FINAL_JOB_STATES: readonly (typeof JOB_STATE_NAMES)[number][] = ['succeeded', 'failed', 'interrupted', 'cancelled', 'expired', 'skipped'];
export type JobKindName = (typeof JOB_KIND_NAMES)[number];
export type ServerJobKindName = (typeof SERVER_JOB_KIND_NAMES)[number];

/** An absolute path on the protected machine. */
const machinePath = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/' } as const;
const pathList = { type: 'array', minItems: 1, maxItems: 1000, items: machinePath } as const;

/** A file backup of `paths`, leaving out what `excludes` match (the CLI's --exclude patterns). */
export const BackupSpecSchema = {
  type: 'object', additionalProperties: false, required: ['paths'],
  properties: { paths: pathList, excludes: { type: 'array', maxItems: 1000, items: { type: 'string', minLength: 1, maxLength: 4096 } } },
} as const;
export interface BackupSpec { paths: string[]; excludes?: string[] }

/**
 * An image source: an absolute path on the machine, an NBD export the machine reaches (`nbd://HOST:PORT/EXPORT`,
 * `nbd+unix:///EXPORT?socket=PATH`), or the disk of a VM running on it, through its QMP socket (`qmp:/run/vm1.qmp#drive0`).
 */
const imageSource = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^(/|nbd(\\+unix)?://|qmp:/)' } as const;

/**
 * A block-level backup of each of `sources` (block devices, raw image or
 * qcow2 files on the machine, running VMs' disks, NBD exports), one image snapshot each.
 */
export const ImageBackupSpecSchema = {
  type: 'object', additionalProperties: false, required: ['sources'],
  properties: { sources: { type: 'array', minItems: 1, maxItems: 64, items: imageSource } },
} as const;
export interface ImageBackupSpec { sources: string[] }

/**
 * A backup of what `command` (file and arguments, run without a shell)
 * writes to its stdout, as the single file `/NAME` (the CLI's
 * --stdin-from-command); no snapshot unless it exits 0.
 */
export const CommandBackupSpecSchema = {
  type: 'object', additionalProperties: false, required: ['command', 'name'],
  properties: {
    command: { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 4096 } },
    name: { type: 'string', pattern: '^(?!\\.\\.?$)[^/\\u0000]{1,255}$' },
  },
} as const;
export interface CommandBackupSpec { command: string[]; name: string }

/**
 * A dump of the database server the machine's agent configuration lists
 * under `database` (its "databases"), every database of it into one
 * snapshot, as `holdfast backup --postgres`/`--mysql`: the server names a
 * server, the machine holds its URL and credentials.
 */
export const DatabaseBackupSpecSchema = {
  type: 'object', additionalProperties: false, required: ['database'],
  properties: { database: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } },
} as const;
export interface DatabaseBackupSpec { database: string }

/** A restore of `snapshot` (an id, its prefix, or `latest`), only `paths` of it when given, into `target` on the machine. */
export const RestoreSpecSchema = {
  type: 'object', additionalProperties: false, required: ['snapshot', 'target'],
  properties: { snapshot: { type: 'string', pattern: '^(latest|[0-9a-f]{4,64})$' }, paths: pathList, target: machinePath },
} as const;
export interface RestoreSpec { snapshot: string; paths?: string[]; target: string }

/** A check of the disk safe; `read_data_subset` as the CLI's --read-data-subset (`N%` or `n/m`). */
export const CheckSpecSchema = {
  type: 'object', additionalProperties: false,
  properties: { read_data_subset: { type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?%|[0-9]+/[0-9]+)$' } },
} as const;
export interface CheckSpec { read_data_subset?: string }

/**
 * A restore test (`holdfast verify-restore`) of `snapshot` (an id, its
 * prefix, or `latest`: the default), run by the agent, which holds the key:
 * a sample of its files (`share`, a percentage, default 1%, and at least
 * `min_files`, default 100) restored into a scratch folder and compared; an
 * image snapshot's ext2/3/4 file systems checked. A snapshot that does not
 * restore exactly fails the job and is marked damaged (never a parent again).
 */
export const VerifyRestoreSpecSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    snapshot: { type: 'string', pattern: '^(latest|[0-9a-f]{4,64})$' },
    share: { type: 'number', minimum: 0.001, maximum: 100 },
    min_files: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
} as const;
export interface VerifyRestoreSpec { snapshot?: string; share?: number; min_files?: number }

/** Each job kind's spec; the server validates a new job by it and the agent validates what it is given. */
export const JOB_SPEC_SCHEMAS = {
  'backup': BackupSpecSchema, 'image-backup': ImageBackupSpecSchema, 'command-backup': CommandBackupSpecSchema, 'database-backup': DatabaseBackupSpecSchema, 'restore': RestoreSpecSchema, 'check': CheckSpecSchema,
  'verify-restore': VerifyRestoreSpecSchema,
} as const;
export type JobSpec = BackupSpec | ImageBackupSpec | CommandBackupSpec | DatabaseBackupSpec | RestoreSpec | CheckSpec | VerifyRestoreSpec;

/** How long a queued job waits for its machine's agent to take it by default, and at most (seconds). */
export const DEFAULT_JOB_EXPIRES_IN = 24 * 3600;
export const MAX_JOB_EXPIRES_IN = 30 * 24 * 3600;

/**
 * "Run now": a job of one kind of the fixed vocabulary, for the machine's
 * agent; `expires_in`: seconds it may wait for the agent to take it before
 * it ends `expired` (default a day).
 */
export const CreateJobSchema = {
  type: 'object', additionalProperties: false, required: ['kind', 'spec'],
  properties: { kind: { type: 'string', enum: JOB_KIND_NAMES }, spec: { type: 'object' }, expires_in: { type: 'integer', minimum: 1, maximum: MAX_JOB_EXPIRES_IN } },
  allOf: JOB_KIND_NAMES.map((k) => ({ if: { properties: { kind: { const: k } } }, then: { properties: { spec: JOB_SPEC_SCHEMAS[k] } } })),
} as const;
export type CreateJobRequest = (
  | { kind: 'backup'; spec: BackupSpec }
  | { kind: 'image-backup'; spec: ImageBackupSpec }
  | { kind: 'command-backup'; spec: CommandBackupSpec }
  | { kind: 'database-backup'; spec: DatabaseBackupSpec }
  | { kind: 'restore'; spec: RestoreSpec }
  | { kind: 'check'; spec: CheckSpec }
  | { kind: 'verify-restore'; spec: VerifyRestoreSpec }
) & { expires_in?: number };

const json = { type: ['object', 'null'], additionalProperties: true } as const;

export const JobSchema = {
  $id: 'Job', type: 'object',
  required: ['id', 'customer_id', 'machine_id', 'safe_id', 'safe_name', 'runner', 'kind', 'spec', 'state', 'created_by', 'created_at', 'started_at', 'finished_at', 'result', 'error', 'expires_at', 'cancelled_by'],
  properties: {
    id: str, customer_id: str, machine_id: nullableStr, safe_id: str, safe_name: str,
    runner: { type: 'string', enum: ['agent', 'server'] },
    kind: { type: 'string', enum: [...JOB_KIND_NAMES, ...SERVER_JOB_KIND_NAMES] }, spec: { type: 'object', additionalProperties: true },
    state: { type: 'string', enum: JOB_STATE_NAMES }, created_by: str, created_at: time, started_at: nullableTime, finished_at: nullableTime,
    result: json, error: nullableStr, expires_at: nullableTime, cancelled_by: nullableStr,
    damaged_snapshots: { type: 'array', items: str },
  },
} as const;
/**
 * A job. `runner` says who runs it: `agent` (the machine's agent takes it by
 * its poll) or `server` (the server runs it itself, keyless: a prune;
 * `machine_id` is then the safe's machine, or null). `expires_at`: a queued
 * agent job not taken by then ends `expired`; `cancelled_by`: who cancelled
 * it (set while it is still running when its runner has yet to stop it).
 */
export interface JobBody {
  id: string; customer_id: string; machine_id: string | null; safe_id: string; safe_name: string;
  runner: 'agent' | 'server';
  kind: JobKindName | ServerJobKindName; spec: JobSpec | PruneSafeRequest | VerifySafeRequest | ForgetSafeRequest; state: (typeof JOB_STATE_NAMES)[number];
  created_by: string; created_at: string; started_at: string | null; finished_at: string | null;
  result: Record<string, unknown> | null; error: string | null;
  expires_at: string | null; cancelled_by: string | null;
  /**
   * Only in the answer to an agent's poll, for a backup: the snapshots of
   * the disk safe found damaged, which the backup must not take as its
   * parent (and whose trees it must not reuse), so that it stores again
   * whatever was damaged.
   */
  damaged_snapshots?: string[];
}

export const JOB_EVENT_KINDS = ['progress', 'log'] as const;

export const JobEventSchema = {
  $id: 'JobEvent', type: 'object', required: ['seq', 'at', 'kind', 'message', 'data'],
  properties: { seq: { type: 'integer' }, at: time, kind: { type: 'string', enum: JOB_EVENT_KINDS }, message: str, data: json },
} as const;
export interface JobEventBody { seq: number; at: string; kind: (typeof JOB_EVENT_KINDS)[number]; message: string; data: Record<string, unknown> | null }

export const JobEventsQuerySchema = {
  type: 'object', additionalProperties: false,
  properties: { after: pagePosition, limit: { type: 'integer', minimum: 1, maximum: 1000 } },
} as const;
export interface JobEventsQuery { after?: number; limit?: number }

/** The longest an agent's poll for a job is held open (seconds). */
export const MAX_POLL_WAIT = 30;

export const PollQuerySchema = {
  type: 'object', additionalProperties: false,
  properties: { wait: { type: 'integer', minimum: 0, maximum: MAX_POLL_WAIT } },
} as const;
export interface PollQuery { wait?: number }

/**
 * What an agent reports as a job runs: progress and log lines, in the order
 * they happened (at most 1000 a request; none: the agent only shows it is
 * at work, and learns whether the job was cancelled).
 */
export const ReportEventsSchema = {
  type: 'object', additionalProperties: false, required: ['events'],
  properties: {
    events: {
      type: 'array', minItems: 0, maxItems: 1000,
      items: {
        type: 'object', additionalProperties: false, required: ['at', 'kind', 'message'],
        properties: { at: time, kind: { type: 'string', enum: JOB_EVENT_KINDS }, message: { type: 'string', maxLength: 8192, pattern: '^[^\\u0000]*$' }, data: { type: 'object' } },
      },
    },
  },
} as const;
export interface ReportEventsRequest { events: { at: string; kind: (typeof JOB_EVENT_KINDS)[number]; message: string; data?: Record<string, unknown> }[] }

/** A byte figure of a result that the server counts (its metrics): a whole number a double holds exactly. */
const resultFigure = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const resultFigures = { total_bytes_processed: resultFigure, data_added: resultFigure } as const;

/**
 * How a job ended, as its agent says (`cancelled`: it stopped the job because it was cancelled;
 * `error` says what that left). The result's byte figures, a backup's own or an image backup's per
 * source (`snapshots`), are whole numbers from 0 to 2^53 - 1: two of 1.7e308 made a metric +Inf.
 */
export const ReportResultSchema = {
  type: 'object', additionalProperties: false, required: ['state'],
  properties: {
    state: { type: 'string', enum: ['succeeded', 'failed', 'cancelled'] },
    // `snapshots` is an image backup's list of sources, a check's count: only a list's objects are held to the figures.
    result: {
      type: 'object',
      properties: {
        ...resultFigures,
        snapshots: { if: { type: 'array' }, then: { type: 'array', items: { if: { type: 'object' }, then: { type: 'object', properties: resultFigures } } } },
      },
    },
    error: { type: 'string', minLength: 1, maxLength: 8192, pattern: '^[^\\u0000]*$' },
  },
} as const;
export interface ReportResultRequest { state: 'succeeded' | 'failed' | 'cancelled'; result?: Record<string, unknown>; error?: string }

/** An agent registers its machine: `name` (its hostname), and the disk safe's name when not the default `NAME-` and 8 random hex digits. */
/**
 * Enrolment of a machine named `name`: with a new disk safe (named
 * `safe_name`, or after the machine), or taking over `take_over`, an existing
 * disk safe of the customer that has no live machine (its machine retired).
 */
export const EnrollSchema = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: { name: machineName, safe_name: { type: 'string', pattern: SAFE_NAME_PATTERN }, take_over: { type: 'string', pattern: SAFE_NAME_PATTERN } },
} as const;
export interface EnrollRequest { name: string; safe_name?: string; take_over?: string }

/** The new machine, its disk safe, and the machine's agent token (its secret shown this once). */
export const EnrolledSchema = {
  type: 'object', required: ['machine', 'safe', 'token', 'secret'],
  properties: { machine: { $ref: 'Machine#' }, safe: { $ref: 'Safe#' }, token: { $ref: 'Token#' }, secret: str },
} as const;
export interface EnrolledBody { machine: MachineBody; safe: SafeBody; token: TokenBody; secret: string }

/** A --keep-* count: a number of buckets, or `unlimited` (every bucket). */
const keepCount = { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', const: 'unlimited' }] } as const;
/** A --keep-within* duration, restic's `1y5m7d2h` (m is months). */
const keepWithin = { type: 'string', pattern: '^([0-9]+[ymdh])+$', maxLength: 64 } as const;
export const GROUP_BY_NAMES = ['host', 'paths', 'tags'] as const;

/**
 * Forget by a retention policy, as `holdfast forget` applies it (restic's
 * rules; docs/format.md §16), on the server, keyless. `keep_tags` holds
 * lists of tags: a snapshot with every tag of one list is kept. `group_by`
 * defaults to host and paths; [] is one group. `dry_run` only says what
 * would go (the retention preview).
 */
export const ForgetSafeSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    keep_last: keepCount, keep_minutely: keepCount, keep_hourly: keepCount, keep_daily: keepCount,
    keep_weekly: keepCount, keep_monthly: keepCount, keep_yearly: keepCount,
    keep_within: keepWithin, keep_within_hourly: keepWithin, keep_within_daily: keepWithin,
    keep_within_weekly: keepWithin, keep_within_monthly: keepWithin, keep_within_yearly: keepWithin,
    keep_tags: { type: 'array', maxItems: 100, items: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', minLength: 1, maxLength: 200 } } },
    group_by: { type: 'array', uniqueItems: true, items: { type: 'string', enum: GROUP_BY_NAMES } },
    dry_run: { type: 'boolean' },
  },
} as const;
type KeepCount = number | 'unlimited';
export interface ForgetSafeRequest {
  keep_last?: KeepCount; keep_minutely?: KeepCount; keep_hourly?: KeepCount; keep_daily?: KeepCount;
  keep_weekly?: KeepCount; keep_monthly?: KeepCount; keep_yearly?: KeepCount;
  keep_within?: string; keep_within_hourly?: string; keep_within_daily?: string;
  keep_within_weekly?: string; keep_within_monthly?: string; keep_within_yearly?: string;
  keep_tags?: string[][];
  group_by?: (typeof GROUP_BY_NAMES)[number][];
  dry_run?: boolean;
}

const stringList = { type: 'array', items: str } as const;
const nullableStringList = { type: ['array', 'null'], items: str } as const;

/** One snapshot's verdict: kept or removed, and why (restic's wording). */
export const ForgetDecisionSchema = {
  $id: 'ForgetDecision', type: 'object', required: ['id', 'short_id', 'time', 'hostname', 'paths', 'tags', 'action', 'reasons'],
  properties: { id: str, short_id: str, time: time, hostname: str, paths: stringList, tags: stringList, action: { type: 'string', enum: ['keep', 'remove'] }, reasons: stringList },
} as const;
export interface ForgetDecisionBody { id: string; short_id: string; time: string; hostname: string; paths: string[]; tags: string[]; action: 'keep' | 'remove'; reasons: string[] }

/**
 * What forget decided, group by group (newest first within a group), what
 * it removed (nothing on a dry run), and the snapshots it left out because
 * they cannot be read (neither kept nor removed nor counted).
 */
export const ForgetResultSchema = {
  type: 'object', required: ['dry_run', 'policy', 'groups', 'removed', 'skipped'],
  properties: {
    dry_run: { type: 'boolean' },
    policy: str,
    groups: {
      type: 'array',
      items: {
        type: 'object', required: ['host', 'paths', 'tags', 'keep', 'remove', 'decisions'],
        properties: { host: nullableStr, paths: nullableStringList, tags: nullableStringList, keep: { type: 'integer' }, remove: { type: 'integer' }, decisions: { type: 'array', items: { $ref: 'ForgetDecision#' } } },
      },
    },
    removed: stringList,
    skipped: { type: 'array', items: { type: 'object', required: ['id', 'error'], properties: { id: str, error: str } } },
  },
} as const;
export interface ForgetResultBody {
  dry_run: boolean;
  /** The policy in words ("keep 7 daily, 4 weekly snapshots"). */
  policy: string;
  groups: { host: string | null; paths: string[] | null; tags: string[] | null; keep: number; remove: number; decisions: ForgetDecisionBody[] }[];
  removed: string[];
  skipped: { id: string; error: string }[];
}

/**
 * Prune a disk safe, run by the server as a job (docs/format.md §15):
 * `grace_seconds` as the CLI's --grace (default one hour, never below the
 * server's minimum), `max_unused` as its --max-unused (a percentage).
 */
export const PruneSafeSchema = {
  type: 'object', additionalProperties: false,
  properties: { dry_run: { type: 'boolean' }, grace_seconds: { type: 'integer', minimum: 0 }, max_unused: { type: 'number', minimum: 0, maximum: 100 } },
} as const;
export interface PruneSafeRequest { dry_run?: boolean; grace_seconds?: number; max_unused?: number }

/**
 * Verify a disk safe's stored bytes, run by the server as a job, keyless
 * (docs/format.md §2.11): the structure of the whole safe, and the bytes of
 * one slice of its packs, the next of `read_data_days` slices, so that
 * running it once a day reads every pack every `read_data_days` days
 * (default 1: every pack, every run); `every_pack`: the bytes of every
 * pack, outside the rotation (which stays where it is).
 */
export const VerifySafeSchema = {
  type: 'object', additionalProperties: false,
  properties: { read_data_days: { type: 'integer', minimum: 1, maximum: 3660 }, every_pack: { type: 'boolean' } },
} as const;
export interface VerifySafeRequest { read_data_days?: number; every_pack?: boolean }

/** A recovery public key as `holdfast escrow keygen` prints it (src/core/escrow.ts). */
const recoveryKey = { type: 'string', pattern: '^hfrk_[A-Za-z0-9_-]{43}$' } as const;
const nullableRecoveryKey = { type: ['string', 'null'], pattern: '^hfrk_[A-Za-z0-9_-]{43}$' } as const;

/** A customer's recovery public key, what its disk safes' passwords are escrowed for (docs/format.md §2.8). */
export const RecoveryKeySchema = {
  $id: 'RecoveryKey', type: 'object', required: ['customer_id', 'public_key', 'set_by', 'set_at'],
  properties: { customer_id: str, public_key: str, set_by: str, set_at: time },
} as const;
export interface RecoveryKeyBody { customer_id: string; public_key: string; set_by: string; set_at: string }

export const SetRecoveryKeySchema = {
  type: 'object', additionalProperties: false, required: ['public_key'], properties: { public_key: recoveryKey },
} as const;
export interface SetRecoveryKeyRequest { public_key: string }

/**
 * A disk safe's escrowed password: the sealed box (base64) and the key it is
 * sealed for; `current` is false once the customer's recovery key changed
 * and the agent has not wrapped the password again yet.
 */
export const EscrowSchema = {
  $id: 'Escrow', type: 'object', required: ['safe_id', 'safe_name', 'recovery_key', 'wrapped_password', 'stored_by', 'stored_at', 'current'],
  properties: { safe_id: str, safe_name: str, recovery_key: str, wrapped_password: str, stored_by: str, stored_at: time, current: { type: 'boolean' } },
} as const;
export interface EscrowBody { safe_id: string; safe_name: string; recovery_key: string; wrapped_password: string; stored_by: string; stored_at: string; current: boolean }

/** The agent's upload: the sealed box, base64 (at most 4 KiB). */
export const PutEscrowSchema = {
  type: 'object', additionalProperties: false, required: ['wrapped_password'],
  properties: { wrapped_password: { type: 'string', minLength: 4, maxLength: 4096, pattern: '^[A-Za-z0-9+/]+={0,2}$' } },
} as const;
export interface PutEscrowRequest { wrapped_password: string }

/** What an agent needs to escrow: its customer's recovery key (null: none) and, per disk safe of its machine, the key its escrow is sealed for (null: none stored). */
export const AgentEscrowSchema = {
  type: 'object', required: ['recovery_key', 'safes'],
  properties: {
    recovery_key: nullableRecoveryKey,
    safes: { type: 'array', items: { type: 'object', required: ['id', 'name', 'escrowed_for'], properties: { id: str, name: str, escrowed_for: nullableStr } } },
  },
} as const;
export interface AgentEscrowBody { recovery_key: string | null; safes: { id: string; name: string; escrowed_for: string | null }[] }

/** The header of a job poll's answer that asks the agent to escrow its passwords (again): its value is `wanted`. */
export const ESCROW_WANTED_HEADER = 'holdfast-escrow';

/** The header of the answer to a running job's events that asks its agent to stop the job (it was cancelled): its value is `requested`. */
export const CANCEL_HEADER = 'holdfast-cancel';

/** The longest a restore token lives, and how long by default (seconds). */
export const MAX_RESTORE_TOKEN_SECONDS = 7 * 24 * 3600;
export const DEFAULT_RESTORE_TOKEN_SECONDS = 4 * 3600;

/** A restore token for one disk safe: it reads that safe and nothing else, until `expires_in` seconds from now. */
export const CreateRestoreTokenSchema = {
  type: 'object', additionalProperties: false,
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 }, expires_in: { type: 'integer', minimum: 60, maximum: MAX_RESTORE_TOKEN_SECONDS } },
} as const;
export interface CreateRestoreTokenRequest { name?: string; expires_in?: number }

/** The path parameter of every route about one record. */
export const IdParamsSchema = { type: 'object', required: ['id'], properties: { id } } as const;

/** DELETE /safes/ID destroys the safe's backups: its name, repeated, confirms it. */
export const DeleteSafeSchema = {
  type: 'object', additionalProperties: false,
  properties: { confirm: str, live_machine: { type: 'boolean' } },
} as const;
/**
 * `confirm` repeats the safe's name; `live_machine` confirms deleting the
 * safe of a machine that is not retired (its agent's backups then fail: the
 * machine has no safe).
 */
export interface DeleteSafeRequest { confirm?: string; live_machine?: boolean }

/**
 * What the server tells people about (docs/format.md §2.10): a job that
 * failed, a verification that found damage, a restore test that failed, a
 * quota at 90 % (`quota.warn`) and passed (`quota.exceeded`: uploads
 * refused), a machine whose last successful backup is older than its
 * threshold (`machine.stale`) and its first success after that
 * (`machine.recovered`).
 */
export const EVENT_KIND_NAMES = ['job.failed', 'verify.damage', 'restore-test.failed', 'quota.warn', 'quota.exceeded', 'machine.stale', 'machine.recovered'] as const;
export type EventKindName = (typeof EVENT_KIND_NAMES)[number];
export const CHANNEL_KIND_NAMES = ['webhook', 'email'] as const;
/** How the server speaks to an SMTP server: STARTTLS required on a plain connection (587), TLS from the start (465), or neither (loopback relays only). */
export const SMTP_SECURITY_NAMES = ['starttls', 'tls', 'none'] as const;

const webhookUrl = { type: 'string', pattern: '^https?://[^\\s]+$', maxLength: 2048 } as const;
const mailAddress = { type: 'string', pattern: '^[^\\s@<>]+@[^\\s@<>]+$', maxLength: 320 } as const;
const eventList = { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: EVENT_KIND_NAMES } } as const;
const channelName = { type: 'string', minLength: 1, maxLength: 200, pattern: SHOWN_NAME_PATTERN } as const;
/** A webhook's signing secret: at least 16 characters (the server makes one of 43 when none is given). */
const webhookSecret = { type: 'string', minLength: 16, maxLength: 200 } as const;

const WebhookSettingsSchema = {
  type: 'object', additionalProperties: false, required: ['url'], properties: { url: webhookUrl, secret: webhookSecret },
} as const;
const EmailSettingsSchema = {
  type: 'object', additionalProperties: false, required: ['host', 'from', 'to'],
  properties: {
    host: { type: 'string', minLength: 1, maxLength: 253 }, port: { type: 'integer', minimum: 1, maximum: 65535 },
    security: { type: 'string', enum: SMTP_SECURITY_NAMES }, username: { type: 'string', minLength: 1, maxLength: 320 }, password: { type: 'string', minLength: 1, maxLength: 1024 },
    from: mailAddress, to: { type: 'array', minItems: 1, maxItems: 50, uniqueItems: true, items: mailAddress },
  },
} as const;
/** A webhook: the URL its JSON is POSTed to, and the secret it is signed with (given, or made by the server and shown once). */
export interface WebhookSettings { url: string; secret?: string }
/** An SMTP server and the addresses: `port` defaults to 587 with `starttls`, 465 with `tls`, 25 with `none`; `security` to `starttls`. */
export interface EmailSettings {
  host: string; port?: number; security?: (typeof SMTP_SECURITY_NAMES)[number]; username?: string; password?: string; from: string; to: string[];
}

/**
 * A notification channel: where a customer's (or, with `customer_id` null,
 * every customer's: the provider's own) events of the kinds in `events` are
 * sent. Secrets (the webhook's signing secret, the SMTP password) are never
 * shown: `has_secret` says whether one is stored.
 */
export const ChannelSchema = {
  $id: 'NotificationChannel', type: 'object',
  required: ['id', 'customer_id', 'name', 'kind', 'events', 'enabled', 'webhook', 'email', 'has_secret', 'created_by', 'created_at'],
  properties: {
    id: str, customer_id: nullableStr, name: str, kind: { type: 'string', enum: CHANNEL_KIND_NAMES },
    events: { type: 'array', items: { type: 'string', enum: EVENT_KIND_NAMES } }, enabled: { type: 'boolean' },
    webhook: { type: ['object', 'null'], required: ['url'], properties: { url: str } },
    email: {
      type: ['object', 'null'], required: ['host', 'port', 'security', 'username', 'from', 'to'],
      properties: { host: str, port: { type: 'integer' }, security: { type: 'string', enum: SMTP_SECURITY_NAMES }, username: nullableStr, from: str, to: stringList },
    },
    has_secret: { type: 'boolean' }, created_by: str, created_at: time,
  },
} as const;
export interface ChannelBody {
  id: string; customer_id: string | null; name: string; kind: (typeof CHANNEL_KIND_NAMES)[number]; events: EventKindName[]; enabled: boolean;
  webhook: { url: string } | null;
  email: { host: string; port: number; security: (typeof SMTP_SECURITY_NAMES)[number]; username: string | null; from: string; to: string[] } | null;
  has_secret: boolean; created_by: string; created_at: string;
}

/** A new channel: `webhook` for kind webhook, `email` for kind email; without `customer_id` a provider-wide one (provider roles only). */
export const CreateChannelSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'kind', 'events'],
  properties: {
    name: channelName, customer_id: id, kind: { type: 'string', enum: CHANNEL_KIND_NAMES }, events: eventList, enabled: { type: 'boolean' },
    webhook: WebhookSettingsSchema, email: EmailSettingsSchema,
  },
} as const;
export interface CreateChannelRequest {
  name: string; customer_id?: string; kind: (typeof CHANNEL_KIND_NAMES)[number]; events: EventKindName[]; enabled?: boolean;
  webhook?: WebhookSettings; email?: EmailSettings;
}

/** A change of a channel: a field left out stays; `webhook`/`email` replace the settings, keeping the stored secret unless a new one is given. */
export const UpdateChannelSchema = {
  type: 'object', additionalProperties: false,
  properties: { name: channelName, events: eventList, enabled: { type: 'boolean' }, webhook: WebhookSettingsSchema, email: EmailSettingsSchema },
} as const;
export interface UpdateChannelRequest { name?: string; events?: EventKindName[]; enabled?: boolean; webhook?: WebhookSettings; email?: EmailSettings }

/** A new channel, and the webhook secret the server made for it (shown this once; null when the secret was given). */
export const CreatedChannelSchema = {
  type: 'object', required: ['channel', 'secret'], properties: { channel: { $ref: 'NotificationChannel#' }, secret: nullableStr },
} as const;
export interface CreatedChannelBody { channel: ChannelBody; secret: string | null }

/** What "send a test" did: delivered, or the error the receiver or the SMTP server gave. */
export const ChannelTestSchema = {
  type: 'object', required: ['delivered', 'error'], properties: { delivered: { type: 'boolean' }, error: nullableStr },
} as const;
export interface ChannelTestBody { delivered: boolean; error: string | null }

export const DELIVERY_STATE_NAMES = ['pending', 'sent', 'failed'] as const;

/**
 * One event's delivery to one channel (the outbox): `pending` until sent,
 * retried with backoff (`attempts` so far, `next_attempt_at`), `failed` once
 * given up (`last_error` says why).
 */
export const DeliverySchema = {
  $id: 'NotificationDelivery', type: 'object',
  required: ['id', 'channel_id', 'event_id', 'event', 'summary', 'state', 'attempts', 'created_at', 'next_attempt_at', 'finished_at', 'last_error'],
  properties: {
    id: str, channel_id: str, event_id: str, event: { type: 'string', enum: EVENT_KIND_NAMES }, summary: str, state: { type: 'string', enum: DELIVERY_STATE_NAMES },
    attempts: { type: 'integer' }, created_at: time, next_attempt_at: time, finished_at: nullableTime, last_error: nullableStr,
  },
} as const;
export interface DeliveryBody {
  id: string; channel_id: string; event_id: string; event: EventKindName; summary: string; state: (typeof DELIVERY_STATE_NAMES)[number];
  attempts: number; created_at: string; next_attempt_at: string; finished_at: string | null; last_error: string | null;
}

/**
 * The JSON a webhook receives (and what an e-mail says in words): the
 * event's id (the same for every channel it goes to), its kind and time, the
 * customer, the machine, disk safe and job it concerns (null when none), a
 * summary for people, and the kind's details.
 */
export interface EventPayload {
  id: string; event: EventKindName | 'test'; at: string;
  customer: { id: string; name: string } | null;
  machine: { id: string; name: string } | null;
  safe: { id: string; name: string } | null;
  job: { id: string; kind: string } | null;
  summary: string;
  details: Record<string, unknown>;
}

/** The schemas referred to by `$ref` ('User#', …), added to the server once. */
export const SHARED_SCHEMAS = [ErrorSchema, CustomerSchema, UserSchema, TokenSchema, MachineStatusSchema, MachineSchema, DamagedSnapshotSchema, SafeSchema, SnapshotSchema, AuditEntrySchema, JobSchema, JobEventSchema, ForgetDecisionSchema, RecoveryKeySchema, EscrowSchema, ChannelSchema, DeliverySchema] as const;

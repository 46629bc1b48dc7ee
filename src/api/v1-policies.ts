/**
 * The policies of /api/v1 (what the server does on schedule): request and
 * response shapes, as src/api/v1.ts declares the others. A policy is
 * attached to a customer, one of its machines or one of its disk safes;
 * every setting is optional, and a safe's effective policy takes each
 * setting from the most specific policy that has it (safe, then machine,
 * then customer; docs/decisions.md, "Policies and schedules").
 */
import { BackupSpecSchema, ForgetSafeSchema, PruneSafeSchema, type BackupSpec, type ForgetSafeRequest, type PruneSafeRequest } from './v1.js';

const str = { type: 'string' } as const;
const nullableStr = { type: ['string', 'null'] } as const;
const time = { type: 'string', format: 'date-time' } as const;
const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const;
const id = { type: 'string', minLength: 1, maxLength: 64 } as const;

/** How often: a duration as `30m`, `6h`, `1d`, `1h30m`. */
const every = { type: 'string', pattern: '^([0-9]+[smhd])+$', maxLength: 32 } as const;

/**
 * The settings a policy may hold, each optional:
 * - `schedule`: when the machine is backed up: a cron expression of five
 *   fields (`0 2 * * *`) or `every DURATION` (`every 15m`); each machine
 *   starts at its own offset within the interval (its splay).
 * - `window`: `HH:MM-HH:MM`, the only hours a scheduled job may start in
 *   (`22:00-06:00` crosses midnight).
 * - `time_zone`: an IANA name (default `UTC`) the schedule and the window are read in.
 * - `backup`: what a scheduled backup backs up (the paths and excludes of a "run now" backup).
 * - `timeout`: a running scheduled job past it is cancelled (default 24h).
 * - `retention`: forget's rules (keep_*, group_by), applied by the server every `every` (default 1d).
 * - `prune`: a prune every `every`, with its grace and max_unused.
 * - `verify`: a keyless check of the stored bytes every `every`, reading a
 *   rotating subset so that all the data is read every `read_data_subset_days` days.
 * - `restore_test`: a restore of a sample of files every `every` (`share`
 *   percent of the files, at least `min_files`), by the machine's agent.
 * - `quota`: the hard and soft quotas of each disk safe it covers, in bytes,
 *   where the safe has none of its own (only the provider sets them).
 */
export const PolicySettingsProperties = {
  schedule: { type: 'string', minLength: 1, maxLength: 200 },
  window: { type: 'string', pattern: '^[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}$' },
  time_zone: { type: 'string', minLength: 1, maxLength: 64 },
  backup: BackupSpecSchema,
  timeout: every,
  retention: {
    type: 'object', additionalProperties: false,
    properties: { ...Object.fromEntries(Object.entries(ForgetSafeSchema.properties).filter(([k]) => k !== 'dry_run')), every },
  },
  prune: { type: 'object', additionalProperties: false, required: ['every'], properties: { ...Object.fromEntries(Object.entries(PruneSafeSchema.properties).filter(([k]) => k !== 'dry_run')), every } },
  verify: {
    type: 'object', additionalProperties: false, required: ['every', 'read_data_subset_days'],
    properties: { every, read_data_subset_days: { type: 'integer', minimum: 1, maximum: 3660 } },
  },
  restore_test: {
    type: 'object', additionalProperties: false, required: ['every'],
    properties: { every, share: { type: 'number', exclusiveMinimum: 0, maximum: 100 }, min_files: { type: 'integer', minimum: 1 } },
  },
  quota: { type: 'object', additionalProperties: false, properties: { hard: { type: 'integer', minimum: 1 }, soft: { type: 'integer', minimum: 1 } } },
} as const;

export type RetentionSettings = Omit<ForgetSafeRequest, 'dry_run'> & { every?: string };
export type PruneSettings = Omit<PruneSafeRequest, 'dry_run'> & { every: string };
export interface VerifySettings { every: string; read_data_subset_days: number }
export interface RestoreTestSettings { every: string; share?: number; min_files?: number }
export interface QuotaSettings { hard?: number; soft?: number }

export interface PolicySettings {
  schedule?: string;
  window?: string;
  time_zone?: string;
  backup?: BackupSpec;
  timeout?: string;
  retention?: RetentionSettings;
  prune?: PruneSettings;
  verify?: VerifySettings;
  restore_test?: RestoreTestSettings;
  quota?: QuotaSettings;
}

/** The settings' names, in the order the effective policy lists them. */
export const POLICY_SETTING_NAMES = Object.keys(PolicySettingsProperties) as (keyof PolicySettings)[];

/**
 * A policy: attached to customer `customer_id` when `machine_id` and
 * `safe_id` are null, else to that machine or that disk safe; with its settings.
 */
export const PolicySchema = {
  type: 'object', required: ['id', 'customer_id', 'machine_id', 'safe_id', 'attached_to', 'created_at', 'updated_at', 'updated_by'],
  properties: {
    id: str, customer_id: str, machine_id: nullableStr, safe_id: nullableStr,
    attached_to: { type: 'string', enum: ['customer', 'machine', 'safe'] },
    ...PolicySettingsProperties, created_at: time, updated_at: time, updated_by: str,
  },
} as const;
export interface PolicyBody extends PolicySettings {
  id: string; customer_id: string; machine_id: string | null; safe_id: string | null;
  attached_to: 'customer' | 'machine' | 'safe';
  created_at: string; updated_at: string; updated_by: string;
}

/** A new policy: attached to the customer, or to one machine (`machine_id`) or disk safe (`safe_id`) of it; one policy per customer, machine or safe. */
export const CreatePolicySchema = {
  type: 'object', additionalProperties: false, required: ['customer_id'],
  properties: { customer_id: id, machine_id: id, safe_id: id, ...PolicySettingsProperties },
} as const;
export interface CreatePolicyRequest extends PolicySettings { customer_id: string; machine_id?: string; safe_id?: string }

/** PUT /policies/ID: the policy's settings, all of them (a setting left out is removed). */
export const ReplacePolicySchema = {
  type: 'object', additionalProperties: false, properties: PolicySettingsProperties,
} as const;
export type ReplacePolicyRequest = PolicySettings;

/**
 * A disk safe's (or machine's) effective policy: each setting with the
 * policy it comes from (`from`: that policy's id; a setting no policy has
 * is absent), the backup interval in seconds (null without a schedule; a
 * cron schedule's is the gap between its next two runs), and when the
 * next scheduled backup starts (this machine's splay and the window
 * applied; null without a schedule or a backup).
 */
export const EffectivePolicySchema = {
  type: 'object', required: ['customer_id', 'machine_id', 'safe_id', 'settings', 'from', 'interval_seconds', 'next_run'],
  properties: {
    customer_id: str, machine_id: nullableStr, safe_id: nullableStr,
    settings: { type: 'object', additionalProperties: false, properties: PolicySettingsProperties },
    from: { type: 'object', additionalProperties: str },
    interval_seconds: { type: ['integer', 'null'] },
    next_run: nullableTime,
  },
} as const;
export interface EffectivePolicyBody {
  customer_id: string; machine_id: string | null; safe_id: string | null;
  settings: PolicySettings;
  from: Partial<Record<keyof PolicySettings, string>>;
  interval_seconds: number | null;
  next_run: string | null;
}

/** POST /safes/ID/retention-preview: these rules, or (empty body) the safe's effective retention. */
export const RetentionPreviewSchema = {
  type: 'object', additionalProperties: false,
  properties: Object.fromEntries(Object.entries(ForgetSafeSchema.properties).filter(([k]) => k !== 'dry_run')),
} as const;
export type RetentionPreviewRequest = Omit<ForgetSafeRequest, 'dry_run'>;


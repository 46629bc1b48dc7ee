/**
 * Quotas in stored bytes, per disk safe and per customer (all its safes
 * together), checked before an upload's body is read: the safe's and the
 * customer's usage (src/server/services/usage.ts: what is stored, plus the
 * uploads being received) and the upload's declared size.
 *
 *   used + in flight + upload > hard    refused: 413 QUOTA_EXCEEDED, nothing stored
 *   used + in flight + upload > soft    let through, with a warning for the client
 *                                       (and an audit entry when this upload crosses it)
 *
 * The safe is checked before its customer; the first hard quota passed is
 * the one the refusal names. A safe with no quota of its own has the one
 * its policies give (`quota` of the most specific policy that has one).
 *
 * Alerts (notifications.ts), each once, kept in the safe's or customer's
 * `quota_alert`: `quota.warn` when an upload takes usage past 90 % of the
 * hard quota (or past the soft quota, when that is lower), `quota.exceeded`
 * when the hard quota refuses an upload; usage back under the warning level
 * clears it (a later crossing alerts again).
 */
import { randomUUID } from 'node:crypto';
import { formatBytes } from '../../core/size.js';
import type { DiskSafe, QuotaAlert } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { raiseEvent } from './notifications.js';
import { policyQuota } from './policies.js';
import { UploadRefusedError } from './upload-refused-error.js';
import { NO_RESERVATION, type Reservation } from './usage.js';

/** How long a reservation holds when its node dies before releasing it (an upload is received well within it). */
const RESERVATION_MS = 60 * 60_000;

/** What the quotas say of an upload that may go ahead. */
export interface QuotaAdmission {
  /** The upload's bytes, held against the quotas until it ends. */
  readonly reservation: Reservation;
  /** For the client, when a soft quota is (or will be) passed. */
  readonly warning?: string;
  /** The soft quotas this upload takes usage over (the audit log records each once the upload is stored). */
  readonly crosses: readonly { readonly what: 'safe' | 'customer'; readonly id: string }[];
}

/** Whose bytes are measured against which quotas. */
interface Scope {
  readonly what: 'safe' | 'customer';
  readonly id: string;
  /** "disk safe acme-web1", "customer Acme (all its disk safes)". */
  readonly name: string;
  readonly hard: number | null;
  readonly soft: number | null;
  readonly stored: number;
  readonly inFlight: number;
  /** The alert last raised for it. */
  readonly alert: QuotaAlert | null;
}

/** The share of a hard quota at which `quota.warn` is raised. */
export const QUOTA_WARN_SHARE = 0.9;

/**
 * Checks an upload of `size` bytes to `safe` against the safe's and its
 * customer's quotas, and reserves the bytes; throws when a hard quota would be passed (`UploadRefusedError`, 413 `QUOTA_EXCEEDED`). With no quota on either, nothing is
 * counted (no listing of the safe's storage).
 */
export async function admitUpload(ctx: ServiceContext, safe: DiskSafe, size: number): Promise<QuotaAdmission> {
  // A safe without quotas of its own has its policies' (policies.ts).
  if (safe.quota_hard === null && safe.quota_soft === null) {
    const q = await policyQuota(ctx, safe);
    if (q) safe = { ...safe, quota_hard: q.hard, quota_soft: q.soft };
  }
  const customer = await ctx.db.selectFrom('customers').select(['name', 'quota_hard', 'quota_soft', 'quota_alert']).where('id', '=', safe.customer_id).executeTakeFirstOrThrow();
  const safeLimited = safe.quota_hard !== null || safe.quota_soft !== null;
  const customerLimited = customer.quota_hard !== null || customer.quota_soft !== null;
  if (!safeLimited && !customerLimited) return { reservation: NO_RESERVATION, crosses: [] };
  const siblings = customerLimited ? await ctx.db.selectFrom('disk_safes').selectAll().where('customer_id', '=', safe.customer_id).execute() : [safe];
  // Every sibling counted once (by whichever node first needed it), so that the check below reads numbers only.
  await ctx.usage.storedBytesOf(siblings);
  const now = ctx.now();
  const id = randomUUID();
  // Checked and reserved in one transaction, the customer's row locked on PostgreSQL: two nodes admitting uploads of one customer take turns,
  // and each sees the other's reservation (SQLite, one node, serialises its transactions).
  const { scopes, refused } = await ctx.db.transaction().execute(async (trx) => {
    if (ctx.dbKind === 'postgres') await trx.selectFrom('customers').select('id').where('id', '=', safe.customer_id).forUpdate().execute();
    const locations = siblings.map((x) => x.location);
    const stored = new Map((await trx.selectFrom('safe_usage').select(['location', 'stored_bytes']).where('location', 'in', locations).execute()).map((r) => [r.location, r.stored_bytes]));
    const inFlight = new Map<string, number>();
    for (const r of await trx.selectFrom('usage_reservations').select(['location', 'bytes']).where('location', 'in', locations).where('expires_at', '>', now.toISOString()).execute()) {
      inFlight.set(r.location, (inFlight.get(r.location) ?? 0) + r.bytes);
    }
    const scopes: Scope[] = [];
    if (safeLimited) {
      scopes.push({
        what: 'safe', id: safe.id, name: `disk safe ${safe.name}`, hard: safe.quota_hard, soft: safe.quota_soft,
        stored: stored.get(safe.location) ?? 0, inFlight: inFlight.get(safe.location) ?? 0, alert: safe.quota_alert,
      });
    }
    if (customerLimited) {
      scopes.push({
        what: 'customer', id: safe.customer_id, name: `customer ${customer.name} (all its disk safes)`, hard: customer.quota_hard, soft: customer.quota_soft,
        stored: sum(locations.map((l) => stored.get(l) ?? 0)), inFlight: sum(locations.map((l) => inFlight.get(l) ?? 0)), alert: customer.quota_alert,
      });
    }
    const refused = scopes.find((x) => x.hard !== null && x.stored + x.inFlight + size > x.hard);
    if (refused === undefined) {
      await trx.insertInto('usage_reservations').values({
        id, location: safe.location, customer_id: safe.customer_id, bytes: size, node: ctx.node, expires_at: new Date(now.getTime() + RESERVATION_MS).toISOString(),
      }).execute();
    }
    return { scopes, refused };
  });
  let released = false;
  const reservation: Reservation = {
    release: async () => {
      if (released) return;
      released = true;
      await ctx.db.deleteFrom('usage_reservations').where('id', '=', id).execute();
    },
  };
  if (refused !== undefined) {
    const message = refusal(refused, size);
    await quotaAlert(ctx, safe, refused, 'exceeded', message);
    throw new UploadRefusedError(413, 'QUOTA_EXCEEDED', message);
  }
  const warnings: string[] = [];
  const crosses: { what: 'safe' | 'customer'; id: string }[] = [];
  for (const s of scopes) {
    const before = s.stored + s.inFlight;
    if (s.soft === null || before + size <= s.soft) continue;
    warnings.push(`${s.name} is over its soft quota: ${formatBytes(before + size)} of ${formatBytes(s.soft)} used${s.hard === null ? '' : ` (hard quota ${formatBytes(s.hard)})`}`);
    if (before <= s.soft) crosses.push({ what: s.what, id: s.id });
  }
  try {
    for (const s of scopes) {
      const after = s.stored + s.inFlight + size;
      const warnAt = Math.min(s.soft ?? Infinity, s.hard === null ? Infinity : s.hard * QUOTA_WARN_SHARE);
      await quotaAlert(ctx, safe, s, after > warnAt ? 'warn' : null,
        `${formatBytes(after)} stored or being uploaded, past ${s.soft !== null && s.soft === warnAt ? 'its soft quota' : '90 % of its hard quota'} of ${formatBytes(s.soft !== null && s.soft === warnAt ? s.soft : s.hard!)}`);
    }
  } catch (e) {
    await reservation.release();
    throw e;
  }
  return { reservation, ...(warnings.length > 0 ? { warning: warnings.join('; ') } : {}), crosses };
}

/**
 * Brings scope `s`'s alert to `level`: raises `quota.warn` or
 * `quota.exceeded` when its level rises to it (a conditional UPDATE, so
 * that of uploads arriving together one raises it), and clears it quietly
 * when usage is back under the warning level. `exceeded` goes back to
 * `warn` quietly once an upload is let through again.
 */
async function quotaAlert(ctx: ServiceContext, safe: DiskSafe, s: Scope, level: QuotaAlert | null, message: string): Promise<void> {
  if (s.alert === level) return;
  const table = s.what === 'safe' ? 'disk_safes' : 'customers';
  const rises = level === 'exceeded' || (level === 'warn' && s.alert === null);
  if (!rises) {
    await ctx.db.updateTable(table).set({ quota_alert: level }).where('id', '=', s.id).execute();
    return;
  }
  await ctx.db.transaction().execute(async (trx) => {
    const changed = await trx.updateTable(table).set({ quota_alert: level })
      .where('id', '=', s.id).where((eb) => (level === 'exceeded' ? eb.or([eb('quota_alert', 'is', null), eb('quota_alert', '=', 'warn')]) : eb('quota_alert', 'is', null)))
      .executeTakeFirst();
    if (changed.numUpdatedRows === 0n) return;
    const hard = s.hard === null ? {} : { quota_hard: s.hard };
    await raiseEvent(ctx, {
      kind: level === 'exceeded' ? 'quota.exceeded' : 'quota.warn', customerId: safe.customer_id, ...(s.what === 'safe' ? { safeId: s.id } : {}),
      message: `${s.what === 'safe' ? s.name : 'its disk safes together'}: ${level === 'exceeded' ? `the hard quota refuses uploads (${message})` : message}`,
      details: { scope: s.what, stored_bytes: s.stored, ...hard, ...(s.soft === null ? {} : { quota_soft: s.soft }) },
    }, trx);
  });
}

/**
 * "this upload of 160 MiB would bring the stored bytes of disk safe acme-web1
 * to 10.1 GiB, past its hard quota of 10.0 GiB (stored now: 9.90 GiB)": what
 * the upload would do, not what the usage is (the usage is under the quota).
 */
function refusal(s: Scope, size: number): string {
  const inFlight = s.inFlight > 0 ? `, and ${formatBytes(s.inFlight)} being uploaded` : '';
  return `this upload of ${formatBytes(size)} would bring the stored bytes of ${s.name} to ${formatBytes(s.stored + s.inFlight + size)}, `
    + `past its hard quota of ${formatBytes(s.hard ?? 0)} (stored now: ${formatBytes(s.stored)}${inFlight}); `
    + 'the upload was refused and nothing of it stored (free space with the server\'s forget and prune, or ask the provider for a larger quota)';
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

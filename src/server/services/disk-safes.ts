/**
 * Disk safes: one repository each, named uniquely on the server, belonging to
 * a customer and optionally to one of its machines, with hard and soft
 * quotas in stored bytes that only the provider sets (enforced by quota.ts)
 * and the bytes they hold now (usage.ts). A safe's repository lives in the
 * data directory's `safes/ID` folder.
 */
import { randomUUID } from 'node:crypto';
import type { CreateSafeRequest, SafeBody, UpdateQuotasRequest } from '../../api/v1.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { BadRequest, Conflict, NotFound } from './errors.js';
import { findMachine, requireCustomer } from './machines.js';
import { isProvider, requireManage, requireProvider, requireRead, sees, type Principal } from './principal.js';

/** The safe as the API shows it, with the bytes it holds (`stored`). */
export function safeBody(s: DiskSafe, stored: number): SafeBody {
  return {
    id: s.id, customer_id: s.customer_id, machine_id: s.machine_id, name: s.name,
    quota_hard: s.quota_hard, quota_soft: s.quota_soft, stored_bytes: stored, created_at: s.created_at,
  };
}

/** Refuses quotas whose soft one is above the hard one (either may be absent). */
export function checkQuotas(hard: number | null, soft: number | null): void {
  if (hard !== null && soft !== null && soft > hard) {
    throw new BadRequest(`the soft quota (${soft} bytes) is above the hard quota (${hard} bytes)`);
  }
}

/** The quotas of a record after an update (a field left out keeps its value, null removes it), checked. */
export function updatedQuotas(current: { quota_hard: number | null; quota_soft: number | null }, req: UpdateQuotasRequest): { quota_hard: number | null; quota_soft: number | null } {
  const next = { quota_hard: req.quota_hard === undefined ? current.quota_hard : req.quota_hard, quota_soft: req.quota_soft === undefined ? current.quota_soft : req.quota_soft };
  checkQuotas(next.quota_hard, next.quota_soft);
  return next;
}

export async function createSafe(ctx: ServiceContext, p: Principal, req: CreateSafeRequest): Promise<SafeBody> {
  await requireCustomer(ctx, p, req.customer_id);
  if (req.machine_id !== undefined) {
    const m = await findMachine(ctx, p, req.machine_id);
    if (m.customer_id !== req.customer_id) throw new NotFound(`machine ${req.machine_id}`);
  }
  requireManage(p);
  if (req.quota_hard !== undefined || req.quota_soft !== undefined) requireProvider(p);
  checkQuotas(req.quota_hard ?? null, req.quota_soft ?? null);
  return insertSafe(ctx, p, req);
}

/** Adds disk safe `req.name` (Conflict when the name is taken), audited as `who`'s; the caller checked the rights and the machine. */
export async function insertSafe(ctx: ServiceContext, who: Principal, req: CreateSafeRequest): Promise<SafeBody> {
  const id = randomUUID();
  const row: DiskSafe = {
    id, customer_id: req.customer_id, machine_id: req.machine_id ?? null, name: req.name, location: `safes/${id}`,
    quota_hard: req.quota_hard ?? null, quota_soft: req.quota_soft ?? null, created_at: ctx.now().toISOString(),
  };
  try {
    await ctx.db.insertInto('disk_safes').values(row).execute();
  } catch (e) {
    // The name is unique across the server; saying it is taken tells another customer only that the name is in use.
    if (isUniqueViolation(e)) throw new Conflict(`the disk safe name "${req.name}" is taken; choose another`);
    throw e;
  }
  await audit(ctx, who, 'safe.create', row.id, row.customer_id);
  return safeBody(row, 0);
}

export async function listSafes(ctx: ServiceContext, p: Principal): Promise<SafeBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('disk_safes').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('machine_id', '=', p.machineId);
  const safes = await q.execute();
  const stored = await ctx.usage.storedBytesOf(safes);
  return safes.map((s) => safeBody(s, stored.get(s.location)!));
}

async function findSafe(ctx: ServiceContext, p: Principal, id: string): Promise<DiskSafe> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound(`disk safe ${id}`);
  return s;
}

export async function getSafe(ctx: ServiceContext, p: Principal, id: string): Promise<SafeBody> {
  const s = await findSafe(ctx, p, id);
  requireRead(p);
  return safeBody(s, await ctx.usage.storedBytes(s));
}

/** Sets or removes the safe's quotas (provider roles only: 403 for the customer's own callers). */
export async function updateSafeQuotas(ctx: ServiceContext, p: Principal, id: string, req: UpdateQuotasRequest): Promise<SafeBody> {
  const s = await findSafe(ctx, p, id);
  requireProvider(p);
  const next = updatedQuotas(s, req);
  await ctx.db.updateTable('disk_safes').set(next).where('id', '=', id).execute();
  await audit(ctx, p, 'safe.quota', id, s.customer_id);
  const updated = { ...s, ...next };
  return safeBody(updated, await ctx.usage.storedBytes(updated));
}

/**
 * Disk safes: one repository each, named uniquely on the server, belonging to
 * a customer and optionally to one of its machines, with hard and soft
 * quotas in stored bytes that only the provider sets. A safe's repository
 * lives in the data directory's `safes/ID` folder.
 */
import { randomUUID } from 'node:crypto';
import type { CreateSafeRequest, SafeBody } from '../../api/v1.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { BadRequest, Conflict, NotFound } from './errors.js';
import { findMachine, requireCustomer } from './machines.js';
import { isProvider, requireManage, requireProvider, requireRead, sees, type Principal } from './principal.js';

export function safeBody(s: DiskSafe): SafeBody {
  return { id: s.id, customer_id: s.customer_id, machine_id: s.machine_id, name: s.name, quota_hard: s.quota_hard, quota_soft: s.quota_soft, created_at: s.created_at };
}

export async function createSafe(ctx: ServiceContext, p: Principal, req: CreateSafeRequest): Promise<SafeBody> {
  await requireCustomer(ctx, p, req.customer_id);
  if (req.machine_id !== undefined) {
    const m = await findMachine(ctx, p, req.machine_id);
    if (m.customer_id !== req.customer_id) throw new NotFound(`machine ${req.machine_id}`);
  }
  requireManage(p);
  if (req.quota_hard !== undefined || req.quota_soft !== undefined) requireProvider(p);
  if (req.quota_hard !== undefined && req.quota_soft !== undefined && req.quota_soft > req.quota_hard) {
    throw new BadRequest(`the soft quota (${req.quota_soft} bytes) is above the hard quota (${req.quota_hard} bytes)`);
  }
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
  return safeBody(row);
}

export async function listSafes(ctx: ServiceContext, p: Principal): Promise<SafeBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('disk_safes').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('machine_id', '=', p.machineId);
  return (await q.execute()).map(safeBody);
}

export async function getSafe(ctx: ServiceContext, p: Principal, id: string): Promise<SafeBody> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound(`disk safe ${id}`);
  requireRead(p);
  return safeBody(s);
}

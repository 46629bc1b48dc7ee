/**
 * Customers (tenants): created by the provider's admins; each customer's
 * callers see only their own. A customer's quotas bound the stored bytes of
 * all its disk safes together; only provider roles set them.
 */
import { randomUUID } from 'node:crypto';
import type { CreateCustomerRequest, CustomerBody, UpdateQuotasRequest } from '../../api/v1.js';
import type { Customer } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { Conflict } from './errors.js';
import { checkQuotas, updatedQuotas } from './disk-safes.js';
import { isProvider, requireProvider, requireRead, visible, type Principal } from './principal.js';

async function customerBody(ctx: ServiceContext, c: Customer): Promise<CustomerBody> {
  const safes = await ctx.db.selectFrom('disk_safes').selectAll().where('customer_id', '=', c.id).execute();
  let stored = 0;
  for (const bytes of (await ctx.usage.storedBytesOf(safes)).values()) stored += bytes;
  return { id: c.id, name: c.name, quota_hard: c.quota_hard, quota_soft: c.quota_soft, stored_bytes: stored, created_at: c.created_at };
}

export async function createCustomer(ctx: ServiceContext, p: Principal, req: CreateCustomerRequest): Promise<CustomerBody> {
  requireProvider(p, true);
  checkQuotas(req.quota_hard ?? null, req.quota_soft ?? null);
  const row: Customer = { id: randomUUID(), name: req.name, quota_hard: req.quota_hard ?? null, quota_soft: req.quota_soft ?? null, quota_alert: null, created_at: ctx.now().toISOString() };
  try {
    await ctx.db.insertInto('customers').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`a customer named "${req.name}" exists already`);
    throw e;
  }
  await audit(ctx, p, 'customer.create', row.id, row.id);
  return { ...row, stored_bytes: 0 };
}

export async function listCustomers(ctx: ServiceContext, p: Principal): Promise<CustomerBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('customers').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('id', '=', p.customerId ?? '');
  return Promise.all((await q.execute()).map((c) => customerBody(ctx, c)));
}

async function findCustomer(ctx: ServiceContext, p: Principal, id: string): Promise<Customer> {
  const row = await ctx.db.selectFrom('customers').selectAll().where('id', '=', id).executeTakeFirst();
  return visible(p, row && { ...row, customer_id: row.id, machine_id: p.machineId }, `customer ${id}`);
}

export async function getCustomer(ctx: ServiceContext, p: Principal, id: string): Promise<CustomerBody> {
  const c = await findCustomer(ctx, p, id);
  requireRead(p);
  return customerBody(ctx, c);
}

/** Sets or removes the customer's quotas (provider roles only: 403 for the customer's own callers). */
export async function updateCustomerQuotas(ctx: ServiceContext, p: Principal, id: string, req: UpdateQuotasRequest): Promise<CustomerBody> {
  const c = await findCustomer(ctx, p, id);
  requireProvider(p);
  const next = updatedQuotas(c, req);
  await ctx.db.updateTable('customers').set(next).where('id', '=', id).execute();
  await audit(ctx, p, 'customer.quota', id, id);
  return customerBody(ctx, { ...c, ...next });
}

/** Customers (tenants): created by the provider's admins; each customer's callers see only their own. */
import { randomUUID } from 'node:crypto';
import type { CreateCustomerRequest, CustomerBody } from '../../api/v1.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { Conflict } from './errors.js';
import { isProvider, requireProvider, requireRead, visible, type Principal } from './principal.js';

export async function createCustomer(ctx: ServiceContext, p: Principal, req: CreateCustomerRequest): Promise<CustomerBody> {
  requireProvider(p, true);
  const row = { id: randomUUID(), name: req.name, created_at: ctx.now().toISOString() };
  try {
    await ctx.db.insertInto('customers').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`a customer named "${req.name}" exists already`);
    throw e;
  }
  await audit(ctx, p, 'customer.create', row.id, row.id);
  return row;
}

export async function listCustomers(ctx: ServiceContext, p: Principal): Promise<CustomerBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('customers').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('id', '=', p.customerId ?? '');
  return q.execute();
}

export async function getCustomer(ctx: ServiceContext, p: Principal, id: string): Promise<CustomerBody> {
  const row = await ctx.db.selectFrom('customers').selectAll().where('id', '=', id).executeTakeFirst();
  const c = visible(p, row && { ...row, customer_id: row.id, machine_id: p.machineId }, `customer ${id}`);
  requireRead(p);
  return { id: c.id, name: c.name, created_at: c.created_at };
}

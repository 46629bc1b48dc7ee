/** The protected machines of each customer; a machine-scoped token sees its own machine only. */
import { randomUUID } from 'node:crypto';
import type { CreateMachineRequest, MachineBody } from '../../api/v1.js';
import type { Machine } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { Conflict, NotFound } from './errors.js';
import { isProvider, requireManage, requireRead, sees, type Principal } from './principal.js';

const owned = (m: Machine) => ({ customer_id: m.customer_id, machine_id: m.id });

/** Throws NotFound unless customer `id` exists and the caller sees it. */
export async function requireCustomer(ctx: ServiceContext, p: Principal, id: string): Promise<void> {
  const c = await ctx.db.selectFrom('customers').select('id').where('id', '=', id).executeTakeFirst();
  if (!c || !sees(p, { customer_id: c.id, machine_id: p.machineId })) throw new NotFound(`customer ${id}`);
}

/** The machine `id` if the caller sees it; NotFound otherwise. */
export async function findMachine(ctx: ServiceContext, p: Principal, id: string): Promise<Machine> {
  const m = await ctx.db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
  if (!m || !sees(p, owned(m))) throw new NotFound(`machine ${id}`);
  return m;
}

export async function createMachine(ctx: ServiceContext, p: Principal, req: CreateMachineRequest): Promise<MachineBody> {
  await requireCustomer(ctx, p, req.customer_id);
  requireManage(p);
  return insertMachine(ctx, p, req.customer_id, req.name);
}

/** Adds machine `name` of `customerId` (Conflict when the customer has one so named), audited as `who`'s; the caller checked the rights. */
export async function insertMachine(ctx: ServiceContext, who: Principal, customerId: string, name: string): Promise<Machine> {
  const row: Machine = { id: randomUUID(), customer_id: customerId, name, created_at: ctx.now().toISOString(), last_seen_at: null };
  try {
    await ctx.db.insertInto('machines').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`the customer has a machine named "${name}" already`);
    throw e;
  }
  await audit(ctx, who, 'machine.create', row.id, row.customer_id);
  return row;
}

export async function listMachines(ctx: ServiceContext, p: Principal): Promise<MachineBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('machines').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('id', '=', p.machineId);
  return q.execute();
}

export async function getMachine(ctx: ServiceContext, p: Principal, id: string): Promise<MachineBody> {
  const m = await findMachine(ctx, p, id);
  requireRead(p);
  return m;
}

/**
 * People and their roles. Provider admins create anyone; a customer admin
 * creates the customer roles of their own customer. A new user gets a
 * one-time password, made by the server and shown once, which must be
 * changed at the first login before anything else is allowed.
 */
import { randomUUID } from 'node:crypto';
import type { CreatedUserBody, CreateUserRequest, UserBody } from '../../api/v1.js';
import { isCustomerRole, type User } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { BadRequest, Conflict, Forbidden, NotFound } from './errors.js';
import { hashPassword, oneTimePassword } from './passwords.js';
import { isProvider, requireManage, requireRead, sees, type Principal } from './principal.js';

export function userBody(u: User): UserBody {
  return { id: u.id, name: u.name, role: u.role, customer_id: u.customer_id, must_change_password: u.must_change_password === 1, created_at: u.created_at };
}

/** Whether the caller may know of user `u`: providers see all, a customer's callers the customer's people. */
const seesUser = (p: Principal, u: User): boolean => (u.customer_id === null ? isProvider(p) : sees(p, { customer_id: u.customer_id }));

export async function createUser(ctx: ServiceContext, p: Principal, req: CreateUserRequest): Promise<CreatedUserBody> {
  const customerRole = isCustomerRole(req.role);
  if (customerRole && req.customer_id === undefined) throw new BadRequest(`a ${req.role} belongs to a customer: customer_id is needed`);
  if (!customerRole && req.customer_id !== undefined) throw new BadRequest(`a ${req.role} belongs to no customer: leave customer_id out`);
  if (req.customer_id !== undefined) {
    const c = await ctx.db.selectFrom('customers').select('id').where('id', '=', req.customer_id).executeTakeFirst();
    if (!c || !sees(p, { customer_id: c.id })) throw new NotFound('customer', req.customer_id);
  }
  if (p.kind === 'token') throw new Forbidden('people are created by people: log in to create a user');
  requireManage(p);
  if (p.role === 'provider-operator' || (!customerRole && p.role !== 'provider-admin')) throw new Forbidden(`a ${p.role} may not create a ${req.role}`);
  const password = oneTimePassword();
  const row: User = {
    id: randomUUID(), name: req.name, role: req.role, customer_id: req.customer_id ?? null,
    password_hash: await hashPassword(password), must_change_password: 1, created_at: ctx.now().toISOString(),
  };
  try {
    await ctx.db.insertInto('users').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`a user named "${req.name}" exists already`);
    throw e;
  }
  await audit(ctx, p, 'user.create', row.id, row.customer_id);
  return { user: userBody(row), password };
}

export async function listUsers(ctx: ServiceContext, p: Principal): Promise<UserBody[]> {
  requireRead(p);
  if (p.machineId !== null) return [];
  let q = ctx.db.selectFrom('users').selectAll().orderBy('name');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  return (await q.execute()).map(userBody);
}

export async function getUser(ctx: ServiceContext, p: Principal, id: string): Promise<UserBody> {
  const u = await ctx.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  if (!u || !seesUser(p, u) || p.machineId !== null) throw new NotFound('user', id);
  requireRead(p);
  return userBody(u);
}

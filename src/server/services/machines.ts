/**
 * The protected machines of each customer; a machine-scoped token sees its
 * own machine only. A machine that is gone (died, replaced) is retired, not
 * deleted: its record stays (its jobs and the audit log name it), while its
 * tokens are revoked, its queued jobs are cancelled, and its disk safes, which hold
 * the customer's backups, are kept without a machine, for a replacement
 * machine to take over (enrolment.ts). Lists show live machines only.
 */
import { randomUUID } from 'node:crypto';
import type { CreateMachineRequest, MachineBody, MachinesQuery } from '../../api/v1.js';
import type { Machine } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { Conflict, Forbidden, NoDiskSafe, NotFound } from './errors.js';
import { removeLocksOfTokens } from './lock-owners.js';
import { machineStatuses } from './fleet-status.js';
import { lastBackups } from './snapshot-index.js';
import { isProvider, requireManage, requireRead, sees, type Principal } from './principal.js';

const owned = (m: Machine) => ({ customer_id: m.customer_id, machine_id: m.id });
/** An OFFSET needs a LIMIT in SQLite: an offset without a limit pages to the end. */
const MAX_UNPAGED = Number.MAX_SAFE_INTEGER;

/** Throws NotFound unless customer `id` exists and the caller sees it. */
export async function requireCustomer(ctx: ServiceContext, p: Principal, id: string, makes?: { machineId: string | null }): Promise<void> {
  const c = await ctx.db.selectFrom('customers').select('id').where('id', '=', id).executeTakeFirst();
  if (!c || !sees(p, { customer_id: c.id, machine_id: p.machineId })) throw new NotFound('customer', id);
  // A machine's token makes nothing beyond its machine: not a machine, nor a customer-wide safe or policy.
  if (makes !== undefined && p.machineId !== null && makes.machineId !== p.machineId) {
    throw new Forbidden('a machine\'s token acts on its own machine only: what is made for the whole customer, or for another machine, is made by a customer admin or a customer-wide token');
  }
}

/** The machine `id` if the caller sees it; NotFound otherwise. */
export async function findMachine(ctx: ServiceContext, p: Principal, id: string): Promise<Machine> {
  const m = await ctx.db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
  if (!m || !sees(p, owned(m))) throw new NotFound('machine', id);
  return m;
}

/** The machine `id` as findMachine finds it, refused with Conflict once retired (`doing`: what it cannot be given). */
export async function findLiveMachine(ctx: ServiceContext, p: Principal, id: string, doing: string): Promise<Machine> {
  const m = await findMachine(ctx, p, id);
  if (m.retired_at !== null) throw new Conflict(`machine ${m.name} was retired at ${m.retired_at}: it cannot be given ${doing}`);
  return m;
}

/**
 * Throws `NoDiskSafe` when machine `machineId` has no disk safe left after
 * one was deleted while it was live (`live_machine`); a machine never
 * given a safe (made through the API, not enrolled) is not refused here.
 */
export async function requireSomeSafe(ctx: ServiceContext, machineId: string): Promise<void> {
  const m = await ctx.db.selectFrom('machines').select(['name', 'safe_deleted_at']).where('id', '=', machineId).executeTakeFirst();
  if (m === undefined || m.safe_deleted_at === null) return;
  const safe = await ctx.db.selectFrom('disk_safes').select('id').where('machine_id', '=', machineId).limit(1).executeTakeFirst();
  if (safe === undefined) throw new NoDiskSafe(m.name);
}

export async function createMachine(ctx: ServiceContext, p: Principal, req: CreateMachineRequest): Promise<MachineBody> {
  await requireCustomer(ctx, p, req.customer_id, { machineId: null });
  requireManage(p);
  return { ...(await insertMachine(ctx, p, req.customer_id, req.name)), last_backup_at: null };
}

/** Adds machine `name` of `customerId` (Conflict when the customer has one so named), audited as `who`'s; the caller checked the rights. */
export async function insertMachine(ctx: ServiceContext, who: Principal, customerId: string, name: string): Promise<Machine> {
  const row: Machine = {
    id: randomUUID(), customer_id: customerId, name, created_at: ctx.now().toISOString(), last_seen_at: null, retired_at: null, safe_deleted_at: null, stale_since: null,
    proven_restorable_at: null, proven_restorable_snapshot: null,
  };
  try {
    await ctx.db.insertInto('machines').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`the customer has a machine named "${name}" already`);
    throw e;
  }
  await audit(ctx, who, 'machine.create', row.id, row.customer_id);
  return row;
}

/** Machines as the API shows them: with the time of their last backup (the snapshot index: no storage read). */
async function withLastBackups(ctx: ServiceContext, machines: Machine[]): Promise<MachineBody[]> {
  const last = await lastBackups(ctx, machines.map((m) => m.id));
  return machines.map((m) => ({ ...m, last_backup_at: last.get(m.id) ?? null }));
}

/** The live machines the caller sees, by name (then id); a page of them with `limit` and `offset`; with `status`, each one's status (fleet-status.ts). */
export async function listMachines(ctx: ServiceContext, p: Principal, query: MachinesQuery = {}): Promise<MachineBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('machines').selectAll().where('retired_at', 'is', null).orderBy('name').orderBy('id');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('id', '=', p.machineId);
  if (query.limit !== undefined) q = q.limit(query.limit);
  if (query.offset) q = query.limit === undefined ? q.limit(MAX_UNPAGED).offset(query.offset) : q.offset(query.offset);
  const machines = await q.execute();
  const listed = await withLastBackups(ctx, machines);
  if (!query.status) return listed;
  const statuses = await machineStatuses(ctx, listed);
  return listed.map((m) => ({ ...m, status: statuses.get(m.id)! }));
}

export async function getMachine(ctx: ServiceContext, p: Principal, id: string): Promise<MachineBody> {
  const m = await findMachine(ctx, p, id);
  requireRead(p);
  return (await withLastBackups(ctx, [m]))[0]!;
}

/** Why the queued jobs of a retired machine were cancelled. */
const RETIRED_ERROR = 'cancelled: the machine was retired before its agent took the job';
/** The error of a job that ran when its machine was retired: the agent cannot go on (its tokens are revoked), whether or not it heeds a cancel. */
const RETIRED_RUNNING_ERROR = 'interrupted: the machine was retired while the job ran; its agent\'s tokens are revoked, so it can neither report nor upload';

/**
 * Retires machine `id` (see the module comment), audited. Provider roles and
 * the customer's admins only (not tokens: the machine's own agent token, or
 * any other, cannot); a job of it that runs ends interrupted; retiring a
 * retired machine changes nothing.
 */
export async function retireMachine(ctx: ServiceContext, p: Principal, id: string): Promise<MachineBody> {
  const m = await findMachine(ctx, p, id);
  if (p.kind === 'token') throw new Forbidden('machines are retired by people: log in as a provider or customer admin');
  requireManage(p);
  if (m.retired_at !== null) return (await withLastBackups(ctx, [m]))[0]!;
  const tokens = (await ctx.db.selectFrom('api_tokens').select('id').where('machine_id', '=', m.id).execute()).map((t) => t.id);
  const retired = await ctx.db.transaction().execute(async (trx) => {
    // Retiring does not depend on the agent (a compromised one may ignore a cancel): its tokens go first, its running jobs end with them.
    const now = ctx.now().toISOString();
    await trx.updateTable('api_tokens').set({ revoked_at: now }).where('machine_id', '=', m.id).where('revoked_at', 'is', null).execute();
    await trx.updateTable('jobs').set({ state: 'interrupted', finished_at: now, error: RETIRED_RUNNING_ERROR }).where('machine_id', '=', m.id).where('state', '=', 'running').execute();
    await trx.updateTable('jobs').set({ state: 'cancelled', finished_at: now, cancelled_by: p.actor, error: RETIRED_ERROR }).where('machine_id', '=', m.id).where('state', '=', 'queued').execute();
    await trx.updateTable('disk_safes').set({ machine_id: null }).where('machine_id', '=', m.id).execute();
    await trx.updateTable('machines').set({ retired_at: now }).where('id', '=', m.id).execute();
    await audit({ ...ctx, db: trx }, p, 'machine.retire', m.id, m.customer_id);
    return { ...m, retired_at: now };
  });
  // Its tokens are revoked: the locks they left would hold off the safe's prune or deletion.
  await removeLocksOfTokens(ctx, tokens);
  return (await withLastBackups(ctx, [retired]))[0]!;
}

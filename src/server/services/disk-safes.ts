/**
 * Disk safes: one repository each, named uniquely on the server, belonging to
 * a customer and optionally to one of its machines, with hard and soft
 * quotas in stored bytes that only the provider sets (enforced by quota.ts)
 * and the bytes they hold now (usage.ts). A safe's repository lives in the
 * server's storage at its `location`, `safes/ID` (safe-storage.ts).
 *
 * Deleting a safe destroys its backups: only people who administer it (a
 * provider admin, the customer's admins) may, repeating its name, and only
 * while nothing works on it:
 *
 *   refuse the safe of a live (not retired) machine unless `live_machine`
 *     confirms it: its agent backs up into it, and then has no safe (its
 *     poll and its repository answer NO_DISK_SAFE, jobs.ts, safe-access.ts)
 *   refuse while a job of it runs
 *   take the repository's exclusive lock (refused while a live client holds one)
 *   mark it deleting (`deleting_at`): its repository answers 404 from then on,
 *     and an upload under way is refused before its object is written
 *   remove every object through the safe's storage (usage follows), the lock last,
 *     then look once more for an object an upload under way at the mark wrote,
 *     then its place (a local safe's folders)
 *   remove its records: jobs and their events, restore tokens, escrow, lock owners
 *
 * A deletion cut short (the server killed) leaves the safe marked: a repeated
 * DELETE goes on from the removal, with no lock to take (no client reaches it).
 */
import { randomUUID } from 'node:crypto';
import type { CreateSafeRequest, DamagedSnapshotBody, DeleteSafeRequest, SafeBody, UpdateQuotasRequest } from '../../api/v1.js';
import { forEachLimit } from '../../core/for-each-limit.js';
import { holdMaintenanceLock } from '../../jobs/sessions/maintenance-lock.js';
import { LockedError } from '../../repo/lock.js';
import { OBJECT_TYPES, type Backend, type ObjectType } from '../../storage/backend.js';
import { handleOf } from '../../repo/objects.js';
import { workingBackendOf } from './safe-storage.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import { isUniqueViolation, type ServiceContext } from './context.js';
import { BadRequest, Conflict, Forbidden, NotFound } from './errors.js';
import { interruptSilent } from './jobs.js';
import { damagedSnapshotsOf } from './damage.js';
import { removeLocksOfExpiredTokens } from './lock-owners.js';
import { findLiveMachine, requireCustomer } from './machines.js';
import { isProvider, requireManage, requireProvider, requireRead, sees, type Principal } from './principal.js';

/** The safe as the API shows it, with the bytes it holds (`stored`) and its snapshots found damaged (damage.ts; none for a new safe). */
export function safeBody(s: DiskSafe, stored: number, damaged: DamagedSnapshotBody[] = []): SafeBody {
  return {
    id: s.id, customer_id: s.customer_id, machine_id: s.machine_id, name: s.name,
    quota_hard: s.quota_hard, quota_soft: s.quota_soft, stored_bytes: stored, created_at: s.created_at, deleting_at: s.deleting_at,
    damaged_snapshots: damaged,
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
  await requireCustomer(ctx, p, req.customer_id, { machineId: req.machine_id ?? null });
  if (req.machine_id !== undefined) {
    const m = await findLiveMachine(ctx, p, req.machine_id, 'disk safes');
    if (m.customer_id !== req.customer_id) throw new NotFound('machine', req.machine_id);
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
    quota_hard: req.quota_hard ?? null, quota_soft: req.quota_soft ?? null, created_at: ctx.now().toISOString(), deleting_at: null, quota_alert: null,
    // A new safe has no snapshot: its index is complete from the start (snapshot-index.ts).
    snapshots_indexed_at: ctx.now().toISOString(), census_at: null, policy_removed_at: null,
  };
  try {
    await ctx.db.insertInto('disk_safes').values(row).execute();
  } catch (e) {
    // Names are unique within a customer (migration 0009): the conflict is with a safe of the same customer.
    if (isUniqueViolation(e)) throw new Conflict(`the customer has a disk safe named "${req.name}" already; choose another name`);
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
  const damaged = await damagedSnapshotsOf(ctx, safes.map((s) => s.id));
  return safes.map((s) => safeBody(s, stored.get(s.location)!, damaged.get(s.id)));
}

async function findSafe(ctx: ServiceContext, p: Principal, id: string): Promise<DiskSafe> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound('disk safe', id);
  return s;
}

export async function getSafe(ctx: ServiceContext, p: Principal, id: string): Promise<SafeBody> {
  const s = await findSafe(ctx, p, id);
  requireRead(p);
  return safeBody(s, await ctx.usage.storedBytes(s), (await damagedSnapshotsOf(ctx, [s.id])).get(s.id));
}

/** Sets or removes the safe's quotas (provider roles only: 403 for the customer's own callers). */
export async function updateSafeQuotas(ctx: ServiceContext, p: Principal, id: string, req: UpdateQuotasRequest): Promise<SafeBody> {
  const s = await findSafe(ctx, p, id);
  requireProvider(p);
  const next = updatedQuotas(s, req);
  await ctx.db.updateTable('disk_safes').set(next).where('id', '=', id).execute();
  await audit(ctx, p, 'safe.quota', id, s.customer_id);
  const updated = { ...s, ...next };
  return safeBody(updated, await ctx.usage.storedBytes(updated), (await damagedSnapshotsOf(ctx, [updated.id])).get(updated.id));
}

/** How many objects a safe's deletion removes at once. */
const REMOVE_CONCURRENCY = 8;

/** Removes the repository's own objects, the config last: a deletion cut short leaves a repository that still says what it is. */
async function removeObjects(backend: Backend): Promise<void> {
  for (const type of OBJECT_TYPES) if (type !== 'lock' && type !== 'config') await removeAll(backend, type);
  await removeAll(backend, 'config');
}

/** Whether `backend` holds a repository (its config). */
async function holdsRepository(backend: Backend): Promise<boolean> {
  return (await backend.stat(handleOf('config', 'config'))) !== undefined;
}

/** Removes every object of `type` from `backend`. */
async function removeAll(backend: Backend, type: ObjectType): Promise<void> {
  const names: string[] = [];
  for await (const o of backend.list(type)) names.push(o.name);
  await forEachLimit(names, REMOVE_CONCURRENCY, (name) => backend.remove({ type, name }));
}

/**
 * Deletes disk safe `id` with every object of it in storage (see the module
 * comment), audited. `req.confirm` must repeat the safe's name.
 */
export async function deleteSafe(ctx: ServiceContext, p: Principal, id: string, req: DeleteSafeRequest | undefined): Promise<void> {
  const s = await findSafe(ctx, p, id);
  if (p.kind === 'token' || (p.role !== 'provider-admin' && p.role !== 'customer-admin')) {
    throw new Forbidden('deleting a disk safe destroys its backups: only a provider admin or one of the customer\'s admins may, logged in');
  }
  if (req?.confirm !== s.name) throw new BadRequest(`deleting disk safe ${s.name} destroys every backup in it: repeat its name to confirm ({"confirm": "${s.name}"})`);
  const backend = workingBackendOf(ctx.safeStorage, s);
  const m = s.machine_id === null ? undefined : await ctx.db.selectFrom('machines').select(['name', 'retired_at']).where('id', '=', s.machine_id).executeTakeFirst();
  const live = m !== undefined && m.retired_at === null;
  if (s.deleting_at === null && live && req?.live_machine !== true) {
    throw new Conflict(`disk safe ${s.name} is the safe of machine ${m.name}, which is not retired: its agent backs up into it, and every backup of it would fail. `
      + `Retire the machine first (holdfast server machine delete ${m.name}), or confirm that its backups stop (holdfast server safe delete ${s.name} --confirm ${s.name} --live-machine; {"live_machine": true})`);
  }
  if (s.deleting_at === null) {
    // A job whose runner went silent does not hold the safe.
    await interruptSilent(ctx, { safeId: s.id });
    const running = await ctx.db.selectFrom('jobs').select('id').where('safe_id', '=', s.id).where('state', '=', 'running').executeTakeFirst();
    if (running) throw new Conflict(`job ${running.id} of disk safe ${s.name} is running: wait for it to end before deleting the safe`);
    await removeLocksOfExpiredTokens(ctx, s.id);
    const held = await holdMaintenanceLock(backend, { identity: ctx.identity, operation: 'delete', exclusive: true }).catch(async (e: unknown) => {
      if (e instanceof LockedError) throw new Conflict(`disk safe ${s.name} is in use: ${e.message}`);
      // A safe never initialised (its enrolment stopped, or it was made by hand) has no place for a lock, and no client's data to protect.
      if (!(await holdsRepository(backend))) return undefined;
      throw e;
    });
    try {
      await ctx.db.updateTable('disk_safes').set({ deleting_at: ctx.now().toISOString() }).where('id', '=', s.id).execute();
      await removeObjects(backend);
    } finally {
      await held?.release();
    }
  } else {
    await removeObjects(backend);
  }
  // Locks left are stale ones (a live one refused the exclusive lock); then whatever an upload under way at the mark wrote.
  for (const type of OBJECT_TYPES) await removeAll(backend, type);
  // Nothing of it stays on disk: its folders go too (a repeated DELETE finds none, and lists nothing).
  await ctx.safeStorage.removePlace(s);
  await ctx.db.transaction().execute(async (trx) => {
    const jobIds = trx.selectFrom('jobs').select('id').where('safe_id', '=', s.id);
    await trx.deleteFrom('job_events').where('job_id', 'in', jobIds).execute();
    await trx.deleteFrom('jobs').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('api_tokens').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('safe_escrows').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('lock_owners').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('snapshot_index').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('damaged_snapshots').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('damaged_packs').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('safe_verifications').where('safe_id', '=', s.id).execute();
    await trx.deleteFrom('disk_safes').where('id', '=', s.id).execute();
    // Its agent is told, when the machine has no safe left (machines.ts requireSomeSafe).
    if (live) await trx.updateTable('machines').set({ safe_deleted_at: ctx.now().toISOString() }).where('id', '=', s.machine_id!).execute();
    await audit({ ...ctx, db: trx }, p, 'safe.delete', s.id, s.customer_id);
  });
  // A waiting poll of its machine's agent answers now: the machine may have no safe left (jobs.ts).
  if (s.machine_id !== null) ctx.jobSignals.notify(s.machine_id);
}

/**
 * Password escrow (docs/format.md §2.8). A customer admin registers the
 * customer's recovery public key; each machine's agent wraps its disk safes'
 * passwords for that key and uploads only the sealed box; a customer admin
 * holding the private key fetches the box and opens it off the server. The
 * server checks, without any key, which public key a box is sealed for, so
 * that it keeps only boxes for the customer's current key, and it tells an
 * agent whose boxes are for an older key (or missing) to wrap again.
 */
import type { AgentEscrowBody, EscrowBody, PutEscrowRequest, RecoveryKeyBody, SetRecoveryKeyRequest } from '../../api/v1.js';
import { EscrowFormatError, parsePublicKey, sealedFor } from '../../core/escrow.js';
import type { DiskSafe, SafeEscrow } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { BadRequest, Conflict, Forbidden, NotFound } from './errors.js';
import { requireCustomer } from './machines.js';
import { requireRead, sees, type Principal } from './principal.js';

/** The customer's recovery public key, or undefined when none is registered. */
async function currentKey(ctx: ServiceContext, customerId: string): Promise<string | undefined> {
  return (await ctx.db.selectFrom('recovery_keys').select('public_key').where('customer_id', '=', customerId).executeTakeFirst())?.public_key;
}

/**
 * Registers (or replaces) customer `customerId`'s recovery public key. Only a
 * customer admin of that customer, logged in, may: the key decides who can
 * read every disk safe of the customer, so neither the provider's staff nor
 * a token sets it.
 */
export async function setRecoveryKey(ctx: ServiceContext, p: Principal, customerId: string, req: SetRecoveryKeyRequest): Promise<RecoveryKeyBody> {
  await requireCustomer(ctx, p, customerId);
  if (p.kind !== 'session' || p.role !== 'customer-admin') {
    throw new Forbidden('the recovery key is the customer\'s own: only a customer admin of the customer, logged in, registers it');
  }
  try {
    parsePublicKey(req.public_key);
  } catch (e) {
    if (e instanceof EscrowFormatError) throw new BadRequest(e.message);
    throw e;
  }
  const row = { customer_id: customerId, public_key: req.public_key, set_by: p.actor, set_at: ctx.now().toISOString() };
  await ctx.db.insertInto('recovery_keys').values(row)
    .onConflict((oc) => oc.column('customer_id').doUpdateSet({ public_key: row.public_key, set_by: row.set_by, set_at: row.set_at }))
    .execute();
  await audit(ctx, p, 'recovery-key.set', customerId, customerId);
  return row;
}

export async function getRecoveryKey(ctx: ServiceContext, p: Principal, customerId: string): Promise<RecoveryKeyBody> {
  await requireCustomer(ctx, p, customerId);
  requireRead(p);
  const row = await ctx.db.selectFrom('recovery_keys').selectAll().where('customer_id', '=', customerId).executeTakeFirst();
  if (!row) throw new NotFound(`a recovery key of customer ${customerId}`);
  return row;
}

async function findSafe(ctx: ServiceContext, p: Principal, id: string): Promise<DiskSafe> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', id).executeTakeFirst();
  if (!s || !sees(p, s)) throw new NotFound('disk safe', id);
  return s;
}

function escrowBody(safe: DiskSafe, e: SafeEscrow, current: string | undefined): EscrowBody {
  return { safe_id: safe.id, safe_name: safe.name, recovery_key: e.recovery_key, wrapped_password: e.wrapped_password, stored_by: e.stored_by, stored_at: e.stored_at, current: e.recovery_key === current };
}

/** The machine of an agent's token (backup right, machine-scoped); Forbidden for any other caller. */
function agentMachine(p: Principal, what: string): string {
  if (p.kind !== 'token' || p.machineId === null || !p.rights.includes('backup')) throw new Forbidden(`${what}: only the agent of the disk safe's machine does this, with its token`);
  return p.machineId;
}

/**
 * Stores the agent's sealed box for disk safe `safeId` (replacing an older
 * one). Refused unless it is sealed for the customer's current recovery key.
 */
export async function putEscrow(ctx: ServiceContext, p: Principal, safeId: string, req: PutEscrowRequest): Promise<EscrowBody> {
  const safe = await findSafe(ctx, p, safeId);
  if (safe.machine_id !== agentMachine(p, 'escrowing a password')) throw new Forbidden('escrowing a password: only the agent of the disk safe\'s machine does this, with its token');
  const box = Buffer.from(req.wrapped_password, 'base64');
  let sealedForKey: string;
  try {
    if (box.toString('base64') !== req.wrapped_password) throw new EscrowFormatError('wrapped_password is not canonical base64');
    sealedForKey = sealedFor(box);
  } catch (e) {
    if (e instanceof EscrowFormatError) throw new BadRequest(e.message);
    throw e;
  }
  const current = await currentKey(ctx, safe.customer_id);
  if (current === undefined) throw new Conflict('the customer has no recovery key: a customer admin registers one first (holdfast server customer recovery-key CUSTOMER --set KEY)');
  if (sealedForKey !== current) throw new Conflict(`the password is wrapped for ${sealedForKey}, but the customer's recovery key is now ${current}: wrap it again`);
  const row: SafeEscrow = { safe_id: safe.id, recovery_key: sealedForKey, wrapped_password: req.wrapped_password, stored_by: p.actor, stored_at: ctx.now().toISOString() };
  await ctx.db.insertInto('safe_escrows').values(row)
    .onConflict((oc) => oc.column('safe_id').doUpdateSet({ recovery_key: row.recovery_key, wrapped_password: row.wrapped_password, stored_by: row.stored_by, stored_at: row.stored_at }))
    .execute();
  await audit(ctx, p, 'safe.escrow', safe.id, safe.customer_id);
  return escrowBody(safe, row, current);
}

/** Disk safe `safeId`'s escrowed password, sealed (the caller opens it with the private key). */
export async function getEscrow(ctx: ServiceContext, p: Principal, safeId: string): Promise<EscrowBody> {
  const safe = await findSafe(ctx, p, safeId);
  requireRead(p);
  const row = await ctx.db.selectFrom('safe_escrows').selectAll().where('safe_id', '=', safe.id).executeTakeFirst();
  if (!row) throw new NotFound(`an escrowed password of disk safe ${safe.name}`);
  await audit(ctx, p, 'safe.escrow.read', safe.id, safe.customer_id);
  return escrowBody(safe, row, await currentKey(ctx, safe.customer_id));
}

/** What the calling agent should escrow: its customer's key and, per disk safe of its machine, the key its box is sealed for. */
export async function agentEscrow(ctx: ServiceContext, p: Principal): Promise<AgentEscrowBody> {
  const machineId = agentMachine(p, 'the escrow state');
  const safes = await ctx.db.selectFrom('disk_safes').leftJoin('safe_escrows', 'safe_escrows.safe_id', 'disk_safes.id')
    .select(['disk_safes.id', 'disk_safes.name', 'safe_escrows.recovery_key']).where('disk_safes.machine_id', '=', machineId).orderBy('disk_safes.name').execute();
  return {
    recovery_key: (await currentKey(ctx, p.customerId!)) ?? null,
    safes: safes.map((s) => ({ id: s.id, name: s.name, escrowed_for: s.recovery_key ?? null })),
  };
}

/**
 * Whether the calling agent's machine has a disk safe whose password is not
 * escrowed for the customer's current recovery key (none registered: no).
 * The job poll tells the agent so (docs/format.md §2.8), which then wraps again.
 */
export async function escrowWanted(ctx: ServiceContext, customerId: string, machineId: string): Promise<boolean> {
  const key = await currentKey(ctx, customerId);
  if (key === undefined) return false;
  const stale = await ctx.db.selectFrom('disk_safes').leftJoin('safe_escrows', 'safe_escrows.safe_id', 'disk_safes.id')
    .select('disk_safes.id').where('disk_safes.machine_id', '=', machineId)
    .where((eb) => eb.or([eb('safe_escrows.recovery_key', 'is', null), eb('safe_escrows.recovery_key', '!=', key)]))
    .limit(1).executeTakeFirst();
  return stale !== undefined;
}

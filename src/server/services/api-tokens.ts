/**
 * API tokens: scoped to a customer (or to one of its machines, as an agent's
 * is, or to one disk safe, as a restore token is), with rights (read,
 * manage, backup, enroll, restore), an optional expiry, revocable. An
 * `enroll` token made for one disk safe (`take_over`) is a takeover token:
 * the customer's authorisation to enrol one machine onto that safe
 * (enrolment.ts), used up by it.
 * The secret is returned once, at creation; the database keeps its SHA-256.
 * A token never grants more than its creator holds: only people create
 * tokens, and a customer viewer creates none.
 */
import type { CreatedTokenBody, CreateTokenRequest, TokenBody } from '../../api/v1.js';
import { TOKEN_RIGHTS, type ApiToken, type TokenRight } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { BadRequest, Forbidden, NotFound } from './errors.js';
import { removeLocksOfTokens } from './lock-owners.js';
import { findLiveMachine, requireCustomer } from './machines.js';
import { isProvider, requireManage, requireRead, sees, type Principal } from './principal.js';
import { mintSecret } from './secrets.js';

export function tokenRights(t: ApiToken): TokenRight[] {
  return t.rights.split(',').filter((r): r is TokenRight => (TOKEN_RIGHTS as readonly string[]).includes(r));
}

export function tokenBody(t: ApiToken): TokenBody {
  return {
    id: t.id, name: t.name, customer_id: t.customer_id, machine_id: t.machine_id, safe_id: t.safe_id, rights: tokenRights(t),
    created_by: t.created_by, created_at: t.created_at, expires_at: t.expires_at, revoked_at: t.revoked_at,
  };
}

const owned = (t: ApiToken) => ({ customer_id: t.customer_id, machine_id: t.machine_id });

export async function createToken(ctx: ServiceContext, p: Principal, req: CreateTokenRequest): Promise<CreatedTokenBody> {
  await requireCustomer(ctx, p, req.customer_id);
  if (req.machine_id !== undefined) {
    const m = await findLiveMachine(ctx, p, req.machine_id, 'tokens');
    if (m.customer_id !== req.customer_id) throw new NotFound('machine', req.machine_id);
  }
  if (p.kind === 'token') throw new Forbidden('tokens are created by people: log in to create a token');
  requireManage(p);
  if (req.expires_at !== undefined && !(Date.parse(req.expires_at) > ctx.now().getTime())) throw new BadRequest(`expires_at ${req.expires_at} is not in the future`);
  if (req.take_over === undefined) return insertToken(ctx, p, req);
  if (req.rights.length !== 1 || req.rights[0] !== 'enroll' || req.machine_id !== undefined) {
    throw new BadRequest('a takeover token (take_over) has the rights ["enroll"] alone and no machine_id');
  }
  const safe = await ctx.db.selectFrom('disk_safes').select(['id', 'customer_id']).where('id', '=', req.take_over).executeTakeFirst();
  if (!safe || safe.customer_id !== req.customer_id) throw new NotFound(`disk safe ${req.take_over} of customer ${req.customer_id}`);
  return insertToken(ctx, p, req, safe.id);
}

/**
 * Mints token `req` (its secret returned this once), audited as `who`'s; the
 * caller checked the rights. `safeId`: the one disk safe a restore token
 * reads, or a takeover token may take over.
 */
export async function insertToken(ctx: ServiceContext, p: Principal, req: CreateTokenRequest, safeId: string | null = null): Promise<CreatedTokenBody> {
  const now = ctx.now();
  const minted = mintSecret('token');
  const row: ApiToken = {
    id: minted.id, name: req.name, secret_hash: minted.secretHash, customer_id: req.customer_id, machine_id: req.machine_id ?? null,
    rights: req.rights.join(','), created_by: p.actor, created_at: now.toISOString(),
    expires_at: req.expires_at === undefined ? null : new Date(req.expires_at).toISOString(), revoked_at: null, safe_id: safeId,
  };
  await ctx.db.insertInto('api_tokens').values(row).execute();
  await audit(ctx, p, 'token.create', row.id, row.customer_id);
  return { token: tokenBody(row), secret: minted.token };
}

export async function listTokens(ctx: ServiceContext, p: Principal): Promise<TokenBody[]> {
  requireRead(p);
  let q = ctx.db.selectFrom('api_tokens').selectAll().orderBy('created_at');
  if (!isProvider(p)) q = q.where('customer_id', '=', p.customerId ?? '');
  if (p.machineId !== null) q = q.where('machine_id', '=', p.machineId);
  return (await q.execute()).map(tokenBody);
}

async function findToken(ctx: ServiceContext, p: Principal, id: string): Promise<ApiToken> {
  const t = await ctx.db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
  if (!t || !sees(p, owned(t))) throw new NotFound('token', id);
  return t;
}

export async function getToken(ctx: ServiceContext, p: Principal, id: string): Promise<TokenBody> {
  const t = await findToken(ctx, p, id);
  requireRead(p);
  return tokenBody(t);
}

/** Revokes token `id` (at once: the next request with it is refused) and removes the lock objects it added; revoking a revoked token changes nothing. */
export async function revokeToken(ctx: ServiceContext, p: Principal, id: string): Promise<TokenBody> {
  const t = await findToken(ctx, p, id);
  requireManage(p);
  if (t.revoked_at !== null) return tokenBody(t);
  const revoked = { ...t, revoked_at: ctx.now().toISOString() };
  await ctx.db.updateTable('api_tokens').set({ revoked_at: revoked.revoked_at }).where('id', '=', id).execute();
  await audit(ctx, p, 'token.revoke', id, t.customer_id);
  // No command of the token holds a lock any more: a lock it left would hold off prune, backups or the safe's deletion.
  await removeLocksOfTokens(ctx, [id]);
  return tokenBody(revoked);
}

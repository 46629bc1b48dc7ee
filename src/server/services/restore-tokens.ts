/**
 * Restore tokens, for bare-metal recovery: a customer admin or the
 * provider's staff makes one for one disk safe; it reads that safe over the
 * repository protocol (src/server/services/safe-access.ts) and nothing else,
 * not even the API, until it expires (4 hours by default, 7 days at most)
 * or is revoked (DELETE /api/v1/tokens/ID). Meant to be typed into a machine
 * booted from rescue media, which holds no other credential.
 */
import { DEFAULT_RESTORE_TOKEN_SECONDS, type CreatedTokenBody, type CreateRestoreTokenRequest } from '../../api/v1.js';
import { insertToken } from './api-tokens.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { Forbidden, NotFound } from './errors.js';
import { requireManage, sees, type Principal } from './principal.js';

export async function createRestoreToken(ctx: ServiceContext, p: Principal, safeId: string, req: CreateRestoreTokenRequest): Promise<CreatedTokenBody> {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', safeId).executeTakeFirst();
  if (!safe || !sees(p, safe)) throw new NotFound('disk safe', safeId);
  if (p.kind === 'token') throw new Forbidden('tokens are created by people: log in to create a restore token');
  requireManage(p);
  const expires = new Date(ctx.now().getTime() + (req.expires_in ?? DEFAULT_RESTORE_TOKEN_SECONDS) * 1000).toISOString();
  const created = await insertToken(ctx, p, {
    customer_id: safe.customer_id, ...(safe.machine_id === null ? {} : { machine_id: safe.machine_id }),
    name: req.name ?? `restore of ${safe.name}`, rights: ['restore'], expires_at: expires,
  }, safe.id);
  await audit(ctx, p, 'safe.restore-token', safe.id, safe.customer_id);
  return created;
}

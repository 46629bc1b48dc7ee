/**
 * The audit log: every change and every login, with who, what, which record,
 * when and from where. Entries are only added; reading is scoped like every
 * other record (a customer's callers see the entries about their customer).
 */
import type { AuditEntryBody, AuditQuery } from '../../api/v1.js';
import type { ServiceContext } from './context.js';
import { isProvider, requireRead, type Principal } from './principal.js';

/** Who did it, when no principal exists yet (a failed login) or the server acted itself. */
export interface Actor {
  readonly actor: string;
  readonly address: string;
}

export async function audit(ctx: ServiceContext, who: Principal | Actor, action: string, target: string, customerId: string | null): Promise<void> {
  await ctx.db.insertInto('audit_log').values({
    at: ctx.now().toISOString(), actor: who.actor, customer_id: customerId, action, target, address: who.address,
  }).execute();
}

/** Entries after `after` (a seq), oldest first, at most `limit` (default 100). */
export async function listAudit(ctx: ServiceContext, p: Principal, q: AuditQuery): Promise<AuditEntryBody[]> {
  requireRead(p);
  let query = ctx.db.selectFrom('audit_log').selectAll().where('seq', '>', q.after ?? 0).orderBy('seq').limit(q.limit ?? 100);
  if (!isProvider(p)) query = query.where('customer_id', '=', p.customerId ?? '');
  // A machine-scoped token reads its machine's records only; the log is the customer's, so it reads none of it.
  if (p.machineId !== null) return [];
  return query.execute();
}

/**
 * Logging in, sessions, and turning a bearer token into a `Principal`.
 *
 *   login(name, password, address)
 *     refused at once (429) while the account or the address is over its
 *     failure limit (login-limiter.ts); else the password is checked (an
 *     unknown name against a dummy hash, so both take as long); a failure
 *     is counted and logged; a success makes a session token
 *   authenticate(bearer, address)
 *     hfs_… → a live session of an existing user; hft_… → a token neither
 *     revoked nor expired; the secret's hash is compared in constant time
 *     (hfm_…, the metrics token, is services/metrics.ts's own)
 */
import { randomUUID } from 'node:crypto';
import type { ChangePasswordRequest, LoginRequest, MeBody, SessionBody } from '../../api/v1.js';
import type { Role, User } from '../db/schema.js';
import { tokenBody, tokenRights } from './api-tokens.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { removeLocksOfTokens } from './lock-owners.js';
import { BadRequest, Forbidden, RateLimited, Unauthenticated } from './errors.js';
import { DUMMY_HASH, hashPassword, MIN_PASSWORD_LENGTH, oneTimePassword, verifyPassword } from './passwords.js';
import type { Principal } from './principal.js';
import { mintSecret, parseSecret, secretMatches } from './secrets.js';
import { userBody } from './users.js';

/** How long a session lasts. */
export const SESSION_HOURS = 12;

const userPrincipal = (u: User, sessionId: string, address: string): Principal => ({
  kind: 'session', id: sessionId, actor: `user:${u.name}`, user: u, role: u.role, customerId: u.customer_id, machineId: null,
  rights: ['read', 'manage'], address,
});

export async function login(ctx: ServiceContext, req: LoginRequest, address: string): Promise<SessionBody> {
  const wait = ctx.limiter.retryAfter(req.name, address);
  if (wait > 0) throw new RateLimited(wait, `too many failed logins for this account or from this address; try again in ${wait} s`);
  const u = await ctx.db.selectFrom('users').selectAll().where('name', '=', req.name).executeTakeFirst();
  const ok = await verifyPassword(req.password, u?.password_hash ?? DUMMY_HASH);
  if (!u || !ok) {
    ctx.limiter.fail(req.name, address);
    await audit(ctx, { actor: `user:${req.name}`, address }, 'login.failure', req.name, u?.customer_id ?? null);
    throw new Unauthenticated('wrong user name or password');
  }
  ctx.limiter.succeed(req.name);
  const now = ctx.now();
  const minted = mintSecret('session');
  const expires = new Date(now.getTime() + SESSION_HOURS * 3600_000).toISOString();
  await ctx.db.insertInto('sessions').values({ id: minted.id, secret_hash: minted.secretHash, user_id: u.id, created_at: now.toISOString(), expires_at: expires, address }).execute();
  // Expired sessions are refused anyway; each login clears them, so that the table holds the live ones only.
  await ctx.db.deleteFrom('sessions').where('expires_at', '<=', now.toISOString()).execute();
  await audit(ctx, userPrincipal(u, minted.id, address), 'login', u.id, u.customer_id);
  return { token: minted.token, expires_at: expires, user: userBody(u) };
}

/** The caller of a request with `Authorization: Bearer TOKEN`; Unauthenticated when the token is not a live one. */
export async function authenticate(ctx: ServiceContext, bearer: string | undefined, address: string): Promise<Principal> {
  const parsed = bearer === undefined ? undefined : parseSecret(bearer);
  if (!parsed) throw new Unauthenticated();
  if (parsed.kind === 'metrics') throw new Unauthenticated('the metrics token reads /metrics only');
  const now = ctx.now().toISOString();
  if (parsed.kind === 'session') {
    const row = await ctx.db.selectFrom('sessions').innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['sessions.secret_hash as session_hash', 'sessions.expires_at as session_expires'])
      .selectAll('users').where('sessions.id', '=', parsed.id).executeTakeFirst();
    if (!row || !secretMatches(parsed.secret, row.session_hash) || row.session_expires <= now) throw new Unauthenticated('the session is unknown or has expired: log in again');
    const { session_hash: _h, session_expires: _e, ...u } = row;
    return userPrincipal(u, parsed.id, address);
  }
  const t = await ctx.db.selectFrom('api_tokens').selectAll().where('id', '=', parsed.id).executeTakeFirst();
  if (!t || !secretMatches(parsed.secret, t.secret_hash)) throw new Unauthenticated('the API token is unknown');
  if (t.revoked_at !== null) throw new Unauthenticated(`API token ${t.id} was revoked`);
  if (t.expires_at !== null && t.expires_at <= now) {
    // Its locks are removed as a revoked token's are (a storage that fails now leaves them to go stale; the caller hears of the expiry).
    await removeLocksOfTokens(ctx, [t.id]).catch(() => undefined);
    throw new Unauthenticated(`API token ${t.id} expired at ${t.expires_at}`);
  }
  return {
    kind: 'token', id: t.id, actor: `token:${t.id}`, token: t, customerId: t.customer_id, machineId: t.machine_id, rights: tokenRights(t), address,
  };
}

/** Refuses a session whose password is still the server-made one, except on the routes that change it. */
export function requirePasswordChanged(p: Principal): void {
  if (p.user?.must_change_password === 1) throw new Forbidden('the one-time password must be changed first: log in with holdfast server login, which asks for a new one', 'PASSWORD_CHANGE_REQUIRED');
}

export async function logout(ctx: ServiceContext, p: Principal): Promise<void> {
  if (p.kind !== 'session') throw new BadRequest('logout ends a session; an API token is revoked instead (holdfast server token revoke ID)');
  await ctx.db.deleteFrom('sessions').where('id', '=', p.id).execute();
  await audit(ctx, p, 'logout', p.user!.id, p.customerId);
}

export function me(p: Principal): MeBody {
  return p.kind === 'session' ? { kind: 'session', user: userBody(p.user!) } : { kind: 'token', token: tokenBody(p.token!) };
}

/** Changes the caller's password; the caller's other sessions end. */
export async function changePassword(ctx: ServiceContext, p: Principal, req: ChangePasswordRequest): Promise<void> {
  if (p.kind !== 'session') throw new BadRequest('only a person has a password: log in to change it');
  const u = p.user!;
  const wait = ctx.limiter.retryAfter(u.name, p.address);
  if (wait > 0) throw new RateLimited(wait, `too many failed attempts; try again in ${wait} s`);
  if (!(await verifyPassword(req.current_password, u.password_hash))) {
    ctx.limiter.fail(u.name, p.address);
    throw new Forbidden('the current password is wrong', 'WRONG_PASSWORD');
  }
  if (req.new_password.length < MIN_PASSWORD_LENGTH) throw new BadRequest(`the new password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (req.new_password === req.current_password) throw new BadRequest('the new password is the current one');
  await ctx.db.updateTable('users').set({ password_hash: await hashPassword(req.new_password), must_change_password: 0 }).where('id', '=', u.id).execute();
  await ctx.db.deleteFrom('sessions').where('user_id', '=', u.id).where('id', '!=', p.id).execute();
  await audit(ctx, p, 'user.password', u.id, u.customer_id);
}

/**
 * On a server with no users yet, makes the first provider admin (`admin`)
 * with a one-time password, returned for printing once; undefined when users
 * exist. The password must be changed at the first login.
 */
export async function ensureFirstAdmin(ctx: ServiceContext): Promise<{ name: string; password: string } | undefined> {
  const any = await ctx.db.selectFrom('users').select('id').limit(1).executeTakeFirst();
  if (any) return undefined;
  const password = oneTimePassword();
  const role: Role = 'provider-admin';
  const u = { id: randomUUID(), name: 'admin', role, customer_id: null, password_hash: await hashPassword(password), must_change_password: 1, created_at: ctx.now().toISOString() };
  await ctx.db.insertInto('users').values(u).execute();
  await audit(ctx, { actor: 'server', address: '' }, 'user.create', u.id, null);
  return { name: u.name, password };
}

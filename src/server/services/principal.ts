/**
 * Who is calling, and the scope rules every service applies: provider roles
 * see every customer; customer roles and API tokens see their customer only
 * (a machine-scoped token only its machine); anything outside the caller's
 * scope is `NotFound`, exactly like what does not exist, so that a caller
 * learns nothing of another customer, not even that a record exists.
 */
import type { ApiToken, Role, TokenRight, User } from '../db/schema.js';
import { Forbidden, NotFound } from './errors.js';

export interface Principal {
  /** How the caller authenticated. */
  readonly kind: 'session' | 'token';
  /** The session's or token's id. */
  readonly id: string;
  /** How the audit log names the caller: `user:NAME` or `token:ID`. */
  readonly actor: string;
  /** The person, for sessions. */
  readonly user?: User;
  /** The token, for API tokens. */
  readonly token?: ApiToken;
  /** The person's role; undefined for tokens. */
  readonly role?: Role;
  /** The customer the caller belongs to; null for provider roles (every customer). */
  readonly customerId: string | null;
  /** The one machine a machine-scoped token may see. */
  readonly machineId: string | null;
  /** The token's rights; every right for people (their role limits them instead). */
  readonly rights: readonly TokenRight[];
  /** The client's address, for the audit log. */
  readonly address: string;
}

/** What a record belongs to, for scope checks. */
export interface Owned {
  readonly customer_id: string;
  readonly machine_id?: string | null;
}

export const isProvider = (p: Principal): boolean => p.role === 'provider-admin' || p.role === 'provider-operator';

/** Whether the caller may know of `record` at all. */
export function sees(p: Principal, record: Owned): boolean {
  if (p.customerId === null) return isProvider(p);
  if (p.customerId !== record.customer_id) return false;
  if (p.machineId !== null) return 'machine_id' in record ? record.machine_id === p.machineId : false;
  return true;
}

/** `record` if the caller may know of it; otherwise NotFound naming `what`. */
export function visible<T extends Owned>(p: Principal, record: T | undefined, what: string): T {
  if (!record || !sees(p, record)) throw new NotFound(what);
  return record;
}

/** Whether the caller may read records through the API (a backup-only token may not). */
export function mayRead(p: Principal): boolean {
  if (p.kind === 'session') return true;
  return p.rights.includes('read') || p.rights.includes('manage');
}

export function requireRead(p: Principal): void {
  if (!mayRead(p)) throw new Forbidden(`this token may not read through the API: it needs the read or manage right, and its rights are ${p.rights.join(', ') || 'none'}`);
}

/** Whether the caller may change records of a customer it sees: provider admins and operators, customer admins, `manage` tokens. */
export function mayManage(p: Principal): boolean {
  return p.kind === 'token' ? p.rights.includes('manage') : p.role !== 'customer-viewer';
}

/** The caller may change records of a customer it sees (mayManage), else Forbidden. */
export function requireManage(p: Principal): void {
  if (!mayManage(p)) throw new Forbidden(p.kind === 'token' ? 'this token may not make changes (it needs the manage right)' : `a ${p.role} may not make changes`);
}

/** Only a provider role may do this (customers, quotas, …): 403, as the route is not about one customer's records. */
export function requireProvider(p: Principal, adminOnly = false): void {
  if (adminOnly ? p.role !== 'provider-admin' : !isProvider(p)) {
    throw new Forbidden(adminOnly ? 'only a provider admin may do this' : 'only the provider\'s admins and operators may do this');
  }
}

/**
 * The lock objects tokens add to disk safes through the repository protocol:
 * which ones the server lets in, which token added which (`lock_owners`,
 * migration 0006), and their removal with the token.
 *
 *   every token's lock     the fields holdfast's own lock writer produces
 *                          (LOCK_FIELDS), each string at most
 *                          MAX_LOCK_FIELD_CHARS; its heartbeat within the
 *                          snapshot-time policy's skew of the server's clock,
 *                          its creation no later than that, and no earlier
 *                          unless it is the heartbeat of a lock the token
 *                          holds there (same id and creation: so a lock's
 *                          creation is within the skew of when the server
 *                          first received it, and cannot hold prune's sweep
 *                          back further); at most
 *                          MAX_LOCKS_PER_TOKEN (readers) or
 *                          MAX_LOCKS_PER_APPEND_TOKEN of the token's locks in
 *                          the safe at once (its stale ones are removed
 *                          first); not counted against the quotas
 *   a reader's lock        also shared: never exclusive
 *   revoking a token,      removes the lock objects it added
 *   retiring a machine,
 *   a token's expiry       (when the expired token is presented, and
 *                          before the server's own work on a safe and at
 *                          its start: nothing runs on a timer)
 *
 * A lock's times come from its client's wall clock, and the clients that
 * judge it stale go by theirs: so does the server here (`Date.now`), not its
 * service clock `ctx.now` (a test's may be months off).
 *
 * A lock is bookkeeping: a full quota must not keep a client from the lock
 * it needs to run prune or check, so the bounds above (not the quotas) keep
 * a token from filling a safe with locks or slowing every lock listing.
 * docs/format.md §2.5 ("Rights") is the specification.
 */
import { NotFoundError } from '../../storage/backend.js';
import { decodeLock, LOCK_FIELDS, staleReason } from '../../repo/lock.js';
import type { DiskSafe } from '../db/schema.js';
import type { LockOwners, SafeAccess, UploadTicket } from '../http/repo-routes.js';
import type { ServiceContext } from './context.js';
import { DEFAULT_MAX_SNAPSHOT_SKEW_MS } from './snapshot-time-policy.js';
import { UploadRefusedError } from './upload-refused-error.js';

/** How many of a reader's (`read` rights) lock objects a safe holds at once: a check holds one, two while it refreshes it. */
export const MAX_LOCKS_PER_TOKEN = 4;
/** The same for a token that appends (an agent, or a few backups run by hand with its token). */
export const MAX_LOCKS_PER_APPEND_TOKEN = 16;
/** The longest string field of an uploaded lock (a Linux hostname is at most 64 characters). */
export const MAX_LOCK_FIELD_CHARS = 256;

/** The lock objects `principal` added to the safe, in the database (so that they are its own to remove after a restart too). */
export function lockOwnersOf(ctx: ServiceContext, safeId: string, principal: string): LockOwners {
  return {
    async add(name) {
      await ctx.db.insertInto('lock_owners').values({ safe_id: safeId, name, principal, added_at: ctx.now().toISOString() })
        .onConflict((oc) => oc.columns(['safe_id', 'name']).doNothing()).execute();
    },
    async owns(name) {
      const row = await ctx.db.selectFrom('lock_owners').select('principal').where('safe_id', '=', safeId).where('name', '=', name).executeTakeFirst();
      return row?.principal === principal;
    },
    async forget(name) {
      await ctx.db.deleteFrom('lock_owners').where('safe_id', '=', safeId).where('name', '=', name).execute();
    },
  };
}

/**
 * Refuses (409 `TOO_MANY_LOCKS`; not 429, which a client would retry) a
 * lock upload of `principal` to `safe` when it holds its limit of lock
 * objects there already; before that, its lock objects that are gone or
 * stale (no heartbeat for STALE_AFTER_MS: they block no one) are removed and
 * forgotten. The ticket holds the token's turn until the upload ends (the
 * protocol records the lock's owner before that).
 */
export async function admitLock(ctx: ServiceContext, safe: DiskSafe, principal: string, rights: SafeAccess['rights']): Promise<UploadTicket> {
  // One lock upload of a token to a safe at a time, counted once the one before it is recorded (or refused):
  // locks sent at once cannot all pass. A token's locks are few and small; they wait only for each other.
  let queue = lockQueues.get(ctx);
  if (queue === undefined) lockQueues.set(ctx, queue = new Map());
  const key = `${safe.id} ${principal}`;
  const before = queue.get(key) ?? Promise.resolve();
  let done!: () => void;
  const turn = before.then(() => new Promise<void>((resolve) => { done = resolve; }));
  queue.set(key, turn);
  const end = (): void => {
    done();
    if (queue.get(key) === turn) queue.delete(key);
  };
  await before;
  try {
    await refuseOverLimit(ctx, safe, principal, rights === 'read' ? MAX_LOCKS_PER_TOKEN : MAX_LOCKS_PER_APPEND_TOKEN);
  } catch (e) {
    end();
    throw e;
  }
  return { end: async () => end() };
}

/** The lock uploads of each token to each safe (`SAFE_ID PRINCIPAL`): the last one's turn, per server. */
const lockQueues = new WeakMap<ServiceContext, Map<string, Promise<void>>>();

/** See `admitLock`. */
async function refuseOverLimit(ctx: ServiceContext, safe: DiskSafe, principal: string, limit: number): Promise<void> {
  const names = async (): Promise<string[]> => (await ctx.db.selectFrom('lock_owners').select('name')
    .where('safe_id', '=', safe.id).where('principal', '=', principal).execute()).map((r) => r.name);
  const held = await names();
  if (held.length < limit) return;
  const backend = ctx.safeStorage.backendOf(safe);
  const owners = lockOwnersOf(ctx, safe.id, principal);
  const now = Date.now();
  for (const name of held) {
    let bytes: Buffer;
    try {
      bytes = await backend.load({ type: 'lock', name });
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      await owners.forget(name);
      continue;
    }
    // The server accepted it as a lock; one it cannot read now is not live either.
    let stale = true;
    try {
      stale = staleReason(decodeLock(bytes, name), undefined, now) !== undefined;
    } catch {
      // unreadable: removed below
    }
    if (!stale) continue;
    await removeLock(ctx, safe, name);
  }
  const live = (await names()).length;
  if (live >= limit) {
    throw new UploadRefusedError(409, 'TOO_MANY_LOCKS', `the token holds ${live} lock objects in disk safe ${safe.name} already, `
      + `at most ${limit} at once: let its running commands end (or remove its own locks with "holdfast unlock") before taking another`);
  }
}

/**
 * Refuses a lock object `bytes` (already parsed as a lock, `BAD_LOCK`)
 * that a token with `rights` may not add: fields holdfast does not write or
 * longer than MAX_LOCK_FIELD_CHARS (400 `BAD_LOCK`), a heartbeat beyond the
 * clock skew allowed or a creation after it (403 `LOCK_TIME`), an exclusive
 * lock from a reader (403 `READ_ONLY`).
 */
export function refuseLock(bytes: Buffer, name: string, rights: SafeAccess['rights']): void {
  const now = Date.now();
  const lock = decodeLock(bytes, name);
  const fields = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((f) => !LOCK_FIELDS.includes(f));
  if (unknown.length > 0) {
    throw new UploadRefusedError(400, 'BAD_LOCK', `lock/${name} holds fields a holdfast lock does not (${unknown.slice(0, 3).map((f) => JSON.stringify(f.slice(0, 32))).join(', ')}`
      + `${unknown.length > 3 ? ', …' : ''}); nothing was stored`);
  }
  const long = Object.keys(fields).find((f) => typeof fields[f] === 'string' && (fields[f] as string).length > MAX_LOCK_FIELD_CHARS);
  if (long !== undefined) throw new UploadRefusedError(400, 'BAD_LOCK', `lock/${name}: its ${long} is longer than ${MAX_LOCK_FIELD_CHARS} characters; nothing was stored`);
  const skew = DEFAULT_MAX_SNAPSHOT_SKEW_MS;
  const heartbeat = Date.parse(lock.heartbeat);
  const created = Date.parse(lock.created);
  if (!(Math.abs(heartbeat - now) <= skew) || !(created <= now + skew)) {
    throw new UploadRefusedError(403, 'LOCK_TIME', `lock/${name}: its heartbeat ${lock.heartbeat.slice(0, 40)} (taken ${lock.created.slice(0, 40)}) is not within `
      + `${Math.round(skew / 1000)} s of the server's clock (${new Date(now).toISOString()}); check the client's clock`);
  }
  if (rights === 'read' && lock.exclusive) {
    throw new UploadRefusedError(403, 'READ_ONLY', `lock/${name} is exclusive: a token that may only read takes shared locks (check, mount), never an exclusive one`);
  }
}

/**
 * Refuses (403 `LOCK_TIME`) lock object `bytes` of `principal` whose
 * creation lies more than the skew before the server's clock, unless the
 * principal holds in the safe a lock object the server accepted with the
 * same lock id and creation (the one this heartbeat replaces): a lock taken
 * "in the past" would make prune's sweep wait for markers older than it
 * for as long as its heartbeat goes on.
 */
export async function refuseOldCreation(ctx: ServiceContext, safe: DiskSafe, principal: string, bytes: Buffer, name: string): Promise<void> {
  const lock = decodeLock(bytes, name);
  const now = Date.now();
  if (Date.parse(lock.created) >= now - DEFAULT_MAX_SNAPSHOT_SKEW_MS) return;
  const backend = ctx.safeStorage.backendOf(safe);
  const held = await ctx.db.selectFrom('lock_owners').select('name').where('safe_id', '=', safe.id).where('principal', '=', principal).execute();
  for (const { name: other } of held) {
    try {
      const before = decodeLock(await backend.load({ type: 'lock', name: other }), other);
      if (before.id === lock.id && before.created === lock.created) return;
    } catch {
      // gone or unreadable: not the lock this one continues
    }
  }
  throw new UploadRefusedError(403, 'LOCK_TIME', `lock/${name}: it was taken ${lock.created.slice(0, 40)}, more than ${Math.round(DEFAULT_MAX_SNAPSHOT_SKEW_MS / 1000)} s before the server's clock `
    + `(${new Date(now).toISOString()}), and is no heartbeat of a lock the token holds in the safe: a new lock is taken now; check the client's clock`);
}

/**
 * Removes the lock objects that tokens past their expiry added (those in
 * safe `safeId`, or in every safe): an expired token runs no command any
 * more, as a revoked one (removeLocksOfTokens). Called when an expired
 * token is presented, before the server's own work on a safe, and at its
 * start: there is no timer.
 */
export async function removeLocksOfExpiredTokens(ctx: ServiceContext, safeId?: string): Promise<void> {
  let q = ctx.db.selectFrom('lock_owners').select('principal').distinct().where('principal', 'like', 'token:%');
  if (safeId !== undefined) q = q.where('safe_id', '=', safeId);
  const ids = (await q.execute()).map((r) => r.principal.slice('token:'.length));
  if (ids.length === 0) return;
  const expired = await ctx.db.selectFrom('api_tokens').select('id').where('id', 'in', ids).where('expires_at', '<=', ctx.now().toISOString()).execute();
  await removeLocksOfTokens(ctx, expired.map((t) => t.id));
}

/**
 * Removes from storage the lock objects the tokens `tokenIds` added, in
 * every safe, and forgets them: the tokens were revoked (or their machine
 * retired) or expired, so no command of theirs holds a lock any more.
 */
export async function removeLocksOfTokens(ctx: ServiceContext, tokenIds: readonly string[]): Promise<void> {
  if (tokenIds.length === 0) return;
  const rows = await ctx.db.selectFrom('lock_owners').innerJoin('disk_safes', 'disk_safes.id', 'lock_owners.safe_id')
    .selectAll('disk_safes').select('lock_owners.name as lock_name')
    .where('lock_owners.principal', 'in', tokenIds.map((id) => `token:${id}`)).execute();
  for (const { lock_name: name, ...safe } of rows) await removeLock(ctx, safe, name);
}

/** Removes lock object `name` of `safe` (gone already: fine) and forgets who added it. */
async function removeLock(ctx: ServiceContext, safe: DiskSafe, name: string): Promise<void> {
  try {
    await ctx.safeStorage.backendOf(safe).remove({ type: 'lock', name });
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  await ctx.db.deleteFrom('lock_owners').where('safe_id', '=', safe.id).where('name', '=', name).execute();
}

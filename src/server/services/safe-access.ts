/**
 * Which disk safe a repository request reaches, and with which rights: the
 * `SafeResolver` of the repository protocol (src/server/http/repo-routes.ts)
 * on the control plane. A person's live session reads (the web interface's
 * snapshot browser, `sessionAccess` below); otherwise only live API tokens
 * reach safes, and only the safes
 * of their customer (a machine-scoped token: of its machine), by the safe's
 * name within that customer (two customers may each have a "web1"); anything else
 * is undefined, which the protocol answers 404 whether the safe exists or
 * not. A token with the `backup` right adds and reads (`append`: never
 * deletes nor overwrites); `read` or `manage` alone read; a `restore` token
 * reads the one safe it was made for; a plain `enroll` token reads no safe.
 * A takeover token (an `enroll` token made for one disk safe, api-tokens.ts)
 * reads that safe while it has no machine, and only its config and key
 * files: the agent that takes it over checks the password by opening the
 * safe before it enrols (enrolment.ts); it adds nothing. A reader adds lock
 * objects too (a check holds one, shared), and nothing else. No token deletes:
 * retention and pruning are the server's (issue 16). A safe whose
 * repository was never initialised (no config) takes only what `init`
 * writes, its key file and config (409 `NOT_INITIALISED` for the rest,
 * before the body is read). A safe holds at most MAX_KEY_FILES key files
 * (409 `TOO_MANY_KEYS`, before the body is read). Every upload but a
 * lock passes the quotas before its body is read (quota.ts), every lock the
 * bounds of lock-owners.ts, every snapshot upload the
 * backdating rule (snapshot-time-policy.ts, against the safe's snapshot
 * index), and the safe's storage counts
 * what is stored but locks (usage.ts). Which token added which lock object
 * is kept in the database (`lock_owners`), for its token alone to remove,
 * and for the server when the token is revoked.
 */
import type { Backend, Handle } from '../../storage/backend.js';
import type { DiskSafe, TokenRight } from '../db/schema.js';
import type { SafeAccess, SafeResolver } from '../http/repo-routes.js';
import { audit } from './audit.js';
import { authenticate } from './auth.js';
import type { ServiceContext } from './context.js';
import { ApiError, NoDiskSafe } from './errors.js';
import { requireSomeSafe } from './machines.js';
import { admitLock, lockOwnersOf, refuseLock, refuseOldCreation } from './lock-owners.js';
import { isProvider, sees, type Principal } from './principal.js';
import { admitUpload } from './quota.js';
import { newestOfGroup } from './snapshot-index.js';
import { refuseBackdatedSnapshot } from './snapshot-time-policy.js';
import { UploadRefusedError } from './upload-refused-error.js';

/**
 * What a token's rights allow on a safe it sees: `backup` appends, `read` or
 * `manage` read, `restore` reads when the token is bound to one safe;
 * anything else (an `enroll` token, what installers get) reaches no safe
 * by its rights (the resolver lets a takeover token read the config and
 * keys of its safe while it has no machine).
 * Listed rights, not "anything but enroll", so that a right added later
 * reaches no safe until it is given one here.
 */
export function safeRights(rights: readonly TokenRight[], boundToSafe: boolean): SafeAccess['rights'] | undefined {
  if (rights.includes('backup')) return 'append';
  if (rights.includes('read') || rights.includes('manage') || (boundToSafe && rights.includes('restore'))) return 'read';
  return undefined;
}

/**
 * The safes seen holding a config, per server: a config is never removed
 * but with its safe, whose id never comes back, so each safe's is looked
 * for once, not at every upload (a HEAD request each, on S3).
 */
const initialised = new WeakMap<ServiceContext, Set<string>>();

/**
 * Refuses (409 `NOT_INITIALISED`) an upload of `h` to `safe` while its
 * repository holds no config: only `init`'s key file and config come
 * before it (an object stored now would belong to no repository, and a
 * local safe has not even its folders: it answered 500).
 */
async function refuseUninitialised(ctx: ServiceContext, safe: DiskSafe, backend: Backend, h: Handle): Promise<void> {
  if (h.type === 'config' || h.type === 'key') return;
  let seen = initialised.get(ctx);
  if (seen === undefined) initialised.set(ctx, seen = new Set());
  if (seen.has(safe.id)) return;
  if ((await backend.stat({ type: 'config', name: 'config' })) === undefined) {
    throw new UploadRefusedError(409, 'NOT_INITIALISED', `disk safe ${safe.name} holds no repository yet, so it takes no ${h.type} object: initialise it first `
      + '(holdfast agent enroll initialises the safe it makes; holdfast init with a backup token of the safe\'s machine does it by hand); nothing was stored');
  }
  seen.add(safe.id);
}

/**
 * The most key files a client may add a safe up to. Opening a safe tries its
 * key files with the password, an scrypt derivation each, and no client of
 * this server can remove one: a security review added 100 with an agent's
 * token and `holdfast snapshots` on a fresh cache went from 1.4 s to 67 s.
 * 32 is far more passwords than a machine's safe has (the agent's, a
 * recovery one, a few people's) and bounds opening at 32 derivations.
 */
export const MAX_KEY_FILES = 32;

/** Refuses (409 `TOO_MANY_KEYS`; not 429, which a client would retry) a key file upload to `safe` when it holds MAX_KEY_FILES already. */
async function refuseTooManyKeys(safe: DiskSafe, backend: Backend, signal: AbortSignal): Promise<void> {
  let held = 0;
  for await (const _key of backend.list('key', { signal })) held++;
  if (held >= MAX_KEY_FILES) {
    throw new UploadRefusedError(409, 'TOO_MANY_KEYS', `disk safe ${safe.name} holds ${held} key files already, at most ${MAX_KEY_FILES}: `
      + 'each is tried with the password whenever the safe is opened, and no token removes one; nothing was stored');
  }
}

/** The sessions that have read each safe, per server: a session's reading is audited once per safe, not at every object. */
const browsed = new WeakMap<ServiceContext, Set<string>>();

/** What a person's session reads: what the browser needs to open a safe with its password, and nothing of the bookkeeping. */
const SESSION_READABLE = ['config', 'key', 'index', 'snapshot', 'data'] as const;

/**
 * A person's session reading a safe (the web interface's snapshot browser,
 * which opens it with its password in the browser): `read` of the safe
 * NAME of the person's customer (by its name, or by its id as the API shows
 * it), or of any customer's safe by its id for provider staff, who run the
 * storage that holds its sealed bytes anyway. It adds nothing, not even a
 * lock (403 `READ_ONLY`), removes nothing, and reads no lock or deletion
 * marker (403 `NOT_READABLE`). A session whose one-time password is still
 * to be changed reads nothing. The first read of each safe by a session is
 * audited (`safe.browse`).
 */
async function sessionAccess(ctx: ServiceContext, p: Principal, name: string): Promise<SafeAccess | undefined> {
  if (p.user?.must_change_password === 1) return undefined;
  let q = ctx.db.selectFrom('disk_safes').selectAll().where('deleting_at', 'is', null);
  q = isProvider(p)
    ? q.where('id', '=', name)
    : q.where('customer_id', '=', p.customerId ?? '').where((w) => w.or([w('id', '=', name), w('name', '=', name)]));
  // A customer's safe named like another of its safes' id: the id wins (ids are the API's, names the customer's).
  const rows = await q.execute();
  const safe = rows.find((r) => r.id === name) ?? rows[0];
  if (safe === undefined || !sees(p, safe)) return undefined;
  let seen = browsed.get(ctx);
  if (seen === undefined) browsed.set(ctx, seen = new Set());
  if (!seen.has(`${p.id} ${safe.id}`)) {
    seen.add(`${p.id} ${safe.id}`);
    await audit(ctx, p, 'safe.browse', safe.id, safe.customer_id);
  }
  return {
    backend: ctx.safeStorage.backendOf(safe),
    rights: 'read',
    principal: `session:${p.id}`,
    customer: safe.customer_id,
    readable: SESSION_READABLE,
    beforeSave: () => {
      throw new UploadRefusedError(403, 'READ_ONLY', 'a session reads a disk safe (the web interface\'s browser) and adds nothing to it, not even a lock');
    },
  };
}

/** The resolver of a server's safes, each in its storage (`ctx.safeStorage`). */
export function safeResolver(ctx: ServiceContext): SafeResolver {
  return {
    async resolveSafe(token: string, name: string, signal: AbortSignal): Promise<SafeAccess | undefined> {
      let p;
      try {
        p = await authenticate(ctx, token, '');
      } catch (e) {
        if (e instanceof ApiError) return undefined;
        throw e;
      }
      if (p.kind === 'session') return sessionAccess(ctx, p, name);
      signal.throwIfAborted();
      let rights = safeRights(p.rights, p.token!.safe_id !== null);
      // A takeover token: enroll, made for one safe (the check below keeps it to that one).
      const enrolling = rights === undefined && p.rights.includes('enroll') && p.machineId === null && p.token!.safe_id !== null;
      if (rights === undefined && !enrolling) return undefined;
      // Safe names are unique within a customer (migration 0009), and every token is its customer's: NAME is looked up there.
      const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('customer_id', '=', p.customerId ?? '').where('name', '=', name).executeTakeFirst();
      // A safe being deleted is gone for clients: an upload now would outlive the deletion.
      if (!safe || safe.deleting_at !== null || !sees(p, safe) || (p.token!.safe_id !== null && p.token!.safe_id !== safe.id)) {
        // An agent whose machine's safe was deleted learns that, not "no such safe" (its own machine is no secret to it).
        if (p.machineId !== null) {
          await requireSomeSafe(ctx, p.machineId).catch((e: unknown) => {
            throw e instanceof NoDiskSafe ? new UploadRefusedError(404, e.code, e.message) : e;
          });
        }
        return undefined;
      }
      if (rights === undefined) {
        if (safe.machine_id !== null) return undefined;
        rights = 'read';
      }
      const backend = ctx.safeStorage.backendOf(safe);
      const principal = `token:${p.id}`;
      const granted = rights;
      // An upload that began before the deletion marked the safe is refused before its object is written.
      const refuseIfDeleting = async (): Promise<void> => {
        const now = await ctx.db.selectFrom('disk_safes').select('deleting_at').where('id', '=', safe.id).executeTakeFirst();
        if (now === undefined || now.deleting_at !== null) throw new UploadRefusedError(404, 'NO_SUCH_SAFE', `disk safe ${JSON.stringify(name)} is being deleted`);
      };
      return {
        backend,
        rights: granted,
        principal,
        customer: safe.customer_id,
        // What opening the safe with its password reads; its snapshots, index and data stay unread until the takeover.
        ...(enrolling ? { readable: ['config', 'key'] as const } : {}),
        lockOwners: lockOwnersOf(ctx, safe.id, principal),
        beforeSave: async (h, size, sig) => {
          // Readers add their locks; a takeover token, which only checks the password, adds nothing (a lock of its could hold off the safe's deletion).
          if (enrolling) throw new UploadRefusedError(403, 'READ_ONLY', 'a takeover token reads the disk safe it may take over and adds nothing to it, not even a lock');
          await refuseUninitialised(ctx, safe, backend, h);
          if (h.type === 'key') await refuseTooManyKeys(safe, backend, sig);
          // A lock is bookkeeping, bounded per token (lock-owners.ts), not stored data: a full quota must not keep prune or check from their lock.
          if (h.type === 'lock') return admitLock(ctx, safe, principal, granted);
          const admitted = await admitUpload(ctx, safe, size);
          return {
            ...(admitted.warning === undefined ? {} : { warning: admitted.warning }),
            end: async (stored) => {
              await admitted.reservation.release();
              if (!stored) return;
              // The soft quota was passed by this upload: recorded once, not at every upload after it.
              for (const c of admitted.crosses) await audit(ctx, p, `${c.what}.soft_quota_exceeded`, c.id, safe.customer_id);
            },
          };
        },
        beforeCommit: async (h, bytes, sig) => {
          await refuseIfDeleting();
          if (h.type === 'snapshot') await refuseBackdatedSnapshot((group) => newestOfGroup(ctx, safe, group), bytes, { signal: sig, now: ctx.now().getTime() });
          if (h.type === 'lock') {
            refuseLock(bytes, h.name, granted);
            await refuseOldCreation(ctx, safe, principal, bytes, h.name);
          }
        },
      };
    },
  };
}

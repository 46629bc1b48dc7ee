/**
 * A repository server for tests: fastify over HTTPS with the repository
 * protocol (src/server/http/repo-routes.ts) and a resolver made of a fixed
 * table of tokens, each giving one right to one safe, a folder below `dir`.
 * Snapshot uploads go through the server's backdating rule
 * (src/server/services/snapshot-time-policy.ts), with the newest snapshot
 * of a group read from the safe's storage (the server keeps an index in its
 * database), unless `verifyUploads` is false (the storage conformance
 * suite, whose objects are not real).
 * Used in-process by the backend's tests and in a process of its own by
 * repo-server-main.ts.
 */
import { join } from 'node:path';

import Fastify, { type FastifyInstance } from 'fastify';

import { Store } from '../../src/repo/store.js';
import type { Backend } from '../../src/storage/backend.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { repoRoutes, type SafeAccess, type SafeRights } from '../../src/server/http/repo-routes.js';
import { refuseBackdatedSnapshot, snapshotGroupKey, type NewestSnapshot } from '../../src/server/services/snapshot-time-policy.js';

/** One token of the table. */
export interface TestToken {
  readonly safe: string;
  readonly rights: SafeRights;
}

/** What the test server is made of. */
export interface RepoServerAppOptions {
  /** The folder that holds one folder per safe. */
  readonly dir: string;
  /** PEM of the server's key and certificate. */
  readonly key: string;
  readonly cert: string;
  /** Token → its safe and rights. */
  readonly tokens: Readonly<Record<string, TestToken>>;
  /** False for the storage conformance suite: no check of bytes against names, no snapshot rule. */
  readonly verifyUploads?: boolean;
  /** Listing page size of the safes' local backends. */
  readonly listPageSize?: number;
}

/** The newest snapshot of group `group` stored at `backend`, read from storage: the server's snapshot index, for a server without a database. */
async function newestStored(backend: Backend, group: string): Promise<NewestSnapshot | undefined> {
  const { ok } = await (await Store.open(backend)).listSnapshots();
  let newest: NewestSnapshot | undefined;
  for (const { id, snapshot } of ok) {
    if (snapshotGroupKey(snapshot.hostname, snapshot.paths) !== group) continue;
    const time = Date.parse(snapshot.time);
    if (newest === undefined || time > newest.time) newest = { id, time };
  }
  return newest;
}

/** The fastify app, not yet listening. */
export async function buildRepoServer(o: RepoServerAppOptions): Promise<FastifyInstance> {
  const app = Fastify({ https: { key: o.key, cert: o.cert }, logger: false, keepAliveTimeout: 30_000 });
  const verify = o.verifyUploads !== false;
  /** Safe → lock name → the token that added it (the server keeps this in its database). */
  const lockOwners = new Map<string, Map<string, string>>();
  await app.register(repoRoutes, {
    verifyUploads: verify,
    resolver: {
      async resolveSafe(token, safe): Promise<SafeAccess | undefined> {
        const t = Object.hasOwn(o.tokens, token) ? o.tokens[token] : undefined;
        if (t === undefined || t.safe !== safe) return undefined;
        const backend = new LocalBackend(join(o.dir, safe), o.listPageSize === undefined ? {} : { listPageSize: o.listPageSize });
        return {
          backend,
          rights: t.rights,
          principal: token,
          lockOwners: {
            add: async (name) => { lockOwners.set(safe, (lockOwners.get(safe) ?? new Map<string, string>()).set(name, token)); },
            owns: async (name) => lockOwners.get(safe)?.get(name) === token,
            forget: async (name) => { lockOwners.get(safe)?.delete(name); },
          },
          ...(verify ? {
            beforeCommit: async (h, bytes, signal) => {
              if (h.type === 'snapshot') await refuseBackdatedSnapshot((group) => newestStored(backend, group), bytes, { signal });
            },
          } : {}),
        };
      },
    },
  });
  return app;
}

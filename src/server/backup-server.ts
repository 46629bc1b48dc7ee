/**
 * `holdfast server` as a library: opens (on first start, makes) the data
 * directory, the control-plane database, the TLS certificate and the first
 * admin account, and serves HTTPS until closed. It takes options and a log
 * stream and never touches `process` (the CLI command does: flags, printing,
 * signals), like src/server-nbd.
 *
 *   DATA/            0700
 *     holdfast.db    the SQLite control plane (unless --db postgres://…)
 *     server.json    listen address, database URL, storage, node id (server-settings.ts)
 *     tls/           cert.pem, key.pem (0600)
 *     safes/ID/      one repository per disk safe (with --storage s3:…,
 *                    PREFIX/safes/ID in the bucket instead)
 *
 * It serves the REST API (/api/v1, http/api-v1.ts), the disk safes'
 * repositories (/safes/NAME, http/repo-routes.ts, reached with API tokens)
 * and the web interface (/, http/web-app.ts).
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { SHARED_SCHEMAS } from '../api/v1.js';
import { DEFAULT_MIN_GRACE_MS } from '../repo/deletion-marker.js';
import { processIdentity } from '../repo/lock.js';
import type { Backend } from '../storage/backend.js';
import { formatS3Location, type S3Settings } from '../storage/s3-backend-config.js';
import { openDatabase, redactUrl, type ControlPlaneDatabase } from './db/open-database.js';
import { apiV1 } from './http/api-v1.js';
import { metricsRoute } from './http/metrics.js';
import { repoRoutes, type RepoRoutesOptions } from './http/repo-routes.js';
import { BUILT_WEB_ROOT, serveWebApp } from './http/web-app.js';
import { AlertTicker, DEFAULT_STALE_AFTER_MS } from './services/alerts.js';
import { ensureFirstAdmin } from './services/auth.js';
import type { ServiceContext } from './services/context.js';
import { JobSignals } from './services/job-signals.js';
import { removeLocksOfExpiredTokens } from './services/lock-owners.js';
import { forgetWork, pruneWork } from './services/retention.js';
import { indexingStorage, indexUnindexedSafes } from './services/snapshot-index.js';
import { verifyWork } from './services/verification.js';
import { Scheduler, type SchedulerOptions, type TickReport } from './services/scheduler.js';
import { ServerJobs, type ServerJobsOptions } from './services/server-jobs.js';
import { safeResolver } from './services/safe-access.js';
import { openSafeStorage, parseStorageSetting, StorageSettingError } from './services/safe-storage.js';
import { UsageLedger } from './services/usage.js';
import { LoginLimiter, type LoginLimits } from './services/login-limiter.js';
import { ServerMetrics } from './services/metrics.js';
import { DEFAULT_DELIVERY_POLICY, Notifier, type DeliveryPolicy } from './services/notification-delivery.js';
import { DEFAULT_LISTEN, loadSettings, SAFES_DIR, saveSettings, SQLITE_FILE, type ServerSettings } from './server-settings.js';
import { ensureCertificate, fingerprintOf } from './tls-certificate.js';

export interface BackupServerOptions {
  /** The data directory; made (0700) if missing. */
  readonly dataDir: string;
  /** HOST:PORT to listen on; the recorded one, else 0.0.0.0:8443, when absent. */
  readonly listen?: string;
  /** Database URL (postgres://…, sqlite:FILE); the recorded one, else DATA/holdfast.db, when absent. */
  readonly db?: string;
  /**
   * Where the disk safes are: `s3:https://host:port/bucket/prefix`; the
   * recorded one, else the data directory's `safes/` folder, when absent.
   */
  readonly storage?: string;
  /** Credentials, region and CA for an `s3:` storage (the CLI reads them from the AWS environment and --cacert). */
  readonly s3?: S3Settings;
  /** Where the JSON log lines go (pino); none when absent. */
  readonly logStream?: Writable;
  /** pino level, default `info`. */
  readonly logLevel?: string;
  /** The version the OpenAPI document names. */
  readonly version?: string;
  /** Login failure limits (tests lower or raise them). */
  readonly loginLimits?: LoginLimits;
  /** A running job whose agent says nothing for this long is interrupted (milliseconds; default 120 s). */
  readonly jobSilenceLimitMs?: number;
  /**
   * The shortest grace period of the safes' prunes (milliseconds; default 10
   * minutes). The backups' commit window is half of it, so it must be what
   * the clients assume (HOLDFAST_MIN_GRACE in tests; docs/format.md §15.5).
   */
  readonly minGraceMs?: number;
  /** The server's clock (tests set it; default the system's). */
  readonly clock?: () => Date;
  /** The repository protocol's upload limits (repo-routes.ts has their defaults; tests set them small). */
  readonly uploadLimits?: UploadLimits;
  /** How server nodes share the server jobs (server-jobs.ts: lease, how often a node looks for work, how many it runs at once); tests shorten them. */
  readonly serverJobs?: ServerJobsOptions;
  /** The scheduler's tick and cap on running jobs (services/scheduler.ts); tests tick it themselves (`tickMs` 0). */
  readonly scheduler?: SchedulerOptions;
  /** Wraps each disk safe's backend (tests inject faults with a FaultBackend; default: none). */
  readonly wrapSafeBackend?: (backend: Backend) => Backend;
  /** The built web interface's folder (default: the package's dist/app). */
  readonly webRoot?: string;
  /** How notifications are delivered and retried (services/notification-delivery.ts; tests shorten the waits). */
  readonly delivery?: Partial<DeliveryPolicy>;
  /** How often the stale-machine check runs (milliseconds; default a minute). */
  readonly alertTickMs?: number;
  /** The stale threshold of a machine whose schedule gives none (milliseconds; default 3 days). */
  readonly staleAfterMs?: number;
}

/** The upload limits of the repository protocol that a server may set. */
export type UploadLimits = Pick<RepoRoutesOptions, 'maxBytesInFlight' | 'maxBytesInFlightPerPrincipal' | 'maxBytesInFlightPerCustomer' | 'uploadStep' | 'uploadPace'>;

/** How often the stale-machine check runs by default. */
export const DEFAULT_ALERT_TICK_MS = 60_000;

/** How long a running job's agent may say nothing before the job counts as interrupted (it reports every few seconds). */
export const DEFAULT_JOB_SILENCE_LIMIT_MS = 120_000;

export interface RunningServer {
  /** Makes the due jobs, cancels the timed-out ones and admits waiting ones now, by the server's clock (the scheduler's tick; tests call it). */
  tickScheduler(): Promise<TickReport>;
  /** The address bound (the port is the real one when 0 was asked for). */
  readonly host: string;
  readonly port: number;
  /** The certificate fingerprint clients pin (tls-certificate.ts). */
  readonly fingerprint: string;
  readonly certificateCreated: boolean;
  /** The first admin's name and one-time password, when this start made the account. */
  readonly firstAdmin?: { readonly name: string; readonly password: string };
  /** The database, for people (its password hidden). */
  readonly database: string;
  /** Where the disk safes are, for people: a folder or an `s3:` location. */
  readonly storage: string;
  /**
   * Runs the periodic alert work now and waits for it: the stale-machine
   * check, then the delivery of what is due in the outbox (tests with an
   * injected clock; the server does it on its own timers).
   */
  checkAlerts(): Promise<void>;
  /** Stops accepting, ends the connections, closes the database; idempotent. */
  close(): Promise<void>;
}

/** The data directory or an option cannot be used. */
export class ServerSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ServerSetupError';
  }
}

/** Splits HOST:PORT ([ADDR]:PORT for IPv6). */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ServerSetupError(`the listen address must be HOST:PORT (e.g. 0.0.0.0:8443 or [::]:8443), got "${s}"`);
  return { host: (m[1] ?? m[2])!, port };
}

async function prepareDataDir(dir: string): Promise<void> {
  const existed = await stat(dir).then((s) => {
    if (!s.isDirectory()) throw new ServerSetupError(`the data directory ${dir} is not a directory`);
    return true;
  }, (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return false;
    throw e;
  });
  if (!existed) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  }
  await mkdir(join(dir, SAFES_DIR), { recursive: true, mode: 0o700 });
}

/** The fastify application on an open database (exported for tests that need no TLS listener). */
export async function buildApp(ctx: ServiceContext, opts: { https?: { key: string; cert: string }; logStream?: Writable; logLevel?: string; version?: string; uploadLimits?: UploadLimits; webRoot?: string }): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.https ? { https: opts.https } : {}),
    logger: opts.logStream ? { level: opts.logLevel ?? 'info', stream: opts.logStream } : false,
    // Unknown fields are refused (400), not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    forceCloseConnections: true,
  });
  for (const s of SHARED_SCHEMAS) app.addSchema(s);
  await app.register(swagger, {
    openapi: {
      info: { title: 'holdfast server', version: opts.version ?? '0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
    // The API's routes only: the repository protocol is documented in docs/format.md.
    transform: ({ schema, url }) => ({ schema: (url.startsWith('/api/v1/') ? schema : { ...schema, hide: true }) as typeof schema, url }),
  });
  await app.register(apiV1, { prefix: '/api/v1', ctx, server: { fingerprint: opts.https ? fingerprintOf(opts.https.cert) : null, version: opts.version ?? '0' } });
  await app.register(metricsRoute, { ctx });
  await app.register(repoRoutes, { ...opts.uploadLimits, resolver: safeResolver(ctx) });
  await serveWebApp(app, opts.webRoot ?? BUILT_WEB_ROOT);
  return app;
}

/** Starts a server; see the module comment. */
export async function startServer(opts: BackupServerOptions): Promise<RunningServer> {
  await prepareDataDir(opts.dataDir);
  const saved = await loadSettings(opts.dataDir);
  let storage = opts.storage ?? saved?.storage;
  try {
    // Recorded in one spelling, so that another spelling of the same bucket is not a move.
    if (storage !== undefined) storage = formatS3Location(parseStorageSetting(storage));
  } catch (e) {
    if (e instanceof StorageSettingError) throw new ServerSetupError(e.message);
    throw e;
  }
  const node = saved?.node ?? randomUUID();
  const settings: ServerSettings = {
    listen: opts.listen ?? saved?.listen ?? DEFAULT_LISTEN,
    ...((opts.db ?? saved?.db) !== undefined ? { db: (opts.db ?? saved?.db)! } : {}),
    ...(storage !== undefined ? { storage } : {}),
    node,
  };
  const { host, port } = parseHostPort(settings.listen);
  const cert = await ensureCertificate(join(opts.dataDir, 'tls'));
  const database: ControlPlaneDatabase = await openDatabase(settings.db, join(opts.dataDir, SQLITE_FILE));
  let app: FastifyInstance | undefined;
  const jobSignals = new JobSignals(database.bus);
  // Every safe's backend counts what is saved and removed in it (services/usage.ts).
  // …and keeps the snapshot index (services/snapshot-index.ts).
  const clock = opts.clock ?? (() => new Date());
  const usage = new UsageLedger(indexingStorage(openSafeStorage(settings.storage, opts.dataDir, opts.s3, opts.wrapSafeBackend), database.db, clock), database.db, clock);
  const safeStorage = usage.storage;
  // The work of each server job kind, so that any node runs any job.
  const serverJobs = new ServerJobs({ prune: pruneWork, verify: verifyWork, forget: forgetWork }, opts.serverJobs);
  const notifier = new Notifier({ ...DEFAULT_DELIVERY_POLICY, ...opts.delivery });
  let ticker: AlertTicker | undefined;
  const indexing = new AbortController();
  try {
    await refuseStorageMove(database, saved?.storage, settings.storage);
    const ctx: ServiceContext = {
      db: database.db, dbKind: database.kind, safeStorage, usage, limiter: new LoginLimiter(opts.loginLimits), now: clock,
      identity: processIdentity(), minGraceMs: opts.minGraceMs ?? DEFAULT_MIN_GRACE_MS, serverJobs,
      jobSignals, jobSilenceLimitMs: opts.jobSilenceLimitMs ?? DEFAULT_JOB_SILENCE_LIMIT_MS, node, notifier, metrics: new ServerMetrics(),
      staleAfterMs: opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS,
    };
    await serverJobs.releaseOwn(ctx);
    // The notifications this node was sending when it died are not being sent: they go out now, not after their lease.
    await notifier.releaseOwn(ctx);
    // The reservations of uploads this node was receiving when it died hold nothing any more.
    await database.db.deleteFrom('usage_reservations').where('node', '=', node).execute();
    await jobSignals.listen();
    // The tokens that expired while the server was down leave no locks (a storage that fails now leaves them to go stale).
    await removeLocksOfExpiredTokens(ctx).catch(() => undefined);
    const firstAdmin = await ensureFirstAdmin(ctx);
    await saveSettings(opts.dataDir, settings);
    app = await buildApp(ctx, { https: { key: cert.key, cert: cert.cert }, ...opts });
    await app.listen({ host, port }).catch((e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'the address is in use (another server?); choose another with --listen HOST:PORT' : e.message;
      throw new ServerSetupError(`cannot listen on ${settings.listen}: ${why}`, { cause: e });
    });
    serverJobs.start(ctx);
    // Safes never indexed (an older server's, a bucket another server wrote) are read in the background; a listing indexes one first if it comes sooner.
    void indexUnindexedSafes(ctx, indexing.signal).catch(() => undefined);
    notifier.start(ctx);
    const alerts = new AlertTicker(ctx, { tickMs: opts.alertTickMs ?? DEFAULT_ALERT_TICK_MS, staleAfterMs: ctx.staleAfterMs });
    ticker = alerts;
    alerts.start();
    const scheduler = new Scheduler(ctx, opts.scheduler);
    scheduler.start();
    const bound = app.server.address();
    const listening = app;
    let closed: Promise<void> | undefined;
    return {
      host, port: typeof bound === 'object' && bound ? bound.port : port,
      fingerprint: cert.fingerprint, certificateCreated: cert.created,
      ...(firstAdmin ? { firstAdmin } : {}),
      database: database.shown, storage: safeStorage.shown,
      tickScheduler: () => scheduler.tick(),
      checkAlerts: async () => {
        await alerts.tick();
        await notifier.deliverDue();
      },
      // Waiting polls answer first, so that closing does not wait out their time; the server's own jobs go back to the queue and the alert work ends before the storage and database close.
      close: () => (closed ??= (jobSignals.close(), usage.close(), indexing.abort(), listening.close().finally(() => Promise.all([scheduler.close(), serverJobs.close(), alerts.close(), notifier.close()]))
        .finally(() => Promise.all([safeStorage.close(), database.close()])).then(() => undefined))),
    };
  } catch (e) {
    jobSignals.close();
    usage.close();
    await app?.close();
    await serverJobs.close();
    await ticker?.close();
    await notifier.close();
    await safeStorage.close();
    await database.close();
    throw e;
  }
}

/**
 * Refuses a start whose storage is not the one the server's disk safes are
 * in (their repositories would seem empty, and agents would write new ones
 * beside the old); a server with no safe yet may move.
 */
async function refuseStorageMove(database: ControlPlaneDatabase, recorded: string | undefined, wanted: string | undefined): Promise<void> {
  if (recorded === wanted) return;
  const safes = await database.db.selectFrom('disk_safes').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
  const n = Number(safes.n);
  if (n === 0) return;
  const where = (s: string | undefined): string => s ?? 'the data directory';
  throw new ServerSetupError(`the server's ${n} disk safe${n === 1 ? ' is' : 's are'} in ${where(recorded)}, not in ${where(wanted)}: `
    + `start it with ${recorded === undefined ? 'no --storage' : `--storage ${recorded}`} (moving safes to another storage is not supported yet)`);
}

/** What `holdfast server info` shows, read from the data directory without starting anything. */
export interface ServerInfo {
  readonly fingerprint: string;
  readonly listen: string;
  readonly database: string;
  /** Where the disk safes are: a folder or an `s3:` location. */
  readonly storage: string;
}

export async function serverInfo(dataDir: string): Promise<ServerInfo> {
  const settings = await loadSettings(dataDir);
  if (!settings) throw new ServerSetupError(`${dataDir} is not a server's data directory (no ${join(dataDir, 'server.json')}): start one with holdfast server --data ${dataDir}`);
  return {
    fingerprint: fingerprintOf(await readFile(join(dataDir, 'tls', 'cert.pem'), 'utf8')),
    listen: settings.listen,
    database: settings.db ? redactUrl(settings.db) : join(dataDir, SQLITE_FILE),
    storage: settings.storage ?? join(dataDir, SAFES_DIR),
  };
}

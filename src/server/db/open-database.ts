/**
 * Opens the control-plane database named by a URL, the one place that knows
 * the drivers (better-sqlite3, pg): everything else holds a
 * `Kysely<ControlPlane>`. An empty URL or `sqlite:PATH` is an SQLite file
 * (journal in WAL mode, foreign keys on); `postgres://…` or `postgresql://…`
 * is a PostgreSQL server. The schema is migrated to the newest on opening.
 */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { postgresBus, SOLO_BUS, type ClusterBus } from './cluster-bus.js';
import { migrateToLatest } from './migrations.js';
import type { ControlPlane } from './schema.js';

export type DatabaseKind = 'sqlite' | 'postgres';

/**
 * Makes the SQLite file `file` and its -wal and -shm files readable by their
 * owner only (0600), creating the database file so: SQLite would make it 0644
 * under the usual umask, and gives the -wal and -shm files it creates the
 * database file's mode. The folder is 0700 already; this is defence in depth,
 * as the file holds password and token hashes. Files of an older server that
 * are 0644 are narrowed too.
 */
function ownerOnly(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}

/** An open control-plane database. */
export interface ControlPlaneDatabase {
  readonly db: Kysely<ControlPlane>;
  readonly kind: DatabaseKind;
  /** Where it is, for people: the SQLite file, or the PostgreSQL URL without its password. */
  readonly shown: string;
  /** Word between the server nodes sharing this database (cluster-bus.ts). */
  readonly bus: ClusterBus;
  /** Closes the connections; idempotent. */
  close(): Promise<void>;
}

/** The URL is not one this server can open. */
export class DatabaseUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUrlError';
  }
}

/** PostgreSQL's int8 (bigint, bigserial): byte counts and sequence numbers, all below 2^53. */
const INT8_OID = 20;

/** `postgres://user:secret@host/db` shown as `postgres://user:***@host/db`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}

/**
 * Opens (creating if needed) and migrates the database at `url`, or the
 * SQLite file `defaultFile` when `url` is undefined or empty; `upTo`: only
 * up to that migration (tests of an upgrade).
 */
export async function openDatabase(url: string | undefined, defaultFile: string, upTo?: string): Promise<ControlPlaneDatabase> {
  let kind: DatabaseKind;
  let db: Kysely<ControlPlane>;
  let shown: string;
  let bus = SOLO_BUS;
  if (!url || url.startsWith('sqlite:')) {
    const file = url ? url.slice('sqlite:'.length) : defaultFile;
    if (!file) throw new DatabaseUrlError('--db sqlite: needs a file name, e.g. sqlite:/var/lib/holdfast/holdfast.db');
    // SQLite's in-memory database is no file (tests use it): nothing to make or narrow.
    if (file !== ':memory:') ownerOnly(file);
    const sqlite = new Database(file);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    kind = 'sqlite';
    shown = file;
    db = new Kysely<ControlPlane>({ dialect: new SqliteDialect({ database: sqlite }) });
  } else if (/^postgres(ql)?:\/\//.test(url)) {
    const int8 = (v: string): number => Number(v);
    const pool = new pg.Pool({
      connectionString: url,
      max: 10,
      // Per pool, not pg's global table: int8 comes back as a number.
      types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? int8 : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
    });
    // A pooled idle connection that the server drops (a restart) is discarded by the pool and the next query connects anew; without a listener its error would end the process.
    pool.on('error', () => undefined);
    kind = 'postgres';
    shown = redactUrl(url);
    bus = postgresBus(url, pool);
    db = new Kysely<ControlPlane>({ dialect: new PostgresDialect({ pool }) });
  } else {
    throw new DatabaseUrlError(`--db wants postgres://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:FILE, got "${redactUrl(url)}"`);
  }
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await bus.close();
    await db.destroy();
  };
  try {
    await migrateToLatest(db as Kysely<unknown>, kind, upTo);
  } catch (e) {
    await close();
    throw e;
  }
  return { db, kind, shown, bus, close };
}

/**
 * Database servers as backup sources: what the PostgreSQL and MariaDB/MySQL
 * sources (postgres-dump.ts, mysql-dump.ts) share. A source lists the
 * databases of a server with the server's own client, then gives one dump
 * stream per database, each produced by the server's own dump tool through
 * `commandOutput`, so that a dump tool that fails fails the backup.
 *
 * Credentials never go on a command line, where `ps` shows them to every
 * user: a password taken from the URL is written to a file only we can read
 * (a folder of mode 0700 made for the backup, the file 0600), named to the
 * tools in their environment or their first option, and removed when the
 * source is closed. A backup killed before it could remove its file (SIGKILL)
 * leaves it behind; the folder's name holds the process id, and the next
 * database backup of this user removes every such folder whose process has
 * ended.
 */
import { lstat, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ErrorCode } from '../core/errors.js';
import { commandOutput, type CommandOutputOptions } from './command-output.js';

/** A database URL (or conninfo) that cannot be read: nothing was run. */
export class BadDatabaseUrlError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'BAD_DATABASE_URL';
  constructor(message: string) {
    super(message);
    this.name = 'BadDatabaseUrlError';
  }
}

/** One dump of a database source: a file of the snapshot. */
export interface DumpStream {
  /** The file's name in the source's folder: one path component. */
  readonly name: string;
  /** Starts the dump tool; its output is the file. Ends with `ProducerFailedError` when the tool fails. */
  open(): AsyncIterable<Uint8Array>;
}

/** A server's databases, listed and ready to be dumped one after the other. */
export interface DatabaseDump {
  /** The folder the dumps are recorded in, as path components: ["postgres", "db.example.com"]. */
  readonly folder: readonly string[];
  readonly streams: readonly DumpStream[];
  /** Removes the credentials file, if one was written. Idempotent; call it once the streams are read (or abandoned). */
  close(): Promise<void>;
}

/** How a database source reaches its server and runs its tools. */
export interface DatabaseSourceOptions {
  /** The server: a URL (postgres://, mysql://, mariadb://) or, for PostgreSQL, a libpq key=value conninfo. */
  readonly url: string;
  /**
   * The environment of the client tools: PATH finds them, and their own
   * variables (PGPASSFILE, PGHOST, MYSQL_HOST, ...) apply as they do for
   * the tools run by hand. Front ends pass theirs; the engine reads none.
   */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Ends a running tool, and the backup, when aborted (a dump waiting for a lock writes nothing to notice it by). */
  readonly signal?: AbortSignal;
  /** Runs each tool in a process group of its own (the agent; see `CommandOutputOptions.ownGroup`). */
  readonly ownGroup?: boolean;
  /** What a tool that succeeded wrote on stderr, with what it was doing ("pg_dump of db1"). */
  readonly onWarning?: (what: string, message: string) => void;
}

/**
 * A name as one path component: "%" and "/" are written %25 and %2F (a
 * PostgreSQL database may be called "a/b"), and "." and ".." %2E and %2E%2E.
 */
export function pathComponent(name: string): string {
  const escaped = name.replace(/%/g, '%25').replace(/\//g, '%2F');
  return escaped === '.' || escaped === '..' ? escaped.replace(/\./g, '%2E') : escaped;
}

/** A database's dump file name: its name as a path component, and the extension. */
export function dumpFileName(database: string, extension: string): string {
  return `${pathComponent(database)}.${extension}`;
}

/** A server's name as one folder name: "HOST" or "HOST:PORT", "localhost" for a local socket. */
export function serverFolder(host: string | undefined, port: string | undefined): string {
  const name = host === undefined || host === '' || host.startsWith('/') || host.startsWith('@') ? 'localhost' : host;
  return pathComponent(port ? `${name}:${port}` : name);
}

/** Runs a listing command to its end and returns its output; fails as `commandOutput` does, with the tool's stderr. */
export async function commandText(args: readonly string[], opts: DatabaseSourceOptions, label: string): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const chunk of commandOutput(args, toolOptions(opts, label))) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8');
}

/** How a database source runs one of its tools through `commandOutput`. */
export function toolOptions(opts: DatabaseSourceOptions, label: string, env = opts.env): CommandOutputOptions {
  return {
    env, label, onStderr: (text) => opts.onWarning?.(label, text),
    ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.ownGroup ? { ownGroup: true } : {}),
  };
}

/** The lines of a listing whose rows are hex-encoded names (no name can break a line), decoded. */
export function hexLines(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').map((l) => Buffer.from(l, 'hex').toString('utf8'));
}

/** A file only this process's user can read, in a folder of its own, and how to remove both. */
export interface PrivateFile {
  readonly path: string;
  remove(): Promise<void>;
}

/** The start of the name of a credentials folder: the process id follows, then a dash and mkdtemp's letters. */
const CREDENTIALS_PREFIX = 'holdfast-dbcred-';

/** Whether process `pid` runs (one of another user's counts as running: it is not ours to judge). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes the credentials folders in `dir` that backups killed before they
 * could remove them left behind: this user's, whose process has ended.
 * Returns how many it removed.
 */
export async function removeLeftoverCredentials(dir = tmpdir()): Promise<number> {
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [])) {
    const pid = new RegExp(`^${CREDENTIALS_PREFIX}(\\d+)-[A-Za-z0-9]{6}$`).exec(name)?.[1];
    if (pid === undefined || Number(pid) === process.pid || running(Number(pid))) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    await rm(path, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/**
 * Writes `text` to a new private file (folder 0700, file 0600, created with
 * the file's mode: never readable by others), once the folders of killed
 * backups are removed.
 */
export async function privateFile(name: string, text: string): Promise<PrivateFile> {
  await removeLeftoverCredentials();
  const dir = await mkdtemp(join(tmpdir(), `${CREDENTIALS_PREFIX}${process.pid}-`));
  const path = join(dir, name);
  try {
    await writeFile(path, text, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  let removed: Promise<void> | undefined;
  return { path, remove: () => (removed ??= rm(dir, { recursive: true, force: true })) };
}

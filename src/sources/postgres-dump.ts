/**
 * A PostgreSQL server as a backup source (`backup --postgres`): with a URL
 * that names no database, every database of the cluster that accepts
 * connections and is not a template (listed from pg_database with psql),
 * each dumped by `pg_dump`, plus the roles and tablespaces
 * (`pg_dumpall --globals-only`); with a URL that names one, that database.
 *
 *   /postgres/HOST[:PORT]/globals.sql   plain SQL: psql restores it
 *   /postgres/HOST[:PORT]/DB.dump       pg_dump's custom format, uncompressed
 *                                       (pg_restore restores it; holdfast
 *                                       deduplicates and compresses it:
 *                                       docs/decisions.md "Database dumps")
 *
 * The tools are libpq's, so the URL or conninfo means what it means to
 * psql, and PGPASSFILE, ~/.pgpass, PGPASSWORD, PGSSLMODE... apply. A
 * password in the URL is taken out of it and given to the tools in a
 * private password file (PGPASSFILE); they run with -w, so a missing
 * password fails instead of waiting for a prompt nobody answers.
 */
import { commandOutput } from './command-output.js';
import { BadDatabaseUrlError, commandText, dumpFileName, hexLines, privateFile, serverFolder, toolOptions, type DatabaseDump, type DatabaseSourceOptions, type DumpStream, type PrivateFile } from './database-dump.js';

/** Lists the databases to dump, hex-encoded (a name may hold a line break). */
const LIST_DATABASES = "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";

/**
 * Reads a libpq connection string: a postgres:// or postgresql:// URL, or
 * key=value pairs (values in single quotes may hold spaces; a backslash
 * escapes the next character). Returns its parameters by keyword.
 */
export function parseConninfo(text: string): Map<string, string> {
  return /^postgres(ql)?:\/\//i.test(text) ? parseUrl(text) : parsePairs(text);
}

function parseUrl(text: string): Map<string, string> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new BadDatabaseUrlError(`cannot read the PostgreSQL URL "${redact(text)}" (postgres://USER@HOST:PORT/DATABASE; several hosts need the key=value form)`);
  }
  const params = new Map<string, string>();
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new BadDatabaseUrlError(`bad percent-encoding in the PostgreSQL URL "${redact(text)}"`);
    }
  };
  const host = decode(url.hostname).replace(/^\[(.*)\]$/, '$1');
  if (host) params.set('host', host);
  if (url.port) params.set('port', url.port);
  if (url.username) params.set('user', decode(url.username));
  if (url.password) params.set('password', decode(url.password));
  const dbname = decode(url.pathname.replace(/^\//, ''));
  if (dbname) params.set('dbname', dbname);
  for (const [k, v] of url.searchParams) params.set(k, v);
  return params;
}

function parsePairs(text: string): Map<string, string> {
  const params = new Map<string, string>();
  const bad = (why: string): BadDatabaseUrlError => new BadDatabaseUrlError(`cannot read the PostgreSQL connection string: ${why} (use a postgres:// URL or key=value pairs)`);
  let i = 0;
  const space = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  for (space(); i < text.length; space()) {
    const key = /^[A-Za-z_]+/.exec(text.slice(i))?.[0];
    if (!key) throw bad(`expected a keyword at "${text.slice(i, i + 20)}"`);
    i += key.length;
    space();
    if (text[i] !== '=') throw bad(`"${key}" is not followed by "="`);
    i++;
    space();
    let value = '';
    if (text[i] === "'") {
      for (i++; ; i++) {
        if (i >= text.length) throw bad(`the value of "${key}" has no closing quote`);
        if (text[i] === "'") break;
        if (text[i] === '\\') i++;
        value += text[i] ?? '';
      }
      i++;
    } else {
      for (; i < text.length && !/\s/.test(text[i]!); i++) {
        if (text[i] === '\\') i++;
        value += text[i] ?? '';
      }
    }
    params.set(key, value);
  }
  return params;
}

/** The text with the password of a URL replaced by "***", for messages. */
function redact(text: string): string {
  return text.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

/** Parameters as a key=value conninfo, each value quoted. */
function conninfo(params: ReadonlyMap<string, string>): string {
  return [...params].map(([k, v]) => `${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`).join(' ');
}

/** A line of a password file matching any server, database and user (":" and "\" escaped). */
function passfileLine(password: string): string {
  return `*:*:*:*:${password.replace(/\\/g, '\\\\').replace(/:/g, '\\:')}\n`;
}

function folderOf(params: ReadonlyMap<string, string>, opts: DatabaseSourceOptions): string[] {
  return ['postgres', serverFolder(params.get('host') ?? opts.env['PGHOST'], params.get('port') ?? opts.env['PGPORT'])];
}

/** The folder a backup of `opts.url` is recorded in (["postgres", "HOST"]); throws `BadDatabaseUrlError` for a URL it cannot read. */
export function postgresFolder(opts: DatabaseSourceOptions): string[] {
  return folderOf(parseConninfo(opts.url), opts);
}

/** Lists what the server at `opts.url` holds to dump. Nothing is dumped until a stream is opened. */
export async function openPostgresDump(opts: DatabaseSourceOptions): Promise<DatabaseDump> {
  const params = parseConninfo(opts.url);
  const password = params.get('password');
  params.delete('password');
  const single = params.get('dbname') || undefined;
  let secret: PrivateFile | undefined;
  let env = opts.env;
  if (password !== undefined) {
    secret = await privateFile('pgpass', passfileLine(password));
    // PGPASSWORD would win over the file: the URL's password is the one asked for.
    env = { ...opts.env, PGPASSFILE: secret.path, PGPASSWORD: undefined };
  }
  const run = { ...opts, env };
  const producer = (label: string, args: string[]): DumpStream['open'] => () => commandOutput(args, toolOptions(opts, label, env));
  const dumpOf = (db: string): DumpStream => ({
    name: dumpFileName(db, 'dump'),
    open: producer(`pg_dump of ${db}`, ['pg_dump', '-w', '--format=custom', '--compress=0', '-d', conninfo(new Map([...params, ['dbname', db]]))]),
  });
  try {
    let streams: DumpStream[];
    if (single !== undefined) {
      streams = [dumpOf(single)];
    } else {
      const listing = await commandText(['psql', '-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo(new Map([...params, ['dbname', 'postgres']])), '-c', LIST_DATABASES], run, 'psql (listing the databases)');
      streams = [
        { name: 'globals.sql', open: producer('pg_dumpall --globals-only', ['pg_dumpall', '-w', '--globals-only', '-d', conninfo(params)]) },
        ...hexLines(listing).map(dumpOf),
      ];
    }
    return {
      folder: folderOf(params, opts),
      streams,
      close: async () => secret?.remove(),
    };
  } catch (e) {
    await secret?.remove();
    throw e;
  }
}

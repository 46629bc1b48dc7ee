/**
 * A MariaDB or MySQL server as a backup source (`backup --mysql`): with a
 * URL that names no database, every database but information_schema,
 * performance_schema and sys (the mysql database, with the users and their
 * grants, included); with a URL that names one, that database. Each is
 * dumped by `mysqldump --single-transaction --routines --triggers --events
 * --databases DB` (a consistent view of InnoDB tables without locking them;
 * the dump creates and selects its database, so `mariadb < DB.sql`
 * restores it):
 *
 *   /mysql/HOST[:PORT]/DB.sql
 *
 * A mariadb:// URL runs MariaDB's own names of the tools (mariadb,
 * mariadb-dump), a mysql:// URL the MySQL names (mysql, mysqldump). The
 * user, password, host, port and socket of the URL go to the tools in a
 * private option file (--defaults-extra-file, their first option), never on
 * their command line; what the URL leaves out comes from the option files
 * the tools read anyway (~/.my.cnf).
 */
import { commandOutput } from './command-output.js';
import { BadDatabaseUrlError, commandText, dumpFileName, hexLines, privateFile, serverFolder, toolOptions, type DatabaseDump, type DatabaseSourceOptions, type DumpStream } from './database-dump.js';

/** Lists the databases to dump, hex-encoded (a name may hold a line break). */
const LIST_DATABASES = "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'sys') ORDER BY SCHEMA_NAME";

/** What a mysql:// or mariadb:// URL says. */
interface MysqlTarget {
  readonly tools: { readonly client: string; readonly dump: string };
  readonly options: ReadonlyMap<string, string>;
  readonly database?: string;
}

/** Reads mysql://USER:PASSWORD@HOST:PORT/DATABASE?socket=PATH (or mariadb://). */
export function parseMysqlUrl(text: string): MysqlTarget {
  const bad = (why: string): BadDatabaseUrlError => new BadDatabaseUrlError(`${why} (mysql://USER@HOST:PORT/DATABASE or mariadb://..., ?socket=PATH for a socket)`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('cannot read the MySQL/MariaDB URL');
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (scheme !== 'mysql' && scheme !== 'mariadb') throw bad(`"${scheme}:" is not a MySQL/MariaDB URL`);
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw bad('bad percent-encoding in the MySQL/MariaDB URL');
    }
  };
  const options = new Map<string, string>();
  if (url.username) options.set('user', decode(url.username));
  if (url.password) options.set('password', decode(url.password));
  const host = decode(url.hostname).replace(/^\[(.*)\]$/, '$1');
  if (host) options.set('host', host);
  if (url.port) options.set('port', url.port);
  for (const [k, v] of url.searchParams) {
    if (k !== 'socket') throw bad(`unknown URL parameter "${k}"`);
    options.set('socket', v);
  }
  const database = decode(url.pathname.replace(/^\//, ''));
  return {
    tools: scheme === 'mariadb' ? { client: 'mariadb', dump: 'mariadb-dump' } : { client: 'mysql', dump: 'mysqldump' },
    options,
    ...(database ? { database } : {}),
  };
}

/**
 * An option file's [client] group. Values are double-quoted with "\" and
 * '"' escaped, as the option file reader unquotes them; a line break cannot
 * be written, and is refused.
 */
function optionFile(options: ReadonlyMap<string, string>): string {
  const lines = ['[client]'];
  for (const [k, v] of options) {
    if (/[\n\r]/.test(v)) throw new BadDatabaseUrlError(`the ${k} of the MySQL/MariaDB URL holds a line break, which an option file cannot hold`);
    lines.push(`${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  }
  return `${lines.join('\n')}\n`;
}

function folderOf(target: MysqlTarget): string[] {
  return ['mysql', serverFolder(target.options.get('host'), target.options.get('port'))];
}

/** The folder a backup of `opts.url` is recorded in (["mysql", "HOST"]); throws `BadDatabaseUrlError` for a URL it cannot read. */
export function mysqlFolder(opts: DatabaseSourceOptions): string[] {
  return folderOf(parseMysqlUrl(opts.url));
}

/** Lists what the server at `opts.url` holds to dump. Nothing is dumped until a stream is opened. */
export async function openMysqlDump(opts: DatabaseSourceOptions): Promise<DatabaseDump> {
  const target = parseMysqlUrl(opts.url);
  const secret = await privateFile('client.cnf', optionFile(target.options));
  try {
    const defaults = `--defaults-extra-file=${secret.path}`;
    const dumpOf = (db: string): DumpStream => {
      const label = `${target.tools.dump} of ${db}`;
      return {
        name: dumpFileName(db, 'sql'),
        open: () => commandOutput([target.tools.dump, defaults, '--single-transaction', '--routines', '--triggers', '--events', '--databases', '--', db], toolOptions(opts, label)),
      };
    };
    const databases = target.database !== undefined
      ? [target.database]
      : hexLines(await commandText([target.tools.client, defaults, '--batch', '--skip-column-names', '-e', LIST_DATABASES], opts, `${target.tools.client} (listing the databases)`));
    return {
      folder: folderOf(target),
      streams: databases.map(dumpOf),
      close: () => secret.remove(),
    };
  } catch (e) {
    await secret.remove();
    throw e;
  }
}

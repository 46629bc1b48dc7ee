/**
 * A backup of a database server (`backup --postgres`, `backup --mysql`):
 * the source lists its databases, the archiver reads their dumps one after
 * the other into one snapshot of the folder /postgres/HOST or /mysql/HOST,
 * tagged with the kind of server. A dump tool that fails fails the backup
 * and no snapshot is written: a snapshot holding some databases, or half
 * of one, would look like a good backup of the server.
 *
 * Everything the job needs comes in its options (the URL, the tools'
 * environment), so that the CLI and the agent run it alike.
 */
import type { Repository } from '../../repo/repository.js';
import type { DatabaseDump, DatabaseSourceOptions } from '../../sources/database-dump.js';
import { mysqlFolder, openMysqlDump } from '../../sources/mysql-dump.js';
import { openPostgresDump, postgresFolder } from '../../sources/postgres-dump.js';
import { Archiver, type BackupOptions, type BackupResult } from './archiver.js';

/** The kinds of database server, which are also the tag and the top folder of their snapshots. */
export type DatabaseKind = 'postgres' | 'mysql';

/** Which server to back up, and how to reach it. */
export interface DatabaseSource extends DatabaseSourceOptions {
  readonly kind: DatabaseKind;
}

/** The options of a database backup: where the snapshot comes from, and the stream backup's own. */
export interface DatabaseBackupOptions extends Pick<BackupOptions, 'tags' | 'hostname' | 'time' | 'compression' | 'dryRun' | 'signal' | 'pool' | 'onProgress' | 'onWarning'> {
  readonly source: DatabaseSource;
}

const OPEN: Record<DatabaseKind, (opts: DatabaseSourceOptions) => Promise<DatabaseDump>> = {
  postgres: openPostgresDump,
  mysql: openMysqlDump,
};

/**
 * The snapshot path a backup of `source` will have ("/postgres/HOST"),
 * known before anything runs; throws `BadDatabaseUrlError` for a URL that
 * cannot be read, so a front end can refuse it before opening a repository.
 */
export function databaseSnapshotPath(source: DatabaseSource): string {
  return `/${(source.kind === 'postgres' ? postgresFolder : mysqlFolder)(source).join('/')}`;
}

/** Dumps every database of the source (or the one its URL names) into one snapshot. */
export async function backupDatabase(repo: Repository, opts: DatabaseBackupOptions): Promise<BackupResult> {
  const { source, ...rest } = opts;
  const dump = await OPEN[source.kind]({ ...source, ...(opts.onWarning ? { onWarning: opts.onWarning } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  try {
    opts.signal?.throwIfAborted();
    const tags = opts.tags?.includes(source.kind) ? opts.tags : [...(opts.tags ?? []), source.kind];
    return await new Archiver(repo, { ...rest, paths: [], tags }).runStreams(dump.folder, dump.streams);
  } finally {
    await dump.close();
  }
}

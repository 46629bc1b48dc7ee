/**
 * Which control-plane databases a test run covers, in the style of kysely's
 * test-setup: HOLDFAST_TEST_DATABASES is a comma-separated list of `sqlite`
 * and `postgres` (default both). `databaseSuites` declares one describe()
 * per database; each test asks its suite for a fresh, empty database URL
 * (an SQLite file in a temp folder, or a new database on one PostgreSQL
 * cluster started for the suite).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { startPostgres, type TestPostgres } from './postgres.js';
import { openDatabase } from '../../src/server/db/open-database.js';

export type TestDatabase = 'sqlite' | 'postgres';

export function testDatabases(): TestDatabase[] {
  const want = (process.env['HOLDFAST_TEST_DATABASES'] ?? 'sqlite,postgres').split(',').map((s) => s.trim()).filter(Boolean);
  for (const w of want) if (w !== 'sqlite' && w !== 'postgres') throw new Error(`HOLDFAST_TEST_DATABASES: unknown database "${w}" (sqlite, postgres)`);
  return want as TestDatabase[];
}

/** Gives the suite's tests fresh database URLs. */
export interface DatabaseFixture {
  readonly kind: TestDatabase;
  /** A URL for `--db` / openDatabase: a new empty database each call. */
  newUrl(): Promise<string>;
}

export function databaseSuites(name: string, body: (fx: DatabaseFixture) => void): void {
  for (const kind of testDatabases()) {
    describe(`${name} [${kind}]`, () => {
      let pgCluster: TestPostgres | undefined;
      let dir = '';
      let n = 0;
      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'holdfast-db-'));
        if (kind === 'postgres') pgCluster = await startPostgres();
      });
      body({
        kind,
        newUrl: async () => (kind === 'postgres' ? pgCluster!.newDatabase() : `sqlite:${join(dir, `db${++n}.sqlite`)}`),
      });
      // After the body's own after() hooks (which close their servers), as hooks run in the order they were added.
      after(async () => {
        await pgCluster?.stop();
        await rm(dir, { recursive: true, force: true });
      });
    });
  }
}

/**
 * Empties the server's snapshot index in the database at `dbUrl`, as an
 * older server left its safes (before migration 0019) or a bucket another
 * server wrote: no rows, no safe ever indexed.
 */
export async function forgetSnapshotIndex(dbUrl: string): Promise<void> {
  const db = await openDatabase(dbUrl, '');
  try {
    await db.db.deleteFrom('snapshot_index').execute();
    await db.db.updateTable('disk_safes').set({ snapshots_indexed_at: null }).execute();
  } finally {
    await db.close();
  }
}

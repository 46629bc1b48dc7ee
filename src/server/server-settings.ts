/**
 * The settings a server keeps in its data directory (DATA/server.json,
 * owner-only, as it may hold a database password): where it listens and
 * which database it uses, and where the disk safes are stored. A start with
 * `--listen`, `--db` or `--storage` records them, a start without uses the
 * recorded ones, and `holdfast server info` shows them. It also keeps the
 * node's id, made once.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ServerSettings {
  /** HOST:PORT. */
  readonly listen: string;
  /** The database URL; absent for the SQLite file in the data directory. */
  readonly db?: string;
  /** Where the disk safes are: an `s3:` location; absent for the data directory's `safes/` folder. */
  readonly storage?: string;
  /**
   * This server node's id, made at its first start: the server jobs it runs
   * carry it (jobs.runner_node), so that a restart ends its own running jobs
   * and no other node's (docs/decisions.md, "Server jobs across a restart").
   */
  readonly node?: string;
}

export const DEFAULT_LISTEN = '0.0.0.0:8443';
export const SETTINGS_FILE = 'server.json';
/** The SQLite file in the data directory. */
export const SQLITE_FILE = 'holdfast.db';
/** Where the disk safes live, under the data directory. */
export const SAFES_DIR = 'safes';

/** The recorded settings, or undefined when the directory has none (no server ever started there). */
export async function loadSettings(dataDir: string): Promise<ServerSettings | undefined> {
  let text: string;
  try {
    text = await readFile(join(dataDir, SETTINGS_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const s = JSON.parse(text) as Partial<ServerSettings>;
  return {
    listen: typeof s.listen === 'string' ? s.listen : DEFAULT_LISTEN,
    ...(typeof s.db === 'string' ? { db: s.db } : {}),
    ...(typeof s.storage === 'string' ? { storage: s.storage } : {}),
    ...(typeof s.node === 'string' ? { node: s.node } : {}),
  };
}

export async function saveSettings(dataDir: string, s: ServerSettings): Promise<void> {
  const file = join(dataDir, SETTINGS_FILE);
  await writeFile(`${file}.tmp`, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

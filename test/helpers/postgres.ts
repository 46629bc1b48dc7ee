/**
 * A real PostgreSQL server for tests, made with initdb and pg_ctl in a temp
 * folder (its unix socket there too) and listening on a free loopback port.
 * PostgreSQL refuses to run as root: as root, the cluster belongs to nobody
 * (uid 65534) and its tools run through setpriv. Debian puts the binaries in
 * /usr/lib/postgresql/NN/bin, which is searched when initdb is not on PATH.
 */
import { execFile } from 'node:child_process';
import { chown, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './listening-child.js';

const run = promisify(execFile);
const NOBODY = 65534;

async function binDir(): Promise<string | undefined> {
  try {
    await run('initdb', ['--version']);
    return undefined;
  } catch {
    const versions = (await readdir('/usr/lib/postgresql').catch(() => [])).sort((a, b) => Number(b) - Number(a));
    if (versions[0] === undefined) throw new Error('PostgreSQL is not installed: initdb is not on PATH nor in /usr/lib/postgresql/*/bin (apt-get install postgresql)');
    return `/usr/lib/postgresql/${versions[0]}/bin`;
  }
}

/** A running test cluster. */
export interface TestPostgres {
  /** Its loopback port (host 127.0.0.1). */
  readonly port: number;
  /** A URL of a new, empty database on the cluster. */
  newDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** How the cluster is made. */
export interface PostgresOptions {
  /**
   * The superuser's password, asked of every connection over TCP (scram);
   * the URLs then carry it. Without: anyone on loopback is trusted.
   */
  readonly password?: string;
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  const bin = await binDir();
  const tool = (name: string): string => (bin ? join(bin, name) : name);
  const asRoot = process.getuid?.() === 0;
  const exec = (name: string, args: string[]) => (asRoot
    ? run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', tool(name), ...args])
    : run(tool(name), args));
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-pg-'));
  const sock = join(dir, 'sock');
  await mkdir(sock);
  if (asRoot) {
    await chown(dir, NOBODY, NOBODY);
    await chown(sock, NOBODY, NOBODY);
  }
  const data = join(dir, 'data');
  let auth = ['--auth=trust'];
  if (opts.password !== undefined) {
    const pwfile = join(dir, 'pwfile');
    await writeFile(pwfile, `${opts.password}\n`);
    if (asRoot) await chown(pwfile, NOBODY, NOBODY);
    auth = ['--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`];
  }
  await exec('initdb', ['-D', data, '-U', 'postgres', ...auth, '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  await exec('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  const user = opts.password === undefined ? 'postgres' : `postgres:${encodeURIComponent(opts.password)}`;
  const base = `postgres://${user}@127.0.0.1:${port}`;
  let n = 0;
  return {
    port,
    async newDatabase() {
      const name = `t${++n}`;
      const c = new pg.Client({ connectionString: `${base}/postgres` });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return `${base}/${name}`;
    },
    async stop() {
      await exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

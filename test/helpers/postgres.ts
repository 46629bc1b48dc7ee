/**
 * A real PostgreSQL server for tests, made with initdb and pg_ctl in a temp
 * folder (its unix socket there too) and listening on a free loopback port.
 * PostgreSQL refuses to run as root: as root, the cluster belongs to nobody
 * (uid 65534) and its tools run through setpriv. Debian puts the binaries in
 * /usr/lib/postgresql/NN/bin, which is searched when initdb is not on PATH.
 */
import { execFile } from 'node:child_process';
import { chown, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

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

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A running test cluster. */
export interface TestPostgres {
  /** A URL of a new, empty database on the cluster. */
  newDatabase(): Promise<string>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPostgres> {
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
  await exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  await exec('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  const base = `postgres://postgres@127.0.0.1:${port}`;
  let n = 0;
  return {
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

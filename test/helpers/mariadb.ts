/**
 * A real MariaDB server for tests, made with mariadb-install-db in a temp
 * folder and run as a child (mariadbd, as root with --user=root) on a free
 * loopback port, its unix socket in the folder. Its root account has no
 * password and is reached over TCP at 127.0.0.1.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './listening-child.js';

const run = promisify(execFile);

/** A running test server. */
export interface TestMariadb {
  readonly port: number;
  /** mysql://root@127.0.0.1:PORT/ */
  readonly url: string;
  /** Runs SQL as root with the `mariadb` client (batch mode, no column names) and returns its output. */
  sql(query: string): Promise<string>;
  /** Runs the `mariadb` client as root with these arguments and this input. */
  client(args: readonly string[], input: Buffer): Promise<void>;
  /** A dump of a database to compare: mariadb-dump --skip-dump-date, routines, triggers, events. */
  dump(database: string): Promise<string>;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

export async function startMariadb(): Promise<TestMariadb> {
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-mariadb-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? ['--user=root'] : [];
  await run('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...user]).catch((e: Error) => {
    throw new Error(`mariadb-install-db failed (apt-get install mariadb-server): ${e.message}`);
  });
  const port = await freePort();
  const server: ChildProcess = spawn('mariadbd', [
    '--no-defaults', `--datadir=${data}`, `--port=${port}`, '--bind-address=127.0.0.1', `--socket=${join(dir, 'sock')}`,
    `--pid-file=${join(dir, 'pid')}`, '--skip-log-bin', '--innodb-buffer-pool-size=16M', '--innodb-flush-log-at-trx-commit=0', ...user,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  let log = '';
  await new Promise<void>((resolve, reject) => {
    server.stderr!.setEncoding('utf8').on('data', (text: string) => {
      log += text;
      if (log.includes('ready for connections')) resolve();
    });
    void exited.then(() => reject(new Error(`mariadbd ended before it was ready:\n${log}`)));
  });
  const root = ['--no-defaults', '-h', '127.0.0.1', '-P', String(port), '-u', 'root'];
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (server.exitCode === null && server.signalCode === null) server.kill(signal);
    await exited;
  };
  return {
    port,
    url: `mysql://root@127.0.0.1:${port}/`,
    async sql(query) {
      return (await run('mariadb', [...root, '--batch', '--skip-column-names', '-e', query])).stdout;
    },
    async client(args, input) {
      const c = spawn('mariadb', [...root, ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
      c.stdin.end(input);
      const code = await new Promise<number | null>((resolve) => c.once('close', resolve));
      if (code !== 0) throw new Error(`mariadb ${args.join(' ')} failed (${code}): ${err}`);
    },
    async dump(database) {
      return (await run('mariadb-dump', [...root, '--skip-dump-date', '--routines', '--triggers', '--events', '--databases', database], { maxBuffer: 64 << 20 })).stdout;
    },
    kill: () => kill('SIGKILL'),
    async stop() {
      await kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

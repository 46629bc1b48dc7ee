/**
 * `backup --postgres` against a real PostgreSQL cluster on loopback: every
 * database and the roles in one snapshot, restored with the README's
 * commands after the databases and the role were dropped, and pg_dump's
 * plain SQL of each equal before and after; the password never on a tool's
 * command line; a wrong password, and a server stopped half way through the
 * databases, fail the backup with the tool's reason and write no snapshot.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Sandbox, snapshotsOf, type Started } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { wrapTools, type ToolLog } from '../helpers/tool-log.js';

/** Characters a password file, a conninfo and a URL each escape differently. */
const PASSWORD = `p:a\\s's w@r/d"`;
const SHOP = `
  CREATE SEQUENCE order_no START 1000;
  CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(8,2));
  INSERT INTO items (name, price) VALUES ('tea', 3.50), ('café', 2.20), (E'multi\\nline', NULL);
  SELECT nextval('order_no'), nextval('order_no');
  CREATE FUNCTION total() RETURNS numeric LANGUAGE sql AS 'SELECT sum(price) FROM items';
  CREATE VIEW cheap AS SELECT name FROM items WHERE price < 3;
  ALTER TABLE items OWNER TO app;
  GRANT SELECT ON cheap TO app;`;

describe('backup --postgres', () => {
  let cluster: TestPostgres;
  let s: Sandbox;
  let tools: ToolLog;
  let url: string;
  let folder: string;

  /** Runs a client tool against the cluster (the test's own calls: the password in their environment). */
  const tool = async (name: string, args: readonly string[], input?: Buffer): Promise<string> => {
    const child = spawn(name, ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', ...args], {
      env: { ...process.env, PGPASSWORD: PASSWORD }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
    child.stdin.end(input);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    if (code !== 0) throw new Error(`${name} ${args.join(' ')} exited ${code}: ${err}`);
    return Buffer.concat(out).toString();
  };
  const sql = (db: string, text: string): Promise<string> => tool('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-c', text]);
  /** Without the \restrict lines, whose key is new in every dump. */
  const comparable = (text: string): string => text.replace(/^\\(un)?restrict .*$/gm, '');
  const plain = async (db: string): Promise<string> => comparable(await tool('pg_dump', ['-d', db]));
  const globals = async (): Promise<string> => comparable(await tool('pg_dumpall', ['--globals-only']));

  before(async () => {
    cluster = await startPostgres({ password: PASSWORD });
    s = await Sandbox.create('holdfast-pg-dump-');
    await s.ok(['init']);
    await mkdir(s.path('tools'));
    tools = await wrapTools(s.path('tools'), ['psql', 'pg_dump', 'pg_dumpall']);
    url = `postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${cluster.port}/`;
    folder = `/postgres/127.0.0.1:${cluster.port}`;
    await sql('postgres', "CREATE ROLE app LOGIN PASSWORD 'app secret' CONNECTION LIMIT 5");
    await sql('postgres', 'CREATE DATABASE shop OWNER app');
    await sql('postgres', 'CREATE DATABASE "odd/name"');
    await sql('shop', SHOP);
    await sql('odd/name', "CREATE TABLE notes (t text); INSERT INTO notes VALUES ('über'), ('x');");
  });
  after(async () => {
    await cluster.stop();
    await s.remove();
  });

  it('dumps every database and the roles into one snapshot, restored by the README\'s commands to what was dumped', async () => {
    const before = { shop: await plain('shop'), odd: await plain('odd/name'), globals: await globals() };
    const r = await s.ok(['backup', '--postgres', url, '--tag', 'nightly', '--json'], { env: { PATH: tools.path } });
    const id = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
    const [snap] = (await snapshotsOf(s)).filter((x) => x.id === id);
    assert.deepEqual(snap!.paths, [folder]);
    assert.deepEqual([...snap!.tags].sort(), ['nightly', 'postgres']);
    assert.equal(snap!.incomplete, false);
    const listed = (await s.ok(['ls', id])).stdout.split('\n').filter((l) => l.startsWith(`${folder}/`));
    assert.deepEqual(listed, ['globals.sql', 'odd%2Fname.dump', 'postgres.dump', 'shop.dump'].map((f) => `${folder}/${f}`));
    // The custom format, uncompressed: pg_restore's magic, and the rows as they are.
    const shopDump = (await s.ok(['dump', id, `${folder}/shop.dump`])).stdoutBytes;
    assert.equal(shopDump.subarray(0, 5).toString(), 'PGDMP');
    assert.ok(shopDump.includes(Buffer.from('café')), 'the dump is compressed: holdfast cannot deduplicate it');

    await sql('postgres', 'DROP DATABASE shop');
    await sql('postgres', 'DROP DATABASE "odd/name"');
    await sql('postgres', 'DROP ROLE app');
    // holdfast dump SNAP .../globals.sql | psql -d postgres; holdfast dump SNAP .../DB.dump | pg_restore -C -d postgres
    await tool('psql', ['-X', '-q', '-d', 'postgres'], (await s.ok(['dump', id, `${folder}/globals.sql`])).stdoutBytes);
    await tool('pg_restore', ['-C', '-d', 'postgres'], shopDump);
    await tool('pg_restore', ['-C', '-d', 'postgres'], (await s.ok(['dump', id, `${folder}/odd%2Fname.dump`])).stdoutBytes);
    assert.deepEqual({ shop: await plain('shop'), odd: await plain('odd/name'), globals: await globals() }, before);
    assert.equal((await sql('shop', "SELECT nextval('order_no')")).match(/\d+/)?.[0], '1002');
  });

  it('never puts the password on a tool\'s command line: it goes in a private password file, removed afterwards', async () => {
    const calls = await tools.calls();
    assert.deepEqual(calls.map((c) => c[0]).sort(), ['pg_dump', 'pg_dump', 'pg_dump', 'pg_dumpall', 'psql']);
    for (const c of calls) {
      for (const part of [PASSWORD, encodeURIComponent(PASSWORD), 'p:a']) assert.ok(!c.join(' ').includes(part), `the password is on the command line: ${c.join(' ')}`);
    }
    const secrets = await tools.secrets();
    assert.equal(secrets.length, calls.length);
    for (const f of secrets) {
      assert.equal(f.mode, '600');
      await assert.rejects(stat(f.path), { code: 'ENOENT' }, `${f.path} was left behind`);
    }
  });

  it('a URL naming a database backs up that database alone; hooks run around it and are told its path', async () => {
    const told = s.path('hook.out');
    await s.ok(['backup', '-q', '--postgres', `postgres://postgres@127.0.0.1:${cluster.port}/shop`, '--after-backup', `printf '%s %s' "$HOLDFAST_PATHS" "$HOLDFAST_SNAPSHOT_ID" > ${told}`], { env: { PGPASSWORD: PASSWORD } });
    const [latest] = (await snapshotsOf(s)).slice(-1);
    const listed = (await s.ok(['ls', latest!.id])).stdout.split('\n').filter((l) => l.startsWith(`${folder}/`));
    assert.deepEqual(listed, [`${folder}/shop.dump`]);
    assert.equal(await readFile(told, 'utf8'), `${folder} ${latest!.id}`);
  });

  it('a libpq key=value string works as the URL does, its quoted password kept off the command line too', async () => {
    const quoted = PASSWORD.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
    const calls = (await tools.calls()).length;
    await s.ok(['backup', '-q', '--postgres', `host=127.0.0.1 port=${cluster.port} user=postgres dbname='odd/name' password='${quoted}'`], { env: { PATH: tools.path } });
    const [latest] = (await snapshotsOf(s)).slice(-1);
    const listed = (await s.ok(['ls', latest!.id])).stdout.split('\n').filter((l) => l.startsWith(`${folder}/`));
    assert.deepEqual(listed, [`${folder}/odd%2Fname.dump`]);
    const mine = (await tools.calls()).slice(calls);
    assert.deepEqual(mine.map((c) => c[0]), ['pg_dump']);
    assert.ok(!mine[0]!.join(' ').includes('p:a'), `the password is on the command line: ${mine[0]!.join(' ')}`);
  });

  it('a wrong password fails the backup with the server\'s reason and writes no snapshot', async () => {
    const before = await snapshotsOf(s);
    const r = await s.run(['backup', '--postgres', `postgres://postgres:wrong@127.0.0.1:${cluster.port}/`]);
    failsWith(r, 1, /psql \(listing the databases\) failed \(exit code 2\): .*password authentication failed for user "postgres".*no snapshot was written/s);
    assert.ok(!r.stderr.includes('wrong'));
    assert.deepEqual(await snapshotsOf(s), before);
  });

  it('a bad URL is a usage error, and runs nothing', async () => {
    const calls = (await tools.calls()).length;
    failsWith(await s.run(['backup', '--postgres', "host=127.0.0.1 password='open"], { env: { PATH: tools.path } }), 2, /no closing quote/);
    failsWith(await s.run(['backup', '--postgres', url, 'some/path']), 2, /take no paths/);
    assert.equal((await tools.calls()).length, calls);
  });

  /** Starts `backup --postgres` while a lock is held on shop.items: it returns once pg_dump of shop, the last database, waits for it. */
  async function backupWaitingForLock(): Promise<{ backup: Started; holder: pg.Client }> {
    const connect = async (db: string): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: `postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${cluster.port}/${db}` });
      c.on('error', () => undefined); // the server stopped under it
      await c.connect();
      return c;
    };
    const holder = await connect('shop');
    await holder.query('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
    const backup = s.start(['backup', '--postgres', url]);
    let ended = false;
    void backup.done.then(() => (ended = true));
    const watcher = await connect('postgres');
    for (;;) {
      if (ended) assert.fail(`the backup ended before it waited for the lock: ${(await backup.done).stderr}`);
      const { rows } = await watcher.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg_dump' AND datname = 'shop' AND wait_event_type = 'Lock'");
      if ((rows[0] as { n: number }).n > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await watcher.end();
    return { backup, holder };
  }

  it('SIGTERM while pg_dump waits for a lock ends the backup at once (exit 130), with no snapshot', { timeout: 120_000 }, async () => {
    const before = await snapshotsOf(s);
    const { backup, holder } = await backupWaitingForLock();
    backup.child.kill('SIGTERM');
    // It ends while the lock is still held: it did not wait for pg_dump to get it.
    const r = await backup.done;
    await holder.end();
    failsWith(r, 130, /interrupted/);
    assert.deepEqual(await snapshotsOf(s), before);
  });

  it('a server stopped once some databases are dumped fails the backup, and no snapshot holds what was dumped', async () => {
    const before = await snapshotsOf(s);
    const { backup } = await backupWaitingForLock();
    await cluster.stop();
    failsWith(await backup.done, 1, /pg_dump of shop failed \(exit code 1\): .*server closed the connection unexpectedly.*no snapshot was written/);
    assert.deepEqual(await snapshotsOf(s), before);
  });
});

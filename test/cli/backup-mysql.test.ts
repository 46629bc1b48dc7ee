/**
 * `backup --mysql` against a real MariaDB server on loopback: every
 * database (the mysql database with the users included) in one snapshot,
 * restored with the README's commands after the databases and a user were
 * dropped, and mariadb-dump's output equal before and after; the
 * credentials only in a private option file, removed afterwards; a wrong
 * password, and a server killed half way through the databases, fail the
 * backup with the tool's reason and write no snapshot.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { startMariadb, type TestMariadb } from '../helpers/mariadb.js';
import { wrapTools, type ToolLog } from '../helpers/tool-log.js';

/** Characters an option file and a URL each escape differently. */
const PASSWORD = `p"a#s\\w'd x;`;
const SHOP = `
  CREATE DATABASE shop;
  USE shop;
  CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(8,2)) ENGINE=InnoDB;
  INSERT INTO items (name, price) VALUES ('tea', 3.50), ('café', 2.20), ('multi\\nline', NULL);
  CREATE TABLE audit (item INT, at_price DECIMAL(8,2)) ENGINE=InnoDB;
  CREATE TRIGGER items_audit AFTER UPDATE ON items FOR EACH ROW INSERT INTO audit VALUES (NEW.id, NEW.price);
  UPDATE items SET price = 4.00 WHERE name = 'tea';
  CREATE PROCEDURE cheap() SELECT name FROM items WHERE price < 3;
  CREATE FUNCTION total() RETURNS DECIMAL(10,2) READS SQL DATA RETURN (SELECT SUM(price) FROM items);
  CREATE VIEW dear AS SELECT name FROM items WHERE price >= 3;
  CREATE EVENT tidy ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit;
  CREATE DATABASE \`odd/name\`;
  CREATE TABLE \`odd/name\`.notes (t TEXT) ENGINE=InnoDB;
  INSERT INTO \`odd/name\`.notes VALUES ('über'), ('x');
  CREATE USER app@'%' IDENTIFIED BY 'app secret';
  GRANT SELECT, INSERT ON shop.* TO app@'%';`;

describe('backup --mysql', () => {
  let server: TestMariadb;
  let s: Sandbox;
  let tools: ToolLog;
  let url: string;
  let folder: string;

  before(async () => {
    server = await startMariadb();
    s = await Sandbox.create('holdfast-mysql-dump-');
    await s.ok(['init']);
    await mkdir(s.path('tools'));
    tools = await wrapTools(s.path('tools'), ['mysql', 'mysqldump']);
    await server.sql(SHOP);
    // The backup's own account, with a password, so that the option file carries one.
    await server.sql(`CREATE USER backup@'%' IDENTIFIED BY '${PASSWORD.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'; GRANT ALL ON *.* TO backup@'%'`);
    url = `mysql://backup:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/`;
    folder = `/mysql/127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server.stop();
    await s.remove();
  });

  it('dumps every database into one snapshot, restored by the README\'s commands to what was dumped', async () => {
    const grants = async (): Promise<string> => server.sql("SHOW GRANTS FOR app@'%'");
    const before = { shop: await server.dump('shop'), odd: await server.dump('odd/name'), grants: await grants() };
    const r = await s.ok(['backup', '--mysql', url, '--json'], { env: { PATH: tools.path } });
    const id = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
    const [snap] = (await snapshotsOf(s)).filter((x) => x.id === id);
    assert.deepEqual(snap!.paths, [folder]);
    assert.deepEqual(snap!.tags, ['mysql']);
    const listed = (await s.ok(['ls', id])).stdout.split('\n').filter((l) => l.startsWith(`${folder}/`));
    assert.deepEqual(listed, ['mysql.sql', 'odd%2Fname.sql', 'shop.sql'].map((f) => `${folder}/${f}`));

    await server.sql("DROP DATABASE shop; DROP DATABASE `odd/name`; DROP USER app@'%'");
    // holdfast dump SNAP .../DB.sql | mariadb
    for (const f of ['mysql.sql', 'shop.sql', 'odd%2Fname.sql']) await server.client([], (await s.ok(['dump', id, `${folder}/${f}`])).stdoutBytes);
    await server.sql('FLUSH PRIVILEGES');
    assert.deepEqual({ shop: await server.dump('shop'), odd: await server.dump('odd/name'), grants: await grants() }, before);
  });

  it('never puts the credentials on a tool\'s command line: they go in a private option file, removed afterwards', async () => {
    const calls = await tools.calls();
    assert.deepEqual(calls.map((c) => c[0]), ['mysql', 'mysqldump', 'mysqldump', 'mysqldump']);
    for (const c of calls) {
      assert.match(c[1]!, /^--defaults-extra-file=/, 'the option file must be the first option');
      for (const part of [PASSWORD, encodeURIComponent(PASSWORD), 'p"a#s', 'backup']) assert.ok(!c.slice(1).join(' ').includes(part), `a credential is on the command line: ${c.join(' ')}`);
    }
    const secrets = await tools.secrets();
    assert.equal(secrets.length, calls.length);
    for (const f of secrets) {
      assert.equal(f.mode, '600');
      await assert.rejects(stat(f.path), { code: 'ENOENT' }, `${f.path} was left behind`);
    }
  });

  it('a mariadb:// URL naming a database backs up that database alone, with MariaDB\'s own tools', async () => {
    await s.ok(['backup', '-q', '--mysql', `mariadb://backup:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/shop`]);
    const [latest] = (await snapshotsOf(s)).slice(-1);
    const listed = (await s.ok(['ls', latest!.id])).stdout.split('\n').filter((l) => l.startsWith(`${folder}/`));
    assert.deepEqual(listed, [`${folder}/shop.sql`]);
  });

  it('a wrong password fails the backup with the server\'s reason and writes no snapshot', async () => {
    const before = await snapshotsOf(s);
    const r = await s.run(['backup', '--mysql', `mysql://backup:wrong@127.0.0.1:${server.port}/`]);
    failsWith(r, 1, /mysql \(listing the databases\) failed \(exit code 1\): .*Access denied for user 'backup'.*no snapshot was written/);
    assert.deepEqual(await snapshotsOf(s), before);
  });

  it('a bad URL is a usage error', async () => {
    failsWith(await s.run(['backup', '--mysql', `http://127.0.0.1:${server.port}/`]), 2, /"http:" is not a MySQL\/MariaDB URL/);
    failsWith(await s.run(['backup', '--mysql', url, '--postgres', 'postgres://x/']), 2, /give one of them/);
  });

  it('a server killed once some databases are dumped fails the backup, and no snapshot holds what was dumped', async () => {
    const before = await snapshotsOf(s);
    // mysqldump of shop, the last database, waits for this lock: the server is killed while it waits.
    const holder = spawn('mariadb', ['--no-defaults', '-h', '127.0.0.1', '-P', String(server.port), '-u', 'root', '--batch', '--unbuffered', '--skip-column-names'], { stdio: ['pipe', 'pipe', 'ignore'] });
    holder.stdin.write("LOCK TABLES shop.items WRITE; SELECT 'locked';\n");
    await new Promise<void>((resolve) => holder.stdout.setEncoding('utf8').on('data', (t: string) => t.includes('locked') && resolve()));
    const backup = s.start(['backup', '--mysql', url]);
    let ended = false;
    void backup.done.then(() => (ended = true));
    for (;;) {
      const n = await server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'backup' AND DB = 'shop' AND STATE = 'Waiting for table metadata lock'");
      if (Number(n.trim()) > 0) break;
      if (ended) assert.fail(`the backup ended before it waited for the lock: ${(await backup.done).stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await server.kill();
    holder.stdin.end();
    const r = await backup.done;
    failsWith(r, 1, /mysqldump of shop failed \(exit code 2\): .*Lost connection.*no snapshot was written/);
    assert.deepEqual(await snapshotsOf(s), before);
  });
});

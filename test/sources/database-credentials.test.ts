/**
 * The credentials files of database backups (database-dump.ts): a folder
 * left by a backup killed before it could remove it (its process has
 * ended) is removed by the next one; the folder of a process that still
 * runs, a name that is not a credentials folder's, and a file are kept; the
 * new folder is private and named with this process's id.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { privateFile, removeLeftoverCredentials } from '../../src/sources/database-dump.js';

let dir: string;
const sleeper = spawn('sleep', ['60']);
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'holdfast-cred-test-'));
});
after(async () => {
  sleeper.kill();
  await rm(dir, { recursive: true, force: true });
});

it('removes the folders of ended processes only, then writes a private file of its own', async () => {
  const ended = spawnSync('true').pid;
  await mkdir(join(dir, `holdfast-dbcred-${ended}-AbC123`));
  await writeFile(join(dir, `holdfast-dbcred-${ended}-AbC123`, 'pgpass'), 'secret');
  await mkdir(join(dir, `holdfast-dbcred-${sleeper.pid}-XyZ789`));
  await mkdir(join(dir, 'holdfast-dbcred-notapid-AbC123'));
  await writeFile(join(dir, `holdfast-dbcred-${ended}-FiLe00`), 'a file, not ours to judge');

  assert.equal(await removeLeftoverCredentials(dir), 1);
  assert.deepEqual((await readdir(dir)).sort(), [`holdfast-dbcred-${ended}-FiLe00`, `holdfast-dbcred-${sleeper.pid}-XyZ789`, 'holdfast-dbcred-notapid-AbC123'].sort());

  await mkdir(join(dir, `holdfast-dbcred-${ended}-Again1`));
  const saved = process.env['TMPDIR'];
  process.env['TMPDIR'] = dir;
  try {
    const f = await privateFile('pgpass', 'the password');
    assert.equal(await readFile(f.path, 'utf8'), 'the password');
    assert.equal((await stat(f.path)).mode & 0o777, 0o600);
    assert.match(f.path, new RegExp(`/holdfast-dbcred-${process.pid}-[A-Za-z0-9]{6}/pgpass$`));
    assert.ok(!(await readdir(dir)).includes(`holdfast-dbcred-${ended}-Again1`), 'the next backup removed the leftover');
    await f.remove();
    assert.ok(!(await readdir(dir)).some((n) => n.startsWith(`holdfast-dbcred-${process.pid}-`)));
  } finally {
    if (saved === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = saved;
  }
});

/**
 * Locks and append-only mode through the real CLI: backup holds a shared lock
 * while it runs and removes it after; it refuses to run beside a live
 * exclusive lock (exit 11) and clears the lock of a dead process on this
 * machine by itself; `unlock` removes stale locks and suspect ones (a
 * heartbeat from the future), `--remove-all` all of them. An append-only repository takes backups but refuses forget, key
 * remove, key passwd and unlock of others' locks (exit 13), except for the
 * storage owner; HOLDFAST_APPEND_ONLY=1 restricts a client of any repository.
 * A lock records the holder its taker names (a server taking it for an agent).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { sha256 } from '../../src/core/crypto.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { LOCK_VERSION, STALE_AFTER_MS, acquireLock, encodeLock, processIdentity, type LockInfo } from '../../src/repo/lock.js';

const NOPW = { HOLDFAST_PASSWORD: undefined };

/** Stores a lock as another process would have; returns its name. */
async function plant(repo: string, fields: Partial<LockInfo>): Promise<string> {
  const now = new Date().toISOString();
  const bytes = encodeLock({
    version: LOCK_VERSION, id: sha256(Buffer.from(JSON.stringify(fields))).toString('hex').slice(0, 32), operation: 'prune', exclusive: true,
    hostname: 'other-host', username: 'op', pid: 4242, created: now, heartbeat: now, ...fields,
  });
  const name = sha256(bytes).toString('hex');
  await new LocalBackend(repo).save({ type: 'lock', name }, bytes);
  return name;
}

/** Pid and start time of a process that has ended. */
async function deadProcess(): Promise<{ pid: number; processStart: string }> {
  const child = spawn('sleep', ['30']);
  const stat = await readFile(`/proc/${child.pid}/stat`, 'latin1');
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return { pid: child.pid!, processStart: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]! };
}

describe('locks through the CLI', () => {
  let s: Sandbox;
  let data: string;
  before(async () => {
    s = await Sandbox.create('holdfast-locks-');
    data = s.path('data');
    await mkdir(data);
    await writeFile(`${data}/f`, 'x');
    await s.ok(['init']);
  });
  after(async () => {
    await s.remove();
  });
  const locks = (): Promise<string[]> => readdir(s.path('repo', 'locks')).then((l) => l.filter((n) => !n.startsWith('.')));

  it('backup holds a shared lock while it runs, and removes it afterwards', async () => {
    const running = s.run(['backup', '--stdin-from-command', '--stdin-filename', 'slow', '--', 'sh', '-c', 'sleep 1.5; echo done']);
    let seen: LockInfo | undefined;
    for (let i = 0; i < 60 && !seen; i++) {
      const names = await locks();
      if (names.length > 0) seen = JSON.parse(await readFile(s.path('repo', 'locks', names[0]!), 'utf8')) as LockInfo;
      else await sleep(50);
    }
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(seen, 'a lock object existed during the backup');
    assert.equal(seen.operation, 'backup');
    assert.equal(seen.exclusive, false);
    assert.equal(seen.hostname, processIdentity().hostname);
    assert.match(seen.processStart ?? '', /^\d+$/);
    assert.deepEqual(await locks(), []);
  });

  it('backup refuses to run beside a live exclusive lock (exit 11) and writes no snapshot', async () => {
    const count = (await snapshotsOf(s)).length;
    const name = await plant(s.repo, {});
    const r = await s.run(['backup', data]);
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /locked exclusively by prune \(pid 4242 on other-host.*holdfast unlock/s);
    assert.equal((await snapshotsOf(s)).length, count);
    assert.deepEqual(await locks(), [name], 'the other lock is left alone');
    const u = await s.ok(['unlock'], { env: NOPW });
    assert.match(u.stdout, /0 locks removed/);
    assert.match(u.stdout, /1 live lock left/);
    const all = await s.ok(['unlock', '--remove-all'], { env: NOPW });
    assert.match(all.stdout, /1 lock removed/);
    assert.deepEqual(await locks(), []);
  });

  it('a lock a library caller takes for someone else (a server for an agent) names that holder in unlock --json and in the refusal', async () => {
    const lock = await acquireLock(new LocalBackend(s.repo), { holder: { hostname: 'agent-7', username: 'alice', pid: 31337 }, exclusive: true, operation: 'restore-test' });
    try {
      const listed = JSON.parse((await s.ok(['--json', 'unlock'], { env: NOPW })).stdout) as { kept: { lock: LockInfo; stale: string | null }[] };
      assert.deepEqual(listed.kept.map((k) => [k.lock.hostname, k.lock.username, k.lock.pid, k.lock.operation, k.stale]), [['agent-7', 'alice', 31337, 'restore-test', null]]);
      const r = await s.run(['backup', data]);
      assert.equal(r.code, 11, r.stderr);
      assert.match(r.stderr, /locked exclusively by restore-test \(pid 31337 on agent-7, user alice\)/);
    } finally {
      await lock.release();
    }
    assert.deepEqual(await locks(), []);
  });

  it('clears the exclusive lock of a process on this machine that has ended, and a lock without heartbeat', async () => {
    const dead = await plant(s.repo, { ...processIdentity(), ...(await deadProcess()) });
    await s.ok(['backup', '-q', data]);
    assert.ok(!(await locks()).includes(dead));
    const old = new Date(Date.now() - STALE_AFTER_MS - 1000).toISOString();
    await plant(s.repo, { heartbeat: old });
    await plant(s.repo, { heartbeat: old, exclusive: false, operation: 'backup' });
    const live = await plant(s.repo, { exclusive: false, operation: 'backup' });
    const u = await s.ok(['unlock', '--json'], { env: NOPW });
    const out = JSON.parse(u.stdout) as { removed: { stale: string }[]; kept: { name: string }[] };
    assert.equal(out.removed.length, 2);
    assert.match(out.removed[0]!.stale, /no heartbeat for/);
    assert.deepEqual(out.kept.map((k) => k.name), [live]);
    await s.ok(['backup', '-q', data]); // a live shared lock does not stop a backup
    await s.ok(['unlock', '--remove-all'], { env: NOPW });
  });

  it('calls a lock with a heartbeat from the future suspect, and plain unlock removes it (clock skew within 10 minutes is trusted)', async () => {
    const count = (await snapshotsOf(s)).length;
    const planted = await plant(s.repo, { heartbeat: '2099-01-01T00:00:00.000Z' });
    const skewed = await plant(s.repo, { heartbeat: new Date(Date.now() + 5 * 60_000).toISOString(), exclusive: false, operation: 'backup' });
    const r = await s.run(['backup', data]);
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /heartbeat \d+ days in the future, .*suspect: .*clock is wrong or the lock was planted; "holdfast unlock" removes it/s);
    assert.doesNotMatch(r.stderr, /0 s ago/);
    assert.equal((await snapshotsOf(s)).length, count);
    const u = await s.ok(['unlock', '--json'], { env: NOPW });
    const out = JSON.parse(u.stdout) as { removed: { name: string; suspect: string }[]; kept: { name: string }[] };
    assert.deepEqual(out.removed.map((e) => e.name), [planted]);
    assert.match(out.removed[0]!.suspect, /in the future/);
    assert.deepEqual(out.kept.map((k) => k.name), [skewed]);
    await s.ok(['backup', '-q', data]);
    assert.equal((await snapshotsOf(s)).length, count + 1);
    await s.ok(['unlock', '--remove-all'], { env: NOPW });
  });
});

describe('append-only repositories through the CLI', () => {
  let s: Sandbox;
  let data: string;
  before(async () => {
    s = await Sandbox.create('holdfast-append-only-');
    data = s.path('data');
    await mkdir(data);
    await writeFile(`${data}/f`, 'x');
    const i = await s.ok(['init', '--append-only']);
    assert.match(i.stdout, /append-only/);
    await s.ok(['backup', '-q', '--time', '2024-01-01 10:00:00', data]);
    await writeFile(`${data}/g`, 'y');
    await s.ok(['backup', '-q', '--time', '2024-01-02 10:00:00', data]);
    await writeFile(s.path('pw2'), 'second password\n');
  });
  after(async () => {
    await s.remove();
  });

  it('takes backups and leaves no lock behind', async () => {
    assert.equal((await snapshotsOf(s)).length, 2);
    assert.deepEqual(await readdir(s.path('repo', 'locks')), []);
  });

  it('refuses forget with exit 13 and a clear message, but previews it', async () => {
    const r = await s.run(['forget', '--keep-last', '1'], { env: NOPW });
    assert.equal(r.code, 13, r.stderr);
    assert.match(r.stderr, /append-only: forget would remove data/);
    const id = (await snapshotsOf(s))[0]!.id;
    assert.equal((await s.run(['forget', id.slice(0, 8)], { env: NOPW })).code, 13);
    assert.equal((await snapshotsOf(s)).length, 2);
    const d = await s.ok(['forget', '--dry-run', '--keep-last', '1'], { env: NOPW });
    assert.match(d.stdout, /would remove 1 snapshot/);
  });

  it('refuses key remove and key passwd, and changes no key', async () => {
    await s.ok(['key', 'add', '--new-password-file', s.path('pw2')]);
    const keys = JSON.parse((await s.ok(['key', 'list', '--json'])).stdout) as { id: string; current: boolean }[];
    assert.equal(keys.length, 2);
    const other = keys.find((k) => !k.current)!;
    const r = await s.run(['key', 'remove', other.id.slice(0, 8)]);
    assert.equal(r.code, 13, r.stderr);
    assert.match(r.stderr, /append-only: key remove/);
    const p = await s.run(['key', 'passwd', '--new-password-file', s.path('pw2')]);
    assert.equal(p.code, 13, p.stderr);
    assert.equal((JSON.parse((await s.ok(['key', 'list', '--json'])).stdout) as unknown[]).length, 2);
  });

  it('refuses to unlock others\' locks, which do not block its backups when stale', async () => {
    await plant(s.repo, { heartbeat: new Date(0).toISOString() });
    const r = await s.run(['unlock'], { env: NOPW });
    assert.equal(r.code, 13, r.stderr);
    await s.ok(['backup', '-q', data]);
    assert.equal((await readdir(s.path('repo', 'locks'))).length, 1, 'the stale lock stays; ours is gone');
    await s.ok(['unlock'], { env: { ...NOPW, HOLDFAST_STORAGE_OWNER: '1' } });
    assert.deepEqual(await readdir(s.path('repo', 'locks')), []);
  });

  it('lets the storage owner apply retention', async () => {
    const r = await s.ok(['forget', '--keep-last', '1'], { env: { ...NOPW, HOLDFAST_STORAGE_OWNER: '1' } });
    assert.match(r.stdout, /removed 2 snapshots/);
    assert.equal((await snapshotsOf(s)).length, 1);
  });

  it('HOLDFAST_APPEND_ONLY=1 restricts a client of an ordinary repository, even as storage owner', async () => {
    const t = await Sandbox.create('holdfast-append-only-client-');
    try {
      await t.ok(['init']);
      await t.ok(['backup', '-q', data]);
      const r = await t.run(['forget', '--keep-last', '1'], { env: { ...NOPW, HOLDFAST_APPEND_ONLY: '1', HOLDFAST_STORAGE_OWNER: '1' } });
      assert.equal(r.code, 13, r.stderr);
      await t.ok(['forget', '--keep-last', '1'], { env: NOPW });
    } finally {
      await t.remove();
    }
  });
});

describe('a planted lock of 1 MB (a hostname of a million characters)', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-biglock-');
    await mkdir(s.path('data'));
    await writeFile(s.path('data', 'f'), 'x');
    await s.ok(['init']);
  });
  after(() => s.remove());

  it('is refused unread, blocks no backup but a repair, and plain unlock removes it; a lock with a long field is printed cut short', async () => {
    const big = await plant(s.repo, { hostname: 'h'.repeat(1 << 20) });
    await s.ok(['backup', '-q', s.path('data')]);
    const r = await s.run(['repair', 'index'], { env: NOPW });
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /an unreadable lock \w{8} \(1048\d{3} bytes, more than a lock may hold \(4096\): not read\)/);
    assert.match(r.stderr, /That lock is suspect: it cannot be read; "holdfast unlock" removes it/);
    assert.doesNotMatch(r.stderr, /remove-all/);
    assert.ok(r.stderr.length < 2000, `${r.stderr.length} characters of stderr`);
    const u = await s.ok(['unlock'], { env: NOPW });
    assert.match(u.stdout, /1 lock removed/);
    assert.ok(u.stdout.length < 2000, `${u.stdout.length} characters of output`);
    assert.ok(!(await readdir(s.path('repo', 'locks'))).includes(big));

    await plant(s.repo, { hostname: 'h'.repeat(3000) });
    const cut = await s.run(['backup', s.path('data')]);
    assert.equal(cut.code, 11, cut.stderr);
    assert.match(cut.stderr, new RegExp(`on ${'h'.repeat(64)}… \\(3000 characters\\), user op`));
    assert.ok(cut.stderr.length < 2000, `${cut.stderr.length} characters of stderr`);
    const kept = await s.ok(['unlock'], { env: NOPW });
    assert.ok(kept.stdout.length < 2000, `${kept.stdout.length} characters of output`);
    await s.ok(['unlock', '--remove-all'], { env: NOPW });
  });
});

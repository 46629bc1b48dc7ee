/**
 * Repository locks: shared and exclusive conflicts, what a lock records, the
 * heartbeat (new object, old one removed), loss detection, staleness (no
 * heartbeat; same machine and the process gone or its pid reused; never
 * judging pids of another machine), unreadable locks, racing acquirers, and
 * locks through an append-only backend.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256 } from '../../src/core/crypto.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { AppendOnlyBackend } from '../../src/storage/append-only-backend.js';
import type { Backend } from '../../src/storage/backend.js';
import {
  LOCK_VERSION, LockLostError, LockedError, STALE_AFTER_MS, acquireLock, encodeLock, listLocks, processAlive, processIdentity, removeLocks, staleReason,
  type LockInfo,
} from '../../src/repo/lock.js';

async function lockNames(b: Backend): Promise<string[]> {
  const out: string[] = [];
  for await (const i of b.list('lock')) out.push(i.name);
  return out.sort();
}

/** Stores a hand-made lock (as another process would have written it); returns its name. */
async function plant(b: Backend, fields: Partial<LockInfo>): Promise<string> {
  const now = new Date().toISOString();
  const info: LockInfo = {
    version: LOCK_VERSION, id: 'f'.repeat(32), operation: 'backup', exclusive: false, hostname: 'elsewhere', username: 'someone', pid: 999_999,
    created: now, heartbeat: now, ...fields,
  };
  const bytes = encodeLock(info);
  const name = sha256(bytes).toString('hex');
  await b.save({ type: 'lock', name }, bytes);
  return name;
}

/** Pid and start time of a process that has exited. */
async function deadProcess(): Promise<{ pid: number; processStart: string }> {
  const child = spawn('sleep', ['30']);
  const pid = child.pid!;
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const processStart = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return { pid, processStart };
}

/** This process, as the CLI passes it: the holder of its locks and the machine that judges pids. */
const me = processIdentity();
const mine = { holder: me, machine: me };

const linux = (() => {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
})();

describe('locks', () => {
  it('shared locks coexist; exclusive excludes everything; release frees', async () => {
    const b = new MemoryBackend();
    const s1 = await acquireLock(b, { ...mine, exclusive: false, operation: 'backup' });
    const s2 = await acquireLock(b, { ...mine, exclusive: false, operation: 'backup' });
    await assert.rejects(acquireLock(b, { ...mine, exclusive: true, operation: 'prune' }), (e: unknown) => e instanceof LockedError && /locked by backup \(pid \d+ on /.test(e.message));
    await s1.release();
    await s2.release();
    await s2.release(); // idempotent
    assert.deepEqual(await lockNames(b), []);
    const x = await acquireLock(b, { ...mine, exclusive: true, operation: 'prune' });
    await assert.rejects(acquireLock(b, { ...mine, exclusive: false }), (e: unknown) => e instanceof LockedError && /locked exclusively by prune/.test(e.message));
    await assert.rejects(acquireLock(b, { ...mine, exclusive: true }), LockedError);
    await x.release();
    await (await acquireLock(b, { ...mine, exclusive: false })).release();
  });

  it('records who holds it, with the process start time, in an object named by its SHA-256', async () => {
    const b = new MemoryBackend();
    const l = await acquireLock(b, { ...mine, exclusive: true, operation: 'prune' });
    const [entry] = await listLocks(b);
    const info = entry!.lock!;
    assert.equal(info.id, l.id);
    assert.equal(info.exclusive, true);
    assert.equal(info.operation, 'prune');
    assert.equal(info.pid, process.pid);
    assert.equal(info.hostname, processIdentity().hostname);
    assert.ok(Math.abs(Date.parse(info.heartbeat) - Date.now()) < 5000);
    if (linux) {
      assert.match(info.processStart ?? '', /^\d+$/);
      assert.match(info.bootId ?? '', /^[0-9a-f-]{36}$/);
      assert.match(info.pidNamespace ?? '', /^pid:\[\d+\]$/);
    }
    assert.equal(sha256(await b.load({ type: 'lock', name: entry!.name })).toString('hex'), entry!.name);
    await l.release();
  });

  it('records the holder it is given (a server locking for an agent), and judges pids only on the machine it is told it runs on', { skip: linux ? false : 'needs /proc' }, async () => {
    const b = new MemoryBackend();
    const agent = { hostname: 'agent-7', username: 'alice', pid: 4242, bootId: 'b'.repeat(36) };
    const l = await acquireLock(b, { holder: agent, exclusive: false, operation: 'backup' });
    const info = (await listLocks(b))[0]!.lock!;
    assert.deepEqual([info.hostname, info.username, info.pid, info.bootId, info.uid, info.processStart], ['agent-7', 'alice', 4242, 'b'.repeat(36), undefined, undefined]);
    await assert.rejects(acquireLock(b, { ...mine, exclusive: true }), /locked by backup \(pid 4242 on agent-7, user alice\)/);
    await l.release();
    // A lock of this machine whose process ended: stale when this machine is given, live (heartbeat only) when it is not.
    const dead = await plant(b, { ...me, ...(await deadProcess()), exclusive: true });
    await assert.rejects(acquireLock(b, { holder: agent, exclusive: false }), LockedError);
    const ours = await acquireLock(b, { ...mine, exclusive: false });
    assert.ok(!(await lockNames(b)).includes(dead), 'cleared by the caller that knows it runs here');
    await ours.release();
  });

  it('heartbeats by writing a new lock object and removing the old one', async () => {
    const b = new MemoryBackend();
    const l = await acquireLock(b, { ...mine, exclusive: false, heartbeatMs: 20 });
    const first = await lockNames(b);
    const firstBeat = (await listLocks(b))[0]!.lock!.heartbeat;
    await sleep(120);
    const later = await listLocks(b);
    assert.equal(later.length, 1);
    assert.notDeepEqual([later[0]!.name], first);
    assert.equal(later[0]!.lock!.id, l.id);
    assert.ok(Date.parse(later[0]!.lock!.heartbeat) > Date.parse(firstBeat));
    await l.refresh();
    await l.release();
    assert.deepEqual(await lockNames(b), []);
  });

  it('notices when its lock was removed, calls onLost once, and refresh() fails from then on', async () => {
    const b = new MemoryBackend();
    const lost: LockLostError[] = [];
    const l = await acquireLock(b, { ...mine, exclusive: false, heartbeatMs: 20, onLost: (e) => lost.push(e) });
    await removeLocks(b, { all: true });
    await sleep(150);
    assert.equal(lost.length, 1);
    assert.match(lost[0]!.message, /was removed by someone else/);
    await assert.rejects(l.refresh(), LockLostError);
    assert.deepEqual(await lockNames(b), [], 'a lost lock is not written again');
    await l.release();
  });

  it('declares itself lost when it could not heartbeat for almost the stale timeout', async () => {
    const b = new MemoryBackend();
    const lost: LockLostError[] = [];
    const l = await acquireLock(b, { ...mine, exclusive: false, heartbeatMs: 10_000, staleAfterMs: 10_050, onLost: (e) => lost.push(e) });
    await sleep(100); // as if the process had been suspended
    await assert.rejects(l.refresh(), /no heartbeat could be written/);
    assert.equal(lost.length, 1);
    await l.release();
  });

  it('a lock without heartbeat for longer than the timeout is stale, from any machine, and never blocks', async () => {
    const b = new MemoryBackend();
    const old = new Date(Date.now() - STALE_AFTER_MS - 60_000).toISOString();
    const name = await plant(b, { exclusive: true, operation: 'prune', heartbeat: old, created: old });
    assert.match(staleReason((await listLocks(b))[0]!.lock!, me) ?? '', /no heartbeat for 11 min/);
    const l = await acquireLock(b, { ...mine, exclusive: true });
    assert.ok(!(await lockNames(b)).includes(name), 'the stale lock was cleared');
    await l.release();
  });

  it('a live-looking lock of another machine blocks, whatever its pid', async () => {
    const b = new MemoryBackend();
    await plant(b, { exclusive: true, operation: 'prune', hostname: 'other-host', pid: 999_999 });
    await assert.rejects(acquireLock(b, { ...mine, exclusive: false }), /locked exclusively by prune \(pid 999999 on other-host/);
    // Same hostname but another pid namespace (a container): its pids are not ours to judge either.
    const c = new MemoryBackend();
    await plant(c, { ...processIdentity(), pidNamespace: 'pid:[1]', pid: 999_999, exclusive: true });
    await assert.rejects(acquireLock(c, { ...mine, exclusive: false }), LockedError);
  });

  it('on this machine, the lock of a process that ended, or whose pid was reused, is cleared at once', { skip: linux ? false : 'needs /proc' }, async () => {
    const b = new MemoryBackend();
    const dead = await deadProcess();
    assert.equal(processAlive(dead.pid, dead.processStart), false);
    const deadLock = await plant(b, { ...processIdentity(), ...dead, exclusive: true, operation: 'prune' });
    // Our own pid, but with another start time: the pid was reused by us, the holder is gone.
    const reused = await plant(b, { ...processIdentity(), processStart: '1', exclusive: true, id: 'e'.repeat(32) });
    const l = await acquireLock(b, { ...mine, exclusive: true });
    const left = await lockNames(b);
    assert.ok(!left.includes(deadLock) && !left.includes(reused));
    await l.release();
    // A lock of this very process with its real start time is alive and blocks.
    await plant(b, { ...processIdentity(), exclusive: true, id: 'd'.repeat(32) });
    await assert.rejects(acquireLock(b, { ...mine, exclusive: false }), LockedError);
  });

  it('an unreadable lock blocks exclusive locks until "unlock" removes it, and no shared one; unlock keeps live locks unless told to remove all', async () => {
    const b = new MemoryBackend();
    const junk = Buffer.from('not a lock');
    await b.save({ type: 'lock', name: sha256(junk).toString('hex') }, junk);
    await assert.rejects(acquireLock(b, { ...mine, exclusive: true }), /unreadable lock/);
    await (await acquireLock(b, { ...mine, exclusive: false })).release();
    const live = await plant(b, { hostname: 'other-host' });
    const stale = await plant(b, { hostname: 'other-host', id: 'a'.repeat(32), heartbeat: new Date(0).toISOString() });
    const r = await removeLocks(b, { machine: me });
    assert.deepEqual(r.removed.map((e) => e.name).sort(), [sha256(junk).toString('hex'), stale].sort());
    assert.deepEqual(r.kept.map((e) => e.name), [live]);
    assert.deepEqual((await removeLocks(b, { all: true })).removed.map((e) => e.name), [live]);
    assert.deepEqual(await lockNames(b), []);
  });

  it('of two exclusive acquirers racing, at most one wins, and losers leave nothing behind', async () => {
    for (let round = 0; round < 20; round++) {
      const b = new MemoryBackend();
      const results = await Promise.allSettled([acquireLock(b, { ...mine, exclusive: true }), acquireLock(b, { ...mine, exclusive: true }), acquireLock(b, { ...mine, exclusive: false })]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const exclusiveWon = results.slice(0, 2).filter((r) => r.status === 'fulfilled').length;
      assert.ok(exclusiveWon <= 1, `round ${round}: two exclusive locks`);
      if (exclusiveWon === 1) assert.equal(won.length, 1, `round ${round}: exclusive beside another lock`);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof LockedError);
      assert.equal((await lockNames(b)).length, won.length);
      for (const r of won) await (r as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
    }
  });

  it('waits for a conflicting lock to go when asked to', async () => {
    const b = new MemoryBackend();
    const s = await acquireLock(b, { ...mine, exclusive: false });
    setTimeout(() => void s.release(), 100);
    const x = await acquireLock(b, { ...mine, exclusive: true, waitMs: 5000 });
    await x.release();
  });

  it('works through an append-only backend: own locks come and go, others\' stale locks stay but do not block', async () => {
    const inner = new MemoryBackend();
    const stale = await plant(inner, { exclusive: true, heartbeat: new Date(0).toISOString() });
    const b = new AppendOnlyBackend(inner);
    const l = await acquireLock(b, { ...mine, exclusive: false, heartbeatMs: 20 });
    await sleep(80);
    await l.release();
    assert.deepEqual(await lockNames(inner), [stale]);
  });
});

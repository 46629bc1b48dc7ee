/**
 * The real CLI on a disk safe of a holdfast server: the test repository
 * server (test/helpers/repo-server.ts, a process of its own on 127.0.0.1
 * over HTTPS with a self-signed certificate) and `-r https://…/safes/NAME`
 * with HOLDFAST_TOKEN and the pinned fingerprint.
 *
 *  - a whole life with a full token: init, backup, snapshots, restore
 *    (bytes and metadata compared), check --read-data;
 *  - an append token (an agent's): backups work; forget, prune, key remove,
 *    unlock of others' locks, and planting a deletion marker are refused and
 *    lose nothing; a backdated snapshot is refused;
 *  - a read token reads and cannot back up; a wrong fingerprint is refused
 *    naming both; a foreign token sees no safe;
 *  - kill -9 of the server in the middle of an upload: the backup fails,
 *    and once the server is back the safe checks clean and takes the next.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { writeRandom } from '../helpers/random-file.js';
import { encodeLock, LOCK_VERSION } from '../../src/repo/lock.js';
import { startRepoServer, type TestRepoServer } from '../helpers/repo-server.js';

const NOPW = { HOLDFAST_PASSWORD: undefined };

describe('the CLI on a disk safe over HTTPS', () => {
  let srv: TestRepoServer;
  let s: Sandbox;
  let src: string;
  /** The environment of a token on safe "main". */
  const as = (token: string, extra: Record<string, string | undefined> = {}): { env: Record<string, string | undefined> } => (
    { env: { ...srv.env(token), HOLDFAST_REPOSITORY: srv.location('main'), HOLDFAST_RETRY_FOR: '2s', ...extra } }
  );

  before(async () => {
    srv = await startRepoServer({
      tokens: {
        owner: { safe: 'main', rights: 'full' },
        agent: { safe: 'main', rights: 'append' },
        viewer: { safe: 'main', rights: 'read' },
        stranger: { safe: 'other', rights: 'full' },
      },
    });
    s = await Sandbox.create('holdfast-server-cli-');
    src = s.path('src');
    await buildTree(src, EVERYTHING);
  });
  after(async () => {
    await srv.close();
    await removeTree(s.dir);
  });

  it('init, backup, snapshots, restore and check --read-data with a full token', { timeout: 120_000 }, async () => {
    const init = await s.ok(['init'], as('owner'));
    assert.match(init.stdout, new RegExp(`created holdfast repository [0-9a-f]+ at ${srv.location('main').replace(/[.]/g, '\\.')}\\n`));
    await s.ok(['backup', '-q', src], as('owner'));
    const snaps = await s.ok(['snapshots', '--json'], as('owner'));
    assert.equal((JSON.parse(snaps.stdout) as unknown[]).length, 1);
    await s.ok(['restore', 'latest', '--target', s.path('out')], as('owner'));
    await compareTrees(src, join(s.path('out'), src));
    const check = await s.ok(['check', '--read-data'], as('owner'));
    assert.match(check.stdout, /no errors were found/);
    assert.deepEqual(await readdir(join(srv.dir, 'main', 'locks')), [], 'every lock was released');
  });

  it('takes backups with an append token, and refuses through it everything that removes, losing nothing', { timeout: 120_000 }, async () => {
    await writeFile(join(src, 'sizes', 'text.txt'), 'changed before the agent\'s backup\n');
    await s.ok(['backup', '-q', src], as('agent'));
    const before = (await s.ok(['snapshots', '--json'], as('agent'))).stdout;
    assert.equal((JSON.parse(before) as unknown[]).length, 2);
    // Another client's lock, which the agent may not remove.
    const now = new Date().toISOString();
    const lock = encodeLock({
      version: LOCK_VERSION, id: 'f'.repeat(32), operation: 'backup', exclusive: false, hostname: 'other-host', username: 'op', pid: 4242, created: now, heartbeat: now,
    });
    const lockName = createHash('sha256').update(lock).digest('hex');
    assert.equal((await fetchAs('owner', `/safes/main/locks/${lockName}`, 'PUT', lock)).status, 201);
    for (const args of [['forget', '--keep-last', '1'], ['prune'], ['unlock', '--remove-all']]) {
      const r = await s.run(args, as('agent', NOPW));
      assert.equal(r.code, 13, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /append-only/);
    }
    const keys = JSON.parse((await s.ok(['key', 'list', '--json'], as('agent'))).stdout) as { id: string }[];
    const kr = await s.run(['key', 'remove', keys[0]!.id.slice(0, 8)], as('agent'));
    assert.equal(kr.code, 13, kr.stderr);
    // Past the CLI: a forged deletion marker, a replaced config, a removed snapshot.
    const marker = Buffer.from('{"packs":["every one"]}');
    const name = createHash('sha256').update(marker).digest('hex');
    const put = await fetchAs('agent', `/safes/main/deletions/${name}`, 'PUT', marker);
    assert.equal(put.status, 403);
    const snapId = (JSON.parse(before) as { id: string }[])[0]!.id;
    const del = await fetchAs('agent', `/safes/main/snapshots/${snapId}`, 'DELETE');
    assert.equal(del.status, 403);
    assert.equal((await s.ok(['snapshots', '--json'], as('owner'))).stdout, before, 'nothing changed');
    await s.ok(['check', '--read-data'], as('owner'));
    assert.deepEqual(await readdir(join(srv.dir, 'main', 'deletions')), []);
    assert.deepEqual(await readdir(join(srv.dir, 'main', 'locks')), [lockName]);
    await s.ok(['unlock', '--remove-all'], as('owner'));
    assert.deepEqual(await readdir(join(srv.dir, 'main', 'locks')), []);
  });

  it('refuses a snapshot older than the newest of its host and paths, and one far from the server\'s clock', { timeout: 60_000 }, async () => {
    const count = async (): Promise<number> => (JSON.parse((await s.ok(['snapshots', '--json'], as('owner'))).stdout) as unknown[]).length;
    const before = await count();
    for (const time of ['2020-01-01 00:00:00', '2099-01-01 00:00:00']) {
      const r = await s.run(['backup', '-q', '--time', time, src], as('agent'));
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /more than 300 s from the server's clock.*\(SNAPSHOT_BACKDATED\)/);
    }
    // One four minutes ahead (within the skew), then one two minutes ago: near the clock, but more than the skew before the newest of the same paths.
    const sizes = join(src, 'sizes');
    await s.ok(['backup', '-q', '--time', localTime(new Date(Date.now() + 240_000)), sizes], as('agent'));
    const r = await s.run(['backup', '-q', '--time', localTime(new Date(Date.now() - 120_000)), sizes], as('agent'));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /is earlier than snapshot [0-9a-f]{8} of the same host and paths .*refuses backdated snapshots \(SNAPSHOT_BACKDATED\)/);
    assert.equal(await count(), before + 1);
    // A backup now is not refused by the one ahead of it (planted there, it would refuse every backup until its time came).
    await s.ok(['backup', '-q', sizes], as('agent'));
    assert.equal(await count(), before + 2);
  });

  it('reads with a read token and cannot back up; a foreign token sees no safe; a wrong pin is refused naming both fingerprints', { timeout: 60_000 }, async () => {
    await s.ok(['snapshots'], as('viewer'));
    const b = await s.run(['backup', '-q', src], as('viewer'));
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /the token may only read/);
    const f = await s.run(['snapshots'], as('stranger'));
    assert.notEqual(f.code, 0);
    assert.match(f.stderr, /the server has no such disk safe, or the token \(HOLDFAST_TOKEN\) does not give access to it/);
    const wrong = `SHA256:${'ab:'.repeat(31)}ab`;
    const p = await s.run(['--fingerprint', wrong, 'snapshots'], as('viewer'));
    assert.equal(p.code, 1, p.stderr);
    assert.ok(p.stderr.includes(srv.cert.fingerprint) && p.stderr.includes(wrong), p.stderr);
    const none = await s.run(['snapshots'], as('viewer', { HOLDFAST_FINGERPRINT: undefined }));
    assert.match(none.stderr, /TLS certificate is not trusted.*--fingerprint SHA256:/);
    const notoken = await s.run(['snapshots'], as('viewer', { HOLDFAST_TOKEN: undefined }));
    assert.match(notoken.stderr, /no token: set HOLDFAST_TOKEN/);
  });

  it('leaves a valid safe when the server is killed with SIGKILL in the middle of an upload', { timeout: 180_000 }, async () => {
    await writeRandom(join(src, 'big.bin'), 48 << 20);
    const dataDir = join(srv.dir, 'main', 'data');
    const packsBefore = await countFiles(dataDir);
    const backup = s.start(['backup', '-q', src], as('agent'));
    // Once a first new pack is stored, the next ones are on their way.
    while (await countFiles(dataDir) === packsBefore) await sleep(20);
    await srv.stop('SIGKILL');
    const r = await backup.done;
    assert.notEqual(r.code, 0, r.stderr);
    await srv.start();
    await s.ok(['check', '--read-data'], as('owner'));
    const done = (await s.ok(['--json', 'backup', src], as('agent'))).stdout.trim().split('\n').map((l) => JSON.parse(l) as { message_type: string; snapshot_id?: string });
    const snapshot = done.find((l) => l.message_type === 'summary')!.snapshot_id!;
    await s.ok(['restore', snapshot, '--target', s.path('out2')], as('owner'));
    await compareTrees(src, join(s.path('out2'), src));
    await s.ok(['check', '--read-data'], as('owner'));
  });

  /** A raw request to the server with `token`, the certificate pinned by trusting it as CA. */
  async function fetchAs(token: string, path: string, method: string, body?: Buffer): Promise<{ status: number }> {
    const { request } = await import('node:https');
    return new Promise((resolve, reject) => {
      const req = request(`${srv.origin}${path}`, { method, ca: srv.cert.cert, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }
});

/** `d` as backup --time takes it: "YYYY-MM-DD HH:MM:SS", local time. */
function localTime(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Files below `dir`, recursively. */
async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile()) n++;
  return n;
}

/**
 * The agent keeps the snapshots it authenticated between jobs
 * (`Repository.listSnapshots`): counted in the server's request log, each job's
 * listing downloads only the snapshot objects it has not authenticated yet
 * (one a CLI backup added; none it stored itself); one planted with a junk
 * MAC is downloaded and reported by every job, never kept, never a parent;
 * and a snapshot gone from the listing is never a parent again, though the
 * agent authenticated it before.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { request } from 'node:https';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { decodeSnapshot, encodeSnapshot } from '../../src/repo/snapshot.js';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { setUp, type TestServer } from '../helpers/server.js';

/** The server's log: one JSON line per request it took in and answered. */
const serverLog: string[] = [];

/** The snapshot objects downloaded from the machine's safe (its log's GET requests), by name, since `from` lines of it. */
function snapshotsDownloaded(from: number): string[] {
  const path = new RegExp(`^/safes/${m.config['safe'] as string}/snapshots/([0-9a-f]{64})$`);
  return serverLog.join('').split('\n').slice(from).flatMap((line) => {
    const req = line === '' ? undefined : (JSON.parse(line) as { req?: { method: string; url: string } }).req;
    const name = req?.method === 'GET' ? path.exec(req.url)?.[1] : undefined;
    return name === undefined ? [] : [name];
  }).sort();
}

let t: TestServer;
let h: ServerHandle;
let s: Sandbox;
let m: EnrolledMachine;
let agent: Started;
let safeDir = '';

before(async () => {
  s = await Sandbox.create('holdfast-agent-snapshot-cache-');
  const log = new PassThrough();
  log.on('data', (d: Buffer) => serverLog.push(d.toString()));
  t = await setUp(`sqlite:${s.path('control.sqlite')}`, undefined, { logStream: log });
  h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  m = await enrolMachine(h, s, 'web1');
  const safeId = ((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as { id: string; name: string }[]).find((x) => x.name === m.config['safe'])!.id;
  safeDir = join(t.dataDir, 'data', 'safes', safeId);
  await mkdir(s.path('src'));
  agent = startAgent(s, m);
});
after(async () => {
  agent?.child.kill('SIGTERM');
  await agent?.done;
  await t?.stop();
  await s?.remove();
});

/** Puts `bytes` into the machine's safe as a snapshot with its own token, as a client that may only add can; the name. */
function plant(bytes: Buffer): Promise<string> {
  const name = createHash('sha256').update(bytes).digest('hex');
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: t.server.port, method: 'PUT', path: `/safes/${m.config['safe'] as string}/snapshots/${name}`, ca: t.cert, servername: 'localhost', agent: false,
      headers: { authorization: `Bearer ${m.config['token'] as string}`, 'content-length': bytes.length, 'content-type': 'application/octet-stream' },
      checkServerIdentity: () => undefined,
    }, (res) => {
      res.resume();
      if (res.statusCode === 201) resolve(name);
      else reject(new Error(`PUT snapshot: ${res.statusCode}`));
    });
    req.on('error', reject);
    req.end(bytes);
  });
}

/** The snapshot stored as `id` in the safe, read from the server's disk. */
async function stored(id: string): Promise<ReturnType<typeof decodeSnapshot>> {
  return decodeSnapshot(await readFile(join(safeDir, 'snapshots', id)), `snapshot ${id}`);
}

/** A backup job of the source after a change; its result and the snapshot objects the server loaded while it ran. */
async function backup(): Promise<{ id: string; parent: string | undefined; unauthentic: string[]; loaded: string[] }> {
  await writeFile(s.path('src', 'f.txt'), randomBytes(2000).toString('hex'));
  const from = serverLog.join('').split('\n').length - 1;
  const j = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
  assert.equal(j.state, 'succeeded', j.error ?? '');
  const id = j.result!['snapshot_id'] as string;
  return { id, parent: (await stored(id)).parent, unauthentic: j.result!['unauthentic_snapshots'] as string[], loaded: snapshotsDownloaded(from) };
}

it('downloads each snapshot once, never keeps one failing its MAC, and never takes one gone from the listing as a parent', { timeout: 120_000 }, async () => {
  const first = await backup();
  assert.equal(first.parent, undefined);

  // A snapshot the agent did not write (the CLI's, with the machine's credentials): downloaded once.
  await writeFile(s.path('other.txt'), 'another folder\n');
  const cli = (JSON.parse((await s.ok(['backup', '--json', s.path('other.txt')], { env: m.repoEnv })).stdout.trim().split('\n').at(-1)!) as { snapshot_id: string }).snapshot_id;
  const second = await backup();
  assert.equal(second.parent, first.id);
  assert.deepEqual(second.loaded, [cli], 'only the snapshot the agent had not authenticated is downloaded');
  const third = await backup();
  assert.equal(third.parent, second.id);
  assert.deepEqual(third.loaded, [], 'every snapshot listed was authenticated before (the agent stored the last one itself)');

  // A copy of the newest snapshot, dated now, with a junk MAC: it would be the parent if it were used.
  const forged = await plant(encodeSnapshot({ ...(await stored(third.id)), time: new Date().toISOString(), tree: randomBytes(32).toString('hex'), blobs: [] }, randomBytes(32)));
  const fourth = await backup();
  assert.equal(fourth.parent, third.id);
  assert.deepEqual(fourth.unauthentic, [forged]);
  assert.deepEqual(fourth.loaded, [forged]);

  // The newest genuine snapshot removed from storage (as a forget does): not a parent any more, though authenticated before.
  await rm(join(safeDir, 'snapshots', fourth.id));
  const fifth = await backup();
  assert.equal(fifth.parent, third.id, 'the parent is the newest snapshot still listed');
  assert.deepEqual(fifth.unauthentic, [forged], 'the forgery is read and reported again: it was not kept');
  assert.deepEqual(fifth.loaded, [forged]);
});

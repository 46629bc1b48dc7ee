/**
 * Two server nodes (processes of their own) on one PostgreSQL database and
 * one S3 bucket (s3rver on loopback), as issue 17 asks: 200 server jobs
 * (prunes of eight disk safes) queued through both nodes' APIs, one node
 * killed with SIGKILL while it runs some of them, and every job ends
 * `succeeded` exactly once: a job the dead node held is taken over by the
 * other once its lease has run out, and run again from the beginning; every
 * disk safe then checks clean. Agent jobs queued on either node are taken by
 * an agent polling either node, each by one poll only, and a job queued on
 * one node wakes a poll waiting on the other. Two nodes receiving uploads
 * for one customer share its quota: an upload held on one counts on the other.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:https';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase, type ControlPlaneDatabase } from '../../src/server/db/open-database.js';
import { Sandbox } from '../helpers/cli.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3rver, type TestS3 } from '../helpers/s3rver.js';
import { adminClient, httpsJson, type Answer, type ApiClient } from '../helpers/server.js';
import { startServerNode, type ServerNode } from '../helpers/server-node.js';

const SAFES = 8;
const JOBS = 200;

let pg: TestPostgres;
let s3: TestS3;
let s: Sandbox;
let db: ControlPlaneDatabase;
const nodes: ServerNode[] = [];
let admin: ApiClient;
const safes: { id: string; name: string; machine: string; agent: string }[] = [];

/** One API call to `node` (each node has its own certificate). */
const call = (node: ServerNode, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Answer> => httpsJson(node.port, node.cert, method, path, { token: admin.adminToken, ...opts });

before(async () => {
  s = await Sandbox.create('holdfast-two-nodes-');
  pg = await startPostgres();
  s3 = await startS3rver();
  const dbUrl = await pg.newDatabase();
  const start = (name: string) => startServerNode({
    dataDir: s.path(name), db: dbUrl, storage: s3.location('provider'), s3: s3.settings, minGraceMs: 2000,
    serverJobs: { leaseMs: 3000, pollMs: 200, concurrency: 3 },
  });
  // One after the other: the first makes the schema and the first admin.
  nodes.push(await start('node-a'));
  nodes.push(await start('node-b'));
  assert.ok(nodes[0]!.firstAdmin);
  assert.equal(nodes[1]!.firstAdmin, null, 'the second node finds the admin the first made');
  admin = await adminClient(nodes[0]!.port, nodes[0]!.cert, nodes[0]!.firstAdmin);
  db = await openDatabase(dbUrl, '');

  const acme = (await admin.create('/api/v1/customers', { name: 'Acme' })).id as string;
  await mkdir(s.path('src'));
  await writeFile(s.path('src', 'a.txt'), 'the first file\n');
  for (let i = 0; i < SAFES; i++) {
    const machine = (await admin.create('/api/v1/machines', { customer_id: acme, name: `m${i}` })).id as string;
    const name = `acme-m${i}`;
    const id = (await admin.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name })).id as string;
    const agent = (await admin.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: `m${i} agent`, rights: ['backup'] })).secret as string;
    safes.push({ id, name, machine, agent });
  }
  // Each safe initialised through one node and backed up through the other (what one node stores, the other reads).
  await Promise.all(safes.map(async (safe, i) => {
    for (const [k, node] of [nodes[i % 2]!, nodes[(i + 1) % 2]!].entries()) {
      const env = repoEnv(node, safe);
      if (k === 0) await s.ok(['init'], { env });
      else {
        await writeFile(s.path('src', `${safe.name}-${k}.txt`), `what ${safe.name} had at backup ${k}\n`.repeat(100));
        await s.ok(['backup', '--host', safe.name, s.path('src')], { env });
      }
    }
  }));
});

after(async () => {
  for (const n of nodes) await n.stop('SIGKILL');
  await db?.close();
  await s3?.close();
  await pg?.stop();
  await s?.remove();
});

function repoEnv(node: ServerNode, safe: { name: string; agent: string }): Record<string, string> {
  return {
    HOLDFAST_REPOSITORY: `https://127.0.0.1:${node.port}/safes/${safe.name}`, HOLDFAST_TOKEN: safe.agent, HOLDFAST_FINGERPRINT: node.fingerprint,
    HOLDFAST_MIN_GRACE: '2s', HOLDFAST_PASSWORD: 'the safe\'s password',
  };
}

it('an agent job queued on one node wakes the poll waiting on the other at once, and goes to one poll only', { timeout: 60_000 }, async () => {
  const [a, b] = [nodes[0]!, nodes[1]!];
  const safe = safes[0]!;
  // A poll waiting on A (up to 20 s), a job queued on B: the poll answers with it, long before its wait is up.
  const polled = Date.now();
  const waiting = call(a, 'GET', '/api/v1/agent/jobs/next?wait=20', { token: safe.agent });
  await sleep(300);
  const queuedAt = Date.now();
  const made = await call(b, 'POST', `/api/v1/machines/${safe.machine}/jobs`, { body: { kind: 'check', spec: {} } });
  assert.equal(made.status, 201, made.text);
  const got = await waiting;
  const answeredAt = Date.now();
  assert.equal(got.status, 200, got.text);
  assert.equal(got.body.id, made.body.id);
  // The delay is shown, not asserted (no timing in tests): the poll's wait (20 s) is the bound a lost word would show.
  process.stdout.write(`# a job queued on node B reached the poll waiting on node A after ${answeredAt - queuedAt} ms (poll began ${queuedAt - polled} ms before)\n`);
  await call(a, 'POST', `/api/v1/agent/jobs/${made.body.id}/result`, { token: safe.agent, body: { state: 'succeeded', result: {} } });

  // A job queued while the machine's agent polls both nodes at once (an agent polls one at a time; a second connection of it is what a network blip makes): it goes to one poll only.
  for (let round = 0; round < 6; round++) {
    const polls = [a, b].map((node) => call(node, 'GET', '/api/v1/agent/jobs/next?wait=2', { token: safe.agent }));
    await sleep(300);
    const job = await call(nodes[round % 2]!, 'POST', `/api/v1/machines/${safe.machine}/jobs`, { body: { kind: 'check', spec: {} } });
    const answers = await Promise.all(polls);
    const given = answers.filter((r) => r.status === 200);
    assert.equal(given.length, 1, `round ${round}: ${answers.map((r) => r.status).join(', ')}`);
    assert.equal(given[0]!.body.id, job.body.id);
    assert.equal(answers.filter((r) => r.status === 204).length, 1);
    const done = await call(a, 'POST', `/api/v1/agent/jobs/${job.body.id}/result`, { token: safe.agent, body: { state: 'succeeded', result: {} } });
    assert.equal(done.status, 200, done.text);
  }
});

it('two nodes receiving uploads for one customer do not both pass its quota: the upload held on one node counts on the other', { timeout: 60_000 }, async () => {
  const [a, b] = [nodes[0]!, nodes[1]!];
  const acme = (await call(a, 'GET', '/api/v1/customers')).body[0];
  const stored = (await call(b, 'GET', `/api/v1/customers/${acme.id}`)).body.stored_bytes as number;
  assert.equal((await call(a, 'GET', `/api/v1/customers/${acme.id}`)).body.stored_bytes, stored, 'both nodes count the same bytes');
  // Room for one upload of 1000 bytes, not two.
  const set = await call(a, 'PATCH', `/api/v1/customers/${acme.id}`, { body: { quota_hard: stored + 1500 } });
  assert.equal(set.status, 200, set.text);
  const safe = safes[1]!;
  const body = Buffer.alloc(1000, 1);
  const name = createHash('sha256').update(body).digest('hex');
  const put = (node: ServerNode) => request({
    host: '127.0.0.1', port: node.port, method: 'PUT', path: `/safes/${safe.name}/index/${name}`, ca: node.cert, servername: 'localhost', agent: false,
    headers: { authorization: `Bearer ${safe.agent}`, 'content-length': body.length },
  });
  const reservations = async (): Promise<number> => (await db.db.selectFrom('usage_reservations').select('id').execute()).length;
  // Through A: admitted, its body held back (a slow client): its 1000 bytes are reserved.
  const held = put(a);
  held.on('error', () => undefined);
  held.write(body.subarray(0, 10));
  while (await reservations() === 0) await sleep(20);
  // Through B, meanwhile: refused, naming the bytes being uploaded on the other node.
  const refused = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const r = put(b);
    r.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    r.on('error', reject);
    r.end(body);
  });
  assert.equal(refused.status, 413, refused.text);
  assert.match(refused.text, /QUOTA_EXCEEDED/);
  assert.match(refused.text, /1000 B being uploaded/);
  // The held upload goes away: its reservation with it.
  held.destroy();
  while (await reservations() > 0) await sleep(20);
  assert.equal((await call(a, 'PATCH', `/api/v1/customers/${acme.id}`, { body: { quota_hard: null } })).status, 200);
});

it('runs 200 server jobs across two nodes, one killed in the middle: each ends succeeded once, taken over where its node died, and every safe checks clean', { timeout: 240_000 }, async () => {
  const [a, b] = [nodes[0]!, nodes[1]!];
  const accepted: string[] = [];
  let killed = false;
  let next = 0;
  // Queue prunes through both nodes (one queued or running prune per safe: a refused one is tried on the next safe) until 200 were accepted.
  while (accepted.length < JOBS) {
    const safe = safes[next++ % SAFES]!;
    const node = killed ? b : nodes[next % 2]!;
    const r = await call(node, 'POST', `/api/v1/safes/${safe.id}/prune`, { body: { grace_seconds: 2 } });
    if (r.status === 409) {
      if (next % SAFES === 0) await sleep(50);
      continue;
    }
    assert.equal(r.status, 202, r.text);
    accepted.push(r.body.id as string);
    // Half way, once node A runs jobs: killed, with no chance to put them back in the queue.
    if (!killed && accepted.length >= JOBS / 2) {
      const runningOnA = await db.db.selectFrom('jobs').select('id').where('runner_node', '=', a.node).where('state', '=', 'running').execute();
      if (runningOnA.length > 0) {
        await a.stop('SIGKILL');
        killed = true;
        process.stdout.write(`# node A killed after ${accepted.length} jobs were queued, running ${runningOnA.length}\n`);
      }
    }
  }
  assert.ok(killed, 'node A was killed while it ran jobs');

  // Every job ends, on node B for those A held.
  for (;;) {
    const open = await db.db.selectFrom('jobs').select((eb) => eb.fn.countAll<number>().as('n')).where('runner', '=', 'server').where('state', 'in', ['queued', 'running']).executeTakeFirstOrThrow();
    if (Number(open.n) === 0) break;
    await sleep(200);
  }
  const jobs = await db.db.selectFrom('jobs').selectAll().where('id', 'in', accepted).execute();
  assert.equal(jobs.length, JOBS);
  const events = await db.db.selectFrom('job_events').select(['job_id', 'message']).where('job_id', 'in', accepted).orderBy('seq').execute();
  const said = (id: string): string[] => events.filter((e) => e.job_id === id).map((e) => e.message);
  let takenOver = 0;
  for (const j of jobs) {
    assert.equal(j.state, 'succeeded', `${j.id}: ${j.error ?? ''} ${said(j.id).join(' | ')}`);
    const lines = said(j.id);
    // Each start of the work says so once; its end is recorded once (the row), by the node that held it then.
    const starts = lines.filter((m) => /^prune of acme-m\d with a grace period of 2s$/.test(m)).length;
    const ends = lines.filter((m) => /^deleted \d+ packs/.test(m)).length;
    assert.ok(starts >= 1 && starts <= j.attempts, `${j.id}: ${starts} starts in ${j.attempts} attempts`);
    assert.ok(ends >= 1 && ends <= starts, `${j.id}: ${ends} ends of ${starts} starts`);
    if (j.attempts > 1) {
      takenOver++;
      assert.equal(j.runner_node, b.node, 'a job taken over ends on the node that took it');
      assert.ok(lines.some((m) => m.includes(`took the job over: the lease of node ${a.node} ran out`)), lines.join('\n'));
    } else {
      assert.equal(ends, 1, `${j.id} ran once to completion`);
    }
  }
  assert.ok(takenOver >= 1, 'at least the jobs A ran when it was killed were taken over');
  assert.ok(jobs.some((j) => j.runner_node === a.node) && jobs.some((j) => j.runner_node === b.node), 'both nodes ran jobs');
  const took = jobs.map((j) => Date.parse(j.finished_at!) - Date.parse(j.started_at!)).sort((x, y) => x - y);
  process.stdout.write(`# a job took ${took[Math.floor(took.length / 2)]} ms (median) from its claim to its end\n`);
  process.stdout.write(`# ${jobs.filter((j) => j.runner_node === a.node).length} jobs ended on node A, ${jobs.filter((j) => j.runner_node === b.node).length} on node B, ${takenOver} taken over\n`);

  // Every safe is whole: what the prunes kept restores, as `holdfast check --read-data` proves through the surviving node.
  for (const safe of safes) await s.ok(['check', '--read-data'], { env: repoEnv(b, safe) });
});

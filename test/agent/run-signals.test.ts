/**
 * `holdfast agent run` when things go wrong, with the server and the agent
 * as child processes over real TLS on loopback: SIGTERM during a backup
 * aborts the job, reports it failed and exits 0, and the disk safe checks
 * clean; SIGKILL during a backup leaves the job to be marked interrupted,
 * and the next backup completes uploading less than the whole; the server
 * killed during an idle poll and started again is found again and the next
 * job runs; the server gone past the retry budget during a backup fails the
 * job, and the failure is reported with its reason once the server is back.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox, type Started } from '../helpers/cli.js';
import { writeRandom } from '../helpers/random-file.js';
import { configure, enrolMachine, eventsOf, handleOf, jobOf, runNow, startAgent, stderrLine, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { freePort } from '../helpers/listening-child.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';

const MIB = 1024 * 1024;
/** Three packs' worth of random data, uploaded at 4 MiB/s: long enough to be stopped half way. */
const DATA = 40 * MIB;

/** Pack files in the server's storage of the machine's (only) safe. */
async function packsStored(dataDir: string): Promise<number> {
  const safes = join(dataDir, 'safes');
  let n = 0;
  for (const safe of await readdir(safes)) {
    for (const sub of await readdir(join(safes, safe, 'data')).catch(() => [] as string[])) n += (await readdir(join(safes, safe, 'data', sub))).filter((f) => !f.startsWith('.')).length;
  }
  return n;
}

let s: Sandbox;
let dataDir = '';
let port = 0;
let server: ServerProcess;
let h: ServerHandle;
let m: EnrolledMachine;
let agent: Started | undefined;

before(async () => {
  s = await Sandbox.create('holdfast-agent-signals-');
  dataDir = s.path('server');
  port = await freePort();
  server = await startServerProcess(dataDir, { port });
  h = await handleOf(server);
  m = await enrolMachine(h, s, 'db1');
  await configure(m, { bandwidth_limit: 4 * MIB });
  await mkdir(s.path('big'));
  for (let i = 0; i < 4; i++) await writeRandom(s.path('big', `part${i}`), DATA / 4);
});
after(async () => {
  agent?.child.kill('SIGKILL');
  await agent?.done;
  await server.stop();
  await s.remove();
});

it('SIGTERM during a backup: the job is reported failed, the agent exits 0, the disk safe checks clean', { timeout: 120_000 }, async () => {
  agent = startAgent(s, m);
  const id = await runNow(h, m, 'backup', { paths: [s.path('big')] });
  for (;;) {
    const progress = (await eventsOf(h, id)).filter((e) => e.kind === 'progress');
    if (progress.some((e) => (e.data?.['bytes'] as number) > 0)) break;
    await sleep(100);
  }
  agent.child.kill('SIGTERM');
  const r = await agent.done;
  agent = undefined;
  assert.equal(r.code, 0, r.stderr);
  const j = await jobOf(h, id);
  assert.equal(j.state, 'failed');
  assert.match(j.error!, /the agent was stopped \(SIGTERM\) during the job; the disk safe is intact/);
  const check = await s.run(['check'], { env: m.repoEnv });
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /no errors were found/);
});

it('SIGKILL during a backup: the job is interrupted, and the next backup completes uploading less than the whole', { timeout: 180_000 }, async () => {
  agent = startAgent(s, m);
  const before = await packsStored(dataDir);
  const id = await runNow(h, m, 'backup', { paths: [s.path('big')] });
  while (await packsStored(dataDir) < before + 1) await sleep(50);
  agent.child.kill('SIGKILL');
  await agent.done;
  agent = startAgent(s, m);
  const lost = await waitJob(h, id);
  assert.equal(lost.state, 'interrupted');
  assert.match(lost.error!, /without reporting the end of this one/);
  const next = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('big')] }));
  assert.equal(next.state, 'succeeded', next.error ?? '');
  assert.equal(next.result!['total_bytes_processed'], DATA);
  assert.ok(next.result!['data_added'] < DATA, `uploaded ${next.result!['data_added']} of ${DATA}: what the killed backup stored is reused`);
  const check = await s.run(['check', '--read-data'], { env: m.repoEnv });
  assert.equal(check.code, 0, check.stdout + check.stderr);
});

it('the server killed during an idle poll and started again: the agent finds it and runs the next job', { timeout: 120_000 }, async () => {
  agent ??= startAgent(s, m);
  const idle = await waitJob(h, await runNow(h, m, 'check', {}));
  assert.equal(idle.state, 'succeeded', idle.error ?? '');
  const lostServer = stderrLine(agent.child, /cannot ask the server for a job/);
  await server.stop('SIGKILL');
  await lostServer;
  server = await startServerProcess(dataDir, { port });
  h = { ...h, fingerprint: server.fingerprint };
  const j = await waitJob(h, await runNow(h, m, 'check', {}));
  assert.equal(j.state, 'succeeded', j.error ?? '');
  assert.equal(j.result!['agent'].repository_opens, 1, 'the same agent process, its disk safe still open');
});

it('the server gone past the retry budget during a backup: the job fails, and says why once the server is back', { timeout: 180_000 }, async () => {
  agent?.child.kill('SIGTERM');
  await agent?.done;
  agent = s.start(['agent', 'run', '--config', m.configPath], { env: { HOLDFAST_WORKERS: '2', HOLDFAST_RETRY_FOR: '2s' } });
  await mkdir(s.path('big2'));
  for (let i = 0; i < 2; i++) await writeRandom(s.path('big2', `part${i}`), DATA / 2);
  const id = await runNow(h, m, 'backup', { paths: [s.path('big2')] });
  for (;;) {
    if ((await eventsOf(h, id)).some((e) => e.kind === 'progress' && (e.data?.['bytes'] as number) > 0)) break;
    await sleep(100);
  }
  const failedHere = stderrLine(agent.child, /cannot report the end of job/);
  await server.stop('SIGKILL');
  await failedHere;
  server = await startServerProcess(dataDir, { port });
  const j = await waitJob(h, id);
  assert.equal(j.state, 'failed');
  assert.match(j.error!, /failed after \d+ attempts? over .*ECONNREFUSED/);
});

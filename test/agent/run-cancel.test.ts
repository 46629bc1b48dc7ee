/**
 * Cancelling a running job of `holdfast agent run`, the agent a child
 * process against a server over real TLS on loopback: a backup cancelled
 * half way (its uploads held to 1 MiB/s) stops, stores no snapshot and ends
 * `cancelled` with who cancelled it, the disk safe checks clean reading all
 * its data, and the same agent's next backup completes; a restore cancelled
 * half way (its downloads held to 1 MiB/s with --limit-download) stops
 * before it wrote everything, and ends `cancelled`; a command backup
 * cancelled while its producer writes for ever leaves no process of the
 * producer's group behind, and the agent then exits on SIGTERM.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox, type Started } from '../helpers/cli.js';
import { configure, enrolMachine, eventsOf, jobOf, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { writeRandom } from '../helpers/random-file.js';
import { setUp, type TestServer } from '../helpers/server.js';

const MIB = 1024 * 1024;
/**
 * Random data: twelve seconds' worth of uploads at 1 MiB/s, and of downloads: the files are read
 * before the first progress report, and an agent with nothing new to report learns of a cancel
 * within 5 s, so the upload must outlast that with room to spare.
 */
const DATA = 12 * MIB;

/** Bytes of the regular files below `dir`. */
async function bytesUnder(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  return n;
}

let s: Sandbox;
let t: TestServer;
let h: ServerHandle;
let m: EnrolledMachine;
let agent: Started | undefined;

before(async () => {
  s = await Sandbox.create('holdfast-agent-cancel-');
  t = await setUp(`sqlite:${s.path('control.sqlite')}`);
  h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  m = await enrolMachine(h, s, 'db1');
  await configure(m, { bandwidth_limit: MIB });
  await mkdir(s.path('big'));
  for (let i = 0; i < 3; i++) await writeRandom(s.path('big', `part${i}`), DATA / 3);
});
after(async () => {
  agent?.child.kill('SIGTERM');
  await agent?.done;
  await t.stop();
  await s.remove();
});

/** Waits until the job's agent reported progress with `field` above 0. */
async function progressed(id: string, field: string): Promise<void> {
  while (!(await eventsOf(h, id)).some((e) => e.kind === 'progress' && (e.data?.[field] as number) > 0)) await sleep(100);
}

const cancel = async (id: string): Promise<void> => {
  const r = await t.call('POST', `/api/v1/jobs/${id}/cancel`, { token: t.adminToken });
  assert.equal(r.status, 202, r.text);
  assert.equal(r.body.state, 'running');
};

let snapshot = '';

it('a backup cancelled half way stores no snapshot, the safe checks clean, and the next backup completes', { timeout: 120_000 }, async () => {
  agent = startAgent(s, m);
  const id = await runNow(h, m, 'backup', { paths: [s.path('big')] });
  await progressed(id, 'bytes');
  await cancel(id);
  const j = await waitJob(h, id);
  assert.equal(j.state, 'cancelled', j.error ?? '');
  assert.match(j.error!, /^cancelled by user:\S+ while it ran: the agent stopped it: a backup stores no snapshot/);
  assert.match((await jobOf(h, id) as unknown as { cancelled_by: string }).cancelled_by, /^user:/);
  const snapshots = await s.ok(['snapshots', '--json'], { env: m.repoEnv });
  assert.deepEqual(JSON.parse(snapshots.stdout), [], 'the cancelled backup stored no snapshot');
  const check = await s.run(['check', '--read-data'], { env: m.repoEnv });
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /no errors were found/);

  const next = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('big')] }));
  assert.equal(next.state, 'succeeded', next.error ?? '');
  assert.equal(next.result!['total_bytes_processed'], DATA);
  assert.equal(agent.child.exitCode, null, 'the same agent ran it');
  snapshot = next.result!['snapshot_id'] as string;
});

it('a restore cancelled half way stops before it wrote everything, and ends cancelled', { timeout: 120_000 }, async () => {
  agent!.child.kill('SIGTERM');
  await agent!.done;
  agent = s.start(['--limit-download', '1024', 'agent', 'run', '--config', m.configPath], { env: { HOLDFAST_WORKERS: '2' } });
  const target = s.path('restored');
  const id = await runNow(h, m, 'restore', { snapshot, target });
  while ((await jobOf(h, id)).state === 'queued') await sleep(100);
  await cancel(id);
  const j = await waitJob(h, id);
  assert.equal(j.state, 'cancelled', j.error ?? '');
  assert.match(j.error!, /^cancelled by user:\S+ while it ran: the agent stopped it/);
  const written = await bytesUnder(target);
  assert.ok(written < DATA, `the restore stopped: ${written} of ${DATA} bytes written`);
  assert.ok((await eventsOf(h, id)).some((e) => /^cancelled by user:\S+: the agent stops the job/.test(e.message)));
  const after = await waitJob(h, await runNow(h, m, 'check', {}));
  assert.equal(after.state, 'succeeded', after.error ?? '');
});

/** The live processes (not zombies) of process group `group`, from /proc. */
async function liveInGroup(group: number): Promise<number[]> {
  const live: number[] = [];
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // Fields after the command's closing parenthesis: state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === group && state !== 'Z') live.push(Number(pid));
  }
  return live;
}

it('a command backup cancelled while its producer writes for ever ends the producer and its children; the agent then exits on SIGTERM', { timeout: 120_000 }, async () => {
  const producer = s.path('producer.sh');
  await writeFile(producer, `#!/bin/sh\necho $$ > ${s.path('producer.pid')}\nwhile :; do head -c 1000000 /dev/urandom; done\n`, { mode: 0o755 });
  await configure(m, { allowed_commands: [[producer]] });
  agent?.child.kill('SIGTERM');
  await agent?.done;
  agent = startAgent(s, m);
  const id = await runNow(h, m, 'command-backup', { command: [producer], name: 'db.sql' });
  await progressed(id, 'bytes');
  const group = Number(await readFile(s.path('producer.pid'), 'utf8'));
  assert.ok((await liveInGroup(group)).includes(group), 'the producer runs');
  await cancel(id);
  const j = await waitJob(h, id);
  assert.equal(j.state, 'cancelled', j.error ?? '');
  // Its stdout closed and its group sent SIGTERM, the producer and its head end; before, both stayed blocked on the pipe.
  while ((await liveInGroup(group)).length > 0) await sleep(100);
  agent!.child.kill('SIGTERM');
  const r = await agent!.done;
  agent = undefined;
  assert.equal(r.code, 0, r.stderr);
});

// The server scenario's agent rows (bench/server.ts): an incremental backup of
// a tree that changed a little, run by a running `holdfast agent run` through
// "run now", beside the same backup by a fresh `holdfast backup` process.
// What the agent saves is its fixed cost: the process start, the key
// derivation and the index load, paid once when it starts (issue 16: ≤ 0.3x).
//
//   prepare   `holdfast agent enroll` (a machine and its disk safe, the password
//             made by the agent) and `holdfast agent run`, a process of its own;
//             a second disk safe for the fresh processes; the working copy backed
//             up once into each (the agent through "run now"), untimed
//   round k   (BENCH_REPEAT) the small change of the tree scenario applied again,
//             then, taking turns to go first: [agent] "run now" of a backup of the
//             tree, timed by the server from the job's creation to its end;
//             [fresh process] `holdfast backup` of the tree into the other safe
//
// Each safe has its own history of the same tree, so both backups find the same
// parent and the same change. Before each the page cache is dropped and the tree
// and the safe's folder without its packs are read, as before every step of the
// server scenario. The agent runs at nice 19 and the idle I/O class, as it is
// shipped; on a quiet machine that costs it nothing.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jobOf, runNow, waitJob, type EnrolledMachine, type JobView, type ServerHandle } from '../test/helpers/agent.js';
import { applySmallChange, prepareStep } from './corpus.js';
import { blankRun, processCpuSeconds, runMeasured, type Cmd } from './measure.js';
import { median, renderTable, withSample, type StepRecord } from './report.js';
import { describeRun, medianCell, ratioVerdict, type ScenarioContext } from './scale-common.js';
import type { BenchServer } from './server.js';
import { HOLDFAST_MAIN, PASSWORD, TOOLS } from './tools.js';

/** The agent's incremental at most this many times a fresh process's. */
export const AGENT_TARGET = 0.3;

export interface AgentResult {
  /** `agent`: the jobs, timed by the server; `fresh`: the `holdfast backup` processes. */
  steps: { agent?: StepRecord; fresh?: StepRecord };
  /** The agent process's CPU seconds during each job. */
  agentCpu: number[];
  /** Times the agent opened the disk safe, as its last job's result says (1: it stayed open). */
  repositoryOpens: number | null;
  notes: string[];
}

/** Runs `cmd` untimed; its failure is a problem named `label`. */
async function setup(ctx: ScenarioContext, dir: string, label: string, cmd: Cmd): Promise<boolean> {
  const rec = await runMeasured(cmd, join(dir, 'logs', label.replace(/\W+/g, '-')), ctx.timeoutSec);
  if (!rec.ok) ctx.problems.push(`server agent: ${label} failed: ${rec.stderrTail}`);
  return rec.ok;
}

/** `holdfast agent enroll` of machine `name` for the bench's customer, its configuration in `dir`. */
async function enrol(ctx: ScenarioContext, dir: string, server: BenchServer, name: string): Promise<EnrolledMachine | null> {
  const token = (await server.api.create('/api/v1/tokens', { customer_id: server.customerId, name: 'installer', rights: ['enroll'] })).secret as string;
  const configPath = join(dir, 'agent.json');
  const ok = await setup(ctx, dir, 'agent enroll', {
    file: process.execPath,
    args: [HOLDFAST_MAIN, 'agent', 'enroll', '--server', `https://127.0.0.1:${server.process.port}`, '--token', token, '--fingerprint', server.process.fingerprint, '--name', name, '--config', configPath],
  });
  if (!ok) return null;
  const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  return {
    id: config['machine_id'] as string, configPath, config,
    repoEnv: {
      HOLDFAST_REPOSITORY: `https://127.0.0.1:${server.process.port}/safes/${config['safe'] as string}`, HOLDFAST_TOKEN: config['token'] as string,
      HOLDFAST_FINGERPRINT: server.process.fingerprint, HOLDFAST_PASSWORD: config['password'] as string,
    },
  };
}

/** Runs the agent rows; null when the agent could not be enrolled or started (a problem says why). */
export async function runAgentRows(ctx: ScenarioContext, o: { work: string; server: BenchServer; src: string; repeat: number }): Promise<AgentResult | null> {
  const dir = join(o.work, 'agent');
  const { server, src, repeat } = o;
  console.log(`  agent: an incremental through a running holdfast agent beside a fresh holdfast backup process; ${repeat} round(s)`);
  await mkdir(join(dir, 'logs'), { recursive: true });
  const machine = await enrol(ctx, dir, server, 'bench-agent');
  if (!machine) return null;
  const handle: ServerHandle = { ...server.api, fingerprint: server.process.fingerprint };
  const agentSafe = join(server.process.dataDir, 'safes', (await safeIdOf(server, machine.config['safe'] as string))!);

  // The fresh processes' safe: the bench machine's, with its token.
  const fresh = await server.api.create('/api/v1/safes', { customer_id: server.customerId, machine_id: server.machineId, name: 'bench-fresh' });
  const freshSafe = join(server.process.dataDir, 'safes', fresh.id as string);
  const freshHome = join(dir, 'fresh-home');
  const freshEnv = {
    HOLDFAST_REPOSITORY: `https://127.0.0.1:${server.process.port}/safes/bench-fresh`, HOLDFAST_TOKEN: server.token,
    HOLDFAST_FINGERPRINT: server.process.fingerprint, HOLDFAST_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(freshHome, 'cache'),
  };
  const freshBackup: Cmd = { file: process.execPath, args: [HOLDFAST_MAIN, 'backup', src], env: freshEnv };
  if (!(await setup(ctx, dir, 'fresh safe init', { file: process.execPath, args: [HOLDFAST_MAIN, 'init'], env: freshEnv }))) return null;

  const log = openSync(join(dir, 'logs', 'agent.log'), 'w');
  const agent: ChildProcess = spawn(process.execPath, [HOLDFAST_MAIN, 'agent', 'run', '--config', machine.configPath], { stdio: ['ignore', log, log], env: { ...process.env, XDG_CACHE_HOME: join(dir, 'agent-home', 'cache') } });
  closeSync(log);
  let exited = false;
  agent.on('exit', () => (exited = true));
  const result: AgentResult = { steps: {}, agentCpu: [], repositoryOpens: null, notes: [] };
  try {
    /** A backup job through "run now": its record, timed from its creation to its end as the server recorded them. */
    const job = async (label: string): Promise<StepRecord> => {
      const id = await runNow(handle, machine, 'backup', { paths: [src] });
      const end = await Promise.race([waitJob(handle, id), new Promise<null>((resolve) => agent.once('exit', () => resolve(null)))]);
      // The API's job carries its times beside what JobView names.
      const j = (end ?? await jobOf(handle, id)) as JobView & { created_at: string; finished_at: string | null };
      const rec: StepRecord = { ...blankRun(`run now: backup ${src} (job ${id})`, null, join(dir, 'logs', 'agent.log'), join(dir, 'logs', 'agent.log')), skipped: false };
      rec.ok = j.state === 'succeeded';
      rec.seconds = j.finished_at ? (Date.parse(j.finished_at) - Date.parse(j.created_at)) / 1000 : 0;
      rec.stderrTail = rec.ok ? '' : exited ? 'the agent exited' : `job ${j.state}: ${j.error ?? ''}`;
      if (j.result) result.repositoryOpens = ((j.result['agent'] as { repository_opens?: number } | undefined)?.repository_opens) ?? null;
      if (!rec.ok) ctx.problems.push(`server agent: ${label} failed: ${rec.stderrTail}`);
      return rec;
    };
    const initial = await job('the agent\'s initial backup');
    console.log(`  [agent] initial backup: ${describeRun(initial)}`);
    if (!initial.ok || !(await setup(ctx, dir, 'fresh process initial backup', freshBackup))) return result;

    for (let k = 0; k < repeat; k++) {
      await applySmallChange(src);
      const order = k % 2 === 0 ? (['agent', 'fresh'] as const) : (['fresh', 'agent'] as const);
      for (const who of order) {
        await prepareStep({ whole: [src, ...(who === 'fresh' ? [freshHome] : [])], metadataOf: who === 'agent' ? agentSafe : freshSafe },
          TOOLS.holdfast.code(), () => TOOLS.holdfast.probe());
        let rec: StepRecord;
        if (who === 'agent') {
          const cpu0 = await processCpuSeconds(agent.pid);
          rec = await job(`the agent's incremental ${k + 1}`);
          result.agentCpu.push((await processCpuSeconds(agent.pid)) - cpu0);
        } else {
          rec = { ...(await runMeasured(freshBackup, join(dir, 'logs', `fresh-${k + 1}`), ctx.timeoutSec)), skipped: false };
          if (!rec.ok) ctx.problems.push(`server agent: the fresh process's incremental ${k + 1} failed: ${rec.stderrTail}`);
        }
        result.steps[who] = withSample(result.steps[who], rec);
        const extra = who === 'agent' ? `, agent CPU ${result.agentCpu.at(-1)!.toFixed(2)} s` : '';
        console.log(`  [${who === 'agent' ? 'agent, run now' : 'fresh process'}] incremental after a small change (${k + 1}/${repeat}): ${describeRun(rec)}${extra}`);
      }
    }
  } finally {
    if (!exited) {
      const done = new Promise<void>((resolve) => agent.once('exit', () => resolve()));
      agent.kill('SIGTERM');
      await done;
    }
  }
  result.notes.push(
    `server agent: each round appends a line to 20 files, writes the 1 MiB file again and deletes one file (the tree scenario's small change), then the agent and a fresh process back up the tree, taking turns to go first, each into its own disk safe with the same history; `
      + `the agent's time is the job's, from "run now" to its end as the server recorded them; the fresh process's is its wall clock; the agent runs at nice 19, I/O class idle`,
    `server agent: the agent opened its disk safe ${result.repositoryOpens ?? '?'} time(s) in all (its last job's result); its CPU per incremental ${result.agentCpu.length > 0 ? `${median(result.agentCpu).toFixed(2)} s (median)` : 'n/a'}; log in ${join(dir, 'logs', 'agent.log')}`,
  );
  return result;
}

/** The id (folder name) of the disk safe called `name`. */
async function safeIdOf(server: BenchServer, name: string): Promise<string | undefined> {
  const r = await server.api.call('GET', '/api/v1/safes', { token: server.api.adminToken });
  return (r.body as { id: string; name: string }[]).find((s) => s.name === name)?.id;
}

/** The agent rows' table: the agent's incremental beside the fresh process's, the ratio against the target. */
export function agentTable(r: AgentResult): string {
  const a = r.steps.agent;
  const f = r.steps.fresh;
  const ratio = a?.ok && f?.ok ? `${(a.seconds / f.seconds).toFixed(2)}x ${ratioVerdict(a, f, AGENT_TARGET)}` : '-';
  return renderTable(['', 'agent (run now)', 'fresh process', `agent/fresh (≤ ${AGENT_TARGET}x)`],
    [['incremental after a small change (s)', medianCell(a).text, medianCell(f).text, ratio]]);
}

// The fleet scenario (issues 17 and 18): what a fleet of agents costs the
// server. `BENCH_SCENARIOS=fleet` runs it alone; about four minutes.
//
//   setups   one `holdfast server` process on SQLite; then two processes
//            sharing one PostgreSQL (test/helpers/postgres.ts), the agents
//            split between them
//   fleet    one customer with a policy of a backup every minute; N
//            machines (100, then 900 more: 1,000), each with a disk safe
//            and an agent token, written into the database as the API
//            writes them; the agents connect, 5 s, then the window
//   agents   a load generator in this process: per machine the agent's own
//            job channel (src/agent/job-channel.ts: the long poll of
//            GET /agent/jobs/next?wait=25 with its backoff), which reports
//            every job the scheduler gives it as succeeded at once
//   measured for WINDOW_MS at each N, per setup:
//            - each server process's peak RSS (VmRSS sampled every 250 ms)
//            - the latency of the fleet dashboard's call as the customer's
//              admin (GET /machines?status=true&limit=1000), one after another:
//              p50, p99; the first call of a phase apart (it counts the new
//              safes' storage, once per process)
//            - the scheduler's tick (holdfast_scheduler_tick_seconds in each
//              node's /metrics: mean and count of the ticks in the window)
//            - the jobs the agents reported
//
// The nodes keep their disk safes in their own data folders: no backup
// uploads anything here, so nothing is shared but the database.

import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { JobChannel } from '../src/agent/job-channel.js';
import { ServerApi } from '../src/agent/server-api.js';
import { openDatabase } from '../src/server/db/open-database.js';
import { mintSecret } from '../src/server/services/secrets.js';
import { SQLITE_FILE } from '../src/server/server-settings.js';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { adminClient, httpsJson, startServerProcess, type Answer, type ServerProcess } from '../test/helpers/server.js';
import { renderTable } from './report.js';
import type { ScenarioContext } from './scale-common.js';

/** How long each fleet size is measured: at least one scheduler tick (every 30 s) of each node. */
const WINDOW_MS = 40_000;
const SIZES = [100, 1000] as const;
/** How long the agents have to connect before a window opens. */
const SETTLE_MS = 5000;

export interface FleetPhase {
  setup: string;
  agents: number;
  /** Peak RSS of each node during the window, MB. */
  peakRssMB: number[];
  /** The first listing of the phase (ms). */
  firstListMs: number;
  listP50Ms: number;
  listP99Ms: number;
  listSamples: number;
  /** Mean scheduler tick in the window, all nodes (ms); null without a tick. */
  tickMeanMs: number | null;
  tickMaxBucketMs: number | null;
  ticks: number;
  /** Jobs the agents reported succeeded in the window. */
  jobsReported: number;
}

export interface FleetResult {
  phases: FleetPhase[];
  notes: string[];
}

interface Node {
  process: ServerProcess;
  url: string;
}

/** A request to `node`, trusting its certificate only. */
const call = (node: Node, method: string, path: string, token: string): Promise<Answer> => httpsJson(node.process.port, node.process.cert, method, path, { token });

/** The load generator: one agent job channel per machine token, each on its node. */
class Agents {
  private readonly stop = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly apis: ServerApi[] = [];
  reported = 0;

  add(node: Node, token: string): void {
    const api = new ServerApi({ server: node.url, token, fingerprint: node.process.fingerprint });
    this.apis.push(api);
    const channel = new JobChannel(api, () => undefined);
    this.loops.push((async () => {
      for (;;) {
        const job = await channel.next(this.stop.signal);
        if (job === undefined) return;
        await channel.finish(job.id, { state: 'succeeded', result: { snapshot_id: 'ab'.repeat(32), total_bytes_processed: 0, data_added: 0 } }, this.stop.signal);
        this.reported++;
      }
    })().catch(() => undefined));
  }

  async close(): Promise<void> {
    this.stop.abort();
    await Promise.all(this.loops);
    for (const a of this.apis) a.close();
  }
}

/**
 * Machines `from` to `to` - 1 of `customer` (`m0000`, …), each with a disk
 * safe and an agent's token (the backup right), written into the database
 * at once as the API would write them (thousands of API calls would take
 * minutes on a loaded machine); their tokens' secrets.
 */
async function addMachines(url: string, customer: string, from: number, to: number): Promise<string[]> {
  const database = await openDatabase(url, '');
  try {
    const at = new Date().toISOString();
    const rows = Array.from({ length: to - from }, (_, k) => {
      const name = `m${String(from + k).padStart(4, '0')}`;
      const id = randomUUID();
      const safe = randomUUID();
      const minted = mintSecret('token');
      return {
        secret: minted.token,
        machine: { id, customer_id: customer, name, created_at: at, last_seen_at: null, retired_at: null, safe_deleted_at: null, stale_since: null, proven_restorable_at: null, proven_restorable_snapshot: null },
        safe: { id: safe, customer_id: customer, machine_id: id, name, location: `safes/${safe}`, quota_hard: null, quota_soft: null, created_at: at, deleting_at: null, quota_alert: null, snapshots_indexed_at: at },
        token: { id: minted.id, name: `${name} agent`, secret_hash: minted.secretHash, customer_id: customer, machine_id: id, rights: 'backup', created_by: 'bench', created_at: at, expires_at: null, revoked_at: null, safe_id: null },
      };
    });
    await database.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += 100) {
        const part = rows.slice(i, i + 100);
        await trx.insertInto('machines').values(part.map((r) => r.machine)).execute();
        await trx.insertInto('disk_safes').values(part.map((r) => r.safe)).execute();
        await trx.insertInto('api_tokens').values(part.map((r) => r.token)).execute();
      }
    });
    return rows.map((r) => r.secret);
  } finally {
    await database.close();
  }
}

/** The kB of `field` (VmRSS, VmHWM) in /proc/PID/status. */
async function procKiB(pid: number | undefined, field: string): Promise<number> {
  if (pid === undefined) return 0;
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''));
  return m ? Number(m[1]) : 0;
}

/** holdfast_scheduler_tick_seconds of a node: sum, count and its buckets. */
async function ticksOf(node: Node, token: string): Promise<{ sum: number; count: number; buckets: Map<number, number> }> {
  const r = await call(node, 'GET', '/metrics', token);
  const at = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(r.text)?.[1] ?? 0);
  const buckets = new Map<number, number>();
  for (const m of r.text.matchAll(/^holdfast_scheduler_tick_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return { sum: at('holdfast_scheduler_tick_seconds_sum'), count: at('holdfast_scheduler_tick_seconds_count'), buckets };
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? 0;
};

async function startNode(work: string, name: string, db: string | undefined, joins: boolean): Promise<Node> {
  const log = openSync(join(work, `${name}.log`), 'w');
  try {
    const process = await startServerProcess(join(work, name), { ...(db ? { db } : {}), log, joins });
    return { process, url: `https://127.0.0.1:${process.port}` };
  } finally {
    closeSync(log);
  }
}

/** One setup: its nodes on `db` (undefined: the first node's SQLite), the fleet grown to each size and measured. */
async function runSetup(ctx: ScenarioContext, work: string, label: string, nodeCount: number, db: string | undefined): Promise<FleetPhase[]> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const nodes: Node[] = [];
  const agents = new Agents();
  const phases: FleetPhase[] = [];
  try {
    for (let i = 0; i < nodeCount; i++) nodes.push(await startNode(work, `node${i + 1}`, db, i > 0));
    const first = nodes[0]!.process;
    const admin = await adminClient(first.port, first.cert, first.firstAdmin!);
    // Each node's /metrics is read with the admin's session (sessions live in the shared database).
    const ticks = () => Promise.all(nodes.map((n) => ticksOf(n, admin.adminToken)));
    const customer = (await admin.create('/api/v1/customers', { name: 'fleet' })).id as string;
    await admin.create('/api/v1/policies', { customer_id: customer, schedule: 'every 1m', backup: { paths: ['/srv'] } });
    const made = await admin.create('/api/v1/users', { name: 'fleet-admin', role: 'customer-admin', customer_id: customer });
    const viewer = await admin.login('fleet-admin', made.password as string, 'the fleet admin\'s long password');
    let machines = 0;
    for (const size of SIZES) {
      const tokens = await addMachines(db ?? `sqlite:${join(work, 'node1', SQLITE_FILE)}`, customer, machines, size);
      tokens.forEach((t, i) => agents.add(nodes[(machines + i) % nodes.length]!, t));
      machines = size;
      // The agents' first polls (a TLS handshake each) are over before the window opens: it measures the fleet as it runs.
      await new Promise((r) => setTimeout(r, SETTLE_MS));

      const ticksBefore = await ticks();
      const reportedBefore = agents.reported;
      const peaks = nodes.map(() => 0);
      const end = Date.now() + WINDOW_MS;
      const sampling = (async () => {
        while (Date.now() < end) {
          const rss = await Promise.all(nodes.map((n) => procKiB(n.process.pid, 'VmRSS')));
          rss.forEach((r, i) => { peaks[i] = Math.max(peaks[i]!, r); });
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const latencies: number[] = [];
      let firstListMs = 0;
      for (let k = 0; Date.now() < end; k++) {
        const node = nodes[k % nodes.length]!;
        const started = performance.now();
        const r = await call(node, 'GET', '/api/v1/machines?status=true&limit=1000', viewer);
        const ms = performance.now() - started;
        if (r.status !== 200 || (r.body as unknown[]).length !== size) ctx.problems.push(`fleet: ${label}, ${size} agents: the listing answered ${r.status} with ${(r.body as unknown[] | undefined)?.length} machines`);
        if (k === 0) firstListMs = ms;
        else latencies.push(ms);
        await new Promise((res) => setTimeout(res, 200));
      }
      await sampling;
      const ticksAfter = await ticks();
      const count = ticksAfter.reduce((s, t, i) => s + t.count - ticksBefore[i]!.count, 0);
      const sum = ticksAfter.reduce((s, t, i) => s + t.sum - ticksBefore[i]!.sum, 0);
      // The smallest bucket that holds every tick of the window: the slowest tick is at most this long.
      const bounds = [...(ticksAfter[0]?.buckets.keys() ?? [])].sort((a, b) => a - b);
      const maxBucket = bounds.find((b) => ticksAfter.every((t, i) => (t.buckets.get(b) ?? 0) - (ticksBefore[i]!.buckets.get(b) ?? 0) === t.count - ticksBefore[i]!.count));
      phases.push({
        setup: label, agents: size, peakRssMB: peaks.map((k) => Math.round((k * 1024) / 1e6)), firstListMs: Math.round(firstListMs),
        listP50Ms: Math.round(quantile(latencies, 0.5)), listP99Ms: Math.round(quantile(latencies, 0.99)), listSamples: latencies.length,
        tickMeanMs: count > 0 ? Math.round((sum / count) * 1000) : null, tickMaxBucketMs: count > 0 && maxBucket !== undefined ? maxBucket * 1000 : null, ticks: count,
        jobsReported: agents.reported - reportedBefore,
      });
      console.log(`  fleet: ${label}, ${size} agents: ${JSON.stringify(phases.at(-1))}`);
    }
  } finally {
    await agents.close();
    for (const n of nodes.reverse()) await n.process.stop();
    if (!ctx.keep) await rm(work, { recursive: true, force: true });
  }
  return phases;
}

/** Runs the scenario: one node on SQLite, then two on PostgreSQL. */
export async function runFleet(ctx: ScenarioContext): Promise<FleetResult> {
  const work = join(ctx.benchDir, 'fleet');
  const phases = await runSetup(ctx, join(work, 'sqlite'), '1 node, SQLite', 1, undefined);
  let pg: TestPostgres | undefined;
  try {
    pg = await startPostgres();
    phases.push(...await runSetup(ctx, join(work, 'postgres'), '2 nodes, PostgreSQL', 2, await pg.newDatabase()));
  } catch (e) {
    ctx.problems.push(`fleet: the PostgreSQL setup did not run: ${(e as Error).message}`);
  } finally {
    await pg?.stop();
  }
  return {
    phases,
    notes: [
      `fleet: ${WINDOW_MS / 1000} s per fleet size; agents are this process's job channels (the agent's long poll), reporting each job succeeded at once; a backup every minute per machine, at most 16 running (the scheduler's cap); the listing is the customer admin's GET /machines?status=true&limit=1000, one after another, 200 ms apart; its first call of a phase counts the new safes' storage (once per process) and is shown apart; peak RSS: VmRSS sampled every 250 ms; tick: holdfast_scheduler_tick_seconds (mean, and the smallest histogram bucket that holds the slowest)`,
    ],
  };
}

/** The scenario's table. */
export function fleetTable(r: FleetResult): string {
  return renderTable(
    ['setup', 'agents', 'peak RSS MB', 'list first ms', 'list p50 ms', 'list p99 ms', 'tick mean ms', 'tick max ≤ ms', 'ticks', 'jobs done'],
    r.phases.map((p) => [
      p.setup, String(p.agents), p.peakRssMB.join(' + '), String(p.firstListMs), String(p.listP50Ms), `${p.listP99Ms} (n=${p.listSamples})`,
      p.tickMeanMs === null ? 'n/a' : String(p.tickMeanMs), p.tickMaxBucketMs === null ? 'n/a' : String(p.tickMaxBucketMs), String(p.ticks), String(p.jobsReported),
    ]),
  );
}

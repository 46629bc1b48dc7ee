// Server scenario (issue 16): the corpus backed up and restored through
// `holdfast server` on loopback (CLI -> HTTPS -> server -> its local storage),
// beside the same steps into a local repository, and beside what a provider
// would run otherwise: restic over SFTP and Borg over SSH (`borg serve`), both
// to an OpenSSH server on loopback (bench/sshd.ts).
//
//   prepare   a working copy of the corpus; the real `holdfast server` command in a
//             process of its own, with a customer, a machine and the machine's
//             backup token made through its API; sshd with keys of its own
//   round k   (BENCH_REPEAT, default 3; the variants take turns to go first)
//             [variant] initial backup into a fresh repository (for the server a
//             new disk safe), its init untimed
//   round k   [variant] unchanged re-backup
//   round k   [variant] full restore into a fresh folder, compared with the tree
//   agent     an incremental through a running `holdfast agent run` beside a fresh
//             `holdfast backup` process (bench/server-agent.ts)
//
// Before every timed step the page cache is dropped (as root) and the step's
// input read once, as in the tree scenario (bench/corpus.ts prepareStep). Every
// step also records the endpoint's CPU time (the server process; sshd with its
// finished sessions), to tell a slow client from a busy endpoint.
// Targets from issue 16: through the server ≤ 1.2x the local repository and
// ≤ 0.5x restic over SFTP (Borg over SSH is a second peer, without a target);
// the agent's incremental ≤ 0.3x the fresh process's.

import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { adminClient, startServerProcess, type ApiClient, type ServerProcess } from '../test/helpers/server.js';
import { makeWorkingCopy, prepareStep } from './corpus.js';
import { duBytes, findInPath, processCpuSeconds, runMeasured, treeDifference, walkTree, type Cmd, type TreeStats } from './measure.js';
import { median, renderTable, withSample, type StepRecord } from './report.js';
import { benchRepeat, describeRun, medianCell, ratioVerdict, type ScenarioContext } from './scale-common.js';
import { findSshd, startSshd, type Sshd } from './sshd.js';
import { TOOLS, type InitAttempt, type ToolName, type ToolPaths } from './tools.js';
import { runAgentRows, type AgentResult } from './server-agent.js';

/** Through the server at most this many times the local repository's time. */
export const SERVER_LOCAL_TARGET = 1.2;
/** Through the server at most this many times restic's over SFTP. */
export const SERVER_RESTIC_TARGET = 0.5;

export const VARIANTS = ['local', 'server', 'restic-sftp', 'borg-ssh'] as const;
export type VariantKey = (typeof VARIANTS)[number];

const LABELS: Record<VariantKey, string> = { local: 'holdfast local', server: 'holdfast server', 'restic-sftp': 'restic SFTP', 'borg-ssh': 'Borg SSH' };
const STEPS = ['backup1', 'backup2', 'restore'] as const;
const STEP_LABELS: Record<(typeof STEPS)[number], string> = { backup1: 'initial backup', backup2: 'unchanged re-backup', restore: 'full restore' };

/** One way of backing up: a tool and where its repository is. */
interface Variant {
  readonly key: VariantKey;
  readonly tool: ToolName;
  /** Its folder (logs, cache, restores); `paths.repo` is the repository as the tool names it. */
  readonly paths: ToolPaths;
  /** The repository's folder on this machine (read before a step, du -sb); the server's safe folder. */
  repoDir: string;
  /** The tool's command made to reach its repository (token and pin, sftp command, BORG_RSH). */
  readonly wrap: (cmd: Cmd) => Cmd;
  /** Before round k's initial backup, untimed: an empty repository to init (for the server a new disk safe). */
  readonly reset: (k: number) => Promise<void>;
  /** Files read again, beside the tool's, after the page cache is dropped. */
  readonly code: string[];
  /** The endpoint's CPU seconds so far; null without an endpoint. */
  readonly endpointCpu: () => Promise<number | null>;
}

export interface ServerVariantResult {
  key: VariantKey;
  label: string;
  settings: string;
  steps: Record<string, StepRecord>;
  /** The endpoint's CPU seconds during each run of a step. */
  endpointCpu: Record<string, number[]>;
  /** Null when every restored tree held the tree's files and bytes, else what differed. */
  verify: string | null;
  repoBytes: number | null;
}

export interface ServerResult {
  corpus: string;
  tree: TreeStats;
  repeat: number;
  variants: ServerVariantResult[];
  /** The agent rows (bench/server-agent.ts); null when not run. */
  agent: AgentResult | null;
  loadAverage: { start: number[]; end: number[] };
  notes: string[];
}

/** The server, its admin's client and the machine the bench's safes belong to. */
export interface BenchServer {
  process: ServerProcess;
  api: ApiClient;
  customerId: string;
  machineId: string;
  /** The machine's token: backup right (add and read, never delete), as an agent's. */
  token: string;
}

async function startBenchServer(work: string): Promise<BenchServer> {
  const log = openSync(join(work, 'logs', 'server.log'), 'w');
  try {
    const process = await startServerProcess(join(work, 'server-data'), { log });
    try {
      const api = await adminClient(process.port, process.cert, process.firstAdmin!);
      const customerId = (await api.create('/api/v1/customers', { name: 'bench' })).id as string;
      const machineId = (await api.create('/api/v1/machines', { customer_id: customerId, name: 'bench' })).id as string;
      const token = (await api.create('/api/v1/tokens', { customer_id: customerId, machine_id: machineId, name: 'bench', rights: ['backup'] })).secret as string;
      return { process, api, customerId, machineId, token };
    } catch (e) {
      await process.stop();
      throw e;
    }
  } finally {
    closeSync(log); // the child has its own copy
  }
}

function variants(ctx: ScenarioContext, work: string, server: BenchServer | null, sshd: Sshd | null): Variant[] {
  const paths = (key: VariantKey, repo: string): ToolPaths => ({ dir: join(work, key), repo, home: join(work, key, 'home') });
  const local = (key: VariantKey): string => join(work, key, 'repo');
  const freshLocal = (v: () => Variant) => async (): Promise<void> => {
    await rm(v().repoDir, { recursive: true, force: true });
  };
  const ssh = sshd ? [findInPath('ssh'), findSshd()].filter((p): p is string => p !== null) : [];
  const out: Variant[] = [];
  if (ctx.tools.includes('holdfast')) {
    const v: Variant = {
      key: 'local', tool: 'holdfast', paths: paths('local', local('local')), repoDir: local('local'),
      wrap: (c) => c, reset: freshLocal(() => v), code: [], endpointCpu: async () => null,
    };
    out.push(v);
  }
  if (ctx.tools.includes('holdfast') && server) {
    const s = server;
    const v: Variant = {
      key: 'server', tool: 'holdfast', paths: paths('server', ''), repoDir: '',
      wrap: (c) => ({ ...c, env: { ...c.env, HOLDFAST_TOKEN: s.token, HOLDFAST_FINGERPRINT: s.process.fingerprint } }),
      reset: async (k) => {
        const name = `bench-${k + 1}`;
        const safe = await s.api.create('/api/v1/safes', { customer_id: s.customerId, machine_id: s.machineId, name });
        v.paths.repo = `https://127.0.0.1:${s.process.port}/safes/${name}`;
        v.repoDir = join(s.process.dataDir, 'safes', safe.id as string);
      },
      // Its database is part of every request's work.
      code: [join(s.process.dataDir, 'holdfast.db')],
      endpointCpu: () => processCpuSeconds(s.process.pid),
    };
    out.push(v);
  }
  if (ctx.tools.includes('restic') && sshd) {
    const repoDir = local('restic-sftp');
    const v: Variant = {
      key: 'restic-sftp', tool: 'restic', paths: paths('restic-sftp', `sftp:${sshd.user}@127.0.0.1:${repoDir}`), repoDir,
      wrap: (c) => ({ ...c, args: ['-o', `sftp.command=${sshd.sftpCommand()}`, ...c.args] }),
      reset: freshLocal(() => v), code: ssh, endpointCpu: () => sshd.cpuSeconds(),
    };
    out.push(v);
  }
  if (ctx.tools.includes('borg') && sshd) {
    const repoDir = local('borg-ssh');
    const v: Variant = {
      key: 'borg-ssh', tool: 'borg', paths: paths('borg-ssh', `ssh://${sshd.user}@127.0.0.1:${sshd.port}${repoDir}`), repoDir,
      wrap: (c) => ({ ...c, env: { ...c.env, BORG_RSH: sshd.rsh() } }),
      reset: freshLocal(() => v), code: ssh, endpointCpu: () => sshd.cpuSeconds(),
    };
    out.push(v);
  }
  return out;
}

export async function runServer(ctx: ScenarioContext, corpus: string): Promise<ServerResult | null> {
  const repeat = benchRepeat();
  console.log(`\nServer: backup and restore of ${corpus} through holdfast server over HTTPS on loopback, beside a local repository, restic over SFTP and Borg over SSH; ${repeat} round(s)`);
  if (!ctx.tools.includes('holdfast')) {
    ctx.problems.push('server scenario not run: BENCH_TOOLS leaves out holdfast');
    return null;
  }
  const start = loadavg();
  const work = join(ctx.benchDir, 'work-scale', 'server');
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'logs'), { recursive: true });
  const src = join(work, 'src');
  await makeWorkingCopy(corpus, src);
  const tree = (await walkTree(src)).stats;
  const result: ServerResult = { corpus, tree, repeat, variants: [], agent: null, loadAverage: { start, end: [] }, notes: [] };

  let server: BenchServer | null = null;
  let sshd: Sshd | null = null;
  try {
    server = await startBenchServer(work).catch((e: unknown) => {
      ctx.problems.push(`server: holdfast server did not start: ${(e as Error).message}`);
      return null;
    });
    if (ctx.tools.includes('restic') || ctx.tools.includes('borg')) {
      sshd = await startSshd(join(work, 'sshd')).catch((e: unknown) => {
        ctx.problems.push(`server: the SFTP and SSH peers are not run: ${(e as Error).message}`);
        return null;
      });
    }
    const all = variants(ctx, work, server, sshd);
    const results = new Map<VariantKey, ServerVariantResult>();
    for (const v of all) {
      results.set(v.key, { key: v.key, label: LABELS[v.key], settings: '', steps: {}, endpointCpu: {}, verify: null, repoBytes: null });
      await mkdir(join(v.paths.dir, 'logs'), { recursive: true });
    }
    const res = (v: Variant): ServerVariantResult => results.get(v.key)!;

    /** A fresh repository and cache for round k's initial backup; false (and a problem) when its init failed. */
    const initFresh = async (v: Variant, k: number): Promise<boolean> => {
      await rm(v.paths.home, { recursive: true, force: true });
      await mkdir(v.paths.home, { recursive: true });
      let why = '';
      try {
        await v.reset(k);
        const attempts: InitAttempt[] = await TOOLS[v.tool].initAttempts(v.paths);
        for (const [i, a] of attempts.entries()) {
          if (i > 0) await rm(v.repoDir, { recursive: true, force: true }); // what the failed attempt left (Borg's fallback)
          const rec = await runMeasured(v.wrap(a.cmd), join(v.paths.dir, 'logs', `init-${k + 1}`), ctx.timeoutSec);
          if (rec.ok) {
            res(v).settings = a.settings;
            return true;
          }
          why = rec.stderrTail;
        }
      } catch (e) {
        why = (e as Error).message;
      }
      ctx.problems.push(`server [${LABELS[v.key]}] init ${k + 1} failed: ${why}`);
      return false;
    };
    const ready = new Set<VariantKey>();
    const rotated = (k: number): Variant[] => {
      const live = all.filter((v) => k === 0 || ready.has(v.key));
      return [...live.slice(k % live.length), ...live.slice(0, k % live.length)];
    };
    /** Round k of a timed step: its input read after a cache drop, the endpoint's CPU beside it. */
    const step = async (v: Variant, name: (typeof STEPS)[number], k: number, cmd: Cmd): Promise<StepRecord> => {
      const input = name === 'restore' ? { whole: [v.repoDir, v.paths.home] } : { whole: [src, v.paths.home, ...v.code.filter((f) => f.endsWith('.db'))], metadataOf: v.repoDir };
      await prepareStep(input, [...TOOLS[v.tool].code(), ...v.code], () => TOOLS[v.tool].probe());
      const cpu0 = await v.endpointCpu();
      const rec: StepRecord = { ...(await runMeasured(v.wrap(cmd), join(v.paths.dir, 'logs', `${name}-${k + 1}`), ctx.timeoutSec)), skipped: false };
      const cpu1 = await v.endpointCpu();
      const r = res(v);
      r.steps[name] = withSample(r.steps[name], rec);
      const cpu = cpu0 === null || cpu1 === null ? null : cpu1 - cpu0;
      if (cpu !== null) (r.endpointCpu[name] ??= []).push(cpu);
      console.log(`  [${LABELS[v.key]}] ${STEP_LABELS[name]} (${k + 1}/${repeat}): ${describeRun(rec)}${cpu === null ? '' : `, endpoint CPU ${cpu.toFixed(2)} s`}`);
      if (!rec.ok) ctx.problems.push(`server [${LABELS[v.key]}] ${STEP_LABELS[name]} ${k + 1} failed: ${rec.stderrTail}`);
      return rec;
    };

    for (let k = 0; k < repeat; k++) {
      for (const v of rotated(k)) {
        if (!(await initFresh(v, k))) {
          ready.delete(v.key);
          continue;
        }
        if ((await step(v, 'backup1', k, TOOLS[v.tool].backup(v.paths, src, 1))).ok) ready.add(v.key);
        else ready.delete(v.key);
      }
    }
    // Borg needs a new archive name for every backup: 20, 21, … for the unchanged ones.
    for (let k = 0; k < repeat; k++) {
      for (const v of rotated(k)) await step(v, 'backup2', k, TOOLS[v.tool].backup(v.paths, src, 20 + k));
    }
    const targets: string[] = [];
    for (let k = 0; k < repeat; k++) {
      for (const v of rotated(k)) {
        // Each restore gets its own folder, all removed after the last (ext4's recently freed inodes: decisions.md, "The benchmark's fairness").
        const target = join(v.paths.dir, `restore-${k + 1}`);
        await rm(target, { recursive: true, force: true });
        await mkdir(target, { recursive: true });
        targets.push(target);
        if (!(await step(v, 'restore', k, TOOLS[v.tool].restore(v.paths, target, 20 + repeat - 1))).ok) continue;
        const root = join(target, src);
        const diff = existsSync(root) ? treeDifference(tree, (await walkTree(root)).stats) : `nothing restored at ${root}`;
        if (diff !== null) ctx.problems.push(`server [${LABELS[v.key]}] restore ${k + 1}: the restored tree differs from the source (${diff})`);
        res(v).verify ??= diff;
      }
    }
    if (!ctx.keep) for (const t of targets) await rm(t, { recursive: true, force: true });
    for (const v of all) if (ready.has(v.key)) res(v).repoBytes = await duBytes(v.repoDir);
    result.variants = all.map(res);
    if (server) result.agent = await runAgentRows(ctx, { work, server, src, repeat });
  } finally {
    await sshd?.stop();
    await server?.process.stop();
  }
  result.loadAverage.end = loadavg();
  result.notes.push(
    `server: corpus ${corpus} (${tree.files} files, ${(tree.bytes / 1e6).toFixed(0)} MB), backed up from a working copy; median (min–max) of ${repeat} round(s), `
      + 'each initial backup into a fresh repository (a new disk safe on the server), the variants taking turns to go first; restored trees compared with the source (files, bytes)',
    `server: holdfast server ${server ? `on 127.0.0.1:${server.process.port} (its own process, SQLite, safes in its data folder; log in ${join(work, 'logs', 'server.log')})` : 'did not start'}; `
      + `the CLI reaches it with the machine's backup token and the pinned fingerprint; restic over SFTP (sftp.command) and Borg over SSH (BORG_RSH, borg serve) to sshd ${sshd ? `on 127.0.0.1:${sshd.port}` : '(not run)'}`,
    `server: endpoint CPU (median per step; the server process, or sshd and its sessions): ${result.variants.filter((v) => Object.keys(v.endpointCpu).length > 0)
      .map((v) => `${v.label} ${STEPS.filter((s) => v.endpointCpu[s]).map((s) => `${STEP_LABELS[s]} ${median(v.endpointCpu[s]!).toFixed(2)} s`).join(', ')}`).join('; ')}`,
    ...(result.agent?.notes ?? []),
    `server: load average ${start.map((l) => l.toFixed(1)).join(' ')} at start, ${result.loadAverage.end.map((l) => l.toFixed(1)).join(' ')} at end`,
  );
  return result;
}

/** The server scenario's table: the variants' medians, then the server's time over each other's, with the targets. */
export function serverTable(r: ServerResult): string {
  const byKey = new Map(r.variants.map((v) => [v.key, v]));
  const shown = VARIANTS.filter((k) => byKey.has(k));
  const versus: { key: VariantKey; target: number | null }[] = [
    { key: 'local', target: SERVER_LOCAL_TARGET },
    { key: 'restic-sftp', target: SERVER_RESTIC_TARGET },
    { key: 'borg-ssh', target: null },
  ].filter((c) => byKey.has(c.key as VariantKey)) as { key: VariantKey; target: number | null }[];
  const header = ['', ...shown.map((k) => LABELS[k]), ...versus.map((c) => `server/${LABELS[c.key]}${c.target === null ? '' : ` (≤ ${c.target}x)`}`)];
  const server = byKey.get('server');
  const rows = STEPS.map((s) => {
    const restoreDiffers = (v: ServerVariantResult): boolean => s === 'restore' && v.verify !== null;
    const cells = shown.map((k) => {
      const v = byKey.get(k)!;
      const c = medianCell(v.steps[s]);
      return restoreDiffers(v) ? `${c.text} (differs)` : c.text;
    });
    const ratios = versus.map((c) => {
      const a = server?.steps[s];
      const b = byKey.get(c.key)!.steps[s];
      if (!a?.ok || !b?.ok || server === undefined) return '-';
      const ratio = `${(a.seconds / b.seconds).toFixed(2)}x`;
      if (c.target === null) return ratio;
      return `${ratio} ${restoreDiffers(server) ? 'FAIL' : ratioVerdict(a, b, c.target)}`;
    });
    return [`${STEP_LABELS[s]} (s)`, ...cells, ...ratios];
  });
  rows.push(['repository size (MB)', ...shown.map((k) => {
    const b = byKey.get(k)!.repoBytes;
    return b === null ? '-' : (b / 1e6).toFixed(1);
  }), ...versus.map(() => '')]);
  return renderTable(header, rows);
}

// S3 scenario: the corpus backed up to and restored from an S3 endpoint on
// loopback, holdfast beside restic's S3 backend, and holdfast's keyless copy
// between a local repository and S3 in both directions beside a plain move of
// the same files with the SDK (bench/s3-sync.ts, `aws s3 sync`-style).
//
// The endpoint is s3rver over HTTPS with a self-signed certificate (the tests'
// helper, test/helpers/s3rver.ts): restic 0.14 cannot read back what it wrote
// to s3rver over plain HTTP (aws-chunked framing), so both tools get --cacert.
// Each tool's repository is a prefix of one bucket, a fresh one every round.
//
//   prepare  a local repository of the corpus (holdfast init + backup, not timed)
//   round k  (BENCH_S3_ROUNDS, default 3; the tools take turns to go first)
//            [tool] backup of the corpus to a fresh prefix, then restore of it
//            copy local -> S3 (into init --copy-from), plain upload of the repository's files
//            copy S3 -> local (into init --copy-from), plain download of those files,
//            and the same download made as durable as a local repository's saves
//            (s3-sync --durable: each file fsynced, linked into place, its folder fsynced)
//
// Every timed step also records the endpoint's CPU time (s3rver is a Node
// process on the same cores), to tell a slow client from a saturated endpoint.
// Targets from issue 15: holdfast ≤ 0.5 of restic's time for the backup and the
// restore; copy within 1.2× of moving the bytes.

import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startS3rver } from '../test/helpers/s3rver.js';
import { duBytes, processCpuSeconds, runMeasured, treeDifference, walkTree, type Cmd } from './measure.js';
import { median, withSample, type ScaleRow, type StepRecord } from './report.js';
import { describeRun, medianCell as cell, ratioVerdict, type ScenarioContext } from './scale-common.js';
import { HOLDFAST_MAIN, PASSWORD, type ToolName } from './tools.js';

export const S3_RATIO_TARGET = 0.5;
export const COPY_RATIO_TARGET = 1.2;
const SYNC_MAIN = fileURLToPath(new URL('./s3-sync.js', import.meta.url));

/** The measured steps, by name: `[tool] backup`, `copy up`, `plain up`, … */
type Steps = Record<string, StepRecord>;

export interface S3Result {
  corpus: string;
  endpoint: string;
  rounds: number;
  steps: Steps;
  /** The endpoint's CPU seconds during each step, one per round. */
  endpointCpu: Record<string, number[]>;
  /** Per tool: null when every restored tree held the corpus's files and bytes, else what differed. */
  verify: Partial<Record<ToolName, string | null>>;
  /** Bytes of the local repository that the copies move (du -sb). */
  repoBytes: number | null;
  notes: string[];
}

/** BENCH_S3_ROUNDS: how many times each step of the S3 scenario runs. */
function parseRounds(spec: string | undefined): number {
  if (spec === undefined || spec.trim() === '') return 3;
  const n = Number(spec);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error('BENCH_S3_ROUNDS must be a whole number from 1 to 9');
  return n;
}

function holdfast(args: string[], env: Record<string, string>): Cmd {
  return { file: process.execPath, args: [HOLDFAST_MAIN, ...args], env: { HOLDFAST_PASSWORD: PASSWORD, HOLDFAST_FROM_PASSWORD: PASSWORD, ...env } };
}

function restic(args: string[], env: Record<string, string>): Cmd {
  return { file: 'restic', args, env: { RESTIC_PASSWORD: PASSWORD, ...env } };
}

export async function runS3(ctx: ScenarioContext, corpus: string): Promise<S3Result> {
  const rounds = parseRounds(process.env.BENCH_S3_ROUNDS);
  console.log(`\nS3: backup and restore of ${corpus} through s3rver over HTTPS on loopback; copy local <-> S3; ${rounds} rounds`);
  const work = join(ctx.benchDir, 'work-scale', 's3');
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'logs'), { recursive: true });
  const source = (await walkTree(corpus)).stats;
  const s3 = await startS3rver();
  const env = { ...s3.env, AWS_DEFAULT_REGION: 'us-east-1' };
  const result: S3Result = { corpus, endpoint: s3.endpoint, rounds, steps: {}, endpointCpu: {}, verify: {}, repoBytes: null, notes: [] };
  /** An untimed step: a failure is a problem and skips what needs it. */
  const setup = async (label: string, cmd: Cmd): Promise<boolean> => {
    const rec = await runMeasured(cmd, join(work, 'logs', label.replace(/\W+/g, '-')), ctx.timeoutSec);
    if (!rec.ok) ctx.problems.push(`S3 ${label} failed: ${rec.stderrTail}`);
    return rec.ok;
  };
  /** Round `k` of a timed step, merged into its median; the endpoint's CPU beside it. */
  const step = async (name: string, k: number, cmd: Cmd): Promise<StepRecord> => {
    const cpu0 = await processCpuSeconds(s3.pid());
    const rec: StepRecord = { ...(await runMeasured(cmd, join(work, 'logs', `${name.replace(/\W+/g, '-')}-${k + 1}`), ctx.timeoutSec)), skipped: false };
    const cpu = (await processCpuSeconds(s3.pid())) - cpu0;
    result.steps[name] = withSample(result.steps[name], rec);
    (result.endpointCpu[name] ??= []).push(cpu);
    console.log(`  ${name} (${k + 1}/${rounds}): ${describeRun(rec)}, endpoint CPU ${cpu.toFixed(2)} s`);
    if (!rec.ok) ctx.problems.push(`S3 ${name} failed: ${rec.stderrTail}`);
    return rec;
  };
  const tlsArgs = ['--cacert', s3.caFile];
  const tools = ctx.tools.filter((t): t is 'holdfast' | 'restic' => t === 'holdfast' || t === 'restic');
  const targets: string[] = [];
  try {
    const local = join(work, 'local');
    const prepared = tools.includes('holdfast')
      && await setup('copy: local repository init', holdfast(['-r', local, 'init'], env))
      && await setup('copy: local repository backup', holdfast(['-r', local, 'backup', '-q', '--host', 'bench', corpus], env));
    if (prepared) result.repoBytes = await duBytes(local);
    for (let k = 0; k < rounds; k++) {
      for (const tool of [...tools.slice(k % tools.length), ...tools.slice(0, k % tools.length)]) {
        const loc = s3.location(`${tool}-${k + 1}`);
        const cmd = (args: string[]): Cmd => (tool === 'holdfast' ? holdfast(['-r', loc, ...tlsArgs, ...args], env)
          : restic(['-r', loc, ...tlsArgs, ...args], { ...env, RESTIC_CACHE_DIR: join(work, `restic-cache-${k + 1}`) }));
        if (!await setup(`[${tool}] init`, cmd(tool === 'holdfast' ? ['init'] : ['init', '--repository-version', '2']))) continue;
        const backup = await step(`[${tool}] backup`, k, cmd(['backup', '-q', '--host', 'bench', corpus]));
        if (!backup.ok) continue;
        // Every restore gets its own target, removed only after the last one, as in the tree
        // scenario (bench/run.ts): creating the corpus's files just after removing as many costs
        // ext4 several times the system time (`recently_deleted`), and the spread of this row said so.
        const target = join(work, `restore-${tool}-${k + 1}`);
        await rm(target, { recursive: true, force: true });
        await mkdir(target, { recursive: true });
        targets.push(target);
        const restore = await step(`[${tool}] restore`, k, cmd(['restore', 'latest', '--target', target]));
        if (restore.ok) {
          const diff = treeDifference(source, (await walkTree(target)).stats);
          if (diff !== null) ctx.problems.push(`S3 [${tool}] restore ${k + 1}: the restored tree differs from the corpus (${diff})`);
          result.verify[tool] = result.verify[tool] ?? diff;
        }
      }
      if (!prepared) continue;
      const up = s3.location(`copy-${k + 1}`);
      const back = join(work, 'local-back');
      const sync = (direction: 'up' | 'down', dir: string, where: string, durable = false): Cmd =>
        ({ file: process.execPath, args: [SYNC_MAIN, direction, ...(durable ? ['--durable'] : []), dir, where], env: { ...env, S3_SYNC_CA: s3.caFile } });
      if (await setup('copy: S3 repository init --copy-from', holdfast(['-r', up, ...tlsArgs, 'init', '--copy-from', local], env))) {
        const copied = await step('copy up', k, holdfast(['-r', up, ...tlsArgs, 'copy', '--from-repo', local], env));
        await rm(back, { recursive: true, force: true });
        if (copied.ok && await setup('copy: local repository init --copy-from S3', holdfast(['-r', back, ...tlsArgs, 'init', '--copy-from', up], env))) {
          await step('copy down', k, holdfast(['-r', back, ...tlsArgs, 'copy', '--from-repo', up], env));
        }
      }
      await step('plain up', k, sync('up', local, s3.location(`plain-${k + 1}`)));
      const down = join(work, 'plain-down');
      await rm(down, { recursive: true, force: true });
      await step('plain down', k, sync('down', down, s3.location(`plain-${k + 1}`)));
      await rm(down, { recursive: true, force: true });
      await step('durable down', k, sync('down', down, s3.location(`plain-${k + 1}`), true));
      await rm(down, { recursive: true, force: true });
      await rm(back, { recursive: true, force: true });
    }
  } finally {
    await s3.close();
    if (!ctx.keep) for (const t of targets) await rm(t, { recursive: true, force: true });
  }
  result.notes.push(
    `S3: s3rver on ${s3.endpoint} (HTTPS, self-signed, --cacert for both tools); corpus ${corpus} (${source.files} files, ${(source.bytes / 1e6).toFixed(0)} MB); `
      + `median (min–max) of ${rounds} rounds, each into a fresh prefix, the tools taking turns to go first; restored trees compared with the corpus (files, bytes)`,
    `copy rows: MB/s = the local repository's size (${result.repoBytes === null ? '?' : (result.repoBytes / 1e6).toFixed(0)} MB, du -sb) over the time; `
      + 'the restic column holds the plain move of the same files with the SDK (bench/s3-sync.ts, a process of its own, as many requests at once as holdfast), '
      + 'up for copy local -> S3, down for copy S3 -> local; the durable download stores each file as a local repository does (fsynced, linked into place, its folder fsynced)',
    `endpoint CPU (s3rver, median per step): ${Object.entries(result.endpointCpu).map(([name, xs]) => `${name} ${median(xs).toFixed(2)} s`).join(', ')}`,
  );
  return result;
}

export function s3Rows(r: S3Result): ScaleRow[] {
  const s = r.steps;
  const mb = r.repoBytes === null ? null : r.repoBytes / 1e6;
  const restored = (tool: ToolName, rec: StepRecord | undefined): { value: number | null; text: string } => {
    const c = cell(rec);
    return r.verify[tool] ? { value: null, text: `${c.text} (differs)` } : c;
  };
  return [
    { label: 'S3: backup (s)', cells: { holdfast: cell(s['[holdfast] backup']), restic: cell(s['[restic] backup']) }, target: `≤ ${S3_RATIO_TARGET}x restic`, verdict: ratioVerdict(s['[holdfast] backup'], s['[restic] backup'], S3_RATIO_TARGET) },
    { label: 'S3: restore (s)', cells: { holdfast: restored('holdfast', s['[holdfast] restore']), restic: restored('restic', s['[restic] restore']) }, target: `≤ ${S3_RATIO_TARGET}x restic`, verdict: r.verify.holdfast ? 'FAIL' : ratioVerdict(s['[holdfast] restore'], s['[restic] restore'], S3_RATIO_TARGET) },
    { label: 'copy local -> S3 (s)', cells: { holdfast: cell(s['copy up'], mb), restic: cell(s['plain up'], mb) }, target: `≤ ${COPY_RATIO_TARGET}x plain upload`, verdict: ratioVerdict(s['copy up'], s['plain up'], COPY_RATIO_TARGET) },
    { label: 'copy S3 -> local (s)', cells: { holdfast: cell(s['copy down'], mb), restic: cell(s['plain down'], mb) }, target: `≤ ${COPY_RATIO_TARGET}x plain download`, verdict: ratioVerdict(s['copy down'], s['plain down'], COPY_RATIO_TARGET) },
    { label: 'copy S3 -> local, durable download (s)', cells: { holdfast: cell(s['copy down'], mb), restic: cell(s['durable down'], mb) }, target: `≤ ${COPY_RATIO_TARGET}x durable download`, verdict: ratioVerdict(s['copy down'], s['durable down'], COPY_RATIO_TARGET) },
  ];
}

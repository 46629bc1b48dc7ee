// S3 scenario: the corpus backed up to and restored from an S3 endpoint on
// loopback, holdfast beside restic's S3 backend, and holdfast's keyless copy
// between a local repository and S3 in both directions beside a plain upload
// of the same files with the SDK.
//
// The endpoint is s3rver over HTTPS with a self-signed certificate (the tests'
// helper, test/helpers/s3rver.ts): restic 0.14 cannot read back what it wrote
// to s3rver over plain HTTP (aws-chunked framing), so both tools get --cacert.
// Each tool's repository is a prefix of one bucket. One run each.
// Targets from issue 15: holdfast ≤ 0.5 of restic's time for the backup and the
// restore; copy within 1.2× of moving the bytes (the SDK upload's time).

import { readdir, readFile, rm, mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'node:https';
import { startS3rver, TEST_BUCKET, type TestS3 } from '../test/helpers/s3rver.js';
import { duBytes, runMeasured, type Cmd } from './measure.js';
import type { ScaleRow, StepRecord } from './report.js';
import { describeRun, verdict, type ScenarioContext } from './scale-common.js';
import { HOLDFAST_MAIN, PASSWORD, type ToolName } from './tools.js';

export const S3_RATIO_TARGET = 0.5;
export const COPY_RATIO_TARGET = 1.2;
/** PUTs in flight in the plain SDK upload. */
const UPLOADS = 8;

export interface S3Result {
  corpus: string;
  endpoint: string;
  steps: Partial<Record<ToolName, { backup?: StepRecord; restore?: StepRecord }>>;
  copy: { repoBytes: number | null; toS3?: StepRecord; fromS3?: StepRecord; sdkUploadSeconds: number | null; sdkError: string | null };
  notes: string[];
}

function holdfast(args: string[], env: Record<string, string>): Cmd {
  return { file: process.execPath, args: [HOLDFAST_MAIN, ...args], env: { HOLDFAST_PASSWORD: PASSWORD, HOLDFAST_FROM_PASSWORD: PASSWORD, ...env } };
}

function restic(args: string[], env: Record<string, string>): Cmd {
  return { file: 'restic', args, env: { RESTIC_PASSWORD: PASSWORD, ...env } };
}

/** Every file below `dir`, as paths relative to it. */
async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.isFile()) out.push(relative(dir, join(d, e.name)));
    }
  };
  await walk(dir);
  return out;
}

/** Uploads every file of `dir` under `prefix` with PutObject, UPLOADS at a time; seconds taken. */
async function sdkUpload(s3: TestS3, dir: string, prefix: string): Promise<number> {
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.env['AWS_ACCESS_KEY_ID']!, secretAccessKey: s3.env['AWS_SECRET_ACCESS_KEY']! },
    requestHandler: { httpsAgent: new Agent({ ca: s3.ca, keepAlive: true, maxSockets: UPLOADS }) },
  });
  const files = await filesOf(dir);
  const t0 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(Array.from({ length: UPLOADS }, async () => {
    while (next < files.length) {
      const f = files[next++]!;
      await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: `${prefix}/${f}`, Body: await readFile(join(dir, f)) }));
    }
  }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  client.destroy();
  return seconds;
}

export async function runS3(ctx: ScenarioContext, corpus: string): Promise<S3Result> {
  console.log(`\nS3: backup and restore of ${corpus} through s3rver over HTTPS on loopback; copy local <-> S3`);
  const work = join(ctx.benchDir, 'work-scale', 's3');
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'logs'), { recursive: true });
  const s3 = await startS3rver();
  const env = { ...s3.env, AWS_DEFAULT_REGION: 'us-east-1' };
  const result: S3Result = { corpus, endpoint: s3.endpoint, steps: {}, copy: { repoBytes: null, sdkUploadSeconds: null, sdkError: null }, notes: [] };
  const step = async (label: string, cmd: Cmd): Promise<StepRecord> => {
    const rec: StepRecord = { ...(await runMeasured(cmd, join(work, 'logs', label), ctx.timeoutSec)), skipped: false };
    console.log(`  ${label}: ${describeRun(rec)}`);
    if (!rec.ok) ctx.problems.push(`S3 ${label} failed: ${rec.stderrTail}`);
    return rec;
  };
  try {
    const tools = ctx.tools.filter((t): t is 'holdfast' | 'restic' => t === 'holdfast' || t === 'restic');
    for (const tool of tools) {
      const loc = s3.location(tool);
      const cmd = (args: string[]): Cmd => (tool === 'holdfast' ? holdfast(['-r', loc, '--cacert', s3.caFile, ...args], env) : restic(['-r', loc, '--cacert', s3.caFile, ...args], { ...env, RESTIC_CACHE_DIR: join(work, 'restic-cache') }));
      const init = await step(`[${tool}] init`, cmd(tool === 'holdfast' ? ['init'] : ['init', '--repository-version', '2']));
      if (!init.ok) continue;
      const backup = await step(`[${tool}] backup`, cmd(['backup', '--host', 'bench', corpus]));
      const target = join(work, `restore-${tool}`);
      await mkdir(target, { recursive: true });
      const restore = backup.ok ? await step(`[${tool}] restore`, cmd(['restore', 'latest', '--target', target])) : undefined;
      result.steps[tool] = { backup, ...(restore ? { restore } : {}) };
      if (!ctx.keep) await rm(target, { recursive: true, force: true });
    }
    if (tools.includes('holdfast')) {
      const local = join(work, 'local');
      const back = join(work, 'local-back');
      const prepared = (await step('[holdfast] copy: local repository init', holdfast(['-r', local, 'init'], env))).ok
        && (await step('[holdfast] copy: local repository backup', holdfast(['-r', local, 'backup', '-q', '--host', 'bench', corpus], env))).ok
        && (await step('[holdfast] copy: S3 repository init --copy-from', holdfast(['-r', s3.location('copy'), '--cacert', s3.caFile, 'init', '--copy-from', local], env))).ok;
      if (prepared) {
        result.copy.repoBytes = await duBytes(local);
        result.copy.toS3 = await step('[holdfast] copy local -> S3', holdfast(['-r', s3.location('copy'), '--cacert', s3.caFile, 'copy', '--from-repo', local], env));
        const ready = (await step('[holdfast] copy: local repository init --copy-from S3', holdfast(['-r', back, '--cacert', s3.caFile, 'init', '--copy-from', s3.location('copy')], env))).ok;
        if (ready) result.copy.fromS3 = await step('[holdfast] copy S3 -> local', holdfast(['-r', back, '--cacert', s3.caFile, 'copy', '--from-repo', s3.location('copy')], env));
        try {
          result.copy.sdkUploadSeconds = await sdkUpload(s3, local, 'plain-upload');
          console.log(`  plain SDK upload of the local repository's files: ${result.copy.sdkUploadSeconds.toFixed(2)} s`);
        } catch (e) {
          result.copy.sdkError = String(e);
          ctx.problems.push(`S3 plain SDK upload failed: ${String(e)}`);
        }
      }
    }
  } finally {
    await s3.close();
  }
  result.notes.push(`S3: s3rver on ${s3.endpoint} (HTTPS, self-signed, --cacert for both tools); corpus ${corpus}; one run each; copy MB/s = the local repository's size (du -sb) over the copy's time; plain upload: PutObject of the same files, ${UPLOADS} at a time, from the bench's own process`);
  return result;
}

const cell = (rec: StepRecord | undefined): { value: number | null; text: string } => (rec === undefined ? { value: null, text: '-' } : rec.ok ? { value: rec.seconds, text: rec.seconds.toFixed(2) } : { value: null, text: 'FAILED' });

function ratioVerdict(a: StepRecord | undefined, b: StepRecord | undefined, target: number): string {
  return verdict(a?.ok && b?.ok ? a.seconds / b.seconds <= target : null);
}

export function s3Rows(r: S3Result): ScaleRow[] {
  const hf = r.steps.holdfast;
  const rs = r.steps.restic;
  const mb = r.copy.repoBytes === null ? null : r.copy.repoBytes / 1e6;
  const rate = (rec: StepRecord | undefined): { value: number | null; text: string } => {
    if (!rec?.ok || mb === null) return cell(rec);
    return { value: rec.seconds, text: `${rec.seconds.toFixed(2)} (${(mb / rec.seconds).toFixed(0)} MB/s)` };
  };
  const sdk = r.copy.sdkUploadSeconds;
  const sdkCell = sdk === null || mb === null ? { value: null, text: r.copy.sdkError ? 'FAILED' : '-' } : { value: sdk, text: `plain upload ${sdk.toFixed(2)} (${(mb / sdk).toFixed(0)} MB/s)` };
  const copyVerdict = (rec: StepRecord | undefined): string => verdict(rec?.ok && sdk !== null ? rec.seconds / sdk <= COPY_RATIO_TARGET : null);
  return [
    { label: 'S3: backup (s)', cells: { holdfast: cell(hf?.backup), restic: cell(rs?.backup) }, target: `≤ ${S3_RATIO_TARGET}x restic`, verdict: ratioVerdict(hf?.backup, rs?.backup, S3_RATIO_TARGET) },
    { label: 'S3: restore (s)', cells: { holdfast: cell(hf?.restore), restic: cell(rs?.restore) }, target: `≤ ${S3_RATIO_TARGET}x restic`, verdict: ratioVerdict(hf?.restore, rs?.restore, S3_RATIO_TARGET) },
    { label: 'copy local -> S3 (s)', cells: { holdfast: rate(r.copy.toS3), restic: sdkCell }, target: `≤ ${COPY_RATIO_TARGET}x plain upload`, verdict: copyVerdict(r.copy.toS3) },
    { label: 'copy S3 -> local (s)', cells: { holdfast: rate(r.copy.fromS3), restic: sdkCell }, target: `≤ ${COPY_RATIO_TARGET}x plain upload`, verdict: copyVerdict(r.copy.fromS3) },
  ];
}

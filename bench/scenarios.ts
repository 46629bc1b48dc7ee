// Scenario selection for `npm run bench`, and the two scale scenarios of the
// speed issue, run beside restic (and Borg):
//
//   stream     BENCH_STREAM_GIB (default 8) GiB of generated data through
//              `backup --stdin` (bench/stream.ts); target: holdfast peak RSS < 400 MB
//   manyfiles  BENCH_MANY_FILES (default 1,000,000) small files, created once and
//              cached (bench/manyfiles.ts): initial backup, target holdfast peak
//              RSS < 1 GB; unchanged re-backup, target holdfast faster than restic
//   deploy     small, frequent backups of a generated tree of tens of MB whose
//              mtimes all change (bench/deploy.ts); target: holdfast ≤ 0.5x restic
//   index      the in-memory index alone, no tools: bytes per blob and lookups per
//              second with BENCH_INDEX_BLOBS (default 2,000,000) blobs, beside the Map
//              it replaced (bench/index-memory.ts); target ≤ 64 bytes per blob
//   s3         the corpus backed up to and restored from s3rver over HTTPS beside
//              restic's S3 backend, and copy local <-> S3 beside a plain SDK upload
//              and download of the same files (bench/s3.ts, bench/s3-sync.ts),
//              BENCH_S3_ROUNDS rounds (default 3); targets: ≤ 0.5x restic, copy ≤ 1.2x the plain move
//   server     the corpus backed up (initial, unchanged) and restored through `holdfast
//              server` on loopback beside a local repository, restic over SFTP and Borg
//              over SSH to an sshd on loopback (bench/server.ts, bench/sshd.ts),
//              BENCH_REPEAT rounds, and an incremental through a running agent beside a
//              fresh process (bench/server-agent.ts); targets: ≤ 1.2x local, ≤ 0.5x restic
//              over SFTP, agent ≤ 0.3x the fresh process
//   fleet      one `holdfast server` on SQLite, then two on one PostgreSQL, with 100 and
//              then 1,000 simulated agents long-polling for jobs and reporting them
//              (bench/fleet.ts): peak RSS, the fleet listing's p99, the scheduler's tick
//
// BENCH_SCENARIOS=tree,stream,manyfiles,deploy,index,s3,server,fleet,image picks the scenarios (default: all).
// BENCH_IMAGE=0 still switches the image scenario off; BENCH_SCENARIOS without
// "image" is passed on to run.ts as BENCH_IMAGE=0.

import { loadavg } from 'node:os';
import { UserError } from './corpus.js';
import { haveGnuTime } from './measure.js';
import { scaleTable, writeResults, type ScaleRow } from './report.js';
import { TOOLS, type ToolName } from './tools.js';
import { benchRepeat, type ScenarioContext } from './scale-common.js';
import { runStream, streamGib, streamRows, type StreamResult } from './stream.js';
import { manyFilesCount, manyFilesRows, runManyFiles, type ManyFilesResult } from './manyfiles.js';
import { deployFiles, deployRounds, deployRows, runDeploy, type DeployResult } from './deploy.js';
import { runS3, s3Rows, type S3Result } from './s3.js';
import { runServer, serverTable, type ServerResult } from './server.js';
import { agentTable } from './server-agent.js';
import { resolveCorpus } from './corpus.js';
import { indexBlobs, runIndexScenario, type IndexMeasurement } from './index-memory.js';
import { fleetTable, runFleet, type FleetResult } from './fleet.js';

export const ALL_SCENARIOS = ['tree', 'stream', 'manyfiles', 'deploy', 'index', 's3', 'server', 'fleet', 'image'] as const;
export type Scenario = (typeof ALL_SCENARIOS)[number];

/** BENCH_SCENARIOS (default: all), minus image when BENCH_IMAGE=0. */
export function selectedScenarios(): Set<Scenario> {
  const spec = process.env.BENCH_SCENARIOS?.trim();
  const names = spec ? spec.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '') : [...ALL_SCENARIOS];
  const bad = names.filter((n) => !(ALL_SCENARIOS as readonly string[]).includes(n));
  if (bad.length > 0) throw new UserError(`BENCH_SCENARIOS: unknown scenario(s) ${bad.join(', ')}; choose from ${ALL_SCENARIOS.join(',')}`);
  const set = new Set(names as Scenario[]);
  if (set.has('stream')) streamGib(); // bad sizes fail now, not after the other scenarios ran
  if (set.has('manyfiles')) manyFilesCount();
  if (set.has('index')) indexBlobs();
  if (set.has('server')) benchRepeat();
  if (set.has('deploy')) {
    deployFiles();
    deployRounds();
  }
  if (process.env.BENCH_IMAGE === '0') set.delete('image');
  // run.ts runs the image scenario unless BENCH_IMAGE=0.
  if (!set.has('image') && process.env.BENCH_IMAGE !== 'only') process.env.BENCH_IMAGE = '0';
  return set;
}

export interface ScaleResults {
  problems: number;
  json: {
    scenarios: Scenario[];
    tools: { name: ToolName; version: string }[];
    stream: StreamResult | null;
    manyfiles: ManyFilesResult | null;
    deploy: DeployResult | null;
    s3: S3Result | null;
    server: ServerResult | null;
    fleet: FleetResult | null;
    index: IndexMeasurement[] | null;
    rows: ScaleRow[];
    problems: string[];
  } | null;
}

/** Runs the index, stream, many-files, deploy, S3 and server scenarios that are selected; prints their tables. */
export async function runScaleScenarios(o: { benchDir: string; tools: ToolName[]; timeoutSec: number; scenarios: Set<Scenario> }): Promise<ScaleResults> {
  const index = o.scenarios.has('index') ? await runIndexScenario() : null;
  const ctx: ScenarioContext = { benchDir: o.benchDir, tools: [], timeoutSec: o.timeoutSec, keep: process.env.BENCH_KEEP === '1', problems: [] };
  const fleet = o.scenarios.has('fleet') ? await runFleet(ctx) : null;
  if (fleet) {
    console.log('\nFleet results (one run; agents simulated by this process):\n');
    console.log(fleetTable(fleet));
    for (const n of fleet.notes) console.log(`  - ${n}`);
  }
  const wanted = (['stream', 'manyfiles', 'deploy', 's3'] as const).filter((s) => o.scenarios.has(s));
  if (wanted.length === 0 && !o.scenarios.has('server')) {
    const alone = [...(index ? ['index' as const] : []), ...(fleet ? ['fleet' as const] : [])];
    if (ctx.problems.length > 0) console.log(`\nFleet problems:\n${ctx.problems.map((p) => `  ${p}`).join('\n')}`);
    return { problems: ctx.problems.length, json: alone.length === 0 ? null : { scenarios: alone, tools: [], stream: null, manyfiles: null, deploy: null, s3: null, server: null, fleet, index, rows: [], problems: ctx.problems } };
  }
  const versions: { name: ToolName; version: string }[] = [];
  for (const name of o.tools) {
    const probe = await TOOLS[name].probe();
    versions.push({ name, version: probe.version });
    if (probe.available) ctx.tools.push(name);
    else ctx.problems.push(`[${name}] not available: ${probe.problem}`);
  }
  if (!ctx.tools.includes('restic')) ctx.problems.push('restic is not run: the stream, many-files, deploy, S3 and server targets are ratios to restic');
  if (!(await haveGnuTime())) ctx.problems.push('GNU time not usable at /usr/bin/time: peak RSS is n/a (apt-get install -y time)');

  const stream = o.scenarios.has('stream') ? await runStream(ctx) : null;
  const manyfiles = o.scenarios.has('manyfiles') ? await runManyFiles(ctx) : null;
  const deploy = o.scenarios.has('deploy') ? await runDeploy(ctx) : null;
  const s3 = o.scenarios.has('s3') ? await runS3(ctx, (await resolveCorpus(o.benchDir, process.env.BENCH_CORPUS)).path) : null;
  const server = o.scenarios.has('server') ? await runServer(ctx, (await resolveCorpus(o.benchDir, process.env.BENCH_CORPUS)).path) : null;

  const rows = [...(stream ? streamRows(stream) : []), ...(manyfiles ? manyFilesRows(manyfiles) : []), ...(deploy ? deployRows(deploy) : []), ...(s3 ? s3Rows(s3) : [])];
  if (wanted.length > 0) {
    const shown = ctx.tools.length > 0 ? ctx.tools : o.tools;
    console.log(`\nScale results (${wanted.join(', ')}; one run each, deploy and S3 several; ratio < 1.00x = smaller/faster than restic):\n`);
    console.log(scaleTable(shown, rows));
  }
  if (server) {
    console.log(`\nServer results (median of ${server.repeat}, min–max; ratio < 1.00x = the server is faster):\n`);
    console.log(serverTable(server));
    if (server.agent) console.log(`\n${agentTable(server.agent)}`);
  }
  console.log('\nNotes:');
  if (stream) for (const n of stream.notes) console.log(`  - ${n}`);
  if (manyfiles) for (const n of manyfiles.notes) console.log(`  - ${n}`);
  if (deploy) for (const n of deploy.notes) console.log(`  - ${n}`);
  if (s3) for (const n of s3.notes) console.log(`  - ${n}`);
  if (server) for (const n of server.notes) console.log(`  - ${n}`);
  console.log("  - peak RSS: /usr/bin/time -f '%e %M' of the tool process alone; MB = 10^6 bytes; `sync` before every measured step.");
  if (ctx.problems.length > 0) console.log(`\nStream / many-files / deploy / S3 / server problems:\n${ctx.problems.map((p) => `  ${p}`).join('\n')}`);
  return {
    problems: ctx.problems.length,
    json: {
      scenarios: [...(index ? ['index' as const] : []), ...(fleet ? ['fleet' as const] : []), ...wanted, ...(o.scenarios.has('server') ? ['server' as const] : [])],
      tools: versions, stream, manyfiles, deploy, s3, server, fleet, index, rows, problems: ctx.problems,
    },
  };
}

/**
 * BENCH_SCENARIOS without "tree": the image scenario (if selected, through
 * `image`) and the stream / many-files / deploy scenarios, then the results JSON.
 * Returns the exit status.
 */
export async function runWithoutTree(o: {
  benchDir: string;
  tools: ToolName[];
  timeoutSec: number;
  scenarios: Set<Scenario>;
  runStarted: Date;
  image: (() => Promise<number>) | null;
}): Promise<number> {
  console.log(`  scenarios: ${[...o.scenarios].join(', ')} (tree scenario not selected)`);
  let problems = o.scenarios.has('image') && o.image ? await o.image() : 0;
  const scale = await runScaleScenarios(o);
  problems += scale.problems;
  return writeResults(o.benchDir, o.runStarted, {
    loadAverageAtEnd: loadavg(),
    scenarios: [...o.scenarios],
    stepTimeoutSec: o.timeoutSec,
    scale: scale.json,
  }, problems);
}

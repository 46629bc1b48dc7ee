// One-command benchmark: holdfast beside restic and Borg, same data, same run.
//
//   npm run bench                                  # full linux-source-6.1 tree, all tools
//   BENCH_CORPUS=/usr/share/doc npm run bench      # any directory, for quick runs
//   BENCH_TOOLS=restic,borg npm run bench          # subset of tools
//
// Environment:
//   BENCH_CORPUS        directory to back up (default: linux-source-6.1 tree, unpacked once
//                       from /usr/src/linux-source-6.1.tar.xz into $BENCH_DIR/corpus)
//   BENCH_DIR           work directory (default: .bench in the project root)
//   BENCH_TOOLS         comma-separated subset of holdfast,restic,borg (default: all)
//   BENCH_STEP_TIMEOUT  seconds before a single step is killed (default 3600, 0 = none)
//   BENCH_KEEP=1        keep the restored trees (default: deleted after the last restore)
//   BENCH_IMAGE         0: skip the image scenario (bench/image.ts); only: run it alone;
//                       vmdisk: only its VM-disk rows (bench/vmdisk.ts)
//   BENCH_SCENARIOS     comma-separated subset of tree,stream,manyfiles,deploy,index,s3,server,fleet,image (default: all; bench/scenarios.ts)
//   BENCH_STREAM_GIB    size of the stdin stream scenario in GiB (default 8; bench/stream.ts)
//   BENCH_MANY_FILES    file count of the many-small-files scenario (default 1000000; bench/manyfiles.ts)
//   BENCH_DEPLOY_FILES  file count of the deploy scenario's tree (default 4000; bench/deploy.ts)
//   BENCH_DEPLOY_ROUNDS deploys backed up after the initial backup (default 5; bench/deploy.ts)
//   BENCH_INDEX_BLOBS   blobs in the in-memory index scenario (default 2000000; bench/index-memory.ts)
//   BENCH_S3_ROUNDS     rounds of the S3 scenario's backup, restore and copies (default 3; bench/s3.ts)
//   BENCH_REPEAT        runs of the tree's and the server scenario's initial backup, unchanged
//                       re-backup and restore, the tools' order rotating; the median is reported (default 3)

import { existsSync, realpathSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError, applySmallChange, makeWorkingCopy, prepareStep, resolveCorpus, warmUp, type ChangeReport } from './corpus.js';
import {
  blankRun,
  duBytes,
  haveGnuTime,
  killActiveChildren,
  runMeasured,
  walkTree,
  type Cmd,
  type RunResult,
  type TreeStats,
} from './measure.js';
import {
  STEPS,
  STEP_LABELS,
  fmtStats,
  mainTable,
  stepTable,
  withSample,
  writeResults,
  type StepName,
  type StepRecord,
  type ToolResult,
  type VerifyResult,
} from './report.js';
import { ALL_TOOLS, TOOLS, wipeRepo, type ToolName, type ToolPaths } from './tools.js';
import { baseImage, parseSize, runImageBench } from './image.js';
import { runVmDiskBench } from './vmdisk.js';
import { runScaleScenarios, runWithoutTree, selectedScenarios } from './scenarios.js';
import { benchRepeat } from './scale-common.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function elapsed(t0: bigint): string {
  return `${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`;
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function parseTools(spec: string | undefined): ToolName[] {
  if (!spec || spec.trim() === '') return [...ALL_TOOLS];
  const names = spec
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  const bad = names.filter((n) => !(ALL_TOOLS as readonly string[]).includes(n));
  if (bad.length > 0) throw new UserError(`BENCH_TOOLS: unknown tool(s) ${bad.join(', ')}; choose from ${ALL_TOOLS.join(',')}`);
  // Keep the canonical column order, drop duplicates.
  return ALL_TOOLS.filter((t) => names.includes(t));
}

function notRun(reason: string): StepRecord {
  return { ...blankRun('(not run)', null, '', ''), stderrTail: reason, skipped: true };
}

function describe(r: RunResult): string {
  if (r.ok) {
    const rss = r.maxRssKiB === null ? '' : `, peak RSS ${((r.maxRssKiB * 1024) / 1e6).toFixed(0)} MB`;
    return `${r.seconds.toFixed(2)} s${rss}`;
  }
  const why = r.timedOut ? 'timed out' : r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`;
  return `FAILED (${why}) after ${r.seconds.toFixed(2)} s`;
}

/** Where a tool put the restored copy of `src` inside `target`. */
function restoredRoot(target: string, src: string): string {
  const candidates = [join(target, src), join(target, basename(src))];
  return candidates.find((c) => existsSync(c)) ?? target;
}

function compareTrees(expected: TreeStats, actual: TreeStats, root: string): VerifyResult {
  const diffs: string[] = [];
  for (const k of ['files', 'dirs', 'symlinks', 'bytes'] as const) {
    if (expected[k] !== actual[k]) diffs.push(`${k}: source ${expected[k]}, restored ${actual[k]}`);
  }
  return { ok: diffs.length === 0, restoredRoot: root, expected, actual, diffs };
}

async function main(): Promise<number> {
  const runStarted = new Date();
  const tools = parseTools(process.env.BENCH_TOOLS);
  const scenarios = selectedScenarios();
  const benchDir = resolve(process.env.BENCH_DIR || join(PROJECT_ROOT, '.bench'));
  const timeoutSec = Number(process.env.BENCH_STEP_TIMEOUT ?? 3600);
  if (!Number.isFinite(timeoutSec) || timeoutSec < 0) throw new UserError('BENCH_STEP_TIMEOUT must be a number of seconds >= 0');
  const keep = process.env.BENCH_KEEP === '1';
  const repeat = benchRepeat();

  console.log('holdfast benchmark');
  console.log(`  host: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}`);
  console.log(`  node ${process.version}; tools: ${tools.join(', ')}; bench dir: ${benchDir}`);
  if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
    // Node reads and parses the named bundle at every start, before any of
    // holdfast's code runs (63 ms per process with Debian's whole bundle on
    // the bench machine); the tools under test are not given it, as a backup
    // host is not (the S3 rows pass their endpoint's CA with --cacert).
    console.log(`  NODE_EXTRA_CA_CERTS=${process.env.NODE_EXTRA_CA_CERTS} removed from the tools' environment`);
    delete process.env.NODE_EXTRA_CA_CERTS;
  }

  await mkdir(benchDir, { recursive: true });
  const corpusOverride = process.env.BENCH_CORPUS ? resolve(process.env.BENCH_CORPUS) : undefined;
  // BENCH_SCENARIOS without tree: the corpus is only needed by the image scenario (bench/scenarios.ts).
  if (!scenarios.has('tree') && process.env.BENCH_IMAGE !== 'only' && process.env.BENCH_IMAGE !== 'vmdisk') {
    const image = async (): Promise<number> => runImageBench({ benchDir, corpus: realpathSync((await resolveCorpus(benchDir, corpusOverride)).path), timeoutSec });
    return runWithoutTree({ benchDir, tools, timeoutSec, scenarios, runStarted, image });
  }
  const corpus = await resolveCorpus(benchDir, corpusOverride);
  const workDir = join(realpathSync(benchDir), 'work');
  const corpusReal = realpathSync(corpus.path);
  if (isInside(corpusReal, workDir) || isInside(workDir, corpusReal)) {
    throw new UserError(`corpus ${corpusReal} and work dir ${workDir} must not contain each other`);
  }

  // BENCH_IMAGE=only: the image scenario alone (bench/image.ts); vmdisk: its VM-disk rows alone (bench/vmdisk.ts).
  if (process.env.BENCH_IMAGE === 'vmdisk') {
    return (await runVmDiskBench({ benchDir, baseImage: (n) => baseImage(join(benchDir, 'image'), corpusReal, n), timeoutSec, parseSize })) > 0 ? 3 : 0;
  }
  if (process.env.BENCH_IMAGE === 'only') return (await runImageBench({ benchDir, corpus: corpusReal, timeoutSec })) > 0 ? 3 : 0;

  const timeOk = await haveGnuTime();
  if (!timeOk) console.log('  WARNING: GNU time not usable at /usr/bin/time; peak RSS will be n/a (apt-get install -y time)');

  // Versions and settings.
  const results: ToolResult[] = [];
  const probes = new Map<ToolName, Awaited<ReturnType<(typeof TOOLS)[ToolName]['probe']>>>();
  console.log('\nTool versions:');
  for (const name of tools) {
    const probe = await TOOLS[name].probe();
    probes.set(name, probe);
    console.log(`  ${name.padEnd(9)} ${probe.version}${probe.problem ? `  [${probe.problem}]` : ''}`);
    results.push({ name, version: probe.version, settings: '', steps: {}, verify: null, repoBytes: null, localStateBytes: null });
  }

  // Fresh working copy of the corpus; all tools back up this same path.
  console.log(`\nCorpus: ${corpusReal} (${corpus.origin})`);
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  const src = join(workDir, 'src');
  let t0 = process.hrtime.bigint();
  await makeWorkingCopy(corpusReal, src);
  const initialStats = (await walkTree(src)).stats;
  console.log(`  working copy ${src}: ${fmtStats(initialStats)} (cp -a in ${elapsed(t0)})`);
  t0 = process.hrtime.bigint();
  await warmUp(src);
  console.log(`  page cache warmed by reading the whole tree once (tar to a pipe, ${elapsed(t0)}); again before every measured step`);

  const paths = new Map<ToolName, ToolPaths>();
  for (const r of results) {
    const dir = join(workDir, r.name);
    const p: ToolPaths = { dir, repo: join(dir, 'repo'), home: join(dir, 'home') };
    await mkdir(join(dir, 'logs'), { recursive: true });
    await mkdir(p.home, { recursive: true });
    paths.set(r.name, p);
  }
  const pathsOf = (r: ToolResult): ToolPaths => {
    const p = paths.get(r.name);
    if (!p) throw new Error(`no paths for ${r.name}`);
    return p;
  };
  /** Runs a step (repetition `k` from 0); repetitions are merged into one record with their median. */
  const runStep = async (r: ToolResult, step: StepName, cmd: Cmd, k = 0): Promise<StepRecord> => {
    const rec: StepRecord = { ...(await runMeasured(cmd, join(pathsOf(r).dir, 'logs', k === 0 ? step : `${step}-${k + 1}`), timeoutSec)), skipped: false };
    r.steps[step] = step === 'init' ? rec : withSample(r.steps[step], rec);
    return rec;
  };
  const log = (r: ToolResult, step: StepName, rec: RunResult, k = 0, mark = ''): void => {
    const rep = step === 'init' || step === 'backup3' || repeat === 1 ? '' : ` (${k + 1}/${repeat})`;
    console.log(`  [${r.name}] ${STEP_LABELS[step]}${rep}: ${describe(rec)}${mark}`);
  };
  const inits = new Map<ToolName, Cmd>();
  /**
   * Right before a measured step (bench/corpus.ts prepareStep): the page cache
   * dropped (root only), the tool's code read again, and that step's input
   * read once: for a backup the tree, the tool's cache and its repository but
   * for the packs; for a restore the repository and the cache.
   */
  const warm = async (r: ToolResult, step: StepName): Promise<void> => {
    const p = pathsOf(r);
    const input = step === 'restore' ? { whole: [p.repo, p.home] } : { whole: [src, p.home], metadataOf: p.repo };
    await prepareStep(input, TOOLS[r.name].code(), () => TOOLS[r.name].probe());
  };

  // Step-major order: every tool does step N before any tool does step N+1,
  // so the small change is applied once and every tool backs up identical data.
  console.log('\nRunning:');
  for (const r of results) {
    const probe = probes.get(r.name);
    if (probe && !probe.available) {
      for (const s of STEPS) r.steps[s] = notRun(probe.problem ?? `${r.name} not available`);
      console.log(`  [${r.name}] not available: ${probe.problem}`);
      continue;
    }
    const p = pathsOf(r);
    const attempts = await TOOLS[r.name].initAttempts(p);
    const failed: RunResult[] = [];
    for (const a of attempts) {
      await wipeRepo(p);
      const rec = await runStep(r, 'init', a.cmd);
      if (rec.ok) {
        r.settings = a.settings;
        inits.set(r.name, a.cmd);
        break;
      }
      failed.push(rec);
    }
    const initRec = r.steps.init;
    if (initRec && failed.length > 0 && (initRec.ok || failed.length > 1)) {
      initRec.failedAttempts = initRec.ok ? failed : failed.slice(0, -1);
    }
    if (initRec) log(r, 'init', initRec);
    if (!initRec?.ok) {
      for (const s of STEPS) if (s !== 'init') r.steps[s] = notRun('not run: init failed');
    }
  }
  const live = (): ToolResult[] => results.filter((r) => r.steps.init?.ok);
  // Repetition k starts with the k-th tool, so that no tool always runs first (after the
  // previous step's sync) or last.
  const rotated = (k: number): ToolResult[] => {
    const l = live();
    return [...l.slice(k % l.length), ...l.slice(0, k % l.length)];
  };
  /** A fresh, empty repository and local cache for another initial backup; false (and a failed sample) if init fails. */
  const initAgain = async (r: ToolResult): Promise<boolean> => {
    const p = pathsOf(r);
    await wipeRepo(p);
    await rm(p.home, { recursive: true, force: true });
    await mkdir(p.home, { recursive: true });
    const rec = await runMeasured(inits.get(r.name)!, join(p.dir, 'logs', 'init-again'), timeoutSec);
    if (!rec.ok) {
      r.steps.backup1 = withSample(r.steps.backup1, { ...rec, skipped: false });
      console.log(`  [${r.name}] init before another initial backup: ${describe(rec)}`);
    }
    return rec.ok;
  };

  for (let k = 0; k < repeat; k++) {
    for (const r of rotated(k)) {
      if (k > 0 && !(await initAgain(r))) continue;
      await warm(r, 'backup1');
      log(r, 'backup1', await runStep(r, 'backup1', TOOLS[r.name].backup(pathsOf(r), src, 1), k), k);
    }
  }
  // Borg needs a new archive name for every backup: 20, 21, ... for the unchanged ones.
  for (let k = 0; k < repeat; k++) {
    for (const r of rotated(k)) {
      await warm(r, 'backup2');
      log(r, 'backup2', await runStep(r, 'backup2', TOOLS[r.name].backup(pathsOf(r), src, 20 + k), k), k);
    }
  }

  const change: ChangeReport = await applySmallChange(src);
  console.log(
    `  small change applied: appended a line to ${change.appended.length} files, created ${change.created} ` +
      `(${change.createdBytes} bytes), deleted ${change.deleted ?? '(nothing)'}`,
  );
  for (const r of live()) {
    await warm(r, 'backup3');
    log(r, 'backup3', await runStep(r, 'backup3', TOOLS[r.name].backup(pathsOf(r), src, 3)));
  }

  const finalStats = (await walkTree(src)).stats;
  // Every restore gets its own target, removed only after the last one: ext4 skips inodes freed
  // in the last minute when it allocates, so creating 78,000 files just after removing as many
  // took 20 s of system time instead of 3 (`recently_deleted` in fs/ext4/ialloc.c).
  const targets: string[] = [];
  for (let k = 0; k < repeat; k++) {
    for (const r of rotated(k)) {
      const target = join(pathsOf(r).dir, `restore-${k + 1}`);
      await rm(target, { recursive: true, force: true });
      await mkdir(target, { recursive: true });
      targets.push(target);
      await warm(r, 'restore');
      const rec = await runStep(r, 'restore', TOOLS[r.name].restore(pathsOf(r), target, 3), k);
      let mark = '';
      if (rec.ok) {
        const root = restoredRoot(target, src);
        const verify = compareTrees(finalStats, (await walkTree(root)).stats, root);
        // Every restore is checked; the first one that differs is the one reported.
        if (r.verify === null || r.verify.ok) r.verify = verify;
        mark = verify.ok ? '; restored tree matches source (file count, bytes)' : `; RESTORE DIFFERS: ${verify.diffs.join('; ')}`;
      }
      log(r, 'restore', rec, k, mark);
    }
  }
  if (!keep) for (const t of targets) await rm(t, { recursive: true, force: true });

  for (const r of results) {
    const p = pathsOf(r);
    r.repoBytes = await duBytes(p.repo);
    r.localStateBytes = await duBytes(p.home);
  }

  // Report.
  console.log(`\nResults (corpus ${corpusReal}: ${fmtStats(initialStats)}):\n`);
  console.log(mainTable(results));
  console.log('\nPer step:\n');
  console.log(stepTable(results));

  console.log('\nNotes:');
  console.log('  - times: wall clock (process.hrtime) around each child process; before every step only its input is read, once (a backup: the tree, the tool\'s cache, its repository but for the packs; a restore: the repository and cache); `sync` before every step, untimed, so no tool pays for the writeback of what ran before it.');
  console.log(`  - tree scenario: ${process.getuid?.() === 0 ? 'before every step the page cache was dropped (sync; drop_caches) and the tool\'s program files and version command read again, so no step writes into memory the VM has never used (restores keep their trees) and no tool reads from cache what another step left there' : 'NOT ROOT, so the page cache was not dropped between steps (no drop_caches): a step may find in the cache what earlier steps left there, and later restores write into memory the VM has never used; run as root for comparable numbers'}.`);
  console.log("  - peak RSS: /usr/bin/time -f '%e %M' per step; MB = 10^6 bytes; repository size = du -sb of the repository dir.");
  console.log(`  - each tool gets a fresh repository and fresh local cache/config dir under ${workDir}/<tool>/; steps run tool after tool.`);
  if (repeat > 1) {
    console.log(`  - the initial backup (each into a new repository), the unchanged re-backup and the restore ran ${repeat} times, the tools' order rotating; the main table shows the median and, in parentheses, the spread (fastest–slowest), the per-step table every run in order.`);
  }
  for (const r of results) if (r.settings) console.log(`  - ${r.name} settings: ${r.settings}`);
  for (const r of results) {
    if (r.localStateBytes !== null && r.localStateBytes > 4096) {
      console.log(`  - ${r.name} local cache/config (not counted in repository size): ${(r.localStateBytes / 1e6).toFixed(1)} MB`);
    }
  }
  console.log('  - ratios < 1.00x mean smaller/faster than restic; (!) after a restore time = restored tree differs from the source.');

  let problems = 0;
  const failures: string[] = [];
  for (const r of results) {
    const skipped = STEPS.filter((s) => r.steps[s]?.skipped);
    const firstSkipped = skipped[0] !== undefined ? r.steps[skipped[0]] : undefined;
    for (const s of STEPS) {
      const rec = r.steps[s];
      if (!rec || rec.skipped) continue;
      for (const a of rec.failedAttempts ?? []) {
        failures.push(`  [${r.name}] ${STEP_LABELS[s]} (fallback was used): $ ${a.command}\n${indent(a.stderrTail)}`);
      }
      if (rec.ok) continue;
      problems++;
      const why = rec.timedOut ? 'timed out' : rec.signal ? `signal ${rec.signal}` : `exit code ${rec.exitCode}`;
      failures.push(
        `  [${r.name}] ${STEP_LABELS[s]} FAILED (${why})${rec.cwd ? ` in ${rec.cwd}` : ''}: $ ${rec.command}\n` +
          `${indent(rec.stderrTail || '(no stderr)')}\n    logs: ${rec.stdoutFile}, ${rec.stderrFile}`,
      );
    }
    if (firstSkipped) {
      problems += skipped.length;
      failures.push(`  [${r.name}] not run: ${skipped.map((s) => STEP_LABELS[s]).join(', ')} (${firstSkipped.stderrTail})`);
    }
    if (r.verify && !r.verify.ok) {
      problems++;
      failures.push(`  [${r.name}] restored tree ${r.verify.restoredRoot} differs from source: ${r.verify.diffs.join('; ')}`);
    }
  }
  if (failures.length > 0) {
    console.log('\nFailures:');
    console.log(failures.join('\n'));
  }

  if (process.env.BENCH_IMAGE !== '0') problems += await runImageBench({ benchDir, corpus: corpusReal, timeoutSec });
  const scale = await runScaleScenarios({ benchDir, tools, timeoutSec, scenarios });
  problems += scale.problems;

  return writeResults(benchDir, runStarted, {
    corpus: { path: corpusReal, origin: corpus.origin, initial: initialStats, afterChange: finalStats },
    workingCopy: src,
    change,
    warmPageCache: true,
    stepTimeoutSec: timeoutSec,
    scale: scale.json,
    tools: results.map((r) => ({
      name: r.name,
      version: r.version,
      settings: r.settings,
      repoBytes: r.repoBytes,
      localStateBytes: r.localStateBytes,
      verify: r.verify,
      steps: r.steps,
    })),
  }, problems);
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killActiveChildren();
    console.error(`\ninterrupted (${sig}); child processes killed`);
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    killActiveChildren();
    if (e instanceof UserError) {
      console.error(`bench: ${e.message}`);
    } else {
      console.error('bench: unexpected error:', e);
    }
    process.exit(1);
  },
);

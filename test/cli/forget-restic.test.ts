/**
 * `holdfast forget` keeps exactly what restic keeps. The same ~60 snapshots
 * (two hosts, tags, two years, several per hour and per day, a local-midnight
 * pair that UTC would put on one day, DST changes, ISO week 52/53/1 edges)
 * are made with `restic backup --time` and `holdfast backup --time`; then for
 * each policy `restic forget --dry-run --json` and `holdfast forget --dry-run
 * --json` must keep and remove the same snapshots (by time and host), in the
 * same groups, for the same reasons.
 *
 * Runs in the Europe/Berlin time zone so that local time differs from UTC and
 * has DST. Skipped when restic is not installed (.ci/run installs it).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';

const TZ = 'Europe/Berlin';
const hasRestic = spawnSync('restic', ['version'], { stdio: 'ignore' }).status === 0;

interface Made {
  readonly time: string;
  readonly host: string;
  readonly tags: readonly string[];
}

/** The snapshots: hand-picked edge cases plus seeded random ones. */
function snapshotPlan(): Made[] {
  const out: Made[] = [];
  const add = (time: string, host: string, tags: string[] = []): void => {
    out.push({ time, host, tags });
  };
  // Several per minute, hour and day on the newest days.
  add('2024-11-20 10:05:10', 'alpha', ['daily']);
  add('2024-11-20 10:05:40', 'alpha');
  add('2024-11-20 10:20:00', 'alpha');
  add('2024-11-20 10:50:00', 'alpha', ['manual', 'keep']);
  add('2024-11-20 11:10:00', 'alpha');
  add('2024-11-20 23:59:59', 'alpha', ['daily']);
  add('2024-11-21 00:00:01', 'alpha'); // UTC: still 2024-11-20 23:00
  add('2024-11-21 00:30:00', 'beta', ['daily']);
  add('2024-11-19 22:15:00', 'beta');
  add('2024-11-19 08:00:00', 'beta', ['weekly']);
  // Local midnight in summer (UTC+2): both are 2023-06-15 in UTC.
  add('2023-06-15 23:59:59', 'alpha');
  add('2023-06-16 00:00:01', 'alpha', ['daily']);
  // DST changes (avoiding the hour that does not exist and the one that exists twice).
  add('2023-03-26 01:30:00', 'alpha');
  add('2023-03-26 03:30:00', 'alpha');
  add('2023-10-29 01:30:00', 'beta');
  add('2023-10-29 03:30:00', 'beta', ['weekly']);
  // ISO weeks: 2023-01-01 is in week 2022-52, 2024-12-30 in week 2025-01, 2020-12-31 in 2020-53.
  add('2023-01-01 12:00:00', 'alpha', ['weekly']);
  add('2023-01-02 12:00:00', 'alpha');
  add('2024-12-29 12:00:00', 'beta');
  add('2024-12-30 12:00:00', 'beta', ['manual']);
  add('2020-12-31 12:00:00', 'beta');
  add('2021-01-03 12:00:00', 'beta');
  // Month and year ends.
  add('2023-12-31 23:30:00', 'alpha', ['manual', 'keep']);
  add('2024-01-01 00:30:00', 'alpha');
  add('2024-02-29 12:00:00', 'alpha', ['daily']);
  // Seeded random spread over two years.
  let seed = 20241120;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const start = Date.UTC(2022, 11, 1);
  const span = Date.UTC(2024, 10, 18) - start;
  const tagChoices: string[][] = [[], [], [], ['daily'], ['weekly'], ['daily', 'weekly'], ['manual']];
  const p2 = (n: number): string => String(n).padStart(2, '0');
  while (out.length < 62) {
    const t = new Date(start + Math.floor((rand(1_000_000) / 1_000_000) * span));
    const h = rand(24);
    if (h === 2) continue; // keep clear of DST gaps and overlaps
    const time = `${t.getUTCFullYear()}-${p2(t.getUTCMonth() + 1)}-${p2(t.getUTCDate())} ${p2(h)}:${p2(rand(60))}:${p2(rand(60))}`;
    const host = rand(3) === 0 ? 'beta' : 'alpha';
    if (out.some((m) => m.time === time && m.host === host)) continue;
    add(time, host, tagChoices[rand(tagChoices.length)]!);
  }
  return out;
}

/** Policies to compare: every rule alone, combinations, grouping and filters. */
const POLICIES: string[][] = [
  ['--keep-last', '5'],
  ['--keep-last', '100'],
  ['--keep-hourly', '5'],
  ['--keep-daily', '7'],
  ['--keep-weekly', '6'],
  ['--keep-monthly', '8'],
  ['--keep-yearly', '3'],
  ['--keep-within', '2m10d'],
  ['--keep-within', '36h'],
  ['--keep-within', '1y'],
  ['--keep-tag', 'manual'],
  ['--keep-tag', 'daily,weekly', '--keep-tag', 'keep'],
  ['--keep-tag', ''],
  ['--keep-last', '2', '--keep-daily', '3', '--keep-weekly', '2', '--keep-monthly', '3', '--keep-yearly', '2'],
  ['--keep-hourly', '3', '--keep-within', '3d', '--keep-tag', 'manual'],
  ['--keep-within-daily', '1m', '--keep-within-weekly', '3m', '--keep-within-monthly', '1y'],
  ['--keep-within-hourly', '7d', '--keep-within-yearly', '2y'],
  ['--keep-daily', '5', '--group-by', 'host'],
  ['--keep-weekly', '3', '--group-by', 'host,tags'],
  ['--keep-monthly', '4', '--group-by', ''],
  ['--keep-daily', '4', '--host', 'alpha'],
  ['--keep-weekly', '2', '--tag', 'daily'],
];

interface JsonSnap {
  time: string;
  hostname: string;
}
interface JsonGroup {
  host: string | null;
  paths: string[] | null;
  tags: string[] | null;
  keep: JsonSnap[] | null;
  remove: JsonSnap[] | null;
  reasons: { snapshot: JsonSnap; matches: string[] }[] | null;
}

/** A comparable rendering of forget's JSON: per group, the kept and removed snapshots and the reasons. */
function normalize(groups: JsonGroup[]): Record<string, { keep: string[]; remove: string[]; reasons: Record<string, string[]> }> {
  const out: Record<string, { keep: string[]; remove: string[]; reasons: Record<string, string[]> }> = {};
  const key = (s: JsonSnap): string => `${new Date(s.time).toISOString()} ${s.hostname}`;
  for (const g of groups) {
    const k = JSON.stringify([g.host ?? '', g.paths ?? [], [...(g.tags ?? [])].sort()]);
    const reasons: Record<string, string[]> = {};
    for (const r of g.reasons ?? []) reasons[key(r.snapshot)] = r.matches;
    out[k] = { keep: (g.keep ?? []).map(key).sort(), remove: (g.remove ?? []).map(key).sort(), reasons };
  }
  return out;
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `jobs` with at most `n` at a time. */
async function pool<T>(n: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  }));
  return results;
}

describe('forget keeps what restic keeps', { skip: hasRestic ? false : 'restic is not installed (apt-get install restic)' }, () => {
  let sb: Sandbox;
  let data: string;
  const resticEnv = (): Record<string, string> => ({ RESTIC_REPOSITORY: sb.path('restic-repo'), RESTIC_PASSWORD: 'pw', RESTIC_CACHE_DIR: sb.path('restic-cache'), TZ });
  const plan = snapshotPlan();

  before(async () => {
    sb = await Sandbox.create('holdfast-forget-restic-');
    data = sb.path('data');
    await mkdir(data);
    await writeFile(`${data}/file`, 'the same tiny tree in both repositories\n');
    const ri = await run('restic', ['init'], resticEnv());
    assert.equal(ri.code, 0, ri.stderr);
    await sb.ok(['init']);
    const tagArgs = (tags: readonly string[]): string[] => tags.flatMap((t) => ['--tag', t]);
    const jobs = plan.flatMap((m) => [
      async () => {
        const r = await run('restic', ['backup', '-q', '--time', m.time, '--host', m.host, ...tagArgs(m.tags), data], resticEnv());
        assert.equal(r.code, 0, `restic backup ${m.time}: ${r.stderr}`);
      },
      async () => {
        await sb.ok(['backup', '-q', '--time', m.time, '--host', m.host, ...tagArgs(m.tags), data], { env: { TZ } });
      },
    ]);
    await pool(4, jobs);
  });

  after(async () => {
    await sb?.remove();
  });

  it('made the same snapshots in both repositories', async () => {
    const r = await run('restic', ['snapshots', '--json'], resticEnv());
    const h = await sb.ok(['snapshots', '--json'], { env: { TZ } });
    const times = (list: JsonSnap[]): string[] => list.map((s) => `${new Date(s.time).toISOString()} ${s.hostname}`).sort();
    const theirs = times(JSON.parse(r.stdout) as JsonSnap[]);
    assert.equal(theirs.length, plan.length);
    assert.deepEqual(times(JSON.parse(h.stdout) as JsonSnap[]), theirs);
  });

  it('agrees with restic on every policy', async () => {
    const results = await pool(2, POLICIES.map((policy) => async () => {
      const [r, h] = await Promise.all([
        run('restic', ['--no-lock', 'forget', '--dry-run', '--json', ...policy], resticEnv()),
        sb.run(['forget', '--dry-run', '--json', ...policy], { env: { TZ, HOLDFAST_PASSWORD: undefined } }),
      ]);
      assert.equal(r.code, 0, `restic forget ${policy.join(' ')}: ${r.stderr}`);
      assert.equal(h.code, 0, `holdfast forget ${policy.join(' ')}: ${h.stderr}`);
      return { policy, restic: normalize(JSON.parse(r.stdout) as JsonGroup[]), holdfast: normalize(JSON.parse(h.stdout) as JsonGroup[]) };
    }));
    for (const { policy, restic, holdfast } of results) {
      assert.deepEqual(holdfast, restic, `policy ${policy.join(' ')}`);
    }
    // The comparison is not vacuous: the policies keep and remove different, non-trivial sets.
    const removed = new Set(results.map((x) => Object.values(x.restic).reduce((n, g) => n + g.remove.length, 0)));
    assert.ok(removed.size >= 8, `policies should remove varied numbers of snapshots, got ${[...removed].join(',')}`);
    assert.ok([...removed].some((n) => n > 0) && [...removed].some((n) => n === 0));
  });
});

/**
 * `holdfast server job list MACHINE | show JOB | run MACHINE --kind KIND …
 * [--expires-in DURATION] [--follow] | events JOB [--follow] | cancel JOB`:
 * jobs of machines' agents, through the API. `run` is "run now": a backup
 * (--path, --exclude), an image backup (--source), a command's output
 * (--name NAME -- CMD ARGS…), a database server's dump (--database NAME,
 * a name from the agent configuration's "databases"), a restore (--snapshot, --target, --path), a
 * check (--read-data-subset) or a restore test (verify-restore: --snapshot,
 * --share, --min-files). `cancel` stops a queued or running job.
 * `--follow` prints the job's events as its agent reports them (polling
 * every second) until it ends, and exits 0 when it succeeded, 3 when its
 * result is incomplete (a path skipped, a file unreadable), 1 otherwise.
 * Flags and printing only.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import { FINAL_JOB_STATES, JOB_KIND_NAMES, MAX_JOB_EXPIRES_IN, type CreateJobRequest, type JobBody, type JobEventBody, type JobKindName } from '../api/v1.js';
import { parseDuration } from '../repo/deletion-marker.js';
import { globals, say, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, withServer, type AdminClient } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

interface RunFlags {
  kind?: JobKindName;
  path: string[];
  exclude: string[];
  source: string[];
  name?: string;
  database?: string;
  snapshot?: string;
  target?: string;
  readDataSubset?: string;
  share?: string;
  minFiles?: string;
  expiresIn?: number;
  follow?: boolean;
}

/** How long `--follow` waits between two looks at the job. */
const FOLLOW_INTERVAL_MS = 1000;
/** The states a job ends in. */
const FINAL = new Set<string>(FINAL_JOB_STATES);

const collect = (v: string, all: string[]): string[] => [...all, v];

/** `--expires-in`: a duration (`30m`, `6h`, `2d`) as whole seconds, from 1 s to the API's bound (commander parser). */
function expiresIn(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (e) {
    throw new ExitError(`--expires-in ${text}: ${(e as Error).message}`, EXIT.usage);
  }
  const s = Math.round(ms / 1000);
  if (s < 1 || s > MAX_JOB_EXPIRES_IN) throw new ExitError(`--expires-in ${text}: give a duration from 1s to ${MAX_JOB_EXPIRES_IN / 86400}d`, EXIT.usage);
  return s;
}

/** The spec of the job `flags` (and `command`, after `--`) ask for; refuses a flag that belongs to another kind. */
function jobRequest(flags: RunFlags, command: string[]): CreateJobRequest {
  const given = (names: [string, boolean][]): string[] => names.filter(([, on]) => on).map(([n]) => n);
  const others = (kind: JobKindName, allowed: string[]): void => {
    const wrong = given([['--path', flags.path.length > 0], ['--exclude', flags.exclude.length > 0], ['--source', flags.source.length > 0],
      ['--name', flags.name !== undefined], ['-- CMD', command.length > 0], ['--database', flags.database !== undefined], ['--snapshot', flags.snapshot !== undefined],
      ['--target', flags.target !== undefined], ['--read-data-subset', flags.readDataSubset !== undefined],
      ['--share', flags.share !== undefined], ['--min-files', flags.minFiles !== undefined]]).filter((n) => !allowed.includes(n));
    if (wrong.length > 0) throw new ExitError(`${wrong.join(', ')}: not an option of a ${kind} job (it takes ${allowed.join(', ') || 'none'})`, EXIT.usage);
  };
  switch (flags.kind) {
    case 'backup':
      others('backup', ['--path', '--exclude']);
      if (flags.path.length === 0) throw new ExitError('a backup job needs --path PATH (once per path, absolute on the machine)', EXIT.usage);
      return { kind: 'backup', spec: { paths: flags.path, ...(flags.exclude.length > 0 ? { excludes: flags.exclude } : {}) } };
    case 'image-backup':
      others('image-backup', ['--source']);
      if (flags.source.length === 0) throw new ExitError('an image-backup job needs --source DEVICE (once per block device, image file or NBD export the machine reaches)', EXIT.usage);
      return { kind: 'image-backup', spec: { sources: flags.source } };
    case 'command-backup':
      others('command-backup', ['--name', '-- CMD']);
      if (flags.name === undefined || command.length === 0) throw new ExitError('a command-backup job needs --name NAME -- COMMAND ARGS… (its output is stored as the file /NAME)', EXIT.usage);
      return { kind: 'command-backup', spec: { command, name: flags.name } };
    case 'database-backup':
      others('database-backup', ['--database']);
      if (flags.database === undefined) throw new ExitError('a database-backup job needs --database NAME (a name under "databases" in the machine\'s agent configuration)', EXIT.usage);
      return { kind: 'database-backup', spec: { database: flags.database } };
    case 'restore':
      others('restore', ['--snapshot', '--target', '--path']);
      if (flags.target === undefined) throw new ExitError('a restore job needs --target DIR (absolute on the machine)', EXIT.usage);
      return { kind: 'restore', spec: { snapshot: flags.snapshot ?? 'latest', target: flags.target, ...(flags.path.length > 0 ? { paths: flags.path } : {}) } };
    case 'check':
      others('check', ['--read-data-subset']);
      return { kind: 'check', spec: flags.readDataSubset === undefined ? {} : { read_data_subset: flags.readDataSubset } };
    case 'verify-restore': {
      others('verify-restore', ['--snapshot', '--share', '--min-files']);
      const share = flags.share === undefined ? undefined : Number(/^(\d+(?:\.\d+)?)%$/.exec(flags.share.trim())?.[1] ?? NaN);
      if (share !== undefined && !(share >= 0.001 && share <= 100)) throw new ExitError(`--share wants a percentage from 0.001% to 100%, such as 5% or 0.5%; got "${flags.share!}"`, EXIT.usage);
      if (flags.minFiles !== undefined && !/^\d{1,6}$/.test(flags.minFiles.trim())) throw new ExitError(`--min-files wants a whole number up to 1000000, got "${flags.minFiles}"`, EXIT.usage);
      return {
        kind: 'verify-restore',
        spec: { ...(flags.snapshot === undefined ? {} : { snapshot: flags.snapshot }), ...(share === undefined ? {} : { share }), ...(flags.minFiles === undefined ? {} : { min_files: Number(flags.minFiles) }) },
      };
    }
    default:
      throw new ExitError(`holdfast server job run needs --kind (${JOB_KIND_NAMES.join(', ')})`, EXIT.usage);
  }
}

function printEvent(g: GlobalOptions, e: JobEventBody): void {
  if (g.json) printBody(e);
  else say(g, `${when(e.at)}  ${e.kind.padEnd(8)}  ${e.message}`);
}

/**
 * Prints the events of job `id` after `after`; with `follow`, keeps looking
 * until the job ends, then throws unless it succeeded (the agent's jobs, and
 * the server's own: a safe's prune), or when its result is incomplete (exit 3).
 */
export async function events(c: AdminClient, g: GlobalOptions, id: string, follow: boolean): Promise<void> {
  let after = 0;
  const drain = async (): Promise<void> => {
    for (;;) {
      const page = await c.get<JobEventBody[]>(`/jobs/${encodeURIComponent(id)}/events?after=${after}&limit=1000`);
      for (const e of page) printEvent(g, e);
      if (page.length > 0) after = page.at(-1)!.seq;
      if (page.length < 1000) return;
    }
  };
  if (!follow) return drain();
  for (;;) {
    // The state first: events reported before it ended are all there when the drain after it runs.
    const job = await c.get<JobBody>(`/jobs/${encodeURIComponent(id)}`);
    await drain();
    if (FINAL.has(job.state)) {
      if (job.state !== 'succeeded') throw new ExitError(`job ${job.id} ${job.state}${job.error ? `: ${job.error}` : ''}`, EXIT.failed);
      if (job.result?.['incomplete'] === true) {
        throw new ExitError(`job ${job.id} succeeded, but INCOMPLETE: some paths or files could not be read (see its warnings)`, EXIT.incomplete);
      }
      if (!g.json) say(g, `job ${job.id} succeeded`);
      return;
    }
    await sleep(FOLLOW_INTERVAL_MS);
  }
}

function jobFields(j: JobBody, machine: string): [string, string][] {
  return [['id', j.id], ['kind', j.kind], ['run by', j.runner], ['state', j.state], ['machine', machine], ['disk safe', j.safe_name], ['spec', JSON.stringify(j.spec)],
    ['created', `${when(j.created_at)} by ${j.created_by}`], ...(j.state === 'queued' && j.expires_at ? [['expires', when(j.expires_at)] as [string, string]] : []),
    ['started', when(j.started_at)], ['finished', when(j.finished_at)], ...(j.cancelled_by ? [['cancelled by', j.cancelled_by] as [string, string]] : []),
    ...(j.result ? [['result', JSON.stringify(j.result)] as [string, string]] : []), ...(j.error ? [['error', j.error] as [string, string]] : [])];
}

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const job = server.command('job').description('jobs of the machines\' agents: list, show, run (run now), events, cancel');

  job.command('list').description('a machine\'s jobs, newest first').argument('<machine>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const all = await withServer(g, async (c) => c.get<JobBody[]>(`/machines/${await idOf(c, 'machine', ref)}/jobs`));
      if (g.json) return printBody(all);
      printTable(g, 'no jobs', ['ID', 'KIND', 'STATE', 'SAFE', 'CREATED', 'FINISHED'],
        all.map((j) => [j.id, j.kind, j.state, j.safe_name, when(j.created_at), when(j.finished_at)]));
    });

  job.command('show').description('one job: its spec, state and result').argument('<job>', 'its id')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [j, machine] = await withServer(g, async (c) => {
        const got = await c.get<JobBody>(`/jobs/${encodeURIComponent(id)}`);
        return [got, await labelOf(c, '/machines', got.machine_id)] as const;
      });
      if (g.json) return printBody(j);
      printFields(g, jobFields(j, machine));
    });

  job.command('run').description('run now: queue a job for the machine\'s agent').argument('<machine>', 'its name or id')
    .argument('[command...]', 'command-backup: after --, the command and its arguments (run without a shell)')
    .addOption(new Option('--kind <kind>', 'what to run; required').choices(JOB_KIND_NAMES))
    .option('--path <path>', 'backup: a path to back up; restore: a path of the snapshot to restore (repeat for more)', collect, [])
    .option('--exclude <pattern>', 'backup: leave out what matches (repeat for more)', collect, [])
    .option('--source <device>', 'image-backup: a block device, a raw or qcow2 image file, or an NBD export (nbd://HOST:PORT/EXPORT) the machine reaches (repeat for more)', collect, [])
    .option('--name <name>', 'command-backup: the file name its output is stored as')
    .option('--database <name>', 'database-backup: the database server, by its name under "databases" in the machine\'s agent configuration')
    .option('--snapshot <id>', 'restore, verify-restore: the snapshot, an id or its prefix (default latest)')
    .option('--target <dir>', 'restore: the folder on the machine to restore into; required for a restore')
    .option('--read-data-subset <n/t|x%>', 'check: read this part of the packs too')
    .option('--share <P%>', 'verify-restore: the share of the files to restore (default 1%)')
    .option('--min-files <N>', 'verify-restore: restore at least this many files (default 100)')
    .option('--expires-in <duration>', 'end the job expired if the agent has not taken it within this long (e.g. 30m, 6h, 2d; default 24h)', expiresIn)
    .option('--follow', 'print its events until it ends; exit 0 when it succeeded, 3 when it succeeded incomplete, 1 otherwise')
    .action(async (ref: string, command: string[], flags: RunFlags, cmd: Command) => {
      const g = globals(cmd);
      const body = { ...jobRequest(flags, command), ...(flags.expiresIn === undefined ? {} : { expires_in: flags.expiresIn }) };
      await withServer(g, async (c) => {
        const j = await c.post<JobBody>(`/machines/${await idOf(c, 'machine', ref)}/jobs`, body);
        if (g.json) printBody(j);
        else say(g, `queued ${j.kind} job ${j.id} for ${ref} (disk safe ${j.safe_name})`);
        if (flags.follow) await events(c, g, j.id, true);
      });
    });

  job.command('cancel').description('cancel a job: a queued one at once; a running one is stopped by its agent (or the server) and ends cancelled')
    .argument('<job>', 'its id')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const j = await withServer(g, (c) => c.post<JobBody>(`/jobs/${encodeURIComponent(id)}/cancel`, {}));
      if (g.json) return printBody(j);
      say(g, j.state === 'cancelled' ? `job ${j.id} cancelled` : `job ${j.id} is being stopped by its ${j.runner === 'agent' ? 'agent' : 'server'}; it ends cancelled (holdfast server job show ${j.id})`);
    });

  job.command('events').description('a job\'s progress and log lines, as its agent reported them').argument('<job>', 'its id')
    .option('--follow', 'keep printing them until the job ends; exit 0 when it succeeded, 3 when it succeeded incomplete, 1 otherwise')
    .action(async (id: string, flags: { follow?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withServer(g, (c) => events(c, g, id, flags.follow === true));
    });
}

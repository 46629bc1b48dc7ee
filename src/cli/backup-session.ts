/**
 * What `backup` of files, streams and images shares on the command line: the
 * repository opened for the backup session (src/jobs/sessions), Ctrl-C
 * turned into an abort, the session run between the --before-backup and
 * --after-backup hooks, the session's outcomes turned into messages and exit
 * codes; and the parsing of --time, --tag and the hook options. A dry run
 * takes no lock and writes nothing (its writes are dropped: `DryRunBackend`).
 */
import type { Command } from 'commander';
import { parseDuration } from '../repo/deletion-marker.js';
import { LockLostError } from '../repo/lock.js';
import type { Repository } from '../repo/repository.js';
import { backupSession as runSession } from '../jobs/sessions/backup-session.js';
import { withBackupHooks, type BackupHooks, type HookContext, type WorkOutcome } from '../jobs/sessions/backup-hooks.js';
import { lockedByMe, openRepo, repoLocation, warn, type GlobalOptions } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';

/** The hook options of `backup`. */
export interface HookFlags {
  beforeBackup?: string;
  afterBackup?: string;
  hookTimeout?: number;
}

/** Adds --before-backup, --after-backup and --hook-timeout to a command. */
export function withHookOptions(cmd: Command): Command {
  return cmd
    .option('--before-backup <command>', 'run this shell command first; if it fails or runs past --hook-timeout, the backup is skipped (exit code 16)')
    .option('--after-backup <command>', 'run this shell command after the backup however it ended; HOLDFAST_OUTCOME tells how')
    .option('--hook-timeout <duration>', 'end a hook (and its process group) that runs longer than this, e.g. 30s, 10m; 0: no limit (default: 5m)', (text) => {
      try {
        return parseDuration(text);
      } catch (e) {
        throw new ExitError(`bad --hook-timeout: ${(e as Error).message}`, EXIT.usage);
      }
    });
}

/** The hooks of a command's flags, when it has any. */
export function hooksOf(flags: HookFlags): BackupHooks | undefined {
  if (flags.beforeBackup === undefined && flags.afterBackup === undefined) return undefined;
  return {
    ...(flags.beforeBackup === undefined ? {} : { before: flags.beforeBackup }),
    ...(flags.afterBackup === undefined ? {} : { after: flags.afterBackup }),
    timeoutMs: flags.hookTimeout ?? DEFAULT_HOOK_TIMEOUT_MS,
  };
}

const DEFAULT_HOOK_TIMEOUT_MS = 5 * 60_000;

/** How a backup session runs: a dry run; the hooks around it and what they are told. */
export interface SessionOptions {
  readonly dryRun?: boolean;
  /** The work starts beside the lock and the orphan packs, and writes nothing before `ready` (jobs/sessions/backup-session.ts). */
  readonly early?: boolean;
  readonly hooks?: { readonly hooks: BackupHooks; readonly paths: readonly string[]; readonly kind: HookContext['kind'] };
}

/**
 * Runs `work` in a backup session, between the hooks; everything is released
 * however it ends. `work` says how the backup ended, for the after hook.
 */
export async function backupSession(g: GlobalOptions, work: (repo: Repository, signal: AbortSignal, ready: Promise<void>) => Promise<WorkOutcome>, opts: SessionOptions = {}): Promise<void> {
  const dryRun = opts.dryRun === true;
  const abort = new AbortController();
  // The signal reaches the rate limiter too: a wait for --limit-upload can last minutes.
  const repo = await openRepo(g, { dryRun, signal: abort.signal });
  const onSigint = (): void => abort.abort(new ExitError('interrupted; the repository is intact and the next backup reuses what was uploaded', EXIT.interrupted));
  const offInterrupt = onInterrupt(onSigint);
  const session = (): Promise<WorkOutcome> => runSession(repo, {
    ...lockedByMe(),
    dryRun,
    early: opts.early === true,
    signal: abort.signal,
    onWarning: warn,
    onOrphansIndexed: (n) => {
      if (!g.quiet) warn(`indexed ${n} pack(s) left by an interrupted backup`);
    },
  }, (signal, ready) => work(repo, signal, ready));
  try {
    const h = opts.hooks;
    if (!h) {
      await session();
      return;
    }
    let afterFailed = false;
    await withBackupHooks(h.hooks, { env: process.env, repository: shownLocation(repoLocation(g)), paths: h.paths, kind: h.kind }, {
      signal: abort.signal,
      onOutput: (hook, line) => process.stderr.write(`${hook}: ${line}\n`),
      onWarning: (m) => {
        afterFailed = true;
        warn(m);
      },
    }, session, (o) => o);
    // The backup is done; a failed after hook is still a failure for whoever runs this from a script.
    if (afterFailed && (process.exitCode ?? 0) === 0) process.exitCode = EXIT.afterHookFailed;
  } catch (e) {
    if (e instanceof LockLostError) throw new ExitError(`${e.message}; no snapshot was written`, EXIT.locked);
    throw e;
  } finally {
    offInterrupt();
  }
}

/** A repository location without the password of a URL's user part. */
function shownLocation(location: string): string {
  return location.replace(/^([a-z0-9+.-]+:\/\/)[^/@]*@/i, '$1');
}

/** Parses "YYYY-MM-DD HH:MM:SS" as local time. */
export function parseTime(s: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(s.trim());
  if (!m) throw new ExitError(`bad --time "${s}": use "YYYY-MM-DD HH:MM:SS"`, EXIT.usage);
  const [y, mo, d, h, mi, se] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number, number, number];
  const t = new Date(y, mo - 1, d, h, mi, se);
  if (t.getFullYear() !== y || t.getMonth() !== mo - 1 || t.getDate() !== d || h > 23 || mi > 59 || se > 59) {
    throw new ExitError(`bad --time "${s}": no such date or time`, EXIT.usage);
  }
  return t;
}

/** The tags of repeated --tag A,B options. */
export const splitTags = (tags: string[] | undefined): string[] => (tags ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');

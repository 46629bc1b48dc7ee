/**
 * Commands run around a backup (`backup --before-backup CMD --after-backup
 * CMD`), for files, streams and images alike, as borgmatic's
 * `before_backup`/`after_backup` and kopia's before/after snapshot actions:
 *
 *   before    runs first; if it fails, runs past its timeout or is
 *             interrupted, the backup is skipped (`HookFailedError`)
 *   work      the backup (its lock, its file-system snapshots, its upload)
 *   after     runs however the backup ended (success, incomplete, failure,
 *             skipped by the before hook, interrupted) and learns how, in
 *             HOLDFAST_OUTCOME; its own failure is reported, not thrown
 *
 * Each hook is a shell command (`/bin/sh -c`), run in a process group of its
 * own: a hook that runs past its timeout, or a before hook whose backup is
 * interrupted, is ended with its whole group (SIGTERM, then SIGKILL), so a
 * `sleep` it started does not outlive it. Its stdout and stderr come back
 * line by line through `onOutput`; nothing is printed here.
 */
import { spawn } from 'node:child_process';
import type { ErrorCode } from '../../core/errors.js';

/** Which hook: the names of the options and of HOLDFAST_HOOK. */
export type HookName = 'before-backup' | 'after-backup';

/** How a backup ended, as the after hook learns it (HOLDFAST_OUTCOME). */
export type BackupOutcome = 'success' | 'incomplete' | 'failed' | 'skipped' | 'interrupted';

/** The hooks of one backup. */
export interface BackupHooks {
  /** Shell command run before the backup; a failure skips the backup. */
  readonly before?: string;
  /** Shell command run after the backup, however it ended. */
  readonly after?: string;
  /** Each hook's time limit in milliseconds; 0: none. */
  readonly timeoutMs: number;
}

/** What the hooks are told about the backup, in their environment. */
export interface HookContext {
  /** The environment the hooks start from (the CLI's own; the engine reads no environment). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The repository, as shown to the user (no credentials). */
  readonly repository: string;
  /** What is backed up: the paths, or the stream's or image's name. */
  readonly paths: readonly string[];
  /** files, stream or image. */
  readonly kind: 'files' | 'stream' | 'image';
}

/** What the backup's work tells the after hook. */
export interface WorkOutcome {
  readonly outcome: 'success' | 'incomplete';
  /** The snapshot written (none in a dry run). */
  readonly snapshotId?: string;
}

export interface HookRunOptions {
  /** Aborts the backup (Ctrl-C, a cancelled job): a running before hook is ended; the after hook still runs. */
  readonly signal?: AbortSignal;
  /** A line a hook wrote on its stdout or stderr. */
  readonly onOutput?: (hook: HookName, line: string) => void;
  /** The after hook failed (the backup's own outcome stands). */
  readonly onWarning?: (message: string) => void;
}

/** A before hook failed, ran past its timeout or could not be started: the backup was skipped. */
export class HookFailedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'HOOK_FAILED';
  constructor(message: string, readonly hook: HookName) {
    super(message);
    this.name = 'HookFailedError';
  }
}

/** How long a hook ended with SIGTERM has before SIGKILL. */
const KILL_GRACE_MS = 5000;

/**
 * Runs `work` between the hooks (see the module comment) and returns what it
 * returns; `outcomeOf` tells the after hook how a backup that returned ended.
 * An error of `work` is thrown again once the after hook has run.
 */
export async function withBackupHooks<T>(hooks: BackupHooks, ctx: HookContext, opts: HookRunOptions, work: () => Promise<T>, outcomeOf: (r: T) => WorkOutcome): Promise<T> {
  const after = async (env: Record<string, string>): Promise<void> => {
    if (hooks.after === undefined) return;
    // Not aborted by the signal: an interrupted backup's after hook is the one that must run.
    const failure = await runHook('after-backup', hooks.after, hooks.timeoutMs, ctx, env, { ...opts, signal: undefined });
    if (failure !== undefined) opts.onWarning?.(`${failure}; the backup's own outcome stands`);
  };
  if (hooks.before !== undefined) {
    const failure = await runHook('before-backup', hooks.before, hooks.timeoutMs, ctx, {}, opts);
    if (failure !== undefined) {
      const interrupted = opts.signal?.aborted === true;
      await after({ HOLDFAST_OUTCOME: interrupted ? 'interrupted' : 'skipped', HOLDFAST_ERROR: failure });
      if (interrupted) throw opts.signal!.reason;
      throw new HookFailedError(`${failure}; the backup was skipped, nothing was written`, 'before-backup');
    }
  }
  let result: T;
  try {
    result = await work();
  } catch (e) {
    await after({ HOLDFAST_OUTCOME: opts.signal?.aborted === true ? 'interrupted' : 'failed', HOLDFAST_ERROR: (e as Error).message ?? String(e) });
    throw e;
  }
  const o = outcomeOf(result);
  await after({ HOLDFAST_OUTCOME: o.outcome, ...(o.snapshotId === undefined ? {} : { HOLDFAST_SNAPSHOT_ID: o.snapshotId }) });
  return result;
}

/**
 * Runs one hook to its end; resolves to why it failed (a sentence naming the
 * hook), or undefined when it exited 0.
 */
export function runHook(name: HookName, command: string, timeoutMs: number, ctx: HookContext, extra: Record<string, string>, opts: HookRunOptions): Promise<string | undefined> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, {
    HOLDFAST_HOOK: name,
    HOLDFAST_REPOSITORY: ctx.repository,
    // One a line: a path holding a newline is rare enough, and the environment has no other separator that paths lack.
    HOLDFAST_PATHS: ctx.paths.join('\n'),
    HOLDFAST_BACKUP_KIND: ctx.kind,
    ...extra,
  });
  return new Promise((resolve) => {
    if (opts.signal?.aborted) {
      resolve(`the ${name} hook was not run: the backup was interrupted`);
      return;
    }
    const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let ended: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const endGroup = (why: string): void => {
      if (ended !== undefined) return;
      ended = why;
      signalGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
    };
    const timer = timeoutMs > 0 ? setTimeout(() => endGroup(`the ${name} hook ran past its timeout of ${formatMs(timeoutMs)} and was ended with its process group`), timeoutMs) : undefined;
    const onAbort = (): void => endGroup(`the ${name} hook was ended: the backup was interrupted`);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    for (const stream of [child.stdout, child.stderr]) forEachLine(stream, (line) => opts.onOutput?.(name, line));
    let startError: Error | undefined;
    child.once('error', (e) => {
      startError = e;
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (ended !== undefined) resolve(ended);
      else if (startError) resolve(`the ${name} hook could not be run: ${startError.message}`);
      else if (code !== 0) resolve(`the ${name} hook failed (${sig ? `killed by ${sig}` : `exit code ${code}`})`);
      else resolve(undefined);
    });
    // A child of the hook left running in the background may hold its pipes open: its exit is what counts.
    child.once('exit', () => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 1000).unref();
    });
  });
}

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // The group is gone already.
  }
}

/** Calls `line` for each line of a stream (a last line without a newline too). */
function forEachLine(stream: NodeJS.ReadableStream, line: (text: string) => void): void {
  let carry = '';
  stream.setEncoding('utf8');
  stream.on('data', (s: string) => {
    const parts = (carry + s).split('\n');
    carry = parts.pop()!;
    for (const p of parts) line(p);
  });
  stream.on('close', () => {
    if (carry !== '') line(carry);
    carry = '';
  });
}

const formatMs = (ms: number): string => ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;

/**
 * What every command shares: global options, opening the repository, output.
 */
import type { Command, Option } from 'commander';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseCompressionMode, type CompressionMode } from '../core/compress.js';
import { openBackend } from '../storage/open-backend.js';
import type { KeyDerivation } from '../repo/key-file.js';
import { Repository, type ListSnapshotsOptions } from '../repo/repository.js';
import { Store, type ModeOptions, type SnapshotEntry } from '../repo/store.js';
import type { Backend } from '../storage/backend.js';
import { DryRunBackend } from '../storage/dry-run-backend.js';
import { RateLimitedBackend } from '../storage/rate-limited-backend.js';
import { RetryingBackend } from '../storage/retrying-backend.js';
import { acquireLock, processIdentity, LockedError, type ProcessIdentity, type RepositoryLock } from '../repo/lock.js';
import { NotARepositoryError } from '../repo/errors.js';
import { ExitError, EXIT } from './exit-codes.js';
import { getPassword, withPassword } from './password.js';
import { headerRecordsFile, readKeyHint, saveHints } from './key-hint.js';
import { httpSettings, minGraceMs, retryForMs, s3Settings, workerCount } from './environment.js';
import { WorkerPool } from '../jobs/pool/worker-pool.js';
import { readableSnapshots } from '../jobs/snapshots/select.js';
import { printable } from './printable.js';

export interface GlobalOptions {
  repo?: string;
  passwordFile?: string;
  passwordCommand?: string;
  quiet?: boolean;
  json?: boolean;
  /** How often -v/--verbose was given. */
  verbose?: number;
  /** --limit-upload, in KiB/s. */
  limitUpload?: number;
  /** --limit-download, in KiB/s. */
  limitDownload?: number;
  /** --cacert: a PEM file of a CA to trust for S3 endpoints and holdfast servers. */
  cacert?: string;
  /** --fingerprint: the SHA-256 fingerprint of a holdfast server's certificate, to pin. */
  fingerprint?: string;
}

/** The global options a command (and the commands under it) honours, when not all of them (honours). */
const HONOURED = new WeakMap<Command, ReadonlySet<keyof GlobalOptions>>();

/**
 * Declares the global options that `cmd` and the commands under it honour,
 * so that their help shows those ("Global Options:"). A command with no
 * declaration on it or above it honours them all (the repository commands).
 */
export function honours(cmd: Command, ...names: (keyof GlobalOptions)[]): Command {
  HONOURED.set(cmd, new Set(names));
  return cmd;
}

/**
 * The global options `cmd`'s help shows: the program's options that the
 * nearest declaration (honours) names, all of them without one. Options of
 * the commands in between (`holdfast server --data`) are not global.
 */
export function honouredGlobals(cmd: Command): Option[] {
  if (cmd.parent === null) return [];
  let root = cmd;
  let declared: ReadonlySet<keyof GlobalOptions> | undefined;
  for (let c: Command | null = cmd; c !== null; c = c.parent) {
    declared ??= HONOURED.get(c);
    root = c;
  }
  // -V/--version is the program's own, not an option of its commands.
  return root.options.filter((o) => !o.hidden && o.attributeName() !== 'version'
    && (declared === undefined || declared.has(o.attributeName() as keyof GlobalOptions)));
}

/** The global options of the command being run. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** The repository location from -r/--repo or HOLDFAST_REPOSITORY. */
export function repoLocation(g: GlobalOptions): string {
  const loc = g.repo ?? process.env['HOLDFAST_REPOSITORY'];
  if (!loc) throw new ExitError('no repository given: use -r/--repo or HOLDFAST_REPOSITORY', EXIT.usage);
  return loc;
}

/**
 * The path that keeps `path` from being a folder: `path` itself or the
 * nearest folder above it that exists as something else (a file); undefined
 * when `path` is a folder or can be made one.
 */
export async function fileInTheWay(path: string): Promise<string | undefined> {
  for (let p = path; ; p = dirname(p)) {
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined; // the operation itself reports anything else
    }
    if (st?.isDirectory()) return undefined;
    if (st) return p;
    if (dirname(p) === p) return undefined;
  }
}

/**
 * Refuses a local location that is a file or lies below one: it can hold no
 * repository (exit 10; 1 for `init`, which cannot create one there). Opening
 * it gave a raw ENOTDIR or EEXIST that named neither the location nor the cause.
 */
async function refuseFileLocation(backend: Backend, creating: boolean): Promise<void> {
  const root = backend.capabilities.localPath;
  if (root === undefined) return;
  const p = await fileInTheWay(root);
  if (p === undefined) return;
  throw new ExitError(`${creating ? 'cannot create a repository' : 'no holdfast repository'} at ${backend.location}: `
    + `${p === root ? 'it' : p} is a file, not a folder`, creating ? EXIT.failed : EXIT.noRepository);
}

/**
 * The backend of the repository location, limited to the rates of
 * --limit-upload and --limit-download, with calls that fail transiently
 * tried again (each retry a warning); `creating` for `init`. `signal`, the
 * command's Ctrl-C, ends the limiter's and the retries' waits.
 */
export async function backendFor(g: GlobalOptions, creating = false, signal?: AbortSignal): Promise<Backend> {
  return backendAt(repoLocation(g), g, creating, signal);
}

/** Like `backendFor`, for a repository at `location` (the other repository of `copy` and `init --copy-from`). */
export async function backendAt(location: string, g: GlobalOptions, creating = false, signal?: AbortSignal): Promise<Backend> {
  const https = /^https:/i.test(location);
  // A server past a soft quota says so with every upload: once a command is enough.
  let warned = false;
  const onWarning = (m: string): void => {
    if (!warned) warn(m);
    warned = true;
  };
  const backend = openBackend(location, https ? { http: { ...await httpSettings(g.fingerprint, g.cacert), onWarning } } : { s3: await s3Settings(g.cacert) });
  await refuseFileLocation(backend, creating);
  const up = g.limitUpload ?? 0;
  const down = g.limitDownload ?? 0;
  const limited = up === 0 && down === 0 ? backend : new RateLimitedBackend(backend, {
    ...(up > 0 ? { uploadBytesPerSecond: up * 1024 } : {}),
    ...(down > 0 ? { downloadBytesPerSecond: down * 1024 } : {}),
  }, { signal });
  // Outside the limiter, so that every attempt pays for its bytes.
  const retryFor = retryForMs();
  return new RetryingBackend(limited, {
    signal,
    ...(retryFor === undefined ? {} : { policy: { maxElapsedMs: retryFor } }),
    onRetry: (e) => warn(`${e.operation}: ${e.error.message}; retrying in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt + 1})`),
  });
}

/** A commander parser for a rate in KiB/s: a whole number, 0 for no limit (as restic takes it). */
export function kibPerSecond(option: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new ExitError(`bad ${option} "${text}": a whole number of KiB a second (0: no limit)`, EXIT.usage);
    return n;
  };
}

/** A commander parser for --compression: one of the modes, else a usage error (exit 2). */
export function compressionMode(text: string): CompressionMode {
  try {
    return parseCompressionMode(text);
  } catch (e) {
    throw new ExitError((e as Error).message, EXIT.usage);
  }
}

let me: ProcessIdentity | undefined;

/** This process, as its locks name it and as the machine that judges whether a lock's process still runs here. */
export function thisProcess(): ProcessIdentity {
  me ??= processIdentity();
  return me;
}

/** The identity options of a lock this command takes: held by this process, judged on this machine. */
export function lockedByMe(): { holder: ProcessIdentity; machine: ProcessIdentity } {
  return { holder: thisProcess(), machine: thisProcess() };
}

/** Repositories opened with a key by this command, closed (their keys zeroed) when it ends. */
const opened = new Set<Repository>();

/** The key derivation main.ts started for this command (early-key.ts), until a repository takes it or the command ends. */
let derivation: KeyDerivation | undefined;

/** Hands `openRepo` the derivation started before the command's modules loaded. */
export function useKeyDerivation(d: KeyDerivation | undefined): void {
  derivation = d;
}

/**
 * Opens the repository with the password and loads the index; `dryRun`:
 * writes are dropped (`DryRunBackend`); `signal`: the command's Ctrl-C, which
 * ends the rate limiter's waits. The key file that opened it last time here
 * is tried first (src/cli/key-hint.ts).
 */
export async function openRepo(g: GlobalOptions, opts: { index?: boolean; dryRun?: boolean; signal?: AbortSignal } = {}): Promise<Repository> {
  const location = await backendFor(g, false, opts.signal);
  const store = await Store.open(opts.dryRun ? new DryRunBackend(location) : location, modeOptions());
  let repo: Repository;
  try {
    repo = await withPassword(getPassword(g), (password) => Repository.open(store, password, {
      preferKey: readKeyHint, headerStore: headerRecordsFile, onWarning: warn, minGraceMs: minGraceMs(), loadIndex: opts.index !== false, ...(derivation ? { derivation } : {}),
    }));
  } finally {
    // Taken or not, it is of no use past the first open: its secrets go now, not when the command ends.
    derivation?.dispose();
    derivation = undefined;
  }
  opened.add(repo);
  saveHints(repoLocation(g), repo);
  return repo;
}

/** Keeps `repo` (made by `init`) to be closed with the others. */
export function closeWithCommand(repo: Repository): void {
  opened.add(repo);
}

let pool: WorkerPool | undefined;

/**
 * The worker threads of this process (HOLDFAST_WORKERS, else one per core),
 * started when a job first needs them; every job of the command runs on them.
 */
export function processPool(): WorkerPool {
  pool ??= new WorkerPool(workerCount());
  return pool;
}

/** Ends the command: stops the worker threads, then zeroes the keys of every repository it opened. */
export async function closeCommand(): Promise<void> {
  await pool?.close();
  pool = undefined;
  derivation?.dispose();
  derivation = undefined;
  for (const repo of opened) repo.close();
  opened.clear();
}

const envFlag = (name: string): boolean => {
  const v = process.env[name];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
};

/**
 * The append-only mode of this client: HOLDFAST_APPEND_ONLY=1 restricts it
 * whatever the repository says; HOLDFAST_STORAGE_OWNER=1 marks the operator
 * who applies retention, to whom the repository's own flag does not apply.
 */
export function modeOptions(): ModeOptions {
  return { appendOnly: envFlag('HOLDFAST_APPEND_ONLY'), storageOwner: envFlag('HOLDFAST_STORAGE_OWNER') };
}

/**
 * Opens the repository without a password (forget, unlock, prune, check,
 * repair, copy); `signal` ends the rate limiter's and the retries' waits.
 */
export async function openKeyless(g: GlobalOptions, signal?: AbortSignal): Promise<Store> {
  return Store.open(await backendFor(g, false, signal), modeOptions());
}

/**
 * Opens the keyless store of a repository that snapshots or a key are taken
 * from (`copy --from-repo`, `init --copy-from`): a location that holds none
 * is not told to create one, it is named as the source that is not there;
 * `signal` as for `openKeyless`.
 */
export async function openSourceStore(location: string, g: GlobalOptions, signal?: AbortSignal): Promise<Store> {
  try {
    return await Store.open(await backendAt(location, g, false, signal));
  } catch (e) {
    if (e instanceof NotARepositoryError) throw new NotARepositoryError(location, 'the source to copy from must be an existing repository');
    throw e;
  }
}

/** Warns of a snapshot left out because it cannot be read or fails its MAC. */
export function skipDamaged(id: string, e: Error): void {
  warn(`skipping snapshot ${id}: ${e.message}`);
}

/**
 * Every snapshot that can be read and passes its MAC, oldest first; each of
 * the others is named in a warning and left out. `opts.blobList: false`:
 * their headers (a backup choosing its parent holds no blob lists).
 */
export function snapshotsOf(repo: Repository, opts: ListSnapshotsOptions = {}): Promise<SnapshotEntry[]> {
  return readableSnapshots(repo, skipDamaged, opts);
}

/** Refuses, with exit code 13, a command that would remove data through an append-only client. */
export function refuseIfAppendOnly(backend: Backend, what: string): void {
  if (backend.capabilities.appendOnly) {
    throw new ExitError(`the repository is append-only: ${what} would remove data, and append-only clients cannot remove anything. `
      + 'Retention is applied by the storage owner: for a disk safe on a holdfast server, the server ("holdfast server safe forget|prune SAFE" as one of the customer\'s admins, '
      + 'or a token with the manage right); elsewhere, a client with HOLDFAST_STORAGE_OWNER=1 and storage credentials that may delete. See docs/format.md, "Append-only repositories"', EXIT.appendOnly);
  }
}

/** Prints a line to stdout unless --quiet, its control characters escaped (printable.ts). */
export function say(g: GlobalOptions, line: string): void {
  if (!g.quiet) process.stdout.write(`${printable(line)}\n`);
}

/**
 * A line of -v output on stdout, for an item a backup or restore is done
 * with (restic's verbose_status with --json). Unchanged files need -v -v.
 */
export function verboseItem(g: GlobalOptions, action: 'new' | 'modified' | 'unchanged' | 'restored', path: string): void {
  if (g.quiet || (g.verbose ?? 0) < (action === 'unchanged' ? 2 : 1)) return;
  process.stdout.write(g.json ? `${JSON.stringify({ message_type: 'verbose_status', action, item: path })}\n` : `${action.padEnd(9)} ${printable(path)}\n`);
}

/**
 * Warnings a command prints; the rest are counted and summed up when it
 * ends (`warningsLeftOut`). A planted snapshot can hold millions of refused
 * names, each reached from many folders.
 */
export const MAX_WARNINGS = 1000;
let warnings = 0;

/** Prints a warning to stderr (always, even with --quiet), the first MAX_WARNINGS of a command. */
export function warn(line: string): void {
  if (++warnings <= MAX_WARNINGS) process.stderr.write(`warning: ${printable(line)}\n`);
}

/** Says how many warnings were not printed, once. */
export function warningsLeftOut(): void {
  if (warnings > MAX_WARNINGS) process.stderr.write(`warning: ${warnings - MAX_WARNINGS} more warnings not shown\n`);
  warnings = 0;
}

/** "1 file", "2 files": a count and its noun, plural unless the count is one. */
export function plural(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** Bytes for humans: 1.5 GiB (src/core/size.ts; the server's messages use it too). */
export { formatBytes } from '../core/size.js';

/** Seconds for humans: 1:02:03 or 2:03. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Collects a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * The shared lock of a command that reads for as long as it runs (mount,
 * serve-nbd): a prune then keeps what it reads. A conflicting lock stops the
 * command; storage that takes no lock (read-only) only gets a warning, and the
 * command goes on without one. `what` names what a prune could take away,
 * `anyway` how the command says it goes on.
 */
export async function longReadLock(repo: Repository, operation: string, what: string, anyway: string): Promise<RepositoryLock | undefined> {
  try {
    return await acquireLock(repo.backend, { ...lockedByMe(), exclusive: false, operation, onLost: (e) => warn(`${e.message}; ${what} may disappear if a prune runs`) });
  } catch (e) {
    if (e instanceof LockedError) throw e;
    warn(`could not take a repository lock (${(e as Error).message}); ${anyway}`);
    return undefined;
  }
}

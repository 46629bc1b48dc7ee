/**
 * The agent's jobs on its machine's disk safe, one at a time, on a
 * repository opened once for the life of the process: the key is derived
 * and the index loaded when the agent starts, and each job after the first
 * only refreshes the index (`Repository.refreshIndex`: the index files added
 * since, or everything again after a prune). Every job runs on the
 * process's one WorkerPool, and reuses the engine's jobs as the CLI does
 * (src/jobs): the backup session, the archiver, the image backup, the
 * restorer, the checker, the restore test. Prints nothing: what happens goes to the job's
 * reporter, how it ended is the result (or the error thrown). The trees of
 * the last file backup stay in memory (TreeCache), so that the next one,
 * whose parent that backup is, reads no parent tree from the disk safe, and
 * so does the folder-scan worker of file backups (DirScanner), started by
 * the first backup of a large tree and kept for the next, and the headers
 * of the snapshots the repository authenticated (`Repository.listSnapshots`
 * with `blobList: false`), so that a job's listing downloads only the
 * snapshots added since the last.
 *
 *   open (once)   backend https://server/safes/NAME, retried, rate-limited
 *                 → Repository.open(password, loadIndex) → WorkerPool
 *   each job      refresh the index → run the kind → figures
 */
import { lstat, readdir, realpath } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { isBackupKind, type BackupSpec, type CheckSpec, type CommandBackupSpec, type DatabaseBackupSpec, type ImageBackupSpec, type JobBody, type JobKindName, type RestoreSpec, type VerifyRestoreSpec } from '../api/v1.js';
import { Archiver, type BackupProgress, type BackupResult } from '../jobs/backup/archiver.js';
import { backupDatabase, databaseSnapshotPath, type DatabaseSource } from '../jobs/backup/database-backup.js';
import { existingPaths } from '../jobs/backup/existing-paths.js';
import { DirScanner } from '../jobs/backup/dir-scanner.js';
import { ExcludeRules } from '../jobs/backup/excludes.js';
import { TreeCache } from '../jobs/backup/tree-cache.js';
import { Checker } from '../jobs/check/checker.js';
import { parseSubset } from '../jobs/check/subset.js';
import { ImageBackup, type ImageBackupResult } from '../jobs/image/image-backup.js';
import { bitmapsOf, withBitmapRotation, type BackupBitmaps } from '../jobs/image/qcow2-bitmaps.js';
import { isImageSnapshot, openImageFiles, restorerFor } from '../jobs/image-files/open-image-files.js';
import { WorkerPool } from '../jobs/pool/worker-pool.js';
import { MAX_FAILED_LISTED } from '../jobs/restore/restorer.js';
import { HookFailedError, withBackupHooks, type HookContext } from '../jobs/sessions/backup-hooks.js';
import { backupSession } from '../jobs/sessions/backup-session.js';
import { findParent, findSnapshot, readableSnapshots } from '../jobs/snapshots/select.js';
import { summaryJson } from '../jobs/snapshots/summary-json.js';
import { DEFAULT_SAMPLE, randomSeed, verifyRestore } from '../jobs/verify-restore/verify-restore.js';
import { ForgedObjectError } from '../repo/errors.js';
import { acquireLock, processIdentity, type ProcessIdentity } from '../repo/lock.js';
import { Repository } from '../repo/repository.js';
import { Store, type SnapshotEntry } from '../repo/store.js';
import { commandOutput } from '../sources/command-output.js';
import { FS_SNAPSHOT_DIR, withFsSnapshots, type PathView } from '../sources/fs-snapshots/fs-snapshots.js';
import { mountsOf } from '../sources/image/block-devices.js';
import { bitmapDiskOf, imageSourcePath, openImageInput, type ImageInput } from '../sources/image/image-input.js';
import type { Backend } from '../storage/backend.js';
import { openBackend } from '../storage/open-backend.js';
import { RateLimitedBackend } from '../storage/rate-limited-backend.js';
import { RetryingBackend } from '../storage/retrying-backend.js';
import type { AgentConfig, AgentDatabase } from './agent-config.js';
import { UnfinishedRestores } from './unfinished-restores.js';

/** A job failed in a way its words say (no stack needed): the job's error; `result`: what a job that ran to its end found (a restore test's outcome). */
export class JobFailedError extends Error {
  constructor(message: string, readonly result?: Record<string, unknown>) {
    super(message);
    this.name = 'JobFailedError';
  }
}

/** A job's progress as its event says it. */
export interface JobProgress {
  readonly message: string;
  readonly data: Record<string, unknown>;
}

/** Where a job's events go (src/agent/job-channel.ts's JobReporter). */
export interface JobEvents {
  log(message: string, data?: Record<string, unknown>): void;
  /** The job's progress now; `describe` is called when it is sent (about once a second), not for every report. */
  progress(describe: () => JobProgress): void;
}

export interface SessionOptions {
  /** Worker threads (default: one per core). */
  readonly workers?: number;
  /** How long a storage call that keeps failing is tried again before the job fails (default: the retrying backend's 2 minutes). */
  readonly retryForMs?: number;
  /** Told of what the session does outside a job (opening, retries of the storage). */
  readonly onLog: (line: string) => void;
  /** The agent's stop: ends the storage's retry waits. */
  readonly signal: AbortSignal;
  /** Where the agent remembers its unfinished restores (unfinished-restores.ts); without it, it remembers none. */
  readonly unfinishedRestores?: string;
  /** Downloads from the disk safe at most this many bytes a second (restores, checks; default: no limit). */
  readonly downloadBytesPerSecond?: number;
}

/** Where the session's lines go: the agent's log, or the running job's while one runs. */
interface LogSink {
  line: (text: string) => void;
  /** Whether the server's warning (a soft quota passed; it comes with every upload) was logged already, this job. */
  warned: boolean;
}

/** The backend of the machine's disk safe: retried (each retry logged), uploads limited to `bandwidth_limit`, downloads to the session's limit. */
function safeBackend(config: AgentConfig, opts: SessionOptions, log: LogSink): Backend {
  const backend = openBackend(`${config.server}/safes/${encodeURIComponent(config.safe)}`, {
    http: {
      token: config.token, ...(config.fingerprint ? { fingerprint: config.fingerprint } : {}),
      onWarning: (m) => {
        if (!log.warned) log.line(`warning: ${m}`);
        log.warned = true;
      },
    },
  });
  const up = config.bandwidth_limit ?? 0;
  const down = opts.downloadBytesPerSecond ?? 0;
  const limited = up > 0 || down > 0 ? new RateLimitedBackend(backend, {
    ...(up > 0 ? { uploadBytesPerSecond: up } : {}),
    ...(down > 0 ? { downloadBytesPerSecond: down } : {}),
  }, { signal: opts.signal }) : backend;
  return new RetryingBackend(limited, {
    signal: opts.signal,
    ...(opts.retryForMs === undefined ? {} : { policy: { maxElapsedMs: opts.retryForMs } }),
    onRetry: (e) => log.line(`${e.operation}: ${e.error.message}; retrying in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt + 1})`),
  });
}

/** The figures a session adds to each job's result: the proof that the repository stays open. */
interface SessionFigures {
  /** Times this process opened a repository with its key (a key derivation and an index load each). */
  repository_opens: number;
  /** Jobs run by this process, this one included. */
  jobs: number;
  /** Index files read by the refresh before this job, and whether it built the index again. */
  index_files_read: number;
  index_rebuilt: boolean;
}

/** Refuses an image source mounted read-write: a block-level copy of a file system in use is only crash-consistent. */
async function refuseMountedReadWrite(src: string, input: ImageInput): Promise<void> {
  const rw = (await mountsOf({ ...(input.devNo ? { blockDevice: input.devNo } : {}), ...(input.kind === 'file' ? { file: input.path } : {}) })).filter((m) => m.readWrite);
  if (rw.length > 0) {
    throw new JobFailedError(`${src} is mounted read-write (${rw.map((m) => `${m.device} on ${m.mountPoint}`).join(', ')}): a block-level copy of a file system in use is only crash-consistent; `
      + 'back up a snapshot of it (LVM, ZFS, a VM snapshot) or unmount it; nothing was written');
  }
}

/** The most ids of snapshots failing their MAC a backup's result lists (their number is told whole). */
export const MAX_UNAUTHENTIC_LISTED = 1000;

/** A hook's time limit when the configuration gives none (seconds), as `holdfast backup --hook-timeout`'s default. */
const DEFAULT_HOOK_TIMEOUT_S = 300;

/**
 * How the session lists and finds snapshots: headers only, so that what the
 * open repository keeps between jobs is about a kilobyte a snapshot, not
 * its blob list (docs/decisions.md, "The agent keeps snapshot headers").
 */
const HEADERS = { blobList: false } as const;

/** Repositories this process opened with a key (each a key derivation and an index load). */
let repositoryOpens = 0;

/** The open disk safe of a running agent; see the module comment. */
export class AgentSession {
  private jobs = 0;
  private readonly me: ProcessIdentity = processIdentity();
  /** The trees of the last file backup: the parent of the next one. */
  private readonly trees = new TreeCache();
  /** The folder-scan worker of file backups, kept between them; started when first used, again if it died. */
  private scanWorker: DirScanner | undefined;
  /** Snapshots the server said are damaged (a job's `damaged_snapshots`): never a parent. */
  private readonly damaged = new Set<string>();
  /** The census of the running backup job: the snapshots its listings found failing their MAC (see `inSession`). */
  private readonly unauthentic = new Set<string>();

  private constructor(
    private readonly config: AgentConfig,
    private readonly repo: Repository,
    private readonly pool: WorkerPool,
    private readonly opts: SessionOptions,
    private readonly log: LogSink,
  ) {}

  /** Opens the machine's disk safe with its password and loads the index, once. */
  static async open(config: AgentConfig, opts: SessionOptions): Promise<AgentSession> {
    const log: LogSink = { line: opts.onLog, warned: false };
    const backend = safeBackend(config, opts, log);
    const store = await Store.open(backend, { signal: opts.signal });
    const repo = await Repository.open(store, config.password, { loadIndex: true, onWarning: (m) => log.line(m), signal: opts.signal });
    repositoryOpens++;
    const pool = new WorkerPool(opts.workers);
    opts.onLog(`opened disk safe ${config.safe} on ${config.server}: key derived, index loaded (${repo.index.size} blobs); it stays open between jobs`);
    return new AgentSession(config, repo, pool, opts, log);
  }

  /** Runs `job` (its spec checked already); resolves with its result, or throws its error. */
  async run(job: JobBody, kind: JobKindName, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    this.jobs++;
    this.log.line = (line) => events.log(line);
    this.log.warned = false;
    try {
      const refreshed = this.jobs === 1 ? { read: 0, rebuilt: false } : await this.repo.refreshIndex({ signal });
      if (refreshed.rebuilt) events.log(`the disk safe was pruned since the last job: index loaded again (${refreshed.read} index files)`);
      const session: SessionFigures = { repository_opens: repositoryOpens, jobs: this.jobs, index_files_read: refreshed.read, index_rebuilt: refreshed.rebuilt };
      this.learnDamage(job.damaged_snapshots ?? [], events);
      this.unauthentic.clear();
      const spec = job.spec;
      let result: Record<string, unknown>;
      switch (kind) {
        case 'backup': {
          const b = spec as BackupSpec;
          result = await this.withHooks('files', b.paths, events, signal, () => this.backup(b, events, signal));
          break;
        }
        case 'command-backup': {
          const c = spec as CommandBackupSpec;
          result = await this.withHooks('stream', [`/${c.name}`], events, signal, () => this.commandBackup(c, events, signal));
          break;
        }
        case 'database-backup': {
          const source = this.databaseSource(spec as DatabaseBackupSpec);
          result = await this.withHooks('stream', [databaseSnapshotPath(source)], events, signal, () => this.databaseBackup(source, events, signal));
          break;
        }
        case 'image-backup': {
          const i = spec as ImageBackupSpec;
          result = await this.withHooks('image', i.sources, events, signal, () => this.imageBackup(i, events, signal));
          break;
        }
        case 'restore': result = await this.restore(spec as RestoreSpec, events, signal); break;
        case 'check': result = await this.check(spec as CheckSpec, events, signal); break;
        case 'verify-restore': result = await this.verifyRestore(spec as VerifyRestoreSpec, events, signal); break;
      }
      return { ...result, ...(isBackupKind(kind) ? this.census() : {}), agent: session };
    } finally {
      this.log.line = this.opts.onLog;
    }
  }

  /**
   * Runs a backup job's `work` between the hooks of the machine's
   * configuration ("backup": before_backup, after_backup), as `holdfast
   * backup --before-backup/--after-backup` does: a before hook that fails
   * fails the job, nothing written; an after hook that fails leaves the
   * job's outcome as it was, logged and named in its result
   * (`after_hook_failed`). `kind` and `paths`: what the hooks are told is
   * backed up.
   */
  private async withHooks(kind: HookContext['kind'], paths: readonly string[], events: JobEvents, signal: AbortSignal, work: () => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
    const b = this.config.backup;
    if (b?.before_backup === undefined && b?.after_backup === undefined) return work();
    const ctx: HookContext = { env: process.env, repository: `${this.config.server}/safes/${this.config.safe}`, paths, kind };
    let afterFailed: string | undefined;
    try {
      const result = await withBackupHooks({
        ...(b.before_backup === undefined ? {} : { before: b.before_backup }),
        ...(b.after_backup === undefined ? {} : { after: b.after_backup }),
        timeoutMs: (b.hook_timeout ?? DEFAULT_HOOK_TIMEOUT_S) * 1000,
      }, ctx, {
        signal,
        onOutput: (hook, line) => events.log(`${hook}: ${line}`),
        onWarning: (m) => {
          afterFailed = m;
          events.log(`warning: ${m}`);
        },
      }, work, (r) => {
        const id = typeof r['snapshot_id'] === 'string' ? r['snapshot_id'] : undefined;
        return { outcome: r['incomplete'] === true ? 'incomplete' : 'success', ...(id === undefined ? {} : { snapshotId: id }) };
      });
      return afterFailed === undefined ? result : { ...result, after_hook_failed: afterFailed };
    } catch (e) {
      if (e instanceof HookFailedError) throw new JobFailedError(e.message);
      throw e;
    }
  }

  /**
   * Runs `work` in a backup session (a shared lock; packs left by an
   * interrupted backup indexed first) with the safe's readable snapshots
   * (the parent is chosen among them). Listing them is the census of the
   * key holder, taken after the server gave the job: every snapshot that
   * fails its MAC is noted (`unauthentic`) for the job's result, so that
   * the server, which cannot check a MAC, never counts it in its retention.
   * With `ready` (a backup of files), the listing and the work start beside
   * the lock and the orphan packs, and the work writes nothing before
   * `ready` resolves (backup-session.ts, `early`).
   */
  private inSession<T>(events: JobEvents, signal: AbortSignal, work: (signal: AbortSignal, snapshots: readonly SnapshotEntry[], ready: Promise<void>) => Promise<T>, early = false): Promise<T> {
    return backupSession(this.repo, {
      holder: this.me, machine: this.me, signal, early,
      onWarning: (m) => events.log(m),
      onOrphansIndexed: (n) => events.log(`indexed ${n} pack(s) left by an interrupted backup: their data is not uploaded again`),
    }, async (s, ready) => work(s, await readableSnapshots(this.repo, (id, e) => {
      if (e instanceof ForgedObjectError) this.unauthentic.add(id);
      events.log(`skipping snapshot ${id}: ${e.message}`);
    }, HEADERS), ready));
  }

  /** The running backup job's census, as its result says it (`unauthentic_snapshots`, at most MAX_UNAUTHENTIC_LISTED; `unauthentic_count`: how many). */
  private census(): Record<string, unknown> {
    return { unauthentic_snapshots: [...this.unauthentic].sort().slice(0, MAX_UNAUTHENTIC_LISTED), unauthentic_count: this.unauthentic.size };
  }

  private backupProgress(events: JobEvents): (p: BackupProgress) => void {
    return (p) => events.progress(() => ({ message: `${p.files} files, ${p.bytes} bytes`, data: { files: p.files, dirs: p.dirs, bytes: p.bytes, errors: p.errors } }));
  }

  private backupResult(r: BackupResult, events: JobEvents): Record<string, unknown> {
    const s = r.snapshot;
    events.log(`snapshot ${r.id!.slice(0, 8)} saved${s.incomplete ? `, INCOMPLETE: ${s.summary.errors} file(s) could not be read` : ''}`);
    return { snapshot_id: r.id, incomplete: s.incomplete === true, ...summaryJson(s.summary) };
  }

  /**
   * Takes note of the snapshots the server found damaged (a verification or
   * a restore test): none is a parent again, and the trees held in memory
   * are dropped when one is new, since they may be the damaged one's, so
   * that the next backup stores again whatever was damaged.
   */
  private learnDamage(ids: readonly string[], events: JobEvents): void {
    const fresh = ids.filter((id) => !this.damaged.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) this.damaged.add(id);
    this.trees.clear();
    events.log(`${fresh.length} snapshot(s) found damaged (first: ${fresh[0]!.slice(0, 8)}): none is taken as a parent, and what they held is stored again`);
  }

  /**
   * The parent of a backup of `paths`: the newest snapshot of this machine
   * of the same paths, or, before it has one, the newest of the machine it
   * replaced (`previous_host`), so that its first backup is an incremental;
   * never a snapshot found damaged.
   */
  private parentOf(all: readonly SnapshotEntry[], paths: readonly string[], image: boolean): SnapshotEntry | null {
    const snapshots = all.filter((s) => !this.damaged.has(s.id));
    const previous = this.config.previous_host;
    return findParent(snapshots, { hostname: this.config.machine_name, paths, image })
      ?? (previous === undefined ? null : findParent(snapshots, { hostname: previous, paths, image }));
  }

  /**
   * A backup of files. Its folders are listed by the kept scan worker, which
   * starts walking the one path given while the session takes its lock and
   * finds the parent (not when the paths are read from file-system
   * snapshots, which do not exist yet).
   */
  private async backup(spec: BackupSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const { paths, skipped } = await existingPaths(spec.paths, (line) => events.log(`warning: ${line}`));
    const excludes = new ExcludeRules({ patterns: spec.excludes ?? [] });
    const b = this.config.backup;
    const lister = this.scanner().forBackup(excludes.options);
    if (paths.length === 1 && paths[0] !== '/' && b?.fs_snapshot === undefined) lister.prefetch(Buffer.from(paths[0]!));
    const r = await this.inSession(events, signal, async (s, snapshots, ready) => {
      const parent = this.parentOf(snapshots, paths, false);
      if (parent) events.log(`using parent snapshot ${parent.id.slice(0, 8)}`);
      const archive = (views: readonly PathView[]): Promise<BackupResult> => new Archiver(this.repo, {
        paths, parent, signal: s, ready, pool: this.pool, hostname: this.config.machine_name, excludes, trees: this.trees, lister,
        onWarning: (path, message) => events.log(`${path}: ${message}`),
        onProgress: this.backupProgress(events),
        ...(views.length > 0 ? { views } : {}),
      }).run();
      // The paths are read from point-in-time snapshots of their file systems and recorded under their own names, as `holdfast backup --fs-snapshot` does.
      return b?.fs_snapshot === undefined ? archive([]) : withFsSnapshots(paths, {
        kind: b.fs_snapshot, host: hostname(), stateDir: FS_SNAPSHOT_DIR, freeze: b.freeze === true,
        ...(b.lvm_snapshot_size === undefined ? {} : { lvmSize: b.lvm_snapshot_size }),
        onWarning: (m) => events.log(`warning: ${m}`),
        onNote: (m) => events.log(m),
      }, archive);
    }, b?.fs_snapshot === undefined).finally(() => lister.close());
    const result = this.backupResult(r, events);
    // A path of the job that is not there is a typo or a lost mount: the job says so as `holdfast backup` does (exit 3), not as a plain success.
    if (skipped > 0) Object.assign(result, { incomplete: true, paths_skipped: skipped });
    return { ...result, parent_trees: { in_memory: r.trees?.hits ?? 0, loaded: r.trees?.misses ?? 0 } };
  }

  /** The kept folder-scan worker (started by its first walk); a new one when there is none yet or it died. */
  private scanner(): DirScanner {
    if (this.scanWorker?.failed !== false) {
      void this.scanWorker?.close();
      this.scanWorker = new DirScanner();
    }
    return this.scanWorker;
  }

  private async commandBackup(spec: CommandBackupSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    // The server may only pick a command the machine's administrator listed: a server that is taken over must not run programs here.
    const listed = (this.config.allowed_commands ?? []).some((a) => a.length === spec.command.length && a.every((x, i) => x === spec.command[i]));
    if (!listed) {
      throw new JobFailedError(`refused to run ${JSON.stringify(spec.command)}: it is not in "allowed_commands" of this machine's agent configuration `
        + '(add it there, exactly as the job gives it, to let the server run it); nothing was run');
    }
    const r = await this.inSession(events, signal, (s) => new Archiver(this.repo, {
      paths: [], signal: s, pool: this.pool, hostname: this.config.machine_name, onProgress: this.backupProgress(events),
    }).runStreams([], [{ name: spec.name, open: () => commandOutput(spec.command, { ownGroup: true, signal: s }) }]));
    return this.backupResult(r, events);
  }

  /** The database server a database-backup job names, from the machine's configuration; a name it does not list is refused, nothing run. */
  private databaseSource(spec: DatabaseBackupSpec): DatabaseSource {
    const listed = this.config.databases ?? {};
    if (!Object.hasOwn(listed, spec.database)) {
      const names = Object.keys(listed);
      throw new JobFailedError(`refused to dump database server "${spec.database}": it is not in "databases" of this machine's agent configuration `
        + `(${names.length === 0 ? 'it lists none' : `it lists ${names.join(', ')}`}); nothing was run`);
    }
    const d: AgentDatabase = listed[spec.database]!;
    return 'postgres' in d ? { kind: 'postgres', url: d.postgres, env: process.env } : { kind: 'mysql', url: d.mysql, env: process.env };
  }

  private async databaseBackup(source: DatabaseSource, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const r = await this.inSession(events, signal, (s) => backupDatabase(this.repo, {
      source, signal: s, pool: this.pool, hostname: this.config.machine_name,
      onProgress: this.backupProgress(events),
      onWarning: (what, message) => events.log(`${what}: ${message}`),
    }));
    return this.backupResult(r, events);
  }

  /**
   * One image snapshot of each source: a block device, a raw image file, an
   * NBD export, or a qcow2 file or a running VM's disk (`qmp:SOCKET#DISK`,
   * read point-in-time), whose persistent dirty bitmaps are rotated
   * as `holdfast backup --image` rotates them (qcow2-bitmaps.ts), so that an
   * incremental reads only the clusters written since its parent.
   */
  private async imageBackup(spec: ImageBackupSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const snapshots: Record<string, unknown>[] = [];
    for (const src of spec.sources) {
      const openError = (e: unknown): JobFailedError => new JobFailedError(`cannot open ${src}: ${(e as Error).message}`);
      // A qcow2 file or a VM's disk is opened in the session: its dirty bitmaps depend on the repository and the parent.
      const disk = await bitmapDiskOf(src);
      const input = disk ? undefined : await openImageInput(src).catch((e: unknown) => {
        throw openError(e);
      });
      try {
        if (input) await refuseMountedReadWrite(src, input);
        const paths = [imageSourcePath(src)];
        const r = await this.inSession(events, signal, async (s, snapshots) => {
          const parent = this.parentOf(snapshots, paths, true);
          if (parent) events.log(`${src}: using parent snapshot ${parent.id.slice(0, 8)}`);
          const backup = (from: ImageInput, bitmaps?: BackupBitmaps): Promise<ImageBackupResult> => new ImageBackup(this.repo, {
            input: from, paths, parent, signal: s, pool: this.pool, hostname: this.config.machine_name,
            ...(parent?.snapshot.image ? { blockSize: parent.snapshot.image.blockSize } : {}),
            ...(bitmaps ? { qcow2: bitmaps } : {}),
            onWarning: (m) => events.log(m),
            onProgress: (p) => events.progress(() => ({ message: `${src}: ${p.bytes} of ${p.total ?? '?'} bytes`, data: { source: src, bytes: p.bytes, total: p.total ?? null, blocks_changed: p.blocksChanged } })),
          }).run();
          return disk
            ? withBitmapRotation(disk, this.repo.config.id, parent?.snapshot.image, bitmapsOf(snapshots), (m) => events.log(`warning: ${m}`), openError, backup)
            : backup(input!);
        });
        const img = r.snapshot.image!;
        const c = img.counts;
        events.log(`${src}: snapshot ${r.id.slice(0, 8)} saved (${c.changed} blocks changed, ${c.stored} stored)`);
        snapshots.push({
          source: src, snapshot_id: r.id, ...summaryJson(r.snapshot.summary), blocks: c.blocks, blocks_changed: c.changed, blocks_stored: c.stored,
          ...(img.format ? { format: img.format } : {}), ...(img.bitmap ? { dirty_bitmap: img.bitmap } : {}), ...(img.readSince ? { read_since: img.readSince } : {}),
        });
      } finally {
        await input?.close();
      }
    }
    return { snapshots };
  }

  /**
   * Refuses a restore target that holds anything, unless the machine's
   * configuration allows writing over files or the agent is `continuing` an
   * unfinished restore there, and one reached through a symbolic link,
   * whatever the configuration.
   */
  private async checkTarget(target: string, continuing: boolean): Promise<void> {
    let st;
    try {
      st = await lstat(target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return refuseLinkedAncestor(target, dirname(target));
      throw new JobFailedError(`cannot restore to ${target}: ${(e as Error).message}; nothing was restored`);
    }
    if (!st.isDirectory()) throw new JobFailedError(`cannot restore to ${target}: it exists and is not a folder; nothing was restored`);
    await refuseLinkedAncestor(target, target);
    if (this.config.allow_restore_overwrite || continuing) return;
    const entries = await readdir(target);
    if (entries.length > 0) {
      throw new JobFailedError(`refused to restore into ${target}: it holds files (${entries.length} entries), and this machine's agent configuration does not allow a restore `
        + 'over existing files (set "allow_restore_overwrite": true in it to allow one); nothing was restored');
    }
  }

  private async restore(spec: RestoreSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const target = resolve(spec.target);
    const warnDamaged = (id: string, e: Error): void => events.log(`skipping snapshot ${id}: ${e.message}`);
    const { id, snapshot } = await findSnapshot(this.repo, spec.snapshot, {}, warnDamaged, HEADERS).catch((e: unknown) => {
      throw new JobFailedError(`${(e as Error).message}; nothing was restored`);
    });
    const unfinished = this.opts.unfinishedRestores === undefined ? undefined : new UnfinishedRestores(this.opts.unfinishedRestores);
    const continuing = (await unfinished?.of(target)) === id;
    await this.checkTarget(target, continuing);
    // Recorded before anything is written: a restore killed from here on is continued by the next one of this snapshot into this target.
    await unfinished?.begin(target, id);
    if (continuing) events.log(`continuing the unfinished restore of snapshot ${id.slice(0, 8)} into ${target}: what it wrote is kept when it has the snapshot's size and mtime, anything else replaced`);
    const image = isImageSnapshot(snapshot) ? await openImageFiles(this.repo, snapshot, id, (m) => events.log(m)) : undefined;
    events.log(`restoring snapshot ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} to ${target}`);
    const result = await restorerFor(image, this.repo, target, {
      includes: spec.paths ?? [],
      // Belt and braces: a file that appears in the target meanwhile is still left alone. Continuing,
      // a file the interrupted restore was writing has not got its mtime yet, so it is replaced.
      overwrite: this.config.allow_restore_overwrite ? 'always' : continuing ? 'if-changed' : 'never',
      signal, pool: this.pool, privileged: process.getuid?.() === 0,
      // The checks above are by name: the restore itself reaches the target without following a symlink, whatever was put on its way since.
      targetNoSymlinks: true,
      onWarning: (path, message) => events.log(`${path}: ${message}`),
      onProgress: (p) => events.progress(() => ({ message: `${p.files} files, ${p.bytes} bytes restored`, data: { files: p.files, bytes: p.bytes, total_files: p.totalFiles, total_bytes: p.totalBytes, errors: p.errors } })),
    }).run(snapshot.tree);
    const p = result.progress;
    if (p.errors > 0) {
      const listed = result.failed.slice(0, MAX_FAILED_LISTED).map((f) => `${f.path}: ${f.error}`);
      throw new JobFailedError(`restore INCOMPLETE: ${p.errors} path(s) not restored: ${listed.join('; ')}${p.errors > listed.length ? '; …' : ''}`);
    }
    await unfinished?.finish(target);
    events.log(`restored ${p.files} file(s), ${p.dirs} folder(s), ${p.bytes} bytes`);
    return { snapshot_id: id, target, files_restored: p.files, dirs_restored: p.dirs, bytes_restored: p.bytes, files_skipped: p.filesSkipped };
  }

  private async check(spec: CheckSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const readData = spec.read_data_subset === undefined ? undefined : parseSubset(spec.read_data_subset);
    const abort = new AbortController();
    const stop = (): void => abort.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    const lock = await acquireLock(this.repo.backend, { holder: this.me, machine: this.me, exclusive: false, operation: 'check', onLost: (e) => abort.abort(e), signal });
    try {
      const r = await new Checker(this.repo.store, {
        ...(readData ? { readData } : {}), keyed: this.repo, signal: abort.signal,
        onProgress: (p) => events.progress(() => ({ message: `${p.phase}: ${p.done} of ${p.total}`, data: { phase: p.phase, done: p.done, total: p.total } })),
      }).run();
      for (const w of r.warnings.slice(0, 100)) events.log(`warning: ${w.object}: ${w.message}`);
      for (const e of r.errors.slice(0, 100)) events.log(`error: ${e.object}: ${e.message}`);
      const figures = { snapshots: r.snapshots, index_files: r.indexFiles, packs: r.packs, packs_read: r.packsRead, bytes_read: r.bytesRead, errors: r.errors.length, warnings: r.warnings.length, damaged_snapshots: r.damaged.map((d) => d.id) };
      if (r.errors.length > 0) throw new JobFailedError(`check found ${r.errors.length} error(s) in the disk safe; first: ${r.errors[0]!.object}: ${r.errors[0]!.message}`);
      events.log(`checked ${r.snapshots} snapshot(s), ${r.packs} pack(s): no errors were found`);
      return figures;
    } finally {
      signal.removeEventListener('abort', stop);
      await lock.release();
    }
  }

  /**
   * A restore test of a snapshot (the newest by default): a sample of its
   * files restored into a scratch folder of the machine's temporary folder
   * and compared (removed afterwards), or an image's file systems checked.
   * A snapshot that does not restore exactly fails the job, with the
   * test's outcome as its result (the server marks the snapshot damaged).
   */
  private async verifyRestore(spec: VerifyRestoreSpec, events: JobEvents, signal: AbortSignal): Promise<Record<string, unknown>> {
    const { id, snapshot } = await findSnapshot(this.repo, spec.snapshot ?? 'latest', {}, (sid, e) => events.log(`skipping snapshot ${sid}: ${e.message}`), HEADERS).catch((e: unknown) => {
      throw new JobFailedError(`${(e as Error).message}; nothing was tested`);
    });
    const seed = randomSeed();
    events.log(`restore test of ${snapshot.image ? 'image snapshot' : 'snapshot'} ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} (seed ${seed})`);
    const r = await verifyRestore(this.repo, id, snapshot, {
      scratch: join(tmpdir(), `holdfast-verify-${randomBytes(6).toString('hex')}`),
      share: spec.share === undefined ? DEFAULT_SAMPLE.share : spec.share / 100,
      minFiles: spec.min_files ?? DEFAULT_SAMPLE.minFiles,
      seed, signal, pool: this.pool, privileged: process.getuid?.() === 0,
      onSample: (s) => events.log(`restoring ${s.sampled} of ${s.candidates} file(s) (${s.bytes} bytes) into ${s.scratch}`),
      onFilesystem: (f) => events.log(`${f.path} (${f.kind ?? 'nothing recognised'}): ${f.restorable ? 'restorable' : f.checked ? 'NOT restorable' : `not checked (${f.reason ?? ''})`}`),
      onWarning: (m) => events.log(`warning: ${m}`),
    });
    const result = { ...r } as unknown as Record<string, unknown>;
    if (!r.restorable) {
      const failed = r.files?.failed ?? (r.filesystems ?? []).flatMap((f) => f.failed.length > 0 ? f.failed : f.restorable ? [] : [{ path: f.path, error: `e2fsck: ${f.e2fsck?.status ?? 'not checked'}` }]);
      const listed = failed.slice(0, 5).map((f) => `${f.path}: ${f.error}`);
      throw new JobFailedError(`snapshot ${id.slice(0, 8)} did NOT restore exactly: ${failed.length} path(s) failed: ${listed.join('; ')}${failed.length > listed.length ? '; …' : ''}`, result);
    }
    events.log(`snapshot ${id.slice(0, 8)} is restorable: ${r.files ? `${r.files.verified} sampled file(s) restored exactly` : `${(r.filesystems ?? []).filter((f) => f.checked).length} file system(s) checked`}`);
    return result;
  }

  /** Stops the worker threads and zeroes the key; idempotent. */
  async close(): Promise<void> {
    await this.scanWorker?.close();
    this.scanWorker = undefined;
    await this.pool.close();
    this.repo.close();
  }
}

/**
 * Refuses restore target `target` when `from` (the target itself, or its
 * parent when it does not exist yet) or its nearest existing ancestor is
 * reached through a symbolic link: a job comes from the server, and a
 * hijacked server must not steer the agent's writes through a link
 * (`/srv/restore/lnk/sub` with `lnk → /etc` would write into `/etc/sub`).
 * The target is compared with its real path; the person who means a linked
 * folder gives its real path.
 */
async function refuseLinkedAncestor(target: string, from: string): Promise<void> {
  let existing = from;
  while (!(await lstat(existing).then(() => true, (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return false;
    throw new JobFailedError(`cannot restore to ${target}: ${e.message}; nothing was restored`);
  }))) existing = dirname(existing);
  // A dangling link has no real path: refused as well.
  const real = await realpath(existing).catch(() => undefined);
  if (real === existing) return;
  throw new JobFailedError(`refused to restore to ${target}: ${existing} is reached through a symbolic link (${real === undefined ? 'one that leads nowhere' : `it is ${real}`}), and the agent does not restore through links; give the real path as the target; nothing was restored`);
}

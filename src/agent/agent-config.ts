/**
 * The agent's configuration and credential, one JSON file written at
 * enrolment (default /etc/holdfast/agent.json): the server, its pinned
 * fingerprint, the machine's agent token and the disk safe's password. It
 * is readable by its owner only (0600, in a 0700 folder); whoever reads it
 * can read the machine's backups.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SnapshotKind } from '../sources/fs-snapshots/fs-snapshots.js';

export const DEFAULT_AGENT_CONFIG = '/etc/holdfast/agent.json';

export interface AgentConfig {
  /** `https://host:port`. */
  readonly server: string;
  /** The server certificate's pinned fingerprint, when enrolment was given one. */
  readonly fingerprint?: string;
  readonly machine_id: string;
  readonly machine_name: string;
  /** The disk safe's NAME (https://host:port/safes/NAME). */
  readonly safe: string;
  /** The machine's agent token (backup right). */
  readonly token: string;
  /** The disk safe's password, made on this machine (or given when it took over a safe); the server never had it. */
  readonly password: string;
  /**
   * The host name of the snapshots of the machine this one replaced, when it
   * took over that machine's disk safe: a backup that has no parent of this
   * machine's own takes the newest of that host's as its parent.
   */
  readonly previous_host?: string;
  /** Whether a restore job may write over files that exist (false unless set here by hand). */
  readonly allow_restore_overwrite: boolean;
  /** The most bytes a second the agent uploads to the server (absent or 0: no limit); set here by hand. */
  readonly bandwidth_limit?: number;
  /**
   * The commands a command-backup job may run, each as its exact argv (set
   * here by hand): the server names one, it cannot make one up. None by default.
   */
  readonly allowed_commands?: readonly (readonly string[])[];
  /** What runs around every backup job of this machine (set here by hand: the server cannot name a command). */
  readonly backup?: AgentBackupSettings;
  /**
   * The database servers a database-backup job may dump, by the name the job
   * gives (set here by hand: the server names one, it never sees the URL).
   */
  readonly databases?: Readonly<Record<string, AgentDatabase>>;
}

/** The hooks and file-system snapshots of every backup job, as `holdfast backup`'s flags of the same names. */
export interface AgentBackupSettings {
  /** Shell command run before each backup job; a failure skips the backup (the job fails, nothing written). */
  readonly before_backup?: string;
  /** Shell command run after each backup job, however it ended (HOLDFAST_OUTCOME). */
  readonly after_backup?: string;
  /** Each hook's time limit in seconds (default 300; 0: none). */
  readonly hook_timeout?: number;
  /** File backups read a point-in-time snapshot of their paths (--fs-snapshot). */
  readonly fs_snapshot?: SnapshotKind;
  /** Freeze the file system while an LVM snapshot is taken (--freeze). */
  readonly freeze?: boolean;
  /** An LVM snapshot's size (--lvm-snapshot-size). */
  readonly lvm_snapshot_size?: string;
}

/** One database server: its kind and the URL its dump tool connects with (as `backup --postgres`/`--mysql` take it). */
export type AgentDatabase = { readonly postgres: string } | { readonly mysql: string };

/** The configuration file cannot be used: missing, unreadable, not JSON, or a field is missing or wrong. */
export class AgentConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentConfigError';
  }
}

/** Reads and checks the configuration at `path`. */
export async function readAgentConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new AgentConfigError(`cannot read the agent's configuration ${path}: ${missing ? 'there is none (enrol this machine first: holdfast agent enroll)' : (e as Error).message}`);
  }
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new AgentConfigError(`${path} is not JSON: ${(e as Error).message}`);
  }
  const bad = (field: string, want: string): never => {
    throw new AgentConfigError(`${path}: "${field}" must be ${want}`);
  };
  if (typeof c !== 'object' || c === null || Array.isArray(c)) bad('(the file)', 'a JSON object');
  for (const f of ['server', 'machine_id', 'machine_name', 'safe', 'token', 'password']) if (typeof c[f] !== 'string' || c[f] === '') bad(f, 'a string');
  for (const f of ['fingerprint', 'previous_host']) if (c[f] !== undefined && typeof c[f] !== 'string') bad(f, 'a string');
  if (typeof c['allow_restore_overwrite'] !== 'boolean') bad('allow_restore_overwrite', 'true or false');
  const limit = c['bandwidth_limit'];
  if (limit !== undefined && (!Number.isSafeInteger(limit) || (limit as number) < 0)) bad('bandwidth_limit', 'a whole number of bytes a second (0: no limit)');
  const commands = c['allowed_commands'];
  if (commands !== undefined && !(Array.isArray(commands) && commands.every((a) => Array.isArray(a) && a.length > 0 && a.every((x) => typeof x === 'string')))) {
    bad('allowed_commands', 'a list of commands, each a list of strings (the program and its arguments)');
  }
  checkBackupSettings(c['backup'], bad);
  checkDatabases(c['databases'], bad);
  return c as unknown as AgentConfig;
}

const SNAPSHOT_KINDS: readonly string[] = ['btrfs', 'lvm', 'auto'] satisfies SnapshotKind[];

function checkBackupSettings(b: unknown, bad: (field: string, want: string) => never): void {
  if (b === undefined) return;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) bad('backup', 'an object (before_backup, after_backup, hook_timeout, fs_snapshot, freeze, lvm_snapshot_size)');
  const o = b as Record<string, unknown>;
  const known = ['before_backup', 'after_backup', 'hook_timeout', 'fs_snapshot', 'freeze', 'lvm_snapshot_size'];
  for (const k of Object.keys(o)) if (!known.includes(k)) bad(`backup.${k}`, `one of ${known.join(', ')} (a field of that name is not known)`);
  for (const f of ['before_backup', 'after_backup', 'lvm_snapshot_size']) if (o[f] !== undefined && (typeof o[f] !== 'string' || o[f] === '')) bad(`backup.${f}`, 'a string');
  const timeout = o['hook_timeout'];
  if (timeout !== undefined && (!Number.isSafeInteger(timeout) || (timeout as number) < 0)) bad('backup.hook_timeout', 'a whole number of seconds (0: no limit)');
  if (o['fs_snapshot'] !== undefined && !SNAPSHOT_KINDS.includes(o['fs_snapshot'] as string)) bad('backup.fs_snapshot', '"btrfs", "lvm" or "auto"');
  if (o['freeze'] !== undefined && typeof o['freeze'] !== 'boolean') bad('backup.freeze', 'true or false');
  if (o['fs_snapshot'] === undefined && (o['freeze'] !== undefined || o['lvm_snapshot_size'] !== undefined)) bad('backup.fs_snapshot', 'set when freeze or lvm_snapshot_size is');
}

function checkDatabases(d: unknown, bad: (field: string, want: string) => never): void {
  if (d === undefined) return;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) bad('databases', 'an object of names, each {"postgres": URL} or {"mysql": URL}');
  for (const [name, v] of Object.entries(d as Record<string, unknown>)) {
    const keys = typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(v) : [];
    const kind = keys[0];
    if (keys.length !== 1 || (kind !== 'postgres' && kind !== 'mysql') || typeof (v as Record<string, unknown>)[kind] !== 'string') {
      bad(`databases.${name}`, '{"postgres": URL} or {"mysql": URL}');
    }
  }
}

/** Writes `config` to `path` (0600, its folder made 0700 when missing), atomically: a reader sees the old file or the whole new one. */
export async function writeAgentConfig(path: string, config: AgentConfig): Promise<void> {
  await writePrivateFile(path, `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Writes `text` to `path` readable by its owner only (0600, whatever the
 * umask; its folder made 0700 when missing), atomically: a reader sees the
 * old file or the whole new one. For files that hold credentials.
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  const f = await open(tmp, 'wx', 0o600);
  try {
    await f.writeFile(text);
    await f.sync();
  } finally {
    await f.close();
  }
  try {
    await chmod(tmp, 0o600); // whatever the umask
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

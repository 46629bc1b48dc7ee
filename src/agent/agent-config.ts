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
}

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
  return c as unknown as AgentConfig;
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

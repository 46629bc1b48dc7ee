/**
 * The agent's configuration and credential, one JSON file written at
 * enrolment (default /etc/holdfast/agent.json): the server, its pinned
 * fingerprint, the machine's agent token and the disk safe's password. It
 * is readable by its owner only (0600, in a 0700 folder); whoever reads it
 * can read the machine's backups.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
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
  /** The disk safe's password, made on this machine; the server never had it. */
  readonly password: string;
  /** Whether a restore job may write over files that exist (false unless set here by hand). */
  readonly allow_restore_overwrite: boolean;
}

/** Writes `config` to `path` (0600, its folder made 0700 when missing), atomically: a reader sees the old file or the whole new one. */
export async function writeAgentConfig(path: string, config: AgentConfig): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  const f = await open(tmp, 'wx', 0o600);
  try {
    await f.writeFile(`${JSON.stringify(config, null, 2)}\n`);
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

// An OpenSSH server on loopback for the server scenario's peers (bench/server.ts):
// restic over SFTP and Borg over SSH (`borg serve`). The bench starts its own
// `sshd -D` on 127.0.0.1 with a host key, a configuration and one authorized
// client key, all in a folder of its own; the system's sshd and its
// configuration are not touched. The client side ignores the user's ssh
// configuration (`-F /dev/null`) and trusts only that host key.
//
//   const sshd = await startSshd(dir);
//   restic -r sftp:USER@127.0.0.1:/path -o sftp.command="<sshd.sftpCommand()>" …
//   BORG_RSH="<sshd.rsh()>" borg … ssh://USER@127.0.0.1:PORT/path …
//   await sshd.stop();
//
// Needs the Debian package openssh-server (/usr/sbin/sshd; it need not run as
// a service). As root, sshd wants its privilege separation folder /run/sshd,
// made here when missing, as the package's service would.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { freePort } from '../test/helpers/listening-child.js';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { UserError } from './corpus.js';
import { capture, findInPath, processCpuSeconds } from './measure.js';

export interface Sshd {
  readonly port: number;
  /** The account the client logs in as: the one running the bench. */
  readonly user: string;
  /**
   * CPU seconds of sshd and its sessions so far (sftp, borg serve), once every
   * session has ended: a session's time is counted when sshd has waited for it.
   */
  cpuSeconds(): Promise<number>;
  /** The ssh client command without the destination (BORG_RSH). */
  rsh(): string;
  /** restic's `sftp.command`: the ssh client and destination, asking for the sftp subsystem. */
  sftpCommand(): string;
  /** Stops sshd; idempotent. */
  stop(): Promise<void>;
}

const SSHD_PATHS = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'];

/** Where sshd is, or null when openssh-server is not installed. */
export function findSshd(): string | null {
  return SSHD_PATHS.find((p) => existsSync(p)) ?? findInPath('sshd');
}

async function keygen(file: string, comment: string): Promise<string> {
  const r = await capture('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  if (r.code !== 0) throw new UserError(`ssh-keygen -f ${file} failed: ${r.stderr.trim() || r.error}`);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

/** Starts sshd on 127.0.0.1 with everything it needs in `dir` (made afresh); its log goes to `dir`/sshd.log. */
export async function startSshd(dir: string): Promise<Sshd> {
  const sshd = findSshd();
  if (sshd === null) throw new UserError('sshd not found: the SFTP and SSH peers need openssh-server (apt-get install -y openssh-server)');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  const hostPub = await keygen(hostKey, 'holdfast bench sshd');
  await writeFile(join(dir, 'authorized_keys'), `${await keygen(clientKey, 'holdfast bench client')}\n`, { mode: 0o600 });
  const user = userInfo().username;
  const port = await freePort();
  await writeFile(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`);
  const config = join(dir, 'sshd_config');
  await writeFile(config, [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `AllowUsers ${user}`,
    'PidFile none',
    'StrictModes no', // the folder is the bench's, not the user's home
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n'));
  const log = join(dir, 'sshd.log');
  const child: ChildProcess = spawn(sshd, ['-D', '-f', config, '-E', log], { stdio: 'ignore' });
  let exited = false;
  child.on('exit', () => (exited = true));
  const client = ['ssh', '-F', '/dev/null', '-i', clientKey, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes'];
  // Ready when a client gets in (sshd says nothing on stdout; the log is written as it goes).
  const probe = [...client.slice(1), '-p', String(port), `${user}@127.0.0.1`, 'true'];
  for (let i = 0; ; i++) {
    if (exited) throw new UserError(`sshd exited at start: ${(await readFile(log, 'utf8').catch(() => '')).trim()}`);
    const r = await capture('ssh', probe, { timeoutMs: 10_000 });
    if (r.code === 0) break;
    if (i === 50) {
      child.kill('SIGKILL');
      throw new UserError(`sshd on 127.0.0.1:${port} let no client in: ${r.stderr.trim()} ${(await readFile(log, 'utf8').catch(() => '')).trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    user,
    cpuSeconds: async () => {
      const children = `/proc/${child.pid}/task/${child.pid}/children`;
      for (let i = 0; i < 100 && (await readFile(children, 'utf8').catch(() => '')).trim() !== ''; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      return processCpuSeconds(child.pid, true);
    },
    rsh: () => client.join(' '),
    sftpCommand: () => [...client, '-p', String(port), `${user}@127.0.0.1`, '-s', 'sftp'].join(' '),
    stop: async () => {
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await done;
    },
  };
}

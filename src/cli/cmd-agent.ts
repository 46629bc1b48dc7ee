/**
 * `holdfast agent enroll --server https://HOST:PORT --token ENROLL-TOKEN
 * [--fingerprint SHA256:…] [--name NAME] [--config PATH]`: registers this
 * machine with a holdfast server, makes its disk safe's password here and
 * initialises the safe (src/agent/enroll.ts); with `--safe NAME` (and the
 * safe's password: --password-file, …) it takes over the existing disk safe
 * of a retired machine instead. `holdfast agent run
 * [--config PATH]`: the daemon that takes the machine's jobs from the server
 * and runs them until SIGTERM (src/agent/agent-run.ts). `holdfast agent
 * escrow [--config PATH]`: escrows the safe's password for the customer's
 * recovery key, sealed, when it is not already (src/agent/escrow.ts). Flags
 * and printing only.
 */
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { AgentConfigError, DEFAULT_AGENT_CONFIG, readAgentConfig } from '../agent/agent-config.js';
import { AgentStoppedError, EnrolmentUnfinishedError, MachineTokenRefusedError, MachineWithoutSafeError, lowerPriority, runAgent } from '../agent/agent-run.js';
import { AlreadyEnrolledError, enrollMachine, TakeOverError } from '../agent/enroll.js';
import { WrongPasswordError } from '../repo/errors.js';
import { escrowPassword, type EscrowOutcome } from '../agent/escrow.js';
import { ServerApi, ServerApiError } from '../agent/server-api.js';
import { globals, honours, say, warn } from './context.js';
import { httpSettings, retryForMs, scryptParams, workerCount } from './environment.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';
import { getPassword } from './password.js';
import { printable } from './printable.js';

interface EnrollFlags {
  server?: string;
  token?: string;
  name?: string;
  safe?: string;
  config: string;
}

/** What an escrow pass did, in words. */
function escrowLine(e: EscrowOutcome, configPath: string): string {
  if (e.state === 'no-recovery-key') return `the customer has no recovery key, so the password is not escrowed: keep a copy of it (the "password" field of ${configPath}) somewhere safe, the server cannot recover it`;
  return `the password is escrowed for the customer's recovery key ${e.recoveryKey}${e.wrapped ? '' : ' (it was already)'}: the server keeps it sealed and cannot open it`;
}

export function register(program: Command): void {
  // Its own help shows the global options one of its commands honours, not the repository commands' (-r, --limit-upload, …).
  const agent = honours(program.command('agent'), 'fingerprint', 'cacert', 'passwordFile', 'passwordCommand', 'limitDownload', 'quiet')
    .description('the agent of a machine backed up to a holdfast server');
  honours(agent.command('enroll'), 'fingerprint', 'cacert', 'passwordFile', 'passwordCommand', 'quiet')
    .description('register this machine with a holdfast server: it makes the machine\'s disk safe, whose password is made here and never sent')
    .option('--server <url>', 'the server, https://HOST:PORT; required')
    .option('--token <token>', 'a token of the customer with the enroll right (or HOLDFAST_ENROLL_TOKEN); required')
    .option('--name <name>', 'the machine\'s name on the server (default: the host name)')
    .option('--safe <name>', 'take over this disk safe of a retired machine (with its password: --password-file, …; --token: an enroll token made for this safe, server token create --take-over) instead of making a new one')
    .option('--config <path>', 'where to write the agent\'s configuration and credential (mode 0600)', DEFAULT_AGENT_CONFIG)
    .action(async (flags: EnrollFlags, cmd: Command) => {
      const g = globals(cmd);
      const token = flags.token ?? (process.env['HOLDFAST_ENROLL_TOKEN'] || undefined);
      if (flags.server === undefined || token === undefined) throw new ExitError('holdfast agent enroll needs --server https://HOST:PORT and --token ENROLL-TOKEN', EXIT.usage);
      const http = await httpSettings(g.fingerprint, g.cacert, { ...process.env, HOLDFAST_TOKEN: undefined });
      // The safe's password is kept in the configuration as text, as a password made at enrolment is.
      const takeOver = flags.safe === undefined ? undefined : { safe: flags.safe, password: (await getPassword(g, `enter the password of disk safe ${flags.safe}: `)).toString('utf8') };
      const { config, escrow, finished } = await enrollMachine({
        server: flags.server, enrollToken: token, name: flags.name ?? hostname(), configPath: flags.config, scrypt: scryptParams(),
        ...(http.fingerprint ? { fingerprint: http.fingerprint } : {}), ...(http.ca ? { ca: http.ca } : {}), ...(takeOver ? { takeOver } : {}),
      }).catch((e: unknown) => {
        if (e instanceof WrongPasswordError) throw new ExitError(`disk safe ${flags.safe}: ${e.message}; nothing was registered`, EXIT.wrongPassword);
        if (e instanceof ServerApiError || e instanceof AlreadyEnrolledError || e instanceof TakeOverError || e instanceof AgentConfigError || (e instanceof Error && /^bad server address/.test(e.message))) throw new ExitError(e.message, EXIT.failed);
        throw e;
      });
      if (takeOver) {
        say(g, `enrolled ${config.machine_name} with ${config.server}: took over disk safe ${config.safe}${config.previous_host === undefined ? '' : `; its first backup continues from the snapshots of ${config.previous_host}`}`);
        say(g, `configuration and credential written to ${flags.config} (mode 0600)`);
      } else if (finished) {
        say(g, `finished the enrolment of ${config.machine_name} with ${config.server}: disk safe ${config.safe}, initialised with the password in ${flags.config}`);
      } else {
        say(g, `enrolled ${config.machine_name} with ${config.server}: disk safe ${config.safe}, initialised with a password made on this machine`);
        say(g, `configuration and credential written to ${flags.config} (mode 0600)`);
      }
      if (escrow.state === 'failed') warn(`the password could not be escrowed (${escrow.error.message}); try again with holdfast agent escrow`);
      else say(g, escrowLine(escrow, flags.config));
    });

  honours(agent.command('escrow'), 'quiet')
    .description('escrow the disk safe\'s password on the server, sealed for the customer\'s recovery key (the server cannot open it), unless it is already')
    .option('--config <path>', 'the agent\'s configuration, written by "holdfast agent enroll"', DEFAULT_AGENT_CONFIG)
    .action(async (flags: { config: string }, cmd: Command) => {
      const g = globals(cmd);
      const config = await readAgentConfig(flags.config).catch((e: unknown) => {
        if (e instanceof AgentConfigError) throw new ExitError(e.message, EXIT.failed);
        throw e;
      });
      const api = new ServerApi({ server: config.server, token: config.token, ...(config.fingerprint ? { fingerprint: config.fingerprint } : {}) });
      try {
        say(g, escrowLine(await escrowPassword(api, config).catch((e: unknown) => {
          if (e instanceof ServerApiError) throw new ExitError(e.message, EXIT.failed);
          throw e;
        }), flags.config));
      } finally {
        api.close();
      }
    });

  honours(agent.command('run'), 'limitDownload')
    .description('take this machine\'s jobs from its server and run them, one at a time, at low CPU and I/O priority, until SIGTERM')
    .option('--config <path>', 'the agent\'s configuration, written by "holdfast agent enroll"', DEFAULT_AGENT_CONFIG)
    .action(async (flags: { config: string }, cmd: Command) => {
      const down = globals(cmd).limitDownload ?? 0;
      // First: threads started later (the workers, the thread pool's) inherit it.
      const priority = lowerPriority();
      const config = await readAgentConfig(flags.config).catch((e: unknown) => {
        if (e instanceof AgentConfigError) throw new ExitError(e.message, EXIT.failed);
        throw e;
      });
      const log = (line: string): void => {
        process.stderr.write(`${new Date().toISOString()} ${printable(line)}\n`);
      };
      log(`holdfast agent starting (${priority})`);
      const stop = new AbortController();
      const off = onInterrupt(() => {
        log('stopping: the running job, if any, is aborted and reported');
        stop.abort(new AgentStoppedError());
      });
      try {
        const retryFor = retryForMs();
        await runAgent({
          config, signal: stop.signal, onLog: log, workers: workerCount(), ...(retryFor === undefined ? {} : { retryForMs: retryFor }),
          unfinishedRestores: `${flags.config}.restores`, ...(down > 0 ? { downloadBytesPerSecond: down * 1024 } : {}),
        }).catch((e: unknown) => {
          if (e instanceof EnrolmentUnfinishedError) throw new ExitError(e.message, EXIT.failed);
          if (e instanceof MachineTokenRefusedError || e instanceof MachineWithoutSafeError) throw new ExitError(e.message, EXIT.wrongPassword);
          throw e;
        });
      } finally {
        off();
      }
      log('holdfast agent stopped');
    });
}

/**
 * Enrolment of this machine (docs/format.md §2.6): the server makes the
 * machine, its disk safe and the agent's token; the agent makes the disk
 * safe's password here (32 random bytes), initialises the safe over HTTPS
 * with it, and writes its configuration. The password leaves the machine
 * only sealed for the customer's recovery key, when there is one (escrow.ts).
 *
 *   POST /api/v1/agent/enroll (enroll token) → machine, safe, agent token
 *   password = 32 random bytes; write the configuration (0600)
 *   init https://host:port/safes/NAME
 *   escrow the password (agent token), when the customer has a recovery key
 *
 * Enrolling again over the configuration of an enrolment whose init failed
 * (the server registered the machine; it would refuse to twice) finishes it:
 * init with the configuration's password, then the escrow.
 *
 * A machine that replaces a retired one takes over its disk safe instead,
 * with the safe's password (recovered from escrow):
 *
 *   open https://host:port/safes/NAME (takeover token, made by the customer
 *     for this safe: reads its config and keys only) with the password:
 *     a wrong one is refused here, nothing registered
 *   POST /api/v1/agent/enroll {take_over: NAME} → machine, safe attached, agent token
 *   write the configuration (the given password); escrow
 *   previous host = the host of the safe's newest snapshot (agent token);
 *     written into the configuration (previous_host)
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { EnrolledBody } from '../api/v1.js';
import type { ScryptParams } from '../core/crypto.js';
import { NotARepositoryError, WrongPasswordError } from '../repo/errors.js';
import { readConfig } from '../repo/objects.js';
import { readableSnapshots } from '../jobs/snapshots/select.js';
import { Repository } from '../repo/repository.js';
import { Store } from '../repo/store.js';
import type { Backend } from '../storage/backend.js';
import { openBackend } from '../storage/open-backend.js';
import { readAgentConfig, writeAgentConfig, type AgentConfig } from './agent-config.js';
import { escrowPassword, type EscrowOutcome } from './escrow.js';
import { ServerApi } from './server-api.js';

export interface EnrollOptions {
  /** `https://host:port`. */
  readonly server: string;
  /** A customer's token with the enroll right. */
  readonly enrollToken: string;
  readonly fingerprint?: string;
  readonly ca?: string;
  /** The machine's name on the server (the host name by default, chosen by the caller). */
  readonly name: string;
  /** Where the configuration goes; a file there is never written over (it may be the only copy of a password). */
  readonly configPath: string;
  /** Key derivation cost of the safe's key (tests lower it). */
  readonly scrypt?: ScryptParams;
  /** Take over this existing disk safe (NAME) of the customer, whose machine was retired, opened with `password`. */
  readonly takeOver?: { readonly safe: string; readonly password: string };
}

/** What enrolment made: the configuration written, and how the escrow of the password went (a failure is the caller's to report: the machine is enrolled). */
export interface Enrolled {
  readonly config: AgentConfig;
  readonly escrow: EscrowOutcome | { readonly state: 'failed'; readonly error: Error };
}

/** The machine is enrolled already, its safe initialised: enrolling again is refused and changes nothing. */
export class AlreadyEnrolledError extends Error {
  constructor(configPath: string) {
    super(`${configPath} exists: this machine is enrolled already (move the file away first to enrol it again; it holds the disk safe's password)`);
    this.name = 'AlreadyEnrolledError';
  }
}

/** The disk safe to take over could not be opened (no such safe for this token, not a takeover token made for it, a live machine has it, no repository in it), or its snapshots not read after the takeover. */
export class TakeOverError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TakeOverError';
  }
}

/**
 * Enrols this machine; resolves with what was written. Over an existing
 * configuration of the same server whose disk safe holds no repository yet
 * (an enrolment interrupted after the server registered the machine: the
 * init failed), it finishes that enrolment with the configuration's token and
 * password instead (`finished`), as the server refuses to register the
 * machine twice; over any other, AlreadyEnrolledError.
 */
export async function enrollMachine(o: EnrollOptions): Promise<Enrolled & { readonly finished: boolean }> {
  if (await stat(o.configPath).then(() => true, () => false)) {
    if (o.takeOver) throw new AlreadyEnrolledError(o.configPath);
    return { ...await finishEnrolment(o), finished: true };
  }
  if (o.takeOver) await checkTakeOver(o, o.takeOver);
  const api = new ServerApi({ server: o.server, token: o.enrollToken, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) });
  let enrolled: EnrolledBody;
  try {
    enrolled = (await api.call<EnrolledBody>('POST', '/api/v1/agent/enroll', { name: o.name, ...(o.takeOver ? { take_over: o.takeOver.safe } : {}) })).body;
  } finally {
    api.close();
  }
  const config: AgentConfig = {
    server: new URL(o.server).origin, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}),
    machine_id: enrolled.machine.id, machine_name: enrolled.machine.name, safe: enrolled.safe.name,
    token: enrolled.secret, password: o.takeOver?.password ?? randomBytes(32).toString('hex'), allow_restore_overwrite: false,
  };
  // The configuration first: a failed init is finished with it by enrolling again (finishEnrolment), and the token is shown only once.
  await writeAgentConfig(o.configPath, config);
  if (!o.takeOver) return { ...await initialise(config, o), finished: false };
  const escrowed = await escrow(config, o);
  // The snapshots are read with the agent token: the takeover token reads only what the password check needs.
  const previousHost = await newestHost(config, o).catch((e: unknown) => {
    throw new TakeOverError(`took over disk safe ${config.safe} (configuration written to ${o.configPath}), but could not read its snapshots: ${(e as Error).message}; its first backup reads every file`);
  });
  if (previousHost === undefined || previousHost === config.machine_name) return { config, escrow: escrowed, finished: false };
  const withParent = { ...config, previous_host: previousHost };
  await writeAgentConfig(o.configPath, withParent);
  return { config: withParent, escrow: escrowed, finished: false };
}

/** The host of the newest snapshot in the enrolled machine's safe, undefined when it has none. */
async function newestHost(config: AgentConfig, o: EnrollOptions): Promise<string | undefined> {
  const backend = safeBackend(config, o);
  try {
    const repo = await Repository.open(await Store.open(backend), config.password);
    try {
      return (await readableSnapshots(repo)).at(-1)?.snapshot.hostname;
    } finally {
      repo.close();
    }
  } finally {
    await backend.close();
  }
}

/**
 * Opens the safe to be taken over with its password, through the takeover
 * token (WrongPasswordError, NotARepositoryError, …: nothing is registered).
 */
async function checkTakeOver(o: EnrollOptions, t: NonNullable<EnrollOptions['takeOver']>): Promise<void> {
  const backend = openBackend(`${new URL(o.server).origin}/safes/${encodeURIComponent(t.safe)}`, {
    http: { token: o.enrollToken, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) },
  });
  try {
    const repo = await Store.open(backend).then((store) => Repository.open(store, t.password)).catch((e: unknown) => {
      if (e instanceof WrongPasswordError) throw e;
      throw new TakeOverError(`cannot open disk safe ${t.safe} to take it over (it must be a disk safe without a machine, its machine retired, holding a repository, and the token an enroll token the customer made for that safe: holdfast server token create --rights enroll --take-over ${t.safe}): ${(e as Error).message}; nothing was registered`);
    });
    repo.close();
  } finally {
    await backend.close();
  }
}

/** The enrolment whose configuration is at `o.configPath`, finished when its safe holds no repository; see enrollMachine. */
async function finishEnrolment(o: EnrollOptions): Promise<Enrolled> {
  const config = await readAgentConfig(o.configPath);
  if (new URL(o.server).origin !== config.server) throw new AlreadyEnrolledError(o.configPath);
  const backend = safeBackend(config, o);
  try {
    await readConfig(backend);
  } catch (e) {
    if (e instanceof NotARepositoryError) return initialise(config, o);
    throw e;
  }
  throw new AlreadyEnrolledError(o.configPath);
}

function safeBackend(config: AgentConfig, o: EnrollOptions): Backend {
  const fingerprint = o.fingerprint ?? config.fingerprint;
  return openBackend(`${config.server}/safes/${encodeURIComponent(config.safe)}`, {
    http: { token: config.token, ...(fingerprint ? { fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) },
  });
}

/** Initialises the enrolled machine's safe with the configuration's password, then escrows the password. */
async function initialise(config: AgentConfig, o: EnrollOptions): Promise<Enrolled> {
  const repo = await Repository.init(safeBackend(config, o), config.password, { ...(o.scrypt ? { scrypt: o.scrypt } : {}) });
  repo.close();
  return { config, escrow: await escrow(config, o) };
}

/** Escrows the configuration's password with its agent token; a failure is returned, not thrown (the machine is enrolled). */
async function escrow(config: AgentConfig, o: EnrollOptions): Promise<Enrolled['escrow']> {
  const fingerprint = o.fingerprint ?? config.fingerprint;
  const agentApi = new ServerApi({ server: config.server, token: config.token, ...(fingerprint ? { fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) });
  try {
    return await escrowPassword(agentApi, config);
  } catch (e) {
    return { state: 'failed', error: e as Error };
  } finally {
    agentApi.close();
  }
}

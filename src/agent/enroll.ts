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
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { EnrolledBody } from '../api/v1.js';
import type { ScryptParams } from '../core/crypto.js';
import { NotARepositoryError } from '../repo/errors.js';
import { readConfig } from '../repo/objects.js';
import { Repository } from '../repo/repository.js';
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

/**
 * Enrols this machine; resolves with what was written. Over an existing
 * configuration of the same server whose disk safe holds no repository yet
 * (an enrolment interrupted after the server registered the machine: the
 * init failed), it finishes that enrolment with the configuration's token and
 * password instead (`finished`), as the server refuses to register the
 * machine twice; over any other, AlreadyEnrolledError.
 */
export async function enrollMachine(o: EnrollOptions): Promise<Enrolled & { readonly finished: boolean }> {
  if (await stat(o.configPath).then(() => true, () => false)) return { ...await finishEnrolment(o), finished: true };
  const api = new ServerApi({ server: o.server, token: o.enrollToken, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) });
  let enrolled: EnrolledBody;
  try {
    enrolled = (await api.call<EnrolledBody>('POST', '/api/v1/agent/enroll', { name: o.name })).body;
  } finally {
    api.close();
  }
  const config: AgentConfig = {
    server: new URL(o.server).origin, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}),
    machine_id: enrolled.machine.id, machine_name: enrolled.machine.name, safe: enrolled.safe.name,
    token: enrolled.secret, password: randomBytes(32).toString('hex'), allow_restore_overwrite: false,
  };
  // The configuration first: a failed init is finished with it by enrolling again (finishEnrolment), and the token is shown only once.
  await writeAgentConfig(o.configPath, config);
  return { ...await initialise(config, o), finished: false };
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
  const fingerprint = o.fingerprint ?? config.fingerprint;
  const agentApi = new ServerApi({ server: config.server, token: config.token, ...(fingerprint ? { fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) });
  try {
    return { config, escrow: await escrowPassword(agentApi, config) };
  } catch (e) {
    return { config, escrow: { state: 'failed', error: e as Error } };
  } finally {
    agentApi.close();
  }
}

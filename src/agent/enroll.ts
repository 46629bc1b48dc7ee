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
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { EnrolledBody } from '../api/v1.js';
import type { ScryptParams } from '../core/crypto.js';
import { Repository } from '../repo/repository.js';
import { openBackend } from '../storage/open-backend.js';
import { writeAgentConfig, type AgentConfig } from './agent-config.js';
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
  /** Where the configuration goes; refused when a file is there (it may be the only copy of a password). */
  readonly configPath: string;
  /** Key derivation cost of the safe's key (tests lower it). */
  readonly scrypt?: ScryptParams;
}

/** What enrolment made: the configuration written, and how the escrow of the password went (a failure is the caller's to report: the machine is enrolled). */
export interface Enrolled {
  readonly config: AgentConfig;
  readonly escrow: EscrowOutcome | { readonly state: 'failed'; readonly error: Error };
}

/** Enrols this machine; resolves with what was written. */
export async function enrollMachine(o: EnrollOptions): Promise<Enrolled> {
  if (await stat(o.configPath).then(() => true, () => false)) {
    throw new Error(`${o.configPath} exists: this machine is enrolled already (move the file away first to enrol it again; it holds the disk safe's password)`);
  }
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
  // The configuration first: a failed init can be tried again with it, and the token is shown only once.
  await writeAgentConfig(o.configPath, config);
  const backend = openBackend(`${config.server}/safes/${encodeURIComponent(config.safe)}`, {
    http: { token: config.token, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) },
  });
  const repo = await Repository.init(backend, config.password, { ...(o.scrypt ? { scrypt: o.scrypt } : {}) });
  repo.close();
  const agentApi = new ServerApi({ server: config.server, token: config.token, ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}), ...(o.ca ? { ca: o.ca } : {}) });
  try {
    return { config, escrow: await escrowPassword(agentApi, config) };
  } catch (e) {
    return { config, escrow: { state: 'failed', error: e as Error } };
  } finally {
    agentApi.close();
  }
}

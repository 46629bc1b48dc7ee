/**
 * Enrolment of this machine (docs/format.md §2.6): the server makes the
 * machine, its disk safe and the agent's token; the agent makes the disk
 * safe's password here (32 random bytes), initialises the safe over HTTPS
 * with it, and writes its configuration. The password never leaves the
 * machine.
 *
 *   POST /api/v1/agent/enroll (enroll token) → machine, safe, agent token
 *   password = 32 random bytes → init https://host:port/safes/NAME
 *   write the configuration (0600)
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { EnrolledBody } from '../api/v1.js';
import type { ScryptParams } from '../core/crypto.js';
import { Repository } from '../repo/repository.js';
import { openBackend } from '../storage/open-backend.js';
import { writeAgentConfig, type AgentConfig } from './agent-config.js';
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

/** Enrols this machine; resolves with what was written. */
export async function enrollMachine(o: EnrollOptions): Promise<AgentConfig> {
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
  return config;
}

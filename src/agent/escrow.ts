/**
 * The agent's side of password escrow (docs/format.md §2.8): asks the
 * server for the customer's recovery public key and the key each disk safe's
 * escrow is sealed for, and, where they differ, seals the safe's password
 * for the recovery key here and uploads only the sealed box. The server
 * cannot open it; the customer opens it with the private key
 * (`holdfast escrow recover`). Run at enrolment, by `holdfast agent escrow`,
 * and when a job poll answers `Holdfast-Escrow: wanted`.
 *
 *   GET /api/v1/agent/escrow → recovery key K, the machine's safes
 *   for this agent's safe, when its escrow is not for K:
 *     PUT /api/v1/safes/ID/escrow {wrapped_password: seal(K, password, safe name)}
 */
import type { AgentEscrowBody } from '../api/v1.js';
import { sealForRecovery } from '../core/escrow.js';
import type { AgentConfig } from './agent-config.js';
import type { ServerApi } from './server-api.js';

/** What an escrow pass did. */
export type EscrowOutcome =
  /** The customer has no recovery key: nothing is escrowed. */
  | { readonly state: 'no-recovery-key' }
  /** The password is escrowed for `recoveryKey` now; `wrapped` when this pass uploaded it. */
  | { readonly state: 'escrowed'; readonly recoveryKey: string; readonly wrapped: boolean };

/** Escrows the password of `config`'s disk safe for its customer's recovery key, unless it already is. */
export async function escrowPassword(api: ServerApi, config: AgentConfig): Promise<EscrowOutcome> {
  const { body } = await api.call<AgentEscrowBody>('GET', '/api/v1/agent/escrow');
  const key = body.recovery_key;
  if (key === null) return { state: 'no-recovery-key' };
  const safe = body.safes.find((s) => s.name === config.safe);
  if (safe === undefined) throw new Error(`the server lists no disk safe ${config.safe} for this machine`);
  if (safe.escrowed_for === key) return { state: 'escrowed', recoveryKey: key, wrapped: false };
  const box = sealForRecovery(key, Buffer.from(config.password, 'utf8'), safe.name);
  await api.call('PUT', `/api/v1/safes/${encodeURIComponent(safe.id)}/escrow`, { wrapped_password: box.toString('base64') });
  return { state: 'escrowed', recoveryKey: key, wrapped: true };
}

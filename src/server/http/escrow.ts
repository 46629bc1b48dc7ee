/**
 * Password escrow (docs/format.md §2.8): a customer's recovery public key
 * (PUT, GET /customers/ID/recovery-key), a disk safe's sealed password (PUT
 * by the safe's agent, GET by the customer: /safes/ID/escrow), and what the
 * calling agent should escrow (GET /agent/escrow).
 */
import type { FastifyPluginAsync } from 'fastify';
import { AgentEscrowSchema, IdParamsSchema, PutEscrowSchema, SetRecoveryKeySchema, type PutEscrowRequest, type SetRecoveryKeyRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { agentEscrow, getEscrow, getRecoveryKey, putEscrow, setRecoveryKey } from '../services/escrow.js';
import { responses, who } from './route-kit.js';

export const escrowRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['escrow'];
  app.put<{ Params: { id: string }; Body: SetRecoveryKeyRequest }>('/customers/:id/recovery-key', { schema: { tags, params: IdParamsSchema, body: SetRecoveryKeySchema, response: responses(200, { $ref: 'RecoveryKey#' }) } },
    (req) => setRecoveryKey(ctx, who(req), req.params.id, req.body));
  app.get<{ Params: { id: string } }>('/customers/:id/recovery-key', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'RecoveryKey#' }) } },
    (req) => getRecoveryKey(ctx, who(req), req.params.id));
  app.put<{ Params: { id: string }; Body: PutEscrowRequest }>('/safes/:id/escrow', { schema: { tags, params: IdParamsSchema, body: PutEscrowSchema, response: responses(200, { $ref: 'Escrow#' }) } },
    (req) => putEscrow(ctx, who(req), req.params.id, req.body));
  app.get<{ Params: { id: string } }>('/safes/:id/escrow', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Escrow#' }) } },
    (req) => getEscrow(ctx, who(req), req.params.id));
  app.get('/agent/escrow', { schema: { tags: ['agent', ...tags], response: responses(200, AgentEscrowSchema) } }, (req) => agentEscrow(ctx, who(req)));
};

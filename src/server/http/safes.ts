/**
 * /safes: the disk safes: list (the caller's scope), create (quotas:
 * provider only), get, PATCH of the quotas (provider roles), DELETE (with
 * every backup in it: admins only, its name repeated); forget by a
 * retention policy (answered at once) and prune (a server job), keyless
 * (services/retention.ts); verify, a server job too (services/verification.ts).
 */
import type { FastifyPluginAsync } from 'fastify';
import {
  CreateSafeSchema, DeleteSafeSchema, ForgetResultSchema, ForgetSafeSchema, IdParamsSchema, PruneSafeSchema, UpdateQuotasSchema, VerifySafeSchema,
  type CreateSafeRequest, type DeleteSafeRequest, type ForgetSafeRequest, type PruneSafeRequest, type UpdateQuotasRequest, type VerifySafeRequest,
} from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createSafe, deleteSafe, getSafe, listSafes, updateSafeQuotas } from '../services/disk-safes.js';
import { forgetSafe, pruneSafe } from '../services/retention.js';
import { verifySafe } from '../services/verification.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

export const safeRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['safes'];
  app.get('/safes', { schema: { tags, response: responses(200, { type: 'array', items: { $ref: 'Safe#' } }) } }, (req) => listSafes(ctx, who(req)));
  app.post<{ Body: CreateSafeRequest }>('/safes', { schema: { tags, body: CreateSafeSchema, response: responses(201, { $ref: 'Safe#' }) } },
    async (req, reply) => reply.code(201).send(await createSafe(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/safes/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Safe#' }) } },
    (req) => getSafe(ctx, who(req), req.params.id));
  app.patch<{ Params: { id: string }; Body: UpdateQuotasRequest }>('/safes/:id',
    { schema: { tags, params: IdParamsSchema, body: UpdateQuotasSchema, response: responses(200, { $ref: 'Safe#' }) } },
    (req) => updateSafeQuotas(ctx, who(req), req.params.id, req.body));
  app.delete<{ Params: { id: string }; Body: DeleteSafeRequest | undefined }>('/safes/:id',
    { schema: { tags, summary: 'delete the safe and every backup in it (body: {"confirm": "NAME"})', params: IdParamsSchema, body: DeleteSafeSchema, response: responses(204, NO_CONTENT) } },
    async (req, reply) => {
      await deleteSafe(ctx, who(req), req.params.id, req.body);
      return reply.code(204).send();
    });
  app.post<{ Params: { id: string }; Body: ForgetSafeRequest }>('/safes/:id/forget', { schema: { tags, summary: 'apply a retention policy (or preview it with dry_run)', params: IdParamsSchema, body: ForgetSafeSchema, response: responses(200, ForgetResultSchema) } },
    (req) => forgetSafe(ctx, who(req), req.params.id, req.body));
  app.post<{ Params: { id: string }; Body: PruneSafeRequest }>('/safes/:id/prune', { schema: { tags, summary: 'start a prune (a server job: follow it at /jobs/ID)', params: IdParamsSchema, body: PruneSafeSchema, response: responses(202, { $ref: 'Job#' }) } },
    async (req, reply) => reply.code(202).send(await pruneSafe(ctx, who(req), req.params.id, req.body)));
  app.post<{ Params: { id: string }; Body: VerifySafeRequest | undefined }>('/safes/:id/verify',
    { schema: { tags, summary: 'start a verification of the stored bytes, keyless (a server job: follow it at /jobs/ID)', params: IdParamsSchema, body: VerifySafeSchema, response: responses(202, { $ref: 'Job#' }) } },
    async (req, reply) => reply.code(202).send(await verifySafe(ctx, who(req), req.params.id, req.body ?? {})));
};

/** /safes: the disk safes: list (the caller's scope), create (quotas: provider only), get, and PATCH of the quotas (provider roles). */
import type { FastifyPluginAsync } from 'fastify';
import { CreateSafeSchema, IdParamsSchema, UpdateQuotasSchema, type CreateSafeRequest, type UpdateQuotasRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createSafe, getSafe, listSafes, updateSafeQuotas } from '../services/disk-safes.js';
import { responses, who } from './route-kit.js';

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
};

/** /safes/ID/restore-tokens: a token that reads one disk safe for bare-metal recovery, and expires (services/restore-tokens.ts). */
import type { FastifyPluginAsync } from 'fastify';
import { CreatedTokenSchema, CreateRestoreTokenSchema, IdParamsSchema, type CreateRestoreTokenRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createRestoreToken } from '../services/restore-tokens.js';
import { responses, who } from './route-kit.js';

export const restoreTokenRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  app.post<{ Params: { id: string }; Body: CreateRestoreTokenRequest }>('/safes/:id/restore-tokens', {
    schema: { tags: ['tokens', 'safes'], params: IdParamsSchema, body: CreateRestoreTokenSchema, response: responses(201, CreatedTokenSchema) },
  }, async (req, reply) => reply.code(201).send(await createRestoreToken(ctx, who(req), req.params.id, req.body ?? {})));
};

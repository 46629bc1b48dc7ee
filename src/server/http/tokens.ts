/** /tokens: list (never the secrets), create (the secret once), get, revoke (DELETE). */
import type { FastifyPluginAsync } from 'fastify';
import { CreatedTokenSchema, CreateTokenSchema, IdParamsSchema, type CreateTokenRequest } from '../../api/v1.js';
import { createToken, getToken, listTokens, revokeToken } from '../services/api-tokens.js';
import type { ServiceContext } from '../services/context.js';
import { responses, who } from './route-kit.js';

export const tokenRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['tokens'];
  app.get('/tokens', { schema: { tags, response: responses(200, { type: 'array', items: { $ref: 'Token#' } }) } }, (req) => listTokens(ctx, who(req)));
  app.post<{ Body: CreateTokenRequest }>('/tokens', { schema: { tags, body: CreateTokenSchema, response: responses(201, CreatedTokenSchema) } },
    async (req, reply) => reply.code(201).send(await createToken(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/tokens/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Token#' }) } },
    (req) => getToken(ctx, who(req), req.params.id));
  app.delete<{ Params: { id: string } }>('/tokens/:id', { schema: { tags, summary: 'revoke a token', params: IdParamsSchema, response: responses(200, { $ref: 'Token#' }) } },
    (req) => revokeToken(ctx, who(req), req.params.id));
};

/** /users: list (the caller's scope), create (with a one-time password, shown once), get. */
import type { FastifyPluginAsync } from 'fastify';
import { CreatedUserSchema, CreateUserSchema, IdParamsSchema, type CreateUserRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createUser, getUser, listUsers } from '../services/users.js';
import { responses, who } from './route-kit.js';

export const userRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['users'];
  app.get('/users', { schema: { tags, response: responses(200, { type: 'array', items: { $ref: 'User#' } }) } }, (req) => listUsers(ctx, who(req)));
  app.post<{ Body: CreateUserRequest }>('/users', { schema: { tags, body: CreateUserSchema, response: responses(201, CreatedUserSchema) } },
    async (req, reply) => reply.code(201).send(await createUser(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/users/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'User#' }) } },
    (req) => getUser(ctx, who(req), req.params.id));
};

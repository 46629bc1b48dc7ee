/** POST /login, POST /logout, GET /me, POST /me/password. */
import type { FastifyPluginAsync } from 'fastify';
import { ChangePasswordSchema, LoginSchema, MeSchema, SessionSchema, type ChangePasswordRequest, type LoginRequest } from '../../api/v1.js';
import { changePassword, login, logout, me } from '../services/auth.js';
import type { ServiceContext } from '../services/context.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

export const authRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  app.post<{ Body: LoginRequest }>('/login', {
    config: { public: true },
    schema: { tags: ['auth'], summary: 'log in with a password: a session token', security: [], body: LoginSchema, response: responses(200, SessionSchema) },
  }, (req) => login(ctx, req.body, req.ip));

  app.post('/logout', {
    config: { beforePasswordChange: true },
    schema: { tags: ['auth'], summary: 'end the session', response: responses(204, NO_CONTENT) },
  }, async (req, reply) => {
    await logout(ctx, who(req));
    return reply.code(204).send();
  });

  app.get('/me', {
    config: { beforePasswordChange: true },
    schema: { tags: ['auth'], summary: 'the caller: a person or a token', response: responses(200, MeSchema) },
  }, async (req) => me(who(req)));

  app.post<{ Body: ChangePasswordRequest }>('/me/password', {
    config: { beforePasswordChange: true },
    schema: { tags: ['auth'], summary: 'change the caller\'s password (ends the other sessions)', body: ChangePasswordSchema, response: responses(204, NO_CONTENT) },
  }, async (req, reply) => {
    await changePassword(ctx, who(req), req.body);
    return reply.code(204).send();
  });
};

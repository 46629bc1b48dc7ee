/**
 * The REST API under /api/v1: authentication of every route not marked
 * public (one `Authorization: Bearer` scheme for session and API tokens),
 * the one-time-password rule, the JSON error answers, and the resource
 * files. Requests are validated and responses serialized by each route's
 * schema (src/api/v1.ts), so that no field a schema does not name leaves
 * the server. The OpenAPI document of every route is GET /api/v1/openapi.json.
 */
import type { FastifyError, FastifyPluginAsync } from 'fastify';
import { ServerInfoSchema, type ServerInfoBody } from '../../api/v1.js';
import { authenticate, requirePasswordChanged } from '../services/auth.js';
import type { ServiceContext } from '../services/context.js';
import { ApiError, RateLimited } from '../services/errors.js';
import { agentRoutes } from './agent-routes.js';
import { auditRoutes } from './audit.js';
import { authRoutes } from './auth-routes.js';
import { customerRoutes } from './customers.js';
import { escrowRoutes } from './escrow.js';
import { jobRoutes } from './jobs.js';
import { machineRoutes } from './machines.js';
import { metricsTokenRoutes } from './metrics.js';
import { notificationRoutes } from './notifications.js';
import { policyRoutes } from './policies.js';
import { restoreTokenRoutes } from './restore-tokens.js';
import { responses } from './route-kit.js';
import { safeRoutes } from './safes.js';
import { snapshotRoutes } from './snapshots.js';
import { tokenRoutes } from './tokens.js';
import { userRoutes } from './users.js';

const BEARER = /^Bearer (\S+)$/i;

export const apiV1: FastifyPluginAsync<{ ctx: ServiceContext; server: ServerInfoBody }> = async (app, { ctx, server }) => {
  app.decorateRequest('principal', null);

  // Every answer is a customer's records or secrets (tokens, a channel's URL): no browser or proxy may keep a copy.
  app.addHook('onRequest', async (_req, reply) => {
    void reply.header('cache-control', 'no-store');
  });

  app.addHook('preHandler', async (req) => {
    const config = req.routeOptions.config;
    if (config.public) return;
    const bearer = BEARER.exec(req.headers.authorization ?? '')?.[1];
    req.principal = await authenticate(ctx, bearer, req.ip);
    if (!config.beforePasswordChange) requirePasswordChanged(req.principal);
  });

  app.setErrorHandler((e: FastifyError, req, reply) => {
    if (e instanceof ApiError) {
      if (e instanceof RateLimited) void reply.header('retry-after', String(e.retryAfterSeconds));
      return reply.code(e.status).send({ code: e.code, message: e.message });
    }
    if (e.validation) return reply.code(400).send({ code: 'BAD_REQUEST', message: e.message });
    if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) return reply.code(e.statusCode).send({ code: e.code ?? 'BAD_REQUEST', message: e.message });
    req.log.error(e);
    return reply.code(500).send({ code: 'INTERNAL', message: 'internal server error (see the server\'s log)' });
  });

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'NO_SUCH_ROUTE', message: `no such route: ${req.method} ${req.url.split('?')[0]}` }));

  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, () => app.swagger());

  // For the commands the web interface shows (enrolment, a rescue restore): a browser cannot read the certificate it was shown.
  app.get('/server', {
    config: { beforePasswordChange: true },
    schema: { tags: ['auth'], summary: 'the server node that answers: its certificate fingerprint (what agents pin) and version', response: responses(200, ServerInfoSchema) },
  }, () => server);

  for (const routes of [authRoutes, customerRoutes, userRoutes, tokenRoutes, machineRoutes, safeRoutes, auditRoutes, jobRoutes, agentRoutes, escrowRoutes, restoreTokenRoutes, notificationRoutes, metricsTokenRoutes, snapshotRoutes, policyRoutes]) {
    await app.register(routes, { ctx });
  }
};

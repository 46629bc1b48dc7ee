/**
 * GET /metrics, Prometheus's text format (services/metrics.ts), outside
 * /api/v1 where Prometheus looks for it; and under /api/v1 the metrics
 * token's making (POST, shown once) and removal (DELETE), provider admins only.
 */
import type { FastifyPluginAsync } from 'fastify';
import { authenticate } from '../services/auth.js';
import type { ServiceContext } from '../services/context.js';
import { ApiError } from '../services/errors.js';
import { authorizeScrape, makeMetricsToken, removeMetricsToken } from '../services/metrics.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

const BEARER = /^Bearer (\S+)$/i;

export const metricsRoute: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  app.get('/metrics', async (req, reply) => {
    void reply.header('cache-control', 'no-store');
    const bearer = BEARER.exec(req.headers.authorization ?? '')?.[1];
    try {
      await authorizeScrape(ctx, bearer, () => authenticate(ctx, bearer, req.ip));
    } catch (e) {
      if (e instanceof ApiError) return reply.code(e.status).header('www-authenticate', 'Bearer').send({ code: e.code, message: e.message });
      throw e;
    }
    const text = await ctx.metrics.scrape(ctx);
    return reply.header('content-type', ctx.metrics.contentType).send(text);
  });
};

export const metricsTokenRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['metrics'];
  app.post('/metrics-token', {
    schema: {
      tags, summary: 'make the token Prometheus reads /metrics with (replacing the one there was); its secret is answered this once',
      response: responses(201, { type: 'object', required: ['token'], properties: { token: { type: 'string' } } }),
    },
  }, async (req, reply) => reply.code(201).send(await makeMetricsToken(ctx, who(req))));
  app.delete('/metrics-token', { schema: { tags, summary: 'remove the metrics token', response: responses(204, NO_CONTENT) } }, async (req, reply) => {
    await removeMetricsToken(ctx, who(req));
    return reply.code(204).send();
  });
};

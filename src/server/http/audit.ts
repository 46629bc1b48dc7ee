/** /audit: the audit log, oldest first, paged by `after` (the last seq seen) and `limit`. */
import type { FastifyPluginAsync } from 'fastify';
import { AuditQuerySchema, type AuditQuery } from '../../api/v1.js';
import { listAudit } from '../services/audit.js';
import type { ServiceContext } from '../services/context.js';
import { responses, who } from './route-kit.js';

export const auditRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  app.get<{ Querystring: AuditQuery }>('/audit', { schema: { tags: ['audit'], querystring: AuditQuerySchema, response: responses(200, { type: 'array', items: { $ref: 'AuditEntry#' } }) } },
    (req) => listAudit(ctx, who(req), req.query));
};

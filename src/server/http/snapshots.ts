/**
 * The snapshots the server's index knows (services/snapshot-index.ts), read
 * without the key and without reading the storage: a disk safe's, a
 * machine's (all its safes) and a customer's (all its safes the caller
 * sees), newest first, in pages; and the stored bytes' history of a safe
 * and of a customer (services/usage-history.ts).
 */
import type { FastifyPluginAsync } from 'fastify';
import { IdParamsSchema, SnapshotsQuerySchema, UsageHistoryQuerySchema, UsageHistorySchema, type SnapshotsQuery, type UsageHistoryQuery } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { listCustomerSnapshots, listMachineSnapshots, listSafeSnapshots } from '../services/snapshot-index.js';
import { customerUsageHistory, safeUsageHistory } from '../services/usage-history.js';
import { responses, who } from './route-kit.js';

export const snapshotRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['snapshots'];
  const schema = (summary: string) => ({ tags, summary, params: IdParamsSchema, querystring: SnapshotsQuerySchema, response: responses(200, { type: 'array', items: { $ref: 'Snapshot#' } }) });
  app.get<{ Params: { id: string }; Querystring: SnapshotsQuery }>('/safes/:id/snapshots', { schema: schema('the disk safe\'s snapshots, newest first') },
    (req) => listSafeSnapshots(ctx, who(req), req.params.id, req.query));
  app.get<{ Params: { id: string }; Querystring: SnapshotsQuery }>('/machines/:id/snapshots', { schema: schema('the snapshots of the machine\'s disk safes, newest first') },
    (req) => listMachineSnapshots(ctx, who(req), req.params.id, req.query));
  app.get<{ Params: { id: string }; Querystring: SnapshotsQuery }>('/customers/:id/snapshots', { schema: schema('the snapshots of the customer\'s disk safes, newest first') },
    (req) => listCustomerSnapshots(ctx, who(req), req.params.id, req.query));
  const history = (summary: string) => ({ tags, summary, params: IdParamsSchema, querystring: UsageHistoryQuerySchema, response: responses(200, UsageHistorySchema) });
  app.get<{ Params: { id: string }; Querystring: UsageHistoryQuery }>('/safes/:id/usage-history', { schema: history('the disk safe\'s stored bytes per day') },
    (req) => safeUsageHistory(ctx, who(req), req.params.id, req.query));
  app.get<{ Params: { id: string }; Querystring: UsageHistoryQuery }>('/customers/:id/usage-history', { schema: history('the customer\'s stored bytes per day (all its disk safes)') },
    (req) => customerUsageHistory(ctx, who(req), req.params.id, req.query));
};

/**
 * The snapshots the server's index knows (services/snapshot-index.ts), read
 * without the key and without reading the storage: a disk safe's, a
 * machine's (all its safes) and a customer's (all its safes the caller
 * sees), newest first, in pages.
 */
import type { FastifyPluginAsync } from 'fastify';
import { IdParamsSchema, SnapshotsQuerySchema, type SnapshotsQuery } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { listCustomerSnapshots, listMachineSnapshots, listSafeSnapshots } from '../services/snapshot-index.js';
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
};

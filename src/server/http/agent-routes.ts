/**
 * The agent's routes (docs/format.md §2.6): enrolment with a customer's
 * enroll token, then the job channel. Agents connect out, the server never
 * connects to them. An agent long-polls for its machine's next
 * job, then reports events as they happen and the result at the end, all
 * with its machine-scoped token; the answer to a report carries
 * `Holdfast-Cancel: requested` once the job was cancelled. A poll's answer carries
 * `Holdfast-Escrow: wanted` while a disk safe of the machine has no password
 * escrowed for the customer's current recovery key.
 */
import type { FastifyPluginAsync } from 'fastify';
import { CANCEL_HEADER, ESCROW_WANTED_HEADER, EnrolledSchema, EnrollSchema, type EnrollRequest, IdParamsSchema, PollQuerySchema, ReportEventsSchema, ReportResultSchema, type PollQuery, type ReportEventsRequest, type ReportResultRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { enroll } from '../services/enrolment.js';
import { escrowWanted } from '../services/escrow.js';
import { nextJob, reportEvents, reportResult } from '../services/jobs.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

export const agentRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['agent'];
  app.post<{ Body: EnrollRequest }>('/agent/enroll', { schema: { tags, body: EnrollSchema, response: responses(201, EnrolledSchema) } },
    async (req, reply) => reply.code(201).send(await enroll(ctx, who(req), req.body)));
  app.get<{ Querystring: PollQuery }>('/agent/jobs/next', { schema: { tags, querystring: PollQuerySchema, response: { ...responses(200, { $ref: 'Job#' }), 204: NO_CONTENT } } },
    async (req, reply) => {
      // The agent may go away while the poll waits (it was stopped or restarted): then no job is taken for it.
      const gone = new AbortController();
      const onClose = (): void => {
        if (!reply.raw.writableFinished) gone.abort();
      };
      reply.raw.once('close', onClose);
      // It may have gone already, while the request was being authenticated: its close came before this listener.
      if (req.raw.socket.destroyed) gone.abort();
      const p = who(req);
      const job = await nextJob(ctx, p, req.query.wait ?? 0, gone.signal).finally(() => reply.raw.off('close', onClose));
      // A recovery key set or changed since the agent last escrowed: it wraps its passwords again (docs/format.md §2.8).
      if (await escrowWanted(ctx, p.customerId!, p.machineId!)) void reply.header(ESCROW_WANTED_HEADER, 'wanted');
      return job ? job : reply.code(204).send();
    });
  app.post<{ Params: { id: string }; Body: ReportEventsRequest }>('/agent/jobs/:id/events', { schema: { tags, params: IdParamsSchema, body: ReportEventsSchema, response: responses(204, NO_CONTENT) } },
    async (req, reply) => {
      const { cancelled } = await reportEvents(ctx, who(req), req.params.id, req.body);
      // The job was cancelled: its agent stops it and reports it cancelled (docs/format.md §2.6).
      if (cancelled) void reply.header(CANCEL_HEADER, 'requested');
      return reply.code(204).send();
    });
  app.post<{ Params: { id: string }; Body: ReportResultRequest }>('/agent/jobs/:id/result', { schema: { tags, params: IdParamsSchema, body: ReportResultSchema, response: responses(200, { $ref: 'Job#' }) } },
    (req) => reportResult(ctx, who(req), req.params.id, req.body));
};

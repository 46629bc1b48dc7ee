/** Jobs for people and tools: "run now" on a machine, a machine's jobs, one job and its events, cancelling one. */
import type { FastifyPluginAsync } from 'fastify';
import { CreateJobSchema, IdParamsSchema, JobEventsQuerySchema, type CreateJobRequest, type JobEventsQuery } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { cancelJob, createJob, getJob, listJobEvents, listMachineJobs } from '../services/jobs.js';
import { responses, who } from './route-kit.js';

export const jobRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['jobs'];
  app.post<{ Params: { id: string }; Body: CreateJobRequest }>('/machines/:id/jobs', { schema: { tags, params: IdParamsSchema, body: CreateJobSchema, response: responses(201, { $ref: 'Job#' }) } },
    async (req, reply) => reply.code(201).send(await createJob(ctx, who(req), req.params.id, req.body)));
  app.get<{ Params: { id: string } }>('/machines/:id/jobs', { schema: { tags, params: IdParamsSchema, response: responses(200, { type: 'array', items: { $ref: 'Job#' } }) } },
    (req) => listMachineJobs(ctx, who(req), req.params.id));
  app.get<{ Params: { id: string } }>('/jobs/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Job#' }) } },
    (req) => getJob(ctx, who(req), req.params.id));
  app.get<{ Params: { id: string }; Querystring: JobEventsQuery }>('/jobs/:id/events', { schema: { tags, params: IdParamsSchema, querystring: JobEventsQuerySchema, response: responses(200, { type: 'array', items: { $ref: 'JobEvent#' } }) } },
    (req) => listJobEvents(ctx, who(req), req.params.id, req.query));
  // 200: the job is cancelled (it was queued); 202: its runner was told to stop it, and ends it cancelled once it has.
  app.post<{ Params: { id: string } }>('/jobs/:id/cancel', { schema: { tags, params: IdParamsSchema, response: { ...responses(200, { $ref: 'Job#' }), 202: { $ref: 'Job#' } } } },
    async (req, reply) => {
      const job = await cancelJob(ctx, who(req), req.params.id);
      return reply.code(job.state === 'cancelled' ? 200 : 202).send(job);
    });
};

/** /machines: list (the caller's scope, live machines; paged; with their status for the fleet dashboard), create, get, retire (DELETE). */
import type { FastifyPluginAsync } from 'fastify';
import { CreateMachineSchema, IdParamsSchema, MachinesQuerySchema, type CreateMachineRequest, type MachinesQuery } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createMachine, getMachine, listMachines, retireMachine } from '../services/machines.js';
import { responses, who } from './route-kit.js';

export const machineRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['machines'];
  app.get<{ Querystring: MachinesQuery }>('/machines', {
    schema: { tags, summary: 'the live machines, by name; a page with limit and offset; status=true adds each one\'s status for the fleet dashboard', querystring: MachinesQuerySchema, response: responses(200, { type: 'array', items: { $ref: 'Machine#' } }) },
  }, (req) => listMachines(ctx, who(req), req.query));
  app.post<{ Body: CreateMachineRequest }>('/machines', { schema: { tags, body: CreateMachineSchema, response: responses(201, { $ref: 'Machine#' }) } },
    async (req, reply) => reply.code(201).send(await createMachine(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/machines/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Machine#' }) } },
    (req) => getMachine(ctx, who(req), req.params.id));
  app.delete<{ Params: { id: string } }>('/machines/:id', { schema: { tags, summary: 'retire the machine: its tokens revoked, its queued jobs cancelled, its disk safes kept without a machine', params: IdParamsSchema, response: responses(200, { $ref: 'Machine#' }) } },
    (req) => retireMachine(ctx, who(req), req.params.id));
};

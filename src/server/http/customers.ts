/** /customers: list (the caller's scope), create (provider admins), get. */
import type { FastifyPluginAsync } from 'fastify';
import { CreateCustomerSchema, IdParamsSchema, type CreateCustomerRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createCustomer, getCustomer, listCustomers } from '../services/customers.js';
import { responses, who } from './route-kit.js';

export const customerRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['customers'];
  app.get('/customers', { schema: { tags, response: responses(200, { type: 'array', items: { $ref: 'Customer#' } }) } }, (req) => listCustomers(ctx, who(req)));
  app.post<{ Body: CreateCustomerRequest }>('/customers', { schema: { tags, body: CreateCustomerSchema, response: responses(201, { $ref: 'Customer#' }) } },
    async (req, reply) => reply.code(201).send(await createCustomer(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/customers/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Customer#' }) } },
    (req) => getCustomer(ctx, who(req), req.params.id));
};

/** /customers: list (the caller's scope), create (provider admins), get, and PATCH of the quotas (provider roles). */
import type { FastifyPluginAsync } from 'fastify';
import { CreateCustomerSchema, IdParamsSchema, UpdateQuotasSchema, type CreateCustomerRequest, type UpdateQuotasRequest } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createCustomer, getCustomer, listCustomers, updateCustomerQuotas } from '../services/customers.js';
import { responses, who } from './route-kit.js';

export const customerRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['customers'];
  app.get('/customers', { schema: { tags, response: responses(200, { type: 'array', items: { $ref: 'Customer#' } }) } }, (req) => listCustomers(ctx, who(req)));
  app.post<{ Body: CreateCustomerRequest }>('/customers', { schema: { tags, body: CreateCustomerSchema, response: responses(201, { $ref: 'Customer#' }) } },
    async (req, reply) => reply.code(201).send(await createCustomer(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/customers/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, { $ref: 'Customer#' }) } },
    (req) => getCustomer(ctx, who(req), req.params.id));
  app.patch<{ Params: { id: string }; Body: UpdateQuotasRequest }>('/customers/:id',
    { schema: { tags, params: IdParamsSchema, body: UpdateQuotasSchema, response: responses(200, { $ref: 'Customer#' }) } },
    (req) => updateCustomerQuotas(ctx, who(req), req.params.id, req.body));
};

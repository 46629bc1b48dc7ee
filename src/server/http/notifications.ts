/** /notifications: the notification channels (list, create, get, change, delete), "send a test", and a channel's deliveries. */
import type { FastifyPluginAsync } from 'fastify';
import {
  ChannelTestSchema, CreateChannelSchema, CreatedChannelSchema, IdParamsSchema, UpdateChannelSchema, type CreateChannelRequest, type UpdateChannelRequest,
} from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createChannel, deleteChannel, MAX_CHANNELS_PER_CUSTOMER, getChannel, listChannels, listDeliveries, testChannel, updateChannel } from '../services/notifications.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

export const notificationRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['notifications'];
  const one = { $ref: 'NotificationChannel#' };
  app.get('/notifications', { schema: { tags, response: responses(200, { type: 'array', items: one }) } }, (req) => listChannels(ctx, who(req)));
  app.post<{ Body: CreateChannelRequest }>('/notifications', {
    schema: { tags, summary: `a webhook or e-mail channel of a customer (customer_id), or of the provider (none); a webhook's secret, when not given, is made and answered this once; at most ${MAX_CHANNELS_PER_CUSTOMER} per customer (409 past it)`, body: CreateChannelSchema, response: responses(201, CreatedChannelSchema) },
  }, async (req, reply) => reply.code(201).send(await createChannel(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/notifications/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, one) } },
    (req) => getChannel(ctx, who(req), req.params.id));
  app.patch<{ Params: { id: string }; Body: UpdateChannelRequest }>('/notifications/:id', { schema: { tags, params: IdParamsSchema, body: UpdateChannelSchema, response: responses(200, one) } },
    (req) => updateChannel(ctx, who(req), req.params.id, req.body));
  app.delete<{ Params: { id: string } }>('/notifications/:id', { schema: { tags, params: IdParamsSchema, response: responses(204, NO_CONTENT) } },
    async (req, reply) => {
      await deleteChannel(ctx, who(req), req.params.id);
      return reply.code(204).send();
    });
  app.post<{ Params: { id: string } }>('/notifications/:id/test', {
    schema: { tags, summary: 'send a test event to the channel now, and say whether it arrived', params: IdParamsSchema, response: responses(200, ChannelTestSchema) },
  }, (req) => testChannel(ctx, who(req), req.params.id));
  app.get<{ Params: { id: string } }>('/notifications/:id/deliveries', {
    schema: { tags, summary: 'the channel\'s last 100 deliveries, newest first: pending (with its next attempt), sent, or failed (with why)', params: IdParamsSchema, response: responses(200, { type: 'array', items: { $ref: 'NotificationDelivery#' } }) },
  }, (req) => listDeliveries(ctx, who(req), req.params.id));
};

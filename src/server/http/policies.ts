/**
 * /policies: what the server does on schedule, attached to a customer, a
 * machine or a disk safe (services/policies.ts): list, create, get,
 * replace (PUT), delete; a machine's and a disk safe's effective policy
 * with its next run; a safe's retention preview (forget's dry run of a
 * policy's rules).
 */
import type { FastifyPluginAsync } from 'fastify';
import {
  CreatePolicySchema, EffectivePolicySchema, PolicySchema, ReplacePolicySchema, RetentionPreviewSchema,
  type CreatePolicyRequest, type ReplacePolicyRequest, type RetentionPreviewRequest,
} from '../../api/v1-policies.js';
import { ForgetResultSchema, IdParamsSchema } from '../../api/v1.js';
import type { ServiceContext } from '../services/context.js';
import { createPolicy, deletePolicy, getPolicy, listPolicies, machinePolicy, replacePolicy, retentionPreview, safePolicy } from '../services/policies.js';
import { NO_CONTENT, responses, who } from './route-kit.js';

export const policyRoutes: FastifyPluginAsync<{ ctx: ServiceContext }> = async (app, { ctx }) => {
  const tags = ['policies'];
  app.get('/policies', { schema: { tags, response: responses(200, { type: 'array', items: PolicySchema }) } }, (req) => listPolicies(ctx, who(req)));
  app.post<{ Body: CreatePolicyRequest }>('/policies', { schema: { tags, summary: 'attach a policy to a customer, or to one machine or disk safe of it', body: CreatePolicySchema, response: responses(201, PolicySchema) } },
    async (req, reply) => reply.code(201).send(await createPolicy(ctx, who(req), req.body)));
  app.get<{ Params: { id: string } }>('/policies/:id', { schema: { tags, params: IdParamsSchema, response: responses(200, PolicySchema) } },
    (req) => getPolicy(ctx, who(req), req.params.id));
  app.put<{ Params: { id: string }; Body: ReplacePolicyRequest }>('/policies/:id',
    { schema: { tags, summary: 'replace the policy\'s settings (one left out is removed)', params: IdParamsSchema, body: ReplacePolicySchema, response: responses(200, PolicySchema) } },
    (req) => replacePolicy(ctx, who(req), req.params.id, req.body));
  app.delete<{ Params: { id: string } }>('/policies/:id', { schema: { tags, params: IdParamsSchema, response: responses(204, NO_CONTENT) } },
    async (req, reply) => {
      await deletePolicy(ctx, who(req), req.params.id);
      return reply.code(204).send();
    });
  app.get<{ Params: { id: string } }>('/machines/:id/policy', { schema: { tags, summary: 'the machine\'s effective policy and its next scheduled backup', params: IdParamsSchema, response: responses(200, EffectivePolicySchema) } },
    (req) => machinePolicy(ctx, who(req), req.params.id));
  app.get<{ Params: { id: string } }>('/safes/:id/policy', { schema: { tags, summary: 'the disk safe\'s effective policy', params: IdParamsSchema, response: responses(200, EffectivePolicySchema) } },
    (req) => safePolicy(ctx, who(req), req.params.id));
  app.post<{ Params: { id: string }; Body: RetentionPreviewRequest | undefined }>('/safes/:id/retention-preview',
    { schema: { tags, summary: 'what these retention rules (none: the safe\'s policy\'s) would keep and remove now, and why; removes nothing', params: IdParamsSchema, body: RetentionPreviewSchema, response: responses(200, ForgetResultSchema) } },
    (req) => retentionPreview(ctx, who(req), req.params.id, req.body ?? {}));
};

/**
 * What every resource file of /api/v1 uses: the caller of a request (set by
 * the authentication hook of api-v1.ts), the error answers every route
 * declares, and the per-route flags the hook reads.
 */
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../services/principal.js';
import { Unauthenticated } from '../services/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; null on public routes. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** No credentials needed (login, the OpenAPI document). */
    public?: boolean;
    /** Allowed to a person whose one-time password is not changed yet. */
    beforePasswordChange?: boolean;
  }
}

/** The request's caller (every non-public route has one). */
export function who(req: FastifyRequest): Principal {
  if (!req.principal) throw new Unauthenticated();
  return req.principal;
}

const ref = { $ref: 'Error#' } as const;

/** The response schemas of a route: its success and the errors every route may answer. */
export function responses(ok: number, schema: unknown): Record<number, unknown> {
  return { [ok]: schema, 400: ref, 401: ref, 403: ref, 404: ref, 409: ref, 429: ref };
}

/** A response with no body. */
export const NO_CONTENT = { type: 'null' } as const;

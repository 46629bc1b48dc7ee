/**
 * The errors the services throw for the HTTP layer to answer: each names its
 * status and a stable code (the `code` of the JSON error body, as the
 * repository protocol's errors have one). Another customer's record is
 * `NotFound`, exactly as a record that does not exist.
 */

/** A refusal the client should see as it is. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

/** No such record, or one the caller may not know of (404). */
export class NotFound extends ApiError {
  /** `what` does not exist; `id`, when given, is the id it was asked by (a name where an id goes is the likeliest mistake, and the answer says so). */
  constructor(what: string, id?: string) {
    const hint = id !== undefined && !UUID.test(id) ? ' (the API names records by id, not by name: the list of them gives each one\'s id)' : '';
    super(404, 'NOT_FOUND', `${what}${id === undefined ? '' : ` ${id}`} does not exist${hint}`);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The caller is known but may not do this (403). */
export class Forbidden extends ApiError {
  constructor(message: string, code = 'FORBIDDEN') {
    super(403, code, message);
  }
}

/** No credentials, or ones that are unknown, expired or revoked (401). */
export class Unauthenticated extends ApiError {
  constructor(message = 'a valid session or API token is needed (Authorization: Bearer …)') {
    super(401, 'UNAUTHENTICATED', message);
  }
}

/** The request contradicts what exists, e.g. a name taken (409). */
export class Conflict extends ApiError {
  constructor(message: string) {
    super(409, 'CONFLICT', message);
  }
}

/**
 * The machine has no disk safe (its safe was deleted while it was live):
 * its agent's polls and job creation answer this (409 `NO_DISK_SAFE`), the
 * repository protocol the same code with 404 (safe-access.ts).
 */
export class NoDiskSafe extends ApiError {
  constructor(readonly machineName: string) {
    super(409, 'NO_DISK_SAFE', `machine ${machineName} has no disk safe on the server any more (its safe was deleted): nothing of it can be backed up or restored. `
      + `To back it up again, retire it (holdfast server machine delete ${machineName}) and enrol its agent again (holdfast agent enroll with a new enroll token)`);
  }
}

/** The request is well-formed but its values cannot be used (400). */
export class BadRequest extends ApiError {
  constructor(message: string) {
    super(400, 'BAD_REQUEST', message);
  }
}

/** Too many failed logins; try again after `retryAfterSeconds` (429). */
export class RateLimited extends ApiError {
  constructor(readonly retryAfterSeconds: number, message: string) {
    super(429, 'RATE_LIMITED', message);
  }
}

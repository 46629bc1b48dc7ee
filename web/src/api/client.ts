/**
 * The app's client of the REST API (/api/v1), typed by the shapes the
 * server validates with (src/api/v1.ts). Every call carries the session's
 * bearer token; an answer that is not 2xx becomes an ApiRequestError with
 * the server's code and its message for people. A 401 ends the session
 * (the app shows the login page).
 */
import type {
  ApiErrorBody, ChangePasswordRequest, ChannelBody, ChannelTestBody, CreateChannelRequest, CreatedChannelBody, DeliveryBody, UpdateChannelRequest, CreateCustomerRequest, CreatedTokenBody, CreatedUserBody, CreateJobRequest, CreateRestoreTokenRequest,
  CreateTokenRequest, CreateUserRequest, CustomerBody, ForgetResultBody, JobBody, JobEventBody, MachineBody, MeBody,
  SafeBody, ServerInfoBody, SessionBody, SnapshotBody, TokenBody, UpdateQuotasRequest, UsageHistoryBody, UserBody,
} from '../../../src/api/v1.js';
import type { CreatePolicyRequest, EffectivePolicyBody, PolicyBody, ReplacePolicyRequest, RetentionPreviewRequest } from '../../../src/api/v1-policies.js';

/** An API answer that is not a success: `status`, the server's `code`, and its message. */
export class ApiRequestError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

/** The server could not be reached at all (offline, restarted, a proxy in the way). */
export class NetworkError extends Error {
  constructor(cause: unknown) {
    super('the server cannot be reached: check the connection and try again', { cause });
    this.name = 'NetworkError';
  }
}

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

/** What the client needs from the session: its token, and what to do when the server no longer accepts it. */
export interface SessionHooks {
  token(): string | null;
  expired(): void;
}

export class ApiClient {
  constructor(private readonly session: SessionHooks, private readonly base = '/api/v1') {}

  /** One request; `body` is sent as JSON. Resolves with the parsed answer (undefined for 204). */
  async request<T>(method: Method, path: string, body?: unknown, opts: { signal?: AbortSignal } = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = this.session.token();
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new NetworkError(e);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const err = parsed as Partial<ApiErrorBody> | undefined;
      if (res.status === 401 && token) this.session.expired();
      throw new ApiRequestError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? `the server answered ${res.status} ${res.statusText}`);
    }
    return parsed as T;
  }

  login(name: string, password: string): Promise<SessionBody> { return this.request('POST', '/login', { name, password }); }
  logout(): Promise<void> { return this.request('POST', '/logout'); }
  me(): Promise<MeBody> { return this.request('GET', '/me'); }
  serverInfo(): Promise<ServerInfoBody> { return this.request('GET', '/server'); }
  changePassword(body: ChangePasswordRequest): Promise<void> { return this.request('POST', '/me/password', body); }

  customers(): Promise<CustomerBody[]> { return this.request('GET', '/customers'); }
  createCustomer(body: CreateCustomerRequest): Promise<CustomerBody> { return this.request('POST', '/customers', body); }
  updateCustomerQuotas(id: string, body: UpdateQuotasRequest): Promise<CustomerBody> { return this.request('PATCH', `/customers/${enc(id)}`, body); }

  users(): Promise<UserBody[]> { return this.request('GET', '/users'); }
  createUser(body: CreateUserRequest): Promise<CreatedUserBody> { return this.request('POST', '/users', body); }

  tokens(): Promise<TokenBody[]> { return this.request('GET', '/tokens'); }
  createToken(body: CreateTokenRequest): Promise<CreatedTokenBody> { return this.request('POST', '/tokens', body); }
  revokeToken(id: string): Promise<TokenBody> { return this.request('DELETE', `/tokens/${enc(id)}`); }

  machines(): Promise<MachineBody[]> { return this.request('GET', '/machines'); }
  /** Every machine with its status (`status`), for the fleet dashboard: a page of FLEET_PAGE after another until a short one. */
  async fleet(): Promise<MachineBody[]> {
    const out: MachineBody[] = [];
    for (;;) {
      const page = await this.request<MachineBody[]>('GET', `/machines?status=true&limit=${FLEET_PAGE}&offset=${out.length}`);
      out.push(...page);
      if (page.length < FLEET_PAGE) return out;
    }
  }
  machine(id: string, signal?: AbortSignal): Promise<MachineBody> { return this.request('GET', `/machines/${enc(id)}`, undefined, signal ? { signal } : {}); }

  /** The machine's snapshots from the server's index, newest first (at most `limit`, 1000 at most). */
  machineSnapshots(id: string, limit = 1000): Promise<SnapshotBody[]> { return this.request('GET', `/machines/${enc(id)}/snapshots?limit=${limit}`); }

  /** The disk safe's snapshots from the server's index, newest first (at most `limit`, 1000 at most). */
  safeSnapshots(id: string, limit = 1000): Promise<SnapshotBody[]> { return this.request('GET', `/safes/${enc(id)}/snapshots?limit=${limit}`); }

  safes(): Promise<SafeBody[]> { return this.request('GET', '/safes'); }
  safe(id: string): Promise<SafeBody> { return this.request('GET', `/safes/${enc(id)}`); }
  updateSafeQuotas(id: string, body: UpdateQuotasRequest): Promise<SafeBody> { return this.request('PATCH', `/safes/${enc(id)}`, body); }
  /** Stored bytes per day over the last `days` days of a disk safe or a customer (all its safes). */
  usageHistory(of: 'safes' | 'customers', id: string, days = 30): Promise<UsageHistoryBody> { return this.request('GET', `/${of}/${enc(id)}/usage-history?days=${days}`); }
  /** What `rules` would keep and remove now, and why; removes nothing. */
  retentionPreview(safeId: string, rules: RetentionPreviewRequest): Promise<ForgetResultBody> { return this.request('POST', `/safes/${enc(safeId)}/retention-preview`, rules); }

  policies(): Promise<PolicyBody[]> { return this.request('GET', '/policies'); }
  createPolicy(body: CreatePolicyRequest): Promise<PolicyBody> { return this.request('POST', '/policies', body); }
  replacePolicy(id: string, body: ReplacePolicyRequest): Promise<PolicyBody> { return this.request('PUT', `/policies/${enc(id)}`, body); }
  /** The machine's effective policy (each setting from the most specific policy) and its next scheduled backup. */
  machinePolicy(id: string): Promise<EffectivePolicyBody> { return this.request('GET', `/machines/${enc(id)}/policy`); }
  createRestoreToken(safeId: string, body: CreateRestoreTokenRequest): Promise<CreatedTokenBody> { return this.request('POST', `/safes/${enc(safeId)}/restore-tokens`, body); }

  channels(): Promise<ChannelBody[]> { return this.request('GET', '/notifications'); }
  createChannel(body: CreateChannelRequest): Promise<CreatedChannelBody> { return this.request('POST', '/notifications', body); }
  updateChannel(id: string, body: UpdateChannelRequest): Promise<ChannelBody> { return this.request('PATCH', `/notifications/${enc(id)}`, body); }
  deleteChannel(id: string): Promise<void> { return this.request('DELETE', `/notifications/${enc(id)}`); }
  testChannel(id: string): Promise<ChannelTestBody> { return this.request('POST', `/notifications/${enc(id)}/test`); }
  deliveries(id: string): Promise<DeliveryBody[]> { return this.request('GET', `/notifications/${enc(id)}/deliveries`); }

  machineJobs(machineId: string): Promise<JobBody[]> { return this.request('GET', `/machines/${enc(machineId)}/jobs`); }
  createJob(machineId: string, body: CreateJobRequest): Promise<JobBody> { return this.request('POST', `/machines/${enc(machineId)}/jobs`, body); }
  job(id: string): Promise<JobBody> { return this.request('GET', `/jobs/${enc(id)}`); }
  jobEvents(id: string, after?: number): Promise<JobEventBody[]> { return this.request('GET', `/jobs/${enc(id)}/events${after !== undefined ? `?after=${after}` : ''}`); }
  cancelJob(id: string): Promise<JobBody> { return this.request('POST', `/jobs/${enc(id)}/cancel`); }
}

const enc = encodeURIComponent;
/** Machines per page of the fleet (the API's most). */
const FLEET_PAGE = 1000;

/** A message for people from anything a call threw. */
export function describeError(e: unknown): string {
  if (e instanceof ApiRequestError) {
    if (e.status === 403) return `Not allowed: ${e.message}`;
    if (e.status === 404) return `Not found: ${e.message}`;
    if (e.status === 429) return `Too many attempts: ${e.message}`;
    if (e.status >= 500) return `The server failed: ${e.message}`;
    return e.message;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

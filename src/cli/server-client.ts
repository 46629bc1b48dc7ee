/**
 * The admin commands' connection to a holdfast server (`holdfast server
 * login`, then `server customer|user|token|machine|safe|job …`), through
 * the REST API only (src/agent/server-api.ts, the agent's client):
 *
 *   server       a command's --server (escrow recover), else
 *                HOLDFAST_SERVER, else the session file's
 *   credential   HOLDFAST_SERVER_TOKEN (an API token, or a session), else
 *                the session file's, for the server it was made for
 *   certificate  --fingerprint or HOLDFAST_FINGERPRINT, else the one pinned
 *                at login; or a CA from --cacert or HOLDFAST_CACERT
 *
 * The session file is $XDG_CONFIG_HOME/holdfast/server-session.json (else
 * ~/.config/holdfast/…), mode 0600 in a 0700 folder. The API's refusals
 * become the command's message and exit code (`exitOfHttpStatus`).
 */
import { STATUS_CODES } from 'node:http';
import { readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writePrivateFile } from '../agent/agent-config.js';
import { parseServer, ServerApi, ServerApiError } from '../agent/server-api.js';
import type { GlobalOptions } from './context.js';
import { httpSettings } from './environment.js';
import { ExitError, EXIT, exitOfHttpStatus } from './exit-codes.js';

type Env = NodeJS.ProcessEnv;

/** What `holdfast server login` keeps. */
export interface SavedSession {
  /** `https://host:port`. */
  readonly server: string;
  /** The certificate fingerprint pinned at login, if one was given. */
  readonly fingerprint?: string;
  /** The bearer token: a session (`hfs_…`) or an API token (`hft_…`). */
  readonly token: string;
  readonly kind: 'session' | 'token';
  /** Who it is: the user's name, or the token's. */
  readonly name: string;
  /** When it stops working (null: an API token without an expiry). */
  readonly expires_at: string | null;
}

/** Where the session is kept. */
export function sessionFile(env: Env = process.env): string {
  const xdg = env['XDG_CONFIG_HOME'];
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.config'), 'holdfast', 'server-session.json');
}

/** The kept session, or undefined when there is none; a file that is not one is named in the error. */
export async function readSession(env: Env = process.env): Promise<SavedSession | undefined> {
  const file = sessionFile(env);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ExitError(`cannot read the server session ${file}: ${(e as Error).message}`, EXIT.failed);
  }
  try {
    const s = JSON.parse(text) as Partial<SavedSession>;
    if (typeof s.server === 'string' && typeof s.token === 'string' && (s.kind === 'session' || s.kind === 'token')) return s as SavedSession;
  } catch {
    // Named below.
  }
  throw new ExitError(`${file} is not a server session: remove it and log in again (holdfast server login)`, EXIT.failed);
}

/** Keeps `s` (0600), replacing the session kept before; returns the file's path. */
export async function saveSession(s: SavedSession, env: Env = process.env): Promise<string> {
  const file = sessionFile(env);
  await writePrivateFile(file, `${JSON.stringify(s, null, 2)}\n`);
  return file;
}

/** Removes the kept session; false when there was none. */
export async function forgetSession(env: Env = process.env): Promise<boolean> {
  const file = sessionFile(env);
  try {
    await rm(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** A connection to a server's API for one command; every refusal is an `ExitError`. */
export class AdminClient {
  constructor(
    /** `https://host:port`. */
    readonly server: string,
    private readonly api: ServerApi,
    /** Where the credential came from, for the message of a 401. */
    private readonly credentialFrom: string,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body ?? {});
  }

  delete<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('DELETE', path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PATCH', path, body);
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PUT', path, body);
  }

  /** One request to /api/v1`path`; resolves with the answer's body. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    try {
      return (await this.api.call<T>(method, `/api/v1${path}`, body)).body;
    } catch (e) {
      throw explained(e, this.credentialFrom);
    }
  }

  close(): void {
    this.api.close();
  }
}

/**
 * An API error in words: the server's reason and the HTTP status, with the
 * exit code of that status; `credentialFrom` says what to renew on a 401.
 */
export function explained(e: unknown, credentialFrom?: string): unknown {
  if (!(e instanceof ServerApiError)) return e instanceof ExitError ? e : new ExitError((e as Error).message, EXIT.failed);
  let message = `${e.reason} (HTTP ${e.status} ${STATUS_CODES[e.status] ?? ''})`.replace(' )', ')');
  if (e.status === 401 && credentialFrom) message += `; ${credentialFrom}`;
  return new ExitError(message, exitOfHttpStatus(e.status));
}

/** `https://host:port` as parseServer accepts it, or a usage error naming where it came from. */
export function serverOrigin(text: string, from: string): string {
  try {
    return parseServer(text).origin;
  } catch (e) {
    throw new ExitError(`${from}: ${(e as Error).message}`, EXIT.usage);
  }
}

/**
 * A client for `server` with `token` (none: the login route), its TLS as
 * --fingerprint/--cacert and the environment say, else pinned to `pinned`.
 */
export async function clientFor(g: GlobalOptions, server: string, token: string | undefined, pinned: string | undefined, credentialFrom: string): Promise<AdminClient> {
  const tls = await httpSettings(g.fingerprint, g.cacert, { ...process.env, HOLDFAST_TOKEN: undefined });
  const fingerprint = tls.fingerprint ?? (tls.ca === undefined ? pinned : undefined);
  const api = new ServerApi({
    server, ...(token === undefined ? {} : { token }), ...(fingerprint === undefined ? {} : { fingerprint }), ...(tls.ca === undefined ? {} : { ca: tls.ca }),
  });
  return new AdminClient(server, api, credentialFrom);
}

/**
 * The client of an admin command: the server and credential of the
 * environment, else of the kept session (see the module comment);
 * `serverFlag` (a command's --server) names the server before both.
 */
export async function connect(g: GlobalOptions, serverFlag?: string): Promise<AdminClient> {
  const env = process.env;
  const saved = await readSession(env);
  const envServer = env['HOLDFAST_SERVER'] || undefined;
  const server = serverFlag !== undefined ? serverOrigin(serverFlag, '--server')
    : envServer !== undefined ? serverOrigin(envServer, 'HOLDFAST_SERVER') : saved?.server;
  if (server === undefined) {
    throw new ExitError('not logged in to a server: run holdfast server login --server https://HOST:PORT, or set HOLDFAST_SERVER and HOLDFAST_SERVER_TOKEN', EXIT.usage);
  }
  const mine = saved !== undefined && saved.server === server ? saved : undefined;
  const envToken = env['HOLDFAST_SERVER_TOKEN'] || undefined;
  const token = envToken ?? mine?.token;
  if (token === undefined) {
    throw new ExitError(`not logged in to ${server}: run holdfast server login --server ${server}, or set HOLDFAST_SERVER_TOKEN`, EXIT.usage);
  }
  const renew = envToken !== undefined ? 'check HOLDFAST_SERVER_TOKEN' : `log in again: holdfast server login --server ${server}`;
  return clientFor(g, server, token, mine?.fingerprint, renew);
}

/** Runs `use` with the command's client (on `serverFlag`, a command's --server, when given), closed afterwards. */
export async function withServer<T>(g: GlobalOptions, use: (c: AdminClient) => Promise<T>, serverFlag?: string): Promise<T> {
  const c = await connect(g, serverFlag);
  try {
    return await use(c);
  } finally {
    c.close();
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The records that can be named by their name instead of their id, and their list routes. */
const NAMED = { customer: '/customers', user: '/users', machine: '/machines', safe: '/safes' } as const;

/**
 * The id of the record of kind `kind` that `text` names: `text` itself when
 * it is an id, else the one record of that name the caller can see (of
 * customer `customerId` when given: machines and safes are named per customer).
 */
export async function idOf(c: AdminClient, kind: keyof typeof NAMED, text: string, customerId?: string): Promise<string> {
  if (UUID.test(text)) return text;
  const all = await c.get<{ id: string; name: string; customer_id?: string | null }[]>(NAMED[kind]);
  const found = all.filter((r) => r.name === text && (customerId === undefined || r.customer_id === customerId));
  if (found.length === 1) return found[0]!.id;
  if (found.length === 0) throw new ExitError(`no ${kind} named ${JSON.stringify(text)} (${kind}s: holdfast server ${kind} list)`, EXIT.failed);
  // Only provider staff list several customers' records: naming the customers tells them nothing new.
  const ids = found.map((r) => (r.customer_id ? `${r.id} of customer ${r.customer_id}` : r.id));
  throw new ExitError(`${found.length} ${kind}s are named ${JSON.stringify(text)}: give the id of one (${ids.join(', ')})`, EXIT.usage);
}

/**
 * The names of the records at `route` (`/customers`, `/machines`) by id,
 * for tables that show names instead of ids; empty when the caller may not
 * list them.
 */
export async function namesOf(c: AdminClient, route: '/customers' | '/machines' | '/safes'): Promise<Map<string, string>> {
  try {
    return new Map((await c.get<{ id: string; name: string }[]>(route)).map((r) => [r.id, r.name]));
  } catch (e) {
    if (e instanceof ExitError && e.exitCode === EXIT.forbidden) return new Map();
    throw e;
  }
}

/**
 * "NAME (ID)" of record `id` at `route`, as show commands print a record
 * they refer to; the id alone when the caller may not read that record,
 * `-` for none.
 */
export async function labelOf(c: AdminClient, route: '/customers' | '/machines' | '/safes', id: string | null): Promise<string> {
  if (id === null) return '-';
  try {
    return `${(await c.get<{ name: string }>(`${route}/${encodeURIComponent(id)}`)).name} (${id})`;
  } catch (e) {
    if (e instanceof ExitError && (e.exitCode === EXIT.forbidden || e.exitCode === EXIT.failed)) return id;
    throw e;
  }
}

/**
 * A repository on a holdfast server, reached over HTTPS: the client side of
 * the wire protocol of docs/format.md, "Wire protocol" (the server side is
 * src/server/http/repo-routes.ts). A location is
 * `https://host:port/safes/NAME`; every request carries the token as
 * `Authorization: Bearer …`.
 *
 *   save    PUT  /safes/NAME/FOLDER/NAME   the bytes as they are (no copy),
 *                                          with their Content-Length
 *   load    GET  …, with a Range for a part (416: past the end)
 *   stat    HEAD …
 *   list    GET  /safes/NAME/FOLDER?prefix=&after=&limit=, a page at a time
 *   remove  DELETE …
 *   create  POST /safes/NAME
 *
 * Connections: HTTP/1.1 keep-alive, at most `connections` at once (several
 * uploads in flight; docs/decisions.md, "The repository over HTTPS", has
 * the measurements). TLS: the system's CAs and `ca`, or, with a
 * `fingerprint`, exactly the certificate whose SHA-256 it is, whoever
 * signed it (a server's self-signed certificate): the handshake is checked
 * before any request, token included, is written to the connection.
 *
 * Rights: each answer says what the token may do (`Holdfast-Rights`); from
 * the first answer on, a token that may not remove makes
 * `capabilities.appendOnly` true, so that commands that remove refuse before
 * starting (the server refuses anyway).
 *
 * Errors: a missing object is `NotFoundError`, a name taken by other bytes
 * `AlreadyExistsError`, a removal the token may not make `AppendOnlyError`,
 * an upload past a hard quota `QuotaExceededError` (the server's message
 * names the quota and the usage; a soft quota's warnings go to `onWarning`);
 * a dropped connection, a timeout, an answer slower than 1 KiB/s
 * (http-transfer-bound.ts), 429, 500, 502, 503 and 504 are
 * `TransientError`, except a refused connection before the server ever
 * answered (a wrong address, as for S3).
 */
import { X509Certificate } from 'node:crypto';
import type { ErrorCode } from '../core/errors.js';
import { request as httpsRequest, Agent, type AgentOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect, createSecureContext, rootCertificates, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';

import {
  objectLabel,
  AlreadyExistsError,
  BadLocationError,
  NotFoundError,
  TransientError,
  type Backend,
  type BackendCapabilities,
  type Handle,
  type ListOptions,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from './backend.js';
import { AppendOnlyError } from './append-only-backend.js';
import { boundTransfers, TooSlowError } from './http-transfer-bound.js';
import { byteRange, checkHandle, checkMaxBytes, checkPrefix, checkRangeArgs, checkType, OBJECT_FOLDERS } from './object-names.js';

/** How many requests are in flight at once by default (docs/decisions.md, "The repository over HTTPS"). */
export const DEFAULT_HTTP_CONNECTIONS = 8;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** The slowest answer worth waiting for, in bytes a second (as S3Backend's): a server that drips is given up on. */
const MIN_RATE = 1024;
const TRANSIENT_STATUS = new Set([429, 500, 502, 503, 504]);
const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE',
]);
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Where a server's disk safe is: `https://host:port/safes/NAME`. */
export interface HttpLocation {
  /** `https://host:port`. */
  readonly origin: string;
  /** The safe's name, as in the path. */
  readonly safe: string;
}

/** How to reach a server, besides its location. */
export interface HttpSettings {
  /** The bearer token (the CLI reads HOLDFAST_TOKEN). */
  readonly token?: string;
  /**
   * The server certificate's SHA-256 fingerprint, `SHA256:` and 64 hex
   * digits (colons between the pairs optional, either case): when given,
   * the server's certificate must be exactly this one, and no CA is asked.
   */
  readonly fingerprint?: string;
  /** A CA certificate (PEM) to trust besides the system's, when no fingerprint is pinned. */
  readonly ca?: string;
  /** Requests in flight at once; DEFAULT_HTTP_CONNECTIONS when absent. */
  readonly connections?: number;
  /** Names a listing page asks for; 1000 when absent. */
  readonly listPageSize?: number;
  /** How long an answer may be silent before the request is given up (transient); 60 s when absent. */
  readonly idleTimeoutMs?: number;
  /**
   * Told each warning the server sends with an upload (a soft quota passed:
   * then every upload carries one), and of a lock object that could not be
   * removed, prefixed with the location; a front end shows one a run (the
   * CLI) or a job (the agent).
   */
  readonly onWarning?: (message: string) => void;
}

/** The server refused an upload because it would pass a hard quota of the disk safe or of its customer. */
export class QuotaExceededError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'QUOTA_EXCEEDED';
  /** `message`: the server's, which names the quota and the usage. */
  constructor(message: string) {
    super(message);
    this.name = 'QuotaExceededError';
  }
}

/**
 * The server says the token's machine has no disk safe any more (its safe
 * was deleted while the machine was live): no retry changes that.
 */
export class NoDiskSafeError extends Error {
  /** `message`: the server's, which says what to do. */
  constructor(message: string) {
    super(message);
    this.name = 'NoDiskSafeError';
  }
}

/** Parses what follows nothing: `https://host:port/safes/NAME`; throws a message that shows the form. */
export function parseHttpLocation(location: string): HttpLocation {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw new BadLocationError(`unsupported repository location "${location}": a server's disk safe is https://HOST:PORT/safes/NAME`);
  }
  const m = /^\/safes\/([^/]+)\/?$/.exec(url.pathname);
  if (url.protocol !== 'https:' || !m || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new BadLocationError(`unsupported repository location "${location}": a server's disk safe is https://HOST:PORT/safes/NAME`);
  }
  return { origin: url.origin, safe: decodeURIComponent(m[1]!) };
}

/** The fingerprint in the one form messages use: `SHA256:` and lower-case hex pairs joined by colons. */
export function formatFingerprint(hex: string): string {
  return `SHA256:${hex.toLowerCase().replace(/:/g, '').match(/../g)!.join(':')}`;
}

/** `text` as 64 lower-case hex digits, or a thrown error that shows the form expected. */
export function parseFingerprint(text: string): string {
  const hex = text.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new Error(`bad fingerprint ${JSON.stringify(text)}: expected SHA256: and the 64 hex digits of the certificate's SHA-256 (as "holdfast server" prints it)`);
  }
  return hex;
}

/**
 * The https.Agent for a holdfast server: one that keeps only connections
 * whose certificate is the pinned one when `fingerprint` is given, else one
 * that trusts the system's roots and `ca`. The agent's API client uses it too.
 */
export function serverAgent(settings: Pick<HttpSettings, 'fingerprint' | 'ca'>, options: AgentOptions): Agent {
  if (settings.fingerprint !== undefined) return new PinnedAgent(parseFingerprint(settings.fingerprint), { ...options, maxCachedSessions: 0 });
  // `ca` replaces the roots Node trusts, so they are given again beside the
  // extra one, in one context for every socket (as `ca`, the roots were
  // parsed again for each connection: S3Backend measured 60-90 ms each).
  return new Agent({ ...options, ...(settings.ca ? { secureContext: createSecureContext({ ca: [...rootCertificates, settings.ca] }) } : {}) });
}

/** The `Backend` of a disk safe on a holdfast server; see the module comment. */
export class HttpBackend implements Backend {
  /** `https://host:port/safes/NAME`. */
  readonly location: string;
  private readonly agent: Agent;
  private readonly base: string;
  private readonly token: string;
  private readonly pageSize: number;
  private readonly idleTimeoutMs: number;
  private readonly connections: number;
  /** What the server said the token may do, once it said it. */
  private rights: string | undefined;
  /** Set once the server answered any request: a refused connection is a wrong address until then. */
  private answered = false;
  private readonly onWarning: ((message: string) => void) | undefined;

  constructor(private readonly loc: HttpLocation, settings: HttpSettings = {}) {
    this.location = `${loc.origin}/safes/${encodeURIComponent(loc.safe)}`;
    this.base = `/safes/${encodeURIComponent(loc.safe)}`;
    if (!settings.token) throw new Error(`${this.location}: no token: set HOLDFAST_TOKEN to a token the server gave for this disk safe`);
    this.token = settings.token;
    this.connections = positive(settings.connections ?? DEFAULT_HTTP_CONNECTIONS, 'connections');
    this.pageSize = positive(settings.listPageSize ?? 1000, 'listPageSize');
    this.idleTimeoutMs = positive(settings.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs');
    this.onWarning = settings.onWarning;
    this.agent = serverAgent(settings, { keepAlive: true, maxSockets: this.connections, timeout: this.idleTimeoutMs });
    boundTransfers(this.agent, { idleTimeoutMs: this.idleTimeoutMs, minBytesPerSecond: MIN_RATE });
  }

  /** Any number of requests at once, up to `connections`; the server tells every missing object; removals as the token allows. */
  get capabilities(): BackendCapabilities {
    return {
      connections: this.connections,
      appendOnly: this.rights !== undefined && this.rights !== 'full',
      removeMissingIsError: true,
    };
  }

  /** See `Backend.create`: asks the server to make the safe's layout (idempotent). */
  async create({ signal }: OperationOptions = {}): Promise<void> {
    signal?.throwIfAborted();
    const res = await this.send('POST', this.base, {}, undefined, signal);
    await this.expect(res, [204], 'create', undefined);
  }

  /** See `Backend.save`: one PUT of the bytes as given. */
  async save(h: Handle, data: Uint8Array, { signal }: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    signal?.throwIfAborted();
    const res = await this.send('PUT', this.pathOf(h), {
      'content-type': 'application/octet-stream', 'content-length': String(data.length),
    }, data, signal, h);
    await this.expect(res, [200, 201], 'PUT', h, signal);
    const warning = res.headers['holdfast-warning'];
    if (typeof warning === 'string') this.onWarning?.(`${this.location}: ${decodeWarning(warning)}`);
    // 200: the same bytes were there already (a retry whose answer was lost, or a second writer).
    if (res.statusCode === 200) throw new AlreadyExistsError(h);
  }

  /** See `Backend.load`: a GET, with a Range for part of the object. */
  async load(h: Handle, { offset, length, signal, maxBytes }: LoadOptions = {}): Promise<Buffer> {
    checkHandle(h);
    checkRangeArgs(offset, length, maxBytes);
    signal?.throwIfAborted();
    const from = offset ?? 0;
    if (length !== undefined && from >= 0) checkMaxBytes(h, length, maxBytes);
    if (from === 0 && length === undefined) {
      const res = await this.send('GET', this.pathOf(h), {}, undefined, signal, h);
      if (res.statusCode === 200) declaredAtMost(res, h, maxBytes);
      return this.expect(res, [200], 'GET', h, signal);
    }
    if (length === 0 && from >= 0) {
      const info = await this.stat(h, { signal });
      if (info === undefined) throw new NotFoundError(h);
      byteRange(h, info.size, from, 0);
      return Buffer.alloc(0);
    }
    const range = from < 0 ? `bytes=${from}` : length === undefined ? `bytes=${from}-` : `bytes=${from}-${from + length - 1}`;
    const res = await this.send('GET', this.pathOf(h), { range }, undefined, signal, h);
    if (res.statusCode === 416) {
      // Nothing of the range is in the object: only an empty read at its very end is fine.
      res.resume();
      const size = Number(/^bytes \*\/(\d+)$/.exec(String(res.headers['content-range']))?.[1]);
      if (!Number.isSafeInteger(size)) throw new Error(`GET ${objectLabel(h)} in ${this.location}: a 416 answer without the object's size`);
      byteRange(h, size, offset, length);
      return Buffer.alloc(0);
    }
    if (res.statusCode === 206) declaredAtMost(res, h, maxBytes);
    const bytes = await this.expect(res, [206], 'GET', h, signal);
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(res.headers['content-range']));
    const [start, end] = cr ? byteRange(h, Number(cr[3]), offset, length) : [NaN, NaN];
    if (!cr || Number(cr[1]) !== start || Number(cr[2]) + 1 !== end || bytes.length !== end - start) {
      throw new Error(`GET ${objectLabel(h)} in ${this.location}: the server answered another range (${String(res.headers['content-range'])}) than ${range}`);
    }
    return bytes;
  }

  /** See `Backend.stat`: a HEAD. */
  async stat(h: Handle, { signal }: OperationOptions = {}): Promise<ObjectInfo | undefined> {
    checkHandle(h);
    signal?.throwIfAborted();
    const res = await this.send('HEAD', this.pathOf(h), {}, undefined, signal, h);
    try {
      await this.expect(res, [200], 'HEAD', h, signal);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
    const size = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`HEAD ${objectLabel(h)} in ${this.location}: no size in the answer`);
    return { name: h.name, size };
  }

  /** See `Backend.list`: one page (`listPageSize` names) at a time, as the caller iterates. */
  async *list(type: ObjectType, { prefix: namePrefix, signal }: ListOptions = {}): AsyncIterable<ObjectInfo> {
    checkType(type);
    const prefix = checkPrefix(namePrefix);
    signal?.throwIfAborted();
    if (type === 'config') {
      const info = 'config'.startsWith(prefix) ? await this.stat({ type, name: 'config' }, { signal }) : undefined;
      if (info) yield info;
      return;
    }
    let after: string | undefined;
    for (;;) {
      const q = new URLSearchParams({ prefix, limit: String(this.pageSize), ...(after === undefined ? {} : { after }) });
      const res = await this.send('GET', `${this.base}/${OBJECT_FOLDERS[type]}?${q.toString()}`, {}, undefined, signal);
      const page = parsePage(await this.expect(res, [200], 'LIST', undefined, signal), this.location);
      for (const o of page.objects) {
        // A page must go on from the one before, in name order: anything else would list forever.
        if ((after !== undefined && o.name <= after) || !o.name.startsWith(prefix)) {
          throw new Error(`LIST ${this.location}: the server's listing does not advance (${o.name} after ${after ?? 'the start'})`);
        }
        signal?.throwIfAborted();
        after = o.name;
        yield o;
      }
      if (page.next === undefined || page.objects.length === 0) return;
    }
  }

  /** See `Backend.remove`: a DELETE; the server tells a missing object (404). */
  async remove(h: Handle, { signal }: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    signal?.throwIfAborted();
    const res = await this.send('DELETE', this.pathOf(h), {}, undefined, signal, h);
    try {
      await this.expect(res, [204], 'DELETE', h, signal);
    } catch (e) {
      // The lock code removes its locks quietly; one left behind blocks the safe's prune until it goes stale.
      if (h.type === 'lock' && !(e instanceof NotFoundError)) {
        this.onWarning?.(`${this.location}: the lock ${h.name} could not be removed (${(e as Error).message}); it blocks the safe's prune until it goes stale`);
      }
      throw e;
    }
  }

  /** See `Backend.close`: closes the connections. Idempotent. */
  async close(): Promise<void> {
    this.agent.destroy();
  }

  private pathOf(h: Handle): string {
    return h.type === 'config' ? `${this.base}/config` : `${this.base}/${OBJECT_FOLDERS[h.type]}/${h.name}`;
  }

  /** Sends one request (with `body`, written as it is) and resolves with the answer's head. */
  private send(
    method: string, path: string, headers: Record<string, string>, body: Uint8Array | undefined, signal: AbortSignal | undefined, h?: Handle,
  ): Promise<IncomingMessage> {
    const what = h === undefined ? `${method} ${this.location}` : `${method} ${objectLabel(h)} in ${this.location}`;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpsRequest(`${this.loc.origin}${path}`, {
        method, agent: this.agent, headers: { ...headers, authorization: `Bearer ${this.token}` }, timeout: this.idleTimeoutMs,
        ...(signal ? { signal } : {}),
      }, (res) => {
        this.answered = true;
        const rights = res.headers['holdfast-rights'];
        if (typeof rights === 'string') this.rights = rights;
        resolve(res);
      });
      req.once('timeout', () => req.destroy(new TransientError(`${what}: the server did not answer within ${(this.idleTimeoutMs / 1000).toFixed(1)} s`)));
      req.once('error', (e) => reject(this.failure(e, what, signal)));
      req.end(body);
    });
  }

  /**
   * The answer's body once its status is one of `ok`; otherwise the error
   * the status and the server's JSON error (`{code, message}`) make.
   */
  private async expect(res: IncomingMessage, ok: readonly number[], what: string, h: Handle | undefined, signal?: AbortSignal): Promise<Buffer> {
    const where = h === undefined ? `${what} ${this.location}` : `${what} ${objectLabel(h)} in ${this.location}`;
    let body: Buffer;
    try {
      // An answer to HEAD declares the object's size but has no body.
      body = what === 'HEAD' ? (res.resume(), Buffer.alloc(0)) : await readAll(res, where);
    } catch (e) {
      throw this.failure(e, where, signal);
    }
    const status = res.statusCode ?? 0;
    if (ok.includes(status)) return body;
    // The code is in a header too, for the answers to HEAD, which have no body.
    let code = String(res.headers['holdfast-error'] ?? '');
    let message = body.toString('utf8').slice(0, 500) || `HTTP ${status}`;
    try {
      const o = JSON.parse(message) as { code?: unknown; message?: unknown };
      if (typeof o.code === 'string') code = o.code;
      if (typeof o.message === 'string') message = o.message;
    } catch {
      // Not the server's JSON (a proxy's page): the text is shown as it is.
    }
    if (h !== undefined && code === 'NOT_FOUND') throw new NotFoundError(h);
    if (h !== undefined && code === 'ALREADY_EXISTS') throw new AlreadyExistsError(h);
    if (code === 'APPEND_ONLY') throw new AppendOnlyError(h, message);
    if (code === 'QUOTA_EXCEEDED') throw new QuotaExceededError(`${this.location}: ${message}`);
    if (code === 'NO_DISK_SAFE') throw new NoDiskSafeError(`${where}: ${message}`);
    if (code === 'NO_SUCH_SAFE') {
      throw new Error(`${where}: the server has no such disk safe, or the token (HOLDFAST_TOKEN) does not give access to it`);
    }
    if (TRANSIENT_STATUS.has(status)) throw new TransientError(`${where}: HTTP ${status} ${message}`);
    throw new Error(`${where}: ${message}${code === '' ? '' : ` (${code})`}`);
  }

  /** The error to throw for a failed request: the signal's reason, a transient fault, or a message that says what to do. */
  private failure(e: unknown, where: string, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    if (e instanceof TransientError || e instanceof PinMismatchError) return e;
    if (e instanceof TooSlowError) return new TransientError(`${where}: ${e.message}`, { cause: e });
    return connectionFailure(e, where, this.answered);
  }
}

/**
 * The error to throw for a request to a holdfast server that got no answer
 * (`e`, from the socket or the handshake), in words that say what to do: an
 * untrusted certificate, a port that does not speak TLS, a refused
 * connection before the server ever `answered` (a wrong address), or a
 * `TransientError` for a dropped connection. The agent's and the admin
 * commands' API client (src/agent/server-api.ts) say it the same way.
 */
export function connectionFailure(e: unknown, where: string, answered: boolean): Error {
  if (e instanceof TransientError || e instanceof PinMismatchError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (code !== undefined && CERT_CODES.has(code)) {
    return new Error(`${where}: the server's TLS certificate is not trusted (${err.message}); give its fingerprint with --fingerprint SHA256:… `
      + '(holdfast server prints it) or, if a private CA signed it, that CA\'s certificate with --cacert FILE', { cause: e });
  }
  if (code === 'EPROTO' && /wrong version number/.test(err.message)) {
    return new Error(`${where}: the server does not speak TLS there; check the port`, { cause: e });
  }
  if (code === 'ECONNREFUSED' && !answered) {
    return new Error(`${where}: the connection was refused; check the server's address and port (nothing answers there)`, { cause: e });
  }
  if (code !== undefined && NETWORK_CODES.has(code)) return new TransientError(`${where}: ${err.message}`, { cause: e });
  return new Error(`${where}: ${err.message ?? String(e)}`, { cause: e });
}

/** Thrown when the server's certificate is not the pinned one. */
export class PinMismatchError extends Error {
  constructor(readonly expected: string, readonly got: string, host: string) {
    super(`${host}: the server's certificate has the fingerprint ${formatFingerprint(got)}, not the pinned ${formatFingerprint(expected)}: `
      + 'refusing to talk to it (if the server\'s certificate was replaced on purpose, pin the new fingerprint "holdfast server info" shows)');
    this.name = 'PinMismatchError';
  }
}

/**
 * An https.Agent whose connections are kept only when the server's
 * certificate has the pinned SHA-256, whoever signed it: the check runs on
 * the finished handshake, before the agent hands the socket to a request.
 */
class PinnedAgent extends Agent {
  constructor(private readonly pin: string, options: AgentOptions) {
    super(options);
  }

  /** Node's agent waits for `done` when this returns nothing. */
  override createConnection(options: object, done: (err: Error | null, socket?: Duplex) => void): Duplex | undefined {
    const o = options as { host?: string; port?: number; servername?: string };
    const socket: TLSSocket = tlsConnect({ ...(options as object), rejectUnauthorized: false, timeout: CONNECT_TIMEOUT_MS });
    const fail = (e: Error): void => {
      socket.destroy();
      done(e);
    };
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.removeListener('error', fail);
      const raw = socket.getPeerCertificate(false)?.raw;
      const got = raw ? new X509Certificate(raw).fingerprint256.replace(/:/g, '').toLowerCase() : '';
      if (got !== this.pin) {
        fail(new PinMismatchError(this.pin, got || '0'.repeat(64), `${o.host ?? '?'}:${o.port ?? '?'}`));
        return;
      }
      done(null, socket);
    });
    return undefined;
  }
}

/** A body read whole, into one buffer when its length is declared. */
async function readAll(res: IncomingMessage, where: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isSafeInteger(declared) && declared >= 0 && res.headers['content-encoding'] === undefined) {
    const out = Buffer.allocUnsafe(declared);
    let got = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      if (got + chunk.length > declared) throw new Error(`${where}: the server sent more than the ${declared} bytes it declared`);
      chunk.copy(out, got);
      got += chunk.length;
    }
    if (got !== declared) throw new TransientError(`${where}: the answer ended after ${got} of ${declared} bytes`);
    return out;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A listing page as the server sends it: `{"objects":[{"name","size"}…],"next"?}`. */
function parsePage(body: Buffer, location: string): { objects: ObjectInfo[]; next?: string } {
  const bad = (): Error => new Error(`LIST ${location}: the server's listing page is not {"objects":[…]}`);
  let o: unknown;
  try {
    o = JSON.parse(body.toString('utf8'));
  } catch {
    throw bad();
  }
  const page = o as { objects?: unknown; next?: unknown };
  if (!Array.isArray(page.objects)) throw bad();
  const objects = page.objects.map((x: unknown) => {
    const e = x as { name?: unknown; size?: unknown };
    if (typeof e.name !== 'string' || !Number.isSafeInteger(e.size) || (e.size as number) < 0) throw bad();
    return { name: e.name, size: e.size as number };
  });
  return typeof page.next === 'string' ? { objects, next: page.next } : { objects };
}

/** A Holdfast-Warning header's text: percent-encoded where not printable ASCII (docs/format.md §2.5). */
function decodeWarning(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`HTTP ${what} must be a positive integer, got ${n}`);
  return n;
}

/** Checks the answer's declared size against `maxBytes` before its body is read; the body is let go when over. */
function declaredAtMost(res: IncomingMessage, h: Handle, maxBytes: number | undefined): void {
  const declared = Number(res.headers['content-length']);
  if (maxBytes === undefined || !Number.isSafeInteger(declared)) return;
  try {
    checkMaxBytes(h, declared, maxBytes);
  } catch (e) {
    res.destroy();
    throw e;
  }
}

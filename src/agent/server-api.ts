/**
 * The client of the server's REST API (/api/v1) over HTTPS, the agent's and
 * the admin commands' (`holdfast server …`), with the server's certificate
 * pinned (or a CA trusted) exactly as the disk safe's repository connection
 * does (src/storage/http-backend.ts), and a bearer token (an agent's, an API
 * token or a session) on every request. JSON in, JSON out.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { request, type Agent } from 'node:https';
import { connectionFailure, serverAgent } from '../storage/http-backend.js';

/** How to reach the server. */
export interface ServerApiSettings {
  /** `https://host:port`. */
  readonly server: string;
  /** The bearer token; none for the routes that need none (login). */
  readonly token?: string;
  /** `SHA256:…` of the server's certificate, pinned. */
  readonly fingerprint?: string;
  /** A CA certificate (PEM) to trust, when nothing is pinned. */
  readonly ca?: string;
}

/** The server answered with an error: its status, code and message. */
export class ServerApiError extends Error {
  /**
   * `status` and `code` as the server answered; `reason` the server's own
   * message, which `message` gives after the request it answers.
   */
  constructor(readonly status: number, readonly code: string, message: string, readonly reason: string = message) {
    super(message);
    this.name = 'ServerApiError';
  }
}

export class ServerApi {
  private readonly agent: Agent;
  private readonly origin: URL;
  /** Set once the server has answered: a refused connection is then a restart, not a wrong address. */
  private answered = false;

  constructor(private readonly settings: ServerApiSettings) {
    this.origin = parseServer(settings.server);
    this.agent = serverAgent(settings, { keepAlive: true, maxSockets: 4 });
  }

  /**
   * One request; resolves with the status, the parsed body (undefined
   * when empty) and the answer's headers; rejects with ServerApiError on 4xx/5xx, and with the
   * signal's reason when `signal` aborts it.
   */
  call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<{ status: number; body: T; headers: IncomingHttpHeaders }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const req = request({
        host: this.origin.hostname.replace(/^\[|\]$/g, ''), port: this.origin.port || 443, method, path, agent: this.agent, ...(signal ? { signal } : {}),
        headers: {
          ...(this.settings.token === undefined ? {} : { authorization: `Bearer ${this.settings.token}` }), accept: 'application/json',
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      }, (res) => {
        this.answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 400) {
            const e = parsed as { code?: string; message?: string } | undefined;
            const reason = e?.message ?? `HTTP ${status}`;
            reject(new ServerApiError(status, e?.code ?? 'HTTP_ERROR', `${this.origin.origin}: ${method} ${path}: ${reason}`, reason));
            return;
          }
          resolve({ status, body: parsed as T, headers: res.headers });
        });
      });
      req.on('error', (e) => reject(signal?.aborted ? signal.reason : connectionFailure(e, this.origin.origin, this.answered)));
      req.end(payload);
    });
  }

  /** Ends the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}

/** `https://host:port` (a trailing `/` allowed); throws a message that shows the form. */
export function parseServer(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`bad server address "${text}": expected https://HOST:PORT`);
  }
  if (url.protocol !== 'https:' || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username) {
    throw new Error(`bad server address "${text}": expected https://HOST:PORT (the server speaks HTTPS only)`);
  }
  return url;
}

/**
 * A bound on how long an HTTP request of a backend may take, whatever the
 * endpoint does: a socket's idle timeout never fires against an endpoint
 * that sends a byte now and then (a drip), and a request that waits for a
 * socket behind others must not be counted as slow. So each request of a
 * bound agent is watched from the moment it has a socket:
 *
 *   until the answer's headers: the idle timeout, plus the request's body
 *                               (Content-Length) at the slowest rate waited for
 *   the answer's body:          at least the slowest rate, over each idle timeout
 *
 * A request past its bound is ended with `TooSlowError` (the backend turns it
 * into a `TransientError` that names the call). Requests are seen through
 * Node's `http.client.request.start` diagnostics channel, which every
 * ClientRequest (HTTP and HTTPS) passes, so the SDK that issues them needs
 * no change; requests of other agents are left alone.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { Agent, ClientRequest } from 'node:http';
import type { Socket } from 'node:net';

/** How slow a request of a bound agent may be. */
export interface TransferBound {
  /** The longest wait for the answer's headers once the request is sent, and the window the body's rate is measured over, in ms. */
  readonly idleTimeoutMs: number;
  /** The slowest transfer waited for, in bytes a second. */
  readonly minBytesPerSecond: number;
}

/** A request slower than its agent's bound; see the module comment. */
export class TooSlowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TooSlowError';
  }
}

/** The bound of each bound agent; weak, so that an agent let go is forgotten. */
const bounds = new WeakMap<Agent, TransferBound>();
let subscribed = false;

/** Bounds every request made through `agent` from now on (see the module comment). */
export function boundTransfers(agent: Agent, bound: TransferBound): void {
  bounds.set(agent, bound);
  if (!subscribed) {
    subscribed = true;
    subscribe('http.client.request.start', (message) => watch((message as { request: ClientRequest }).request));
  }
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1);

function watch(req: ClientRequest): void {
  const agent = (req as { agent?: unknown }).agent;
  const bound = typeof agent === 'object' && agent !== null ? bounds.get(agent as Agent) : undefined;
  if (bound === undefined) return;
  const { idleTimeoutMs, minBytesPerSecond } = bound;
  const timers: NodeJS.Timeout[] = [];
  const stop = (): void => {
    for (const t of timers) clearTimeout(t);
  };
  req.once('close', stop);
  const onSocket = (socket: Socket): void => {
    if (req.destroyed) return;
    const body = Number(req.getHeader('content-length') ?? 0);
    const sending = idleTimeoutMs + Math.ceil(((Number.isFinite(body) ? body : 0) * 1000) / minBytesPerSecond);
    timers.push(setTimeout(() => {
      req.destroy(new TooSlowError(`no answer within ${seconds(sending)} s of sending the request`
        + `${body > 0 ? ` (${body} bytes, given ${minBytesPerSecond} bytes/s)` : ''}`));
    }, sending).unref());
    req.once('response', (res) => {
      stop();
      const minimum = Math.ceil((minBytesPerSecond * idleTimeoutMs) / 1000);
      let mark = socket.bytesRead;
      const rate = setInterval(() => {
        const got = socket.bytesRead - mark;
        if (got < minimum && !res.complete) {
          res.destroy(new TooSlowError(`the endpoint sent ${got} bytes in ${seconds(idleTimeoutMs)} s, slower than the ${minBytesPerSecond} bytes/s waited for`));
        }
        mark = socket.bytesRead;
      }, idleTimeoutMs).unref();
      timers.push(rate);
      res.once('close', () => clearInterval(rate));
    });
  };
  if (req.socket) onSocket(req.socket);
  else req.once('socket', onSocket);
}

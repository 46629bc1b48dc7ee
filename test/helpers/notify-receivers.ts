/**
 * Receivers of the server's notifications for tests, on 127.0.0.1: a
 * webhook receiver (plain HTTP) that records each request and answers with
 * the statuses it is told to, or stalls as a slow or hostile one does; a
 * real SMTP server (smtp-server, nodemailer's own) that records each
 * message; and an SMTP server that answers the greeting and then drips its
 * answer a byte at a time, for ever.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';

/** One request the webhook receiver got. */
export interface WebhookHit {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  readonly json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** What the receiver answered. */
  readonly status: number;
}

export interface WebhookReceiver {
  readonly url: string;
  /** The requests answered, in order. */
  readonly hits: WebhookHit[];
  /** The statuses of the next answers, in order; 200 once they are used up. */
  answers: number[];
  /**
   * How the receiver treats the requests while set: `hang` never answers,
   * `drip` answers 200 and then sends its body a byte every 200 ms without
   * end. Neither is recorded in `hits`.
   */
  stall: 'hang' | 'drip' | null;
  /** The requests stalled so far. */
  readonly stalled: number;
  /** How many stalled requests the sender has not given up yet (their connection is open). */
  readonly stalledOpen: number;
  /** Resolves once `n` requests in all (answered or stalled) have come. */
  received(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Resolves once `count()` is at least `n`, looking every 20 ms. */
async function reached(count: () => number, n: number): Promise<void> {
  while (count() < n) await sleep(20);
}

export async function startWebhookReceiver(path = '/hook'): Promise<WebhookReceiver> {
  const hits: WebhookHit[] = [];
  const receiver = { hits, answers: [] as number[], stall: null as WebhookReceiver['stall'], stalled: 0, stalledOpen: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (receiver.stall !== null) {
        receiver.stalled++;
        receiver.stalledOpen++;
        res.on('close', () => receiver.stalledOpen--);
        if (receiver.stall === 'drip') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          const drip = setInterval(() => res.write('.'), 200);
          res.on('close', () => clearInterval(drip));
        }
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      const status = receiver.answers.shift() ?? 200;
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      hits.push({ headers: req.headers, body, json, status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'receiver down');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}${path}`,
    received: (n: number) => reached(() => hits.length + receiver.stalled, n),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
}

/**
 * Checks a `holdfast-signature: t=…,v1=…` header as a receiver should: the
 * HMAC-SHA256 with `secret` of `t.` and the body; returns `t` (seconds).
 */
export function verifySignature(header: string | string[] | undefined, body: string, secret: string): number {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header));
  if (!m) throw new Error(`not a signature header: ${String(header)}`);
  const want = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest();
  if (!timingSafeEqual(want, Buffer.from(m[2]!, 'hex'))) throw new Error('the signature does not match the body');
  return Number(m[1]);
}

/** One message the SMTP server took. */
export interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  /** The user it authenticated as, if it did. */
  readonly user: string | undefined;
  readonly subject: string;
  /** The whole message as sent (headers and body). */
  readonly raw: string;
}

export interface TestSmtpServer {
  readonly port: number;
  readonly mails: ReceivedMail[];
  close(): Promise<void>;
}

/** An SMTP server on 127.0.0.1 without TLS that takes every message, and accepts `user`/`password` when given. */
export async function startSmtpServer(login?: { user: string; password: string }): Promise<TestSmtpServer> {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    secure: false, disabledCommands: ['STARTTLS'], allowInsecureAuth: true, authOptional: true, logger: false,
    onAuth(auth, _session, callback) {
      if (login && auth.username === login.user && auth.password === login.password) callback(null, { user: auth.username });
      else callback(new Error('invalid user or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const headers = raw.split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]+/g, ' ');
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user as string | undefined, subject: /^subject: (.*)$/im.exec(headers)?.[1] ?? '', raw,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return { port, mails, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** An SMTP server that answers the greeting and then drips: the SMTP server of a hostile customer. */
export interface DrippingSmtpServer {
  readonly port: number;
  /** Connections taken so far. */
  readonly connections: number;
  /** How many of them the sender has not closed yet. */
  readonly open: number;
  /** Resolves once `n` connections in all have come. */
  connected(n: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A raw TCP server on 127.0.0.1 that greets (`220`) as an SMTP server
 * does, and answers the client's first command with a reply that never
 * ends: one byte every 200 ms of `250-` continuation lines. Each byte is
 * progress, so no idle timeout of the client's ever fires.
 */
export async function startDrippingSmtpServer(): Promise<DrippingSmtpServer> {
  const sockets = new Set<Socket>();
  const state = { connections: 0, open: 0 };
  const server = createTcpServer((socket) => {
    state.connections++;
    state.open++;
    sockets.add(socket);
    let drip: NodeJS.Timeout | undefined;
    socket.on('error', () => undefined).on('close', () => {
      state.open--;
      sockets.delete(socket);
      clearInterval(drip);
    });
    socket.write('220 drip.example ESMTP\r\n');
    socket.once('data', () => {
      const reply = Buffer.from('250-drip.example at your service\r\n');
      let i = 0;
      drip = setInterval(() => {
        socket.write(reply.subarray(i, i + 1));
        i = (i + 1) % reply.length;
      }, 200);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    port,
    connected: (n: number) => reached(() => state.connections, n),
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  });
}

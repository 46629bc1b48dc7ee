/**
 * Receivers of the server's notifications for tests, on 127.0.0.1: a
 * webhook receiver (plain HTTP) that records each request and answers with
 * the statuses it is told to, and a real SMTP server (smtp-server,
 * nodemailer's own) that records each message.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
  readonly hits: WebhookHit[];
  /** The statuses of the next answers, in order; 200 once they are used up. */
  answers: number[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(path = '/hook'): Promise<WebhookReceiver> {
  const hits: WebhookHit[] = [];
  const receiver = { hits, answers: [] as number[] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
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

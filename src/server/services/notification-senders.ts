/**
 * How one event reaches one channel: a webhook (an HTTP POST of the event's
 * JSON, signed) or an e-mail (through the channel's SMTP server, with
 * nodemailer). Each sender either resolves (delivered) or throws a
 * `DeliveryError` that says whether trying again may help; the outbox
 * (notification-delivery.ts) decides when.
 *
 * The webhook's signature (docs/format.md §2.10), as Stripe and GitHub sign
 * theirs: `holdfast-signature: t=UNIX-SECONDS,v1=HEX`, HEX the HMAC-SHA256,
 * keyed with the channel's secret, of `UNIX-SECONDS.` followed by the body's
 * bytes. The time is inside what is signed, so a receiver that refuses a
 * signature older than a few minutes cannot be fed a recorded delivery again.
 */
import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import nodemailer from 'nodemailer';
import type { EmailSettings, EventPayload } from '../../api/v1.js';
import { redactedUrl, TargetRefused, type TargetPolicy } from './notification-targets.js';

/** A delivery that did not happen; `retryable`: a later attempt may succeed (a 5xx, a timeout, a refused connection). */
export class DeliveryError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'DeliveryError';
  }
}

/** A send's deadline, and the signal that ends the send: the deadline or the caller's `signal`, whichever comes first. */
function sendSignals(opts: SendOptions): { deadline: AbortSignal; signal: AbortSignal } {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  return { deadline, signal: opts.signal === undefined ? deadline : AbortSignal.any([deadline, opts.signal]) };
}

/** `work`, or a rejection as soon as `signal` aborts (a name lookup cannot be cancelled, only no longer waited for). */
function until<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const stop = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', stop, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', stop));
  });
}

/** Why a send that `signal` ended did not happen, for its error: the deadline, or the server stopping. */
function cutOff(deadline: AbortSignal, timeoutMs: number): string {
  return deadline.aborted ? `not done within its deadline of ${timeoutMs / 1000} s` : 'stopped: the server is stopping';
}

/** The header that carries a webhook's signature. */
export const SIGNATURE_HEADER = 'holdfast-signature';

/** The signature header's value for `body` sent at `at` with `secret`. */
export function webhookSignature(secret: string, at: Date, body: string): string {
  const t = Math.floor(at.getTime() / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')}`;
}

/** What a sender needs besides the event. */
export interface SendOptions {
  /**
   * The send's overall deadline (milliseconds): name lookup, connection, TLS,
   * the SMTP dialogue or the HTTP exchange and every byte of the answer, all
   * together. A receiver that answers slowly, or a byte at a time, is cut
   * off there however it paces itself.
   */
  readonly timeoutMs: number;
  /** Ends the send early (the server stopping); its DeliveryError then says so. */
  readonly signal?: AbortSignal;
  /** The server's clock: the signature's time. */
  readonly now: Date;
  /** The delivery's id (the outbox row's; a test's own), sent along so that a receiver can tell retries apart. */
  readonly deliveryId: string;
  /** Which internal hosts the provider allows (every target is checked at each send). */
  readonly targets: TargetPolicy;
}

/**
 * POSTs `payload` as JSON to `url`, signed with `secret`; 2xx is delivered,
 * 5xx/408/429 and network failures may be retried, any other answer not.
 * The host is resolved and checked (`opts.targets`) and the connection made
 * to the address checked; the whole exchange, the answer's body included,
 * has one deadline (`opts.timeoutMs`). Errors name
 * the URL's scheme and host only, and never carry the receiver's answer.
 */
export async function sendWebhook(url: string, secret: string, payload: EventPayload, opts: SendOptions): Promise<void> {
  const body = JSON.stringify(payload);
  const shown = redactedUrl(url);
  const u = new URL(url);
  const { deadline, signal } = sendSignals(opts);
  let status: number;
  try {
    const target = await until(opts.targets.resolve(u.hostname), signal);
    const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
    status = await new Promise<number>((resolve, reject) => {
      const req = request(u, {
        method: 'POST', signal,
        // The address checked, whatever the name resolves to now; TLS still checks the certificate against the name.
        lookup: (_host, options, cb) => {
          if ((options as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [target]);
          else cb(null, target.address, target.family);
        },
        headers: {
          'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'holdfast-server',
          'holdfast-event': payload.event, 'holdfast-delivery': opts.deliveryId, [SIGNATURE_HEADER]: webhookSignature(secret, opts.now, body),
        },
      }, (res) => {
        // The answer's body is not kept (it is the receiver's, not the customer's to read); reading it to its end frees the connection.
        res.on('error', reject).on('end', () => resolve(res.statusCode ?? 0)).resume();
      });
      req.on('error', reject).end(body);
    });
  } catch (e) {
    if (e instanceof TargetRefused) throw new DeliveryError(`the webhook ${shown} was not sent: ${e.message}`, false);
    const err = e as Error & { code?: string };
    const why = signal.aborted ? cutOff(deadline, opts.timeoutMs) : err.code ?? 'the connection failed';
    throw new DeliveryError(`the webhook ${shown} could not be reached: ${why}`, true);
  }
  if (status >= 200 && status < 300) return;
  const retryable = status >= 500 || status === 408 || status === 429;
  throw new DeliveryError(`the webhook ${shown} answered ${status}`, retryable);
}

/** The default port of each way to speak to an SMTP server. */
export const SMTP_PORTS = { starttls: 587, tls: 465, none: 25 } as const;

/** The subject and text of the e-mail that tells of `payload`. */
export function mailText(payload: EventPayload): { subject: string; text: string } {
  const lines = [payload.summary, '', `Event: ${payload.event}`, `Time: ${payload.at}`];
  if (payload.customer) lines.push(`Customer: ${payload.customer.name} (${payload.customer.id})`);
  if (payload.machine) lines.push(`Machine: ${payload.machine.name} (${payload.machine.id})`);
  if (payload.safe) lines.push(`Disk safe: ${payload.safe.name} (${payload.safe.id})`);
  if (payload.job) lines.push(`Job: ${payload.job.id} (${payload.job.kind})`);
  for (const [k, v] of Object.entries(payload.details)) lines.push(`${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  lines.push('', `Event id: ${payload.id}`);
  const subject = `[holdfast] ${payload.summary}`;
  return { subject: subject.length > 200 ? `${subject.slice(0, 199)}…` : subject, text: `${lines.join('\n')}\n` };
}

/** An e-mail channel's settings as stored, with its defaults applied. */
export type StoredEmailSettings = Required<Omit<EmailSettings, 'password' | 'username'>> & { username: string | null };

/**
 * Sends the e-mail that tells of `payload` through the channel's SMTP
 * server; a 5xx answer is final (an address refused), anything else may be
 * tried again. The whole of it, from the name lookup to the server's last
 * answer, has one deadline (`opts.timeoutMs`): nodemailer's own timeouts
 * are per step and a server that drips its answers never reaches them.
 */
export async function sendEmail(settings: StoredEmailSettings, password: string | null, payload: EventPayload, opts: SendOptions): Promise<void> {
  const shown = `the SMTP server ${settings.host}:${settings.port}`;
  const { deadline, signal } = sendSignals(opts);
  let target: { address: string };
  try {
    target = await until(opts.targets.resolve(settings.host), signal);
  } catch (e) {
    if (e instanceof TargetRefused) throw new DeliveryError(`the e-mail was not sent: ${e.message}`, false);
    if (signal.aborted) throw new DeliveryError(`${shown} did not take the e-mail: ${cutOff(deadline, opts.timeoutMs)}`, true);
    throw e;
  }
  // The address checked, with the name for TLS (its certificate is checked against the name).
  const transport = nodemailer.createTransport({
    host: target.address, port: settings.port, ...(isIP(settings.host) === 0 ? { tls: { servername: settings.host } } : {}),
    secure: settings.security === 'tls', requireTLS: settings.security === 'starttls', ignoreTLS: settings.security === 'none',
    ...(settings.username !== null ? { auth: { user: settings.username, pass: password ?? '' } } : {}),
  });
  const { subject, text } = mailText(payload);
  try {
    await transport.sendMail({ from: settings.from, to: settings.to, subject, text, headers: { 'x-holdfast-event': payload.event, 'x-holdfast-delivery': opts.deliveryId }, signal });
  } catch (e) {
    if (signal.aborted) throw new DeliveryError(`${shown} did not take the e-mail: ${cutOff(deadline, opts.timeoutMs)}`, true);
    const err = e as Error & { responseCode?: number; code?: string };
    const permanent = err.responseCode !== undefined && err.responseCode >= 500;
    throw new DeliveryError(`${shown} did not take the e-mail: ${err.message}`, !permanent);
  } finally {
    transport.close();
  }
}

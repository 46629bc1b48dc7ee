/**
 * The repository over HTTPS, server side: a fastify plugin that serves each
 * disk safe's objects to `HttpBackend` (src/storage/http-backend.ts) and to
 * any client written from docs/format.md, "Wire protocol". It knows nothing
 * of users or databases: the caller gives it a `SafeResolver` that turns a
 * bearer token and a safe's name into the safe's `Backend` and the token's
 * rights, or into nothing (404, the same for a safe that does not exist and
 * for one the token may not see).
 *
 *   GET    /safes/S                    {"protocol":1,"rights":…}
 *   POST   /safes/S                    create the layout (idempotent)
 *   GET    /safes/S/config             HEAD, PUT, DELETE alike
 *   GET    /safes/S/FOLDER?prefix=&after=&limit=     a page of the listing
 *   HEAD   /safes/S/FOLDER/NAME        size
 *   GET    /safes/S/FOLDER/NAME        bytes, or a Range of them
 *   PUT    /safes/S/FOLDER/NAME        add (Content-Length required)
 *   DELETE /safes/S/FOLDER/NAME        remove (rights permitting)
 *
 * A PUT is read whole into one buffer of its declared length, hashed as it
 * arrives, checked against its name (the SHA-256 of a content-addressed
 * object, the config's own checksum), put through the safe's hooks and only
 * then handed to the backend, whose save is atomic: a body cut off, a wrong
 * length or a wrong hash stores nothing. Rights: `read` reads and lists,
 * and adds and removes its own lock objects (a check holds a lock while it
 * reads); `append` also adds every other type but deletion markers
 * (docs/format.md §18); both remove only the lock objects they added
 * themselves (as `AppendOnlyBackend` lets a client do; the resolver keeps
 * who added which, `SafeAccess.lockOwners`); `full` does everything. A
 * caller may be held to reading some object types only
 * (`SafeAccess.readable`: 403 for the others).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

import {
  AlreadyExistsError,
  NotFoundError,
  ShortReadError,
  type Backend,
  type Handle,
  type ObjectInfo,
  type ObjectType,
} from '../../storage/backend.js';
import { AppendOnlyError } from '../../storage/append-only-backend.js';
import { byteRange, checkPrefix, nameProblem, OBJECT_FOLDERS } from '../../storage/object-names.js';
import { decodeIndex } from '../../repo/index-file.js';
import { decodeKeyFile } from '../../repo/key-file.js';
import { decodeLock } from '../../repo/lock.js';
import { MAX_PACK_BYTES } from '../../repo/pack.js';
import { UploadRefusedError } from '../services/upload-refused-error.js';
import { mapInOrder } from '../../core/for-each-limit.js';
import { UploadBudget, UploadBusyError, type UploadHold } from './upload-budget.js';
import { BodyBuffers } from './body-buffers.js';

/** The protocol version `GET /safes/S` reports; a client refuses a server whose version it does not know. */
export const REPO_PROTOCOL_VERSION = 1;

/** What a token may do to a safe. */
export type SafeRights = 'read' | 'append' | 'full';

/** A safe as the resolver grants it to one request. */
export interface SafeAccess {
  /** The safe's storage. The plugin does not close it. */
  readonly backend: Backend;
  readonly rights: SafeRights;
  /**
   * Who is asking (a token's id): a `read` or `append` caller may remove
   * the lock objects that the same principal added, and no others.
   */
  readonly principal: string;
  /**
   * The customer whose safe it is: its principals' uploads share the
   * customer's part of the upload budget (`maxBytesInFlightPerCustomer`).
   * Absent: the principal is a customer of its own.
   */
  readonly customer?: string;
  /**
   * The only object types this caller may list and read (absent: every
   * type): a takeover token reads what opening the safe with its password
   * needs, the config and the key files, and nothing of its contents.
   */
  readonly readable?: readonly ObjectType[];
  /**
   * Which lock objects of the safe this principal added, kept where it
   * outlives the process (the server's database); absent, a `read` or
   * `append` caller removes no lock.
   */
  readonly lockOwners?: LockOwners;
  /**
   * Called before an upload's body is read, with its declared size: throw
   * `UploadRefusedError` to refuse it (a quota) before anything is received.
   * An upload let through may come with a ticket, ended once the upload is.
   */
  beforeSave?(h: Handle, size: number, signal: AbortSignal): Promise<UploadTicket | undefined>;
  /**
   * Called with the whole body once it was checked against its name, before
   * it is stored: throw `UploadRefusedError` to refuse it (the backdated
   * snapshot rule of src/server/services/snapshot-time-policy.ts).
   */
  beforeCommit?(h: Handle, bytes: Buffer, signal: AbortSignal): Promise<void>;
}

/** The lock objects one principal added to one safe (`SafeAccess.lockOwners`). */
export interface LockOwners {
  /** Records that the principal added lock `name`. */
  add(name: string): Promise<void>;
  /** Whether the principal added lock `name`. */
  owns(name: string): Promise<boolean>;
  /** Forgets lock `name`, whoever added it: it was removed. */
  forget(name: string): Promise<void>;
}

/** What `SafeAccess.beforeSave` gives an upload it lets through. */
export interface UploadTicket {
  /** Sent with the success as `Holdfast-Warning` (a soft quota passed), for the client to show. */
  readonly warning?: string;
  /**
   * Called once when the upload ended, however it ended: `stored` is true
   * when this request stored the object (not when it failed, was refused
   * later, or found the same bytes there already).
   */
  end(stored: boolean): Promise<void>;
}

/** Turns a request's credentials into a safe, or undefined: 404 whether the safe is missing or not the token's. */
export interface SafeResolver {
  /**
   * `token` is the bearer token of the request; `safe` the name from the
   * path (as sent, unchecked); `signal` aborts when the request goes away.
   */
  resolveSafe(token: string, safe: string, signal: AbortSignal): Promise<SafeAccess | undefined>;
}

/** The options of the plugin. */
export interface RepoRoutesOptions {
  readonly resolver: SafeResolver;
  /**
   * Whether an upload must match its name (the SHA-256 of its bytes; the
   * config's own checksum). True unless set false, which only a test of the
   * storage contract does: its objects are not named after their bytes.
   */
  readonly verifyUploads?: boolean;
  /** The largest body a PUT may declare; MAX_PACK_BYTES (src/repo/pack.ts) by default. */
  readonly maxObjectBytes?: number;
  /** The most entries a listing page may ask for (`limit`); 10000 by default. */
  readonly maxPageSize?: number;
  /**
   * The most bytes of uploads held at once, all safes together: a PUT that
   * would go past it is answered 503 (`BUSY`, a transient fault the client
   * retries), unless nothing else is held (upload-budget.ts has the rules).
   * DEFAULT_MAX_BYTES_IN_FLIGHT by default.
   */
  readonly maxBytesInFlight?: number;
  /**
   * The most bytes of uploads one principal (one token) holds at once, so
   * that one token cannot take the whole of `maxBytesInFlight`: past it a PUT
   * is answered 503 `BUSY`, unless it is the principal's only upload, which
   * then gives way to others that need the budget.
   * DEFAULT_MAX_BYTES_IN_FLIGHT_PER_PRINCIPAL by default.
   */
  readonly maxBytesInFlightPerPrincipal?: number;
  /**
   * The most bytes of uploads one customer's principals hold at once,
   * together, so that several tokens of one customer cannot take the whole
   * of `maxBytesInFlight` either; past it a PUT is answered 503 `BUSY`,
   * unless it is the customer's only upload, which then gives way to
   * others that need the budget. DEFAULT_MAX_BYTES_IN_FLIGHT_PER_CUSTOMER by default.
   */
  readonly maxBytesInFlightPerCustomer?: number;
  /**
   * What an upload reserves against those two at a time, as its body
   * arrives (the declared size is not reserved at once: a large body sent
   * slowly would hold the budget). DEFAULT_UPLOAD_STEP by default.
   */
  readonly uploadStep?: number;
  /**
   * An upload's body must bring at least `minBytes` in every `windowMs`
   * (the last window: what is left): a body that stalls or trickles is
   * answered 408 `UPLOAD_STALLED`, its connection closed and its bytes
   * released. DEFAULT_UPLOAD_PACE by default.
   */
  readonly uploadPace?: UploadPace;
}

/** The slowest an upload's body may arrive (RepoRoutesOptions.uploadPace). */
export interface UploadPace {
  readonly windowMs: number;
  readonly minBytes: number;
}

/** 64 KiB in every 30 s: a link 50 times slower than 1 Mbit/s still passes; a drip of a byte every few seconds does not. */
export const DEFAULT_UPLOAD_PACE: UploadPace = { windowMs: 30_000, minBytes: 64 * 1024 };

/** 128 MiB: a quarter of the server's budget, 8 uploads of 16 MiB packs. */
export const DEFAULT_MAX_BYTES_IN_FLIGHT_PER_PRINCIPAL = 128 * 1024 * 1024;

/** 256 MiB: half the server's budget for all of one customer's tokens, two tokens' shares. */
export const DEFAULT_MAX_BYTES_IN_FLIGHT_PER_CUSTOMER = 256 * 1024 * 1024;

/** 512 MiB: 32 uploads of 16 MiB packs at once. */
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 512 * 1024 * 1024;

/** 16 MiB: a pack of the default size is reserved at once, a larger body a pack's worth at a time. */
export const DEFAULT_UPLOAD_STEP = 16 * 1024 * 1024;

/** The listing page size when a request gives no `limit`. */
export const DEFAULT_PAGE_SIZE = 1000;

/** The response header that tells a client its rights, on every answer about a safe. */
export const RIGHTS_HEADER = 'holdfast-rights';

/** The response header that repeats an error's wire code (answers to HEAD have no body). */
export const ERROR_HEADER = 'holdfast-error';

/**
 * The response header of a successful upload that carries a warning for
 * people (a soft quota passed): UTF-8, with `%` and every byte outside
 * printable ASCII percent-encoded, so that decodeURIComponent reads it back.
 */
export const WARNING_HEADER = 'holdfast-warning';

/** URL folder → object type (the folders of docs/format.md §2.2; `data` is flat on the wire). */
const TYPE_OF_FOLDER = new Map<string, Exclude<ObjectType, 'config'>>(
  Object.entries(OBJECT_FOLDERS).map(([type, folder]) => [folder, type as Exclude<ObjectType, 'config'>]),
);

/** A request answered with an error: its status, its stable wire code, and a message for people. */
class WireError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The routes of the module comment; register with `app.register(repoRoutes, { resolver })`. */
export const repoRoutes: FastifyPluginAsync<RepoRoutesOptions> = async (app: FastifyInstance, opts: RepoRoutesOptions) => {
  const verify = opts.verifyUploads !== false;
  const maxBytes = opts.maxObjectBytes ?? MAX_PACK_BYTES;
  const maxPage = opts.maxPageSize ?? 10_000;
  const pace = opts.uploadPace ?? DEFAULT_UPLOAD_PACE;
  /** The bytes of the uploads being received or stored now. */
  const share = opts.maxBytesInFlightPerPrincipal ?? DEFAULT_MAX_BYTES_IN_FLIGHT_PER_PRINCIPAL;
  const budget = new UploadBudget({
    total: opts.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT,
    share,
    customerShare: opts.maxBytesInFlightPerCustomer ?? DEFAULT_MAX_BYTES_IN_FLIGHT_PER_CUSTOMER,
    step: opts.uploadStep ?? DEFAULT_UPLOAD_STEP,
  });
  /** Pack bodies' buffers kept between uploads: as many as one client sends at once (a share). */
  const bodies = new BodyBuffers(share);

  // Bodies are read by the PUT handler itself, as a stream of the declared length.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req: FastifyRequest, payload: Readable, done: (e: Error | null, body?: unknown) => void) => done(null, payload));

  app.setErrorHandler((e: unknown, _req, reply) => {
    const w = wireError(e);
    if (w.status >= 500 && w.code !== 'BUSY') reply.log.error(e);
    if (w.code === 'BUSY') void reply.header('retry-after', '1');
    void reply.code(w.status).header(ERROR_HEADER, w.code).send({ code: w.code, message: w.message });
  });

  /** The safe of the request, or a WireError (401 without a token, 404 when the resolver gives nothing). */
  async function safeOf(req: FastifyRequest, reply: FastifyReply): Promise<{ access: SafeAccess; name: string; signal: AbortSignal }> {
    const { safe } = req.params as { safe: string };
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    if (!token) throw new WireError(401, 'UNAUTHENTICATED', 'no token: send Authorization: Bearer TOKEN (the CLI reads HOLDFAST_TOKEN)');
    const ac = new AbortController();
    // The response closes unfinished only when the connection went away.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) ac.abort(new Error('the client went away'));
    });
    const access = await opts.resolver.resolveSafe(token, safe, ac.signal);
    if (access === undefined) throw new WireError(404, 'NO_SUCH_SAFE', `no disk safe ${JSON.stringify(safe)}, or the token does not give access to it`);
    void reply.header(RIGHTS_HEADER, access.rights);
    return { access, name: safe, signal: ac.signal };
  }

  /** Refuses (403) reading or listing objects of `type` when the caller may read only some types (`SafeAccess.readable`). */
  function mayRead(access: SafeAccess, type: ObjectType): void {
    if (access.readable !== undefined && !access.readable.includes(type)) {
      throw new WireError(403, 'NOT_READABLE', `this token reads only ${access.readable.join(' and ')} of the safe, not ${type} objects`);
    }
  }

  /** The handle named by the request's path, or a 400. */
  function handleOf(req: FastifyRequest): Handle {
    const { folder, name } = req.params as { folder?: string; name?: string };
    const type: ObjectType | undefined = folder === undefined ? 'config' : TYPE_OF_FOLDER.get(folder);
    if (type === undefined) throw new WireError(404, 'NO_SUCH_ROUTE', `no object folder ${JSON.stringify(folder)} (folders: ${[...TYPE_OF_FOLDER.keys()].join(', ')})`);
    const h = { type, name: name ?? 'config' };
    const problem = nameProblem(type, h.name);
    if (problem !== undefined) throw new WireError(400, 'BAD_NAME', `invalid ${type} name ${JSON.stringify(h.name)}: ${problem}`);
    return h;
  }

  app.get('/safes/:safe', async (req, reply) => {
    const s = await safeOf(req, reply);
    return { protocol: REPO_PROTOCOL_VERSION, rights: s.access.rights };
  });

  app.post('/safes/:safe', async (req, reply) => {
    const s = await safeOf(req, reply);
    if (s.access.rights === 'read') throw readOnly('create the safe\'s layout');
    await s.access.backend.create({ signal: s.signal });
    return reply.code(204).send();
  });

  // Listings: a page of names after `after`, in name order.
  app.get('/safes/:safe/:folder', async (req, reply) => {
    const s = await safeOf(req, reply);
    const { folder } = req.params as { folder: string };
    const type = TYPE_OF_FOLDER.get(folder);
    if (type === undefined) throw new WireError(404, 'NO_SUCH_ROUTE', `no object folder ${JSON.stringify(folder)} (folders: ${[...TYPE_OF_FOLDER.keys()].join(', ')})`);
    mayRead(s.access, type);
    const q = req.query as Record<string, unknown>;
    let prefix: string;
    try {
      prefix = checkPrefix(typeof q['prefix'] === 'string' ? q['prefix'] : undefined);
    } catch (e) {
      throw new WireError(400, 'BAD_REQUEST', (e as Error).message);
    }
    const after = q['after'];
    if (after !== undefined && (typeof after !== 'string' || nameProblem(type, after) !== undefined)) {
      throw new WireError(400, 'BAD_REQUEST', `after=${JSON.stringify(after)} is not a ${type} name`);
    }
    const limitText = q['limit'];
    const limit = limitText === undefined ? DEFAULT_PAGE_SIZE : Number(limitText);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > maxPage) {
      throw new WireError(400, 'BAD_REQUEST', `limit=${String(limitText)}: a page holds 1 to ${maxPage} names`);
    }
    return listPage(s.access.backend, type, prefix, after as string | undefined, limit, s.signal);
  });

  for (const path of ['/safes/:safe/config', '/safes/:safe/:folder/:name']) {
    app.head(path, async (req, reply) => {
      const s = await safeOf(req, reply);
      const h = handleOf(req);
      mayRead(s.access, h.type);
      const info = await s.access.backend.stat(h, { signal: s.signal });
      if (info === undefined) throw new NotFoundError(h);
      return reply.header('content-length', info.size).header('content-type', 'application/octet-stream').send();
    });

    app.get(path, { exposeHeadRoute: false }, async (req, reply) => {
      const s = await safeOf(req, reply);
      const h = handleOf(req);
      mayRead(s.access, h.type);
      void reply.header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes');
      const range = req.headers.range;
      if (range === undefined) return reply.send(await s.access.backend.load(h, { signal: s.signal }));
      const asked = parseRange(range);
      const info = await s.access.backend.stat(h, { signal: s.signal });
      if (info === undefined) throw new NotFoundError(h);
      let start: number;
      let end: number;
      try {
        [start, end] = asked.suffix !== undefined
          ? byteRange(h, info.size, -asked.suffix)
          : byteRange(h, info.size, asked.start, asked.end === undefined ? undefined : asked.end - asked.start);
        if (start === end) throw new ShortReadError(h, end + 1, info.size);
      } catch (e) {
        if (!(e instanceof ShortReadError)) throw e;
        void reply.header('content-range', `bytes */${info.size}`);
        throw new WireError(416, 'SHORT_READ', `${h.type}/${h.name}: the range ${range} is not inside the object's ${info.size} bytes`);
      }
      const bytes = await s.access.backend.load(h, { offset: start, length: end - start, signal: s.signal });
      return reply.code(206).header('content-range', `bytes ${start}-${end - 1}/${info.size}`).send(bytes);
    });

    app.put(path, async (req, reply) => {
      const s = await safeOf(req, reply);
      const h = handleOf(req);
      // A reader takes locks too (check, mount): a lock, parsed as one below, is all it adds.
      if (s.access.rights === 'read' && h.type !== 'lock') throw readOnly(`add ${h.type}/${h.name}`);
      if (s.access.rights === 'append' && h.type === 'deletion') {
        throw new WireError(403, 'APPEND_ONLY', 'the token may only add: deletion markers are prune\'s, which runs on the server (docs/format.md §18)');
      }
      const size = declaredLength(req);
      if (size > maxBytes) throw new WireError(413, 'TOO_LARGE', `${h.type}/${h.name}: ${size} bytes is more than the ${maxBytes} an object may hold`);
      // Bodies are held whole until stored: their sum is bounded (upload-budget.ts).
      // The first step is reserved before anything is awaited, so that uploads arriving together cannot all pass.
      const hold = budget.open({ principal: s.access.principal, ...(s.access.customer === undefined ? {} : { customer: s.access.customer }) }, size);
      let ticket: UploadTicket | undefined;
      let stored = false;
      try {
        ticket = await s.access.beforeSave?.(h, size, s.signal);
        const { bytes, sha256 } = await readBody(req.body as Readable, bodies.take(size), pace, hold).catch((e: unknown) => {
          // The rest of a body cut off is not waited for: the connection closes after the answer.
          void reply.header('connection', 'close');
          throw e;
        });
        if (verify) {
          checkAgainstName(h, bytes, sha256);
          checkStructure(h, bytes);
        }
        await s.access.beforeCommit?.(h, bytes, s.signal);
        try {
          await s.access.backend.save(h, bytes, { signal: s.signal });
          stored = true;
          if (h.type === 'data') bodies.give(bytes);
          // Recorded before the upload's ticket ends: a count of the token's locks never misses it.
          if (h.type === 'lock') await s.access.lockOwners?.add(h.name);
        } catch (e) {
          if (!(e instanceof AlreadyExistsError)) throw e;
          // A retry of an upload whose answer was lost: the same bytes are a success, others a conflict.
          const there = await s.access.backend.load(h, { signal: s.signal });
          if (!there.equals(bytes)) throw e;
          return await reply.code(200).send({ created: false });
        }
      } finally {
        hold.release();
        await ticket?.end(stored);
      }
      if (ticket?.warning !== undefined) void reply.header(WARNING_HEADER, headerText(ticket.warning));
      return reply.code(201).send({ created: true });
    });

    app.delete(path, async (req, reply) => {
      const s = await safeOf(req, reply);
      const h = handleOf(req);
      if (s.access.rights !== 'full' && !(h.type === 'lock' && await s.access.lockOwners?.owns(h.name) === true)) {
        if (s.access.rights === 'read') throw readOnly(`remove ${h.type}/${h.name}`);
        throw new AppendOnlyError(h);
      }
      // The wire always tells a missing object, whatever the backend under it can.
      if (!s.access.backend.capabilities.removeMissingIsError && await s.access.backend.stat(h, { signal: s.signal }) === undefined) throw new NotFoundError(h);
      await s.access.backend.remove(h, { signal: s.signal });
      if (h.type === 'lock') await s.access.lockOwners?.forget(h.name);
      return reply.code(204).send();
    });
  }
};

/** `text` as WARNING_HEADER carries it: `%` and what is not printable ASCII percent-encoded. */
function headerText(text: string): string {
  return text.replace(/[^\x20-\x24\x26-\x7e]+/gu, (run) => encodeURIComponent(run));
}

/** Refusal of a write to a `read` token. */
function readOnly(what: string): WireError {
  return new WireError(403, 'READ_ONLY', `the token may only read (and add and remove its own locks): it cannot ${what}`);
}

/** The error of a failed request, as the wire reports it. */
function wireError(e: unknown): WireError {
  if (e instanceof WireError) return e;
  if (e instanceof UploadRefusedError) return new WireError(e.status, e.code, e.message);
  if (e instanceof UploadBusyError) return new WireError(503, 'BUSY', e.message);
  if (e instanceof NotFoundError) return new WireError(404, 'NOT_FOUND', e.message);
  if (e instanceof AlreadyExistsError) return new WireError(409, 'ALREADY_EXISTS', `${e.message} with other bytes: objects are never overwritten`);
  if (e instanceof AppendOnlyError) return new WireError(403, 'APPEND_ONLY', `${e.message}: the token may only add`);
  const fastifyStatus = (e as { statusCode?: number }).statusCode;
  if (fastifyStatus !== undefined && fastifyStatus >= 400 && fastifyStatus < 500) {
    return new WireError(fastifyStatus, 'BAD_REQUEST', (e as Error).message);
  }
  return new WireError(500, 'INTERNAL', 'the server failed to serve the request (its log says why)');
}

/** The Content-Length of a PUT, which must be given (no chunked uploads). */
function declaredLength(req: FastifyRequest): number {
  const text = req.headers['content-length'];
  if (text === undefined) throw new WireError(411, 'LENGTH_REQUIRED', 'an upload must declare its Content-Length (chunked uploads are refused)');
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new WireError(400, 'BAD_REQUEST', `Content-Length ${JSON.stringify(text)} is not a byte count`);
  return n;
}

/**
 * The body, read into `bytes` (its declared size) and hashed on the way,
 * each chunk covered by `hold` before it is kept. A body that ends early
 * (the client went away) or holds more than declared rejects, and nothing is
 * stored; so does one that brings less than `pace.minBytes` (or what is
 * left) in a window of `pace.windowMs`, one whose next step the budget
 * refuses, and one the budget cuts.
 */
async function readBody(body: Readable | undefined, bytes: Buffer, pace: UploadPace, hold: UploadHold): Promise<{ bytes: Buffer; sha256: string }> {
  const size = bytes.length;
  const hash = createHash('sha256');
  let got = 0;
  if (body !== undefined && size > 0) {
    // A stall answers at once; the unread rest goes with the connection, which the answer closes.
    let stall!: (e: Error) => void;
    const stalled = new Promise<never>((_resolve, reject) => { stall = reject; });
    stalled.catch(() => undefined);
    hold.onCut = stall;
    let windowStart = 0;
    const timer = setInterval(() => {
      if (got - windowStart < Math.min(pace.minBytes, size - windowStart)) {
        stall(new WireError(408, 'UPLOAD_STALLED', `the body brought ${got - windowStart} bytes in ${pace.windowMs} ms, less than the ${pace.minBytes} an upload must: `
          + `${got} of its ${size} bytes came, nothing was stored`));
      }
      windowStart = got;
    }, pace.windowMs);
    try {
      const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      for (;;) {
        const next = await Promise.race([chunks.next(), stalled]);
        if (next.done === true) break;
        const chunk = next.value;
        if (got + chunk.length > size) throw new WireError(400, 'LENGTH_MISMATCH', `the body holds more than the ${size} bytes its Content-Length declares`);
        hold.cover(got + chunk.length);
        chunk.copy(bytes, got);
        hash.update(chunk);
        got += chunk.length;
      }
    } finally {
      clearInterval(timer);
    }
  }
  if (got !== size) throw new WireError(400, 'LENGTH_MISMATCH', `the body ended after ${got} of the ${size} bytes its Content-Length declares`);
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Refuses bytes that do not fit their name: every type but the config is
 * named by the SHA-256 of its bytes (docs/format.md §2.1); the config's last
 * 32 bytes are the SHA-256 of the bytes before them (§4.1).
 */
function checkAgainstName(h: Handle, bytes: Buffer, sha256: string): void {
  if (h.type === 'config') {
    const body = bytes.subarray(0, Math.max(0, bytes.length - 32));
    if (bytes.length < 32 || !createHash('sha256').update(body).digest().equals(bytes.subarray(bytes.length - 32))) {
      throw new WireError(400, 'CHECKSUM_MISMATCH', 'the config does not end with the SHA-256 of its bytes (docs/format.md §4.1)');
    }
    return;
  }
  if (!HEX64.test(h.name)) throw new WireError(400, 'BAD_NAME', `${h.type} names are the SHA-256 of the object's bytes, 64 hex digits; ${JSON.stringify(h.name)} is not`);
  if (sha256 !== h.name) {
    throw new WireError(400, 'CHECKSUM_MISMATCH', `the body's SHA-256 is ${sha256}, not its name ${h.name}: nothing was stored`);
  }
}

/** The wire code and parser of each type whose plain structure an upload must have (snapshots: safe-access.ts; a lock's bounds: lock-owners.ts). */
const STRUCTURE: Partial<Record<ObjectType, { code: string; what: string; parse(bytes: Buffer, name: string): unknown }>> = {
  index: { code: 'BAD_INDEX', what: 'an index file (§4.4)', parse: (b, n) => decodeIndex(b, `index ${n}`) },
  lock: { code: 'BAD_LOCK', what: 'a lock (§17)', parse: (b, n) => decodeLock(b, n) },
  key: { code: 'BAD_KEY', what: 'a key file (§4.2)', parse: (b, n) => decodeKeyFile(b, `key ${n}`) },
};

/**
 * Refuses an index, lock or key file that does not parse as one, keylessly
 * (its sealed parts are not checked): every reader of the safe would stop
 * at it, and a token that only adds could not remove it again.
 */
function checkStructure(h: Handle, bytes: Buffer): void {
  const s = STRUCTURE[h.type];
  if (s === undefined) return;
  try {
    s.parse(bytes, h.name);
  } catch (e) {
    throw new WireError(400, s.code, `${h.type}/${h.name} is not ${s.what} this server reads: ${(e as Error).message}; nothing was stored`);
  }
}

/** A Range header of one range: `bytes=A-B`, `bytes=A-` or `bytes=-N`. */
function parseRange(text: string): { start: number; end?: number; suffix?: undefined } | { start?: undefined; suffix: number } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(text.trim());
  const a = m?.[1];
  const b = m?.[2];
  if (!m || (a === '' && b === '') || (a !== undefined && a.length > 15) || (b !== undefined && b.length > 15)) {
    throw new WireError(400, 'BAD_REQUEST', `Range ${JSON.stringify(text)}: one range is asked as bytes=A-B, bytes=A- or bytes=-N`);
  }
  if (a === '') return { suffix: Number(b) };
  const start = Number(a);
  if (b === '') return { start };
  const last = Number(b);
  if (last < start) throw new WireError(400, 'BAD_REQUEST', `Range ${JSON.stringify(text)} ends before it starts`);
  return { start, end: last + 1 };
}

/**
 * One page of a listing: the names of `type` starting with `prefix` and
 * after `after`, in name order, at most `limit`; `next` is the `after` of the
 * following page, absent on the last. Data names are listed one two-digit
 * folder at a time, so that a page costs the folders it reaches, not the
 * whole listing; GROUPS_AT_ONCE of them are read at once.
 */
async function listPage(
  backend: Backend, type: Exclude<ObjectType, 'config'>, prefix: string, after: string | undefined, limit: number, signal: AbortSignal,
): Promise<{ objects: ObjectInfo[]; next?: string }> {
  const groups = type === 'data' && prefix.length < 2
    ? HEX_PAIRS.filter((p) => p.startsWith(prefix) && (after === undefined || p >= after.slice(0, 2)))
    : [prefix];
  const group = async (g: string): Promise<ObjectInfo[]> => {
    const here: ObjectInfo[] = [];
    for await (const info of backend.list(type, { prefix: g, signal })) {
      if (after === undefined || info.name > after) here.push({ name: info.name, size: info.size });
    }
    return here.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  };
  const found: ObjectInfo[] = [];
  for await (const here of mapInOrder(groups, GROUPS_AT_ONCE, group)) {
    found.push(...here);
    if (found.length >= limit) break;
  }
  const objects = found.slice(0, limit);
  return objects.length === limit ? { objects, next: objects[limit - 1]!.name } : { objects };
}

/** Data folders a listing page reads at once (docs/decisions.md, "the job's network beside the walk, listings of every pack"). */
const GROUPS_AT_ONCE = 16;
const HEX_PAIRS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

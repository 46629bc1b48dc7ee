/**
 * An NBD client (NetworkBlockDevice/nbd, doc/proto.md): reads a disk that a
 * hypervisor (`qemu-nbd`, qemu's built-in server), a SAN or any NBD server
 * exports, for image backups (`holdfast backup --image nbd://…`).
 *
 *   connect: TCP or a unix socket
 *   handshake (fixed newstyle only):
 *     S: NBDMAGIC IHAVEOPT flags      C: flags (FIXED_NEWSTYLE, NO_ZEROES)
 *     OPT_STRUCTURED_REPLY            (refused: simple replies, no block status)
 *     OPT_SET_META_CONTEXT export [base:allocation, qemu:dirty-bitmap:NAME, …]
 *     OPT_GO export, asking for NBD_INFO_BLOCK_SIZE → size, flags, block sizes
 *   transmission: requests pipelined (at most `maxInFlight`, each at most
 *   `requestBytes`), replies matched by cookie in whatever order they come;
 *   READ copies the data straight into the caller's buffer; BLOCK_STATUS gives
 *   the extents of one negotiated context; close() sends NBD_CMD_DISC.
 *
 * The server is not trusted: every length, offset, cookie and extent it sends
 * is checked against what was asked before a byte is copied, and a reply that
 * breaks the protocol fails the request and every request in flight with
 * `NbdProtocolError`, then drops the connection. TLS (NBD_OPT_STARTTLS,
 * `nbds://`) is not spoken: the export is expected on loopback, a unix socket
 * or a storage network.
 */
import { connect, type Socket } from 'node:net';
import type { ErrorCode } from '../../core/errors.js';
import {
  CMD, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, NBDMAGIC, OPT, OPT_NAMES,
  OPTION_REPLY_MAGIC, REP, REPLY_FLAG_DONE, REPLY_TYPE, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, TFLAG,
} from './nbd-protocol.js';

/** The IANA port of NBD. */
export const NBD_PORT = 10809;
/** Requests in flight by default (docs/decisions.md, "Reading VM disks"). */
export const NBD_IN_FLIGHT = 16;
/** Bytes of one read request by default. */
export const NBD_REQUEST_BYTES = 1 << 20;
/** The largest request the protocol advises when the server names no maximum. */
const DEFAULT_MAX_REQUEST = 32 << 20;
/** Largest option reply or block-status payload accepted. */
const MAX_REPLY_PAYLOAD = 16 << 20;
/** Largest error message accepted in a reply. */
const MAX_MESSAGE = 4096;

/** The server refused the export or an option the client needs (an unknown export, a policy, TLS required). */
export class NbdRefusedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NBD_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'NbdRefusedError';
  }
}

/** The server broke the protocol: a malformed or out-of-range reply, or a connection that ended in the middle of one. */
export class NbdProtocolError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NBD_PROTOCOL';
  constructor(readonly server: string, detail: string) {
    super(`NBD server ${server}: ${detail}`);
    this.name = 'NbdProtocolError';
  }
}

/** The server answered a request with an error (an I/O error on its disk, say). */
export class NbdCommandError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'NBD_IO';
  constructor(readonly server: string, readonly errno: number, what: string, message: string) {
    super(`NBD server ${server} failed ${what}: error ${errno}${message ? ` (${message})` : ''}`);
    this.name = 'NbdCommandError';
  }
}

/** Where an export is: a TCP host and port, or a unix socket; and its name. */
export interface NbdTarget {
  readonly host?: string;
  readonly port?: number;
  readonly socket?: string;
  /** The export name ("" is the server's default export). */
  readonly exportName: string;
}

/** True when `s` is an NBD URI (nbd://, nbd+unix://, or the TLS forms this client refuses). */
export function isNbdUri(s: string): boolean {
  return /^nbds?(\+unix)?:\/\//i.test(s);
}

/**
 * Parses the URI forms of the NBD URI specification (NetworkBlockDevice/nbd,
 * doc/uri.md) that this client speaks: `nbd://host[:port][/export]` and
 * `nbd+unix:///[export]?socket=/path`. `nbds://` (TLS) is refused.
 */
export function parseNbdUri(uri: string): NbdTarget {
  const bad = (why: string): never => {
    throw new NbdRefusedError(`bad NBD URI "${uri}": ${why} (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)`);
  };
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return bad('not a URI');
  }
  const scheme = u.protocol.toLowerCase();
  if (scheme === 'nbds:' || scheme === 'nbds+unix:') bad('TLS (nbds) is not supported by this client');
  if (scheme !== 'nbd:' && scheme !== 'nbd+unix:') bad(`unknown scheme ${u.protocol}`);
  if (u.username || u.password || u.hash) bad('no user, password or fragment is allowed');
  let exportName: string;
  try {
    exportName = decodeURIComponent(u.pathname.replace(/^\//, ''));
  } catch {
    return bad('the export name is not valid percent-encoding');
  }
  if (Buffer.byteLength(exportName) > 4096) bad('the export name is longer than 4096 bytes');
  if (scheme === 'nbd+unix:') {
    if (u.hostname) bad('nbd+unix takes no host');
    const socket = u.searchParams.get('socket');
    if (!socket) bad('nbd+unix needs ?socket=PATH');
    return { socket: socket!, exportName };
  }
  if (!u.hostname) bad('no host');
  if ([...u.searchParams.keys()].length > 0) bad('nbd:// takes no query');
  const port = u.port ? Number(u.port) : NBD_PORT;
  // URL keeps the brackets of an IPv6 literal.
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, exportName };
}

/** How a target is named in messages. */
export function describeTarget(t: NbdTarget): string {
  const where = t.socket !== undefined ? `unix:${t.socket}` : `${t.host}:${t.port ?? NBD_PORT}`;
  return `${where} export "${t.exportName}"`;
}

/** One extent of a block status reply: `flags` as the context defines them. */
export interface NbdExtent {
  readonly offset: number;
  readonly length: number;
  readonly flags: number;
}

export interface NbdClientOptions {
  /** Metadata contexts to negotiate (`base:allocation`, `qemu:dirty-bitmap:NAME`); those the server lacks are absent from `contexts`. */
  readonly metaContexts?: readonly string[];
  /** Requests in flight at most (default `NBD_IN_FLIGHT`). */
  readonly maxInFlight?: number;
  /** Largest read request (default `NBD_REQUEST_BYTES`, lowered to the server's maximum). */
  readonly requestBytes?: number;
  /** Ends the handshake when aborted. */
  readonly signal?: AbortSignal;
}

/** Bytes of each buffer the socket reads into. */
const READ_BUFFER = 256 << 10;
/** Read buffers kept for reuse at most (8 MiB). */
const SPARE_BUFFERS = 32;
/** Bytes received and not yet taken at which the socket is paused. */
const MAX_BUFFERED = 64 << 20;

/**
 * Buffered reads of exact byte counts from a socket. The socket reads into
 * buffers this reader hands it (`onread`) and gets them back once their
 * bytes are taken: a disk's bytes no longer arrive in fresh 64 KiB buffers
 * outside V8's heap, which set off a full collection every 64 MB (a full
 * read of a 20 GiB disk took 30 % less time: docs/decisions.md, "Reading
 * VM disks").
 */
class SocketReader {
  /** Views of the read buffers, each of its own ArrayBuffer (`allocUnsafeSlow`): a chunk fully taken gives its buffer back. */
  private chunks: Buffer[] = [];
  private readonly spare: Buffer[] = [];
  private buffered = 0;
  private ended: Error | undefined;
  private wake: (() => void) | undefined;
  private resume: () => void = () => undefined;

  constructor(private readonly server: string) {}

  /** The `onread` option for `net.connect`: the bytes arrive here, not as 'data' events. */
  readonly onread = {
    buffer: (): Buffer => this.spare.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER),
    callback: (n: number, buf: Buffer): boolean => {
      this.chunks.push(buf.subarray(0, n));
      this.buffered += n;
      this.notify();
      // Back-pressure: false pauses the socket, and the server waits while we copy what it sent.
      return this.buffered <= MAX_BUFFERED;
    },
  };

  /** Follows the connected socket's end and failure. */
  attach(socket: Socket): void {
    const end = (e?: Error): void => {
      this.ended ??= e ?? new Error('closed');
      this.notify();
    };
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', (e) => end(e));
    this.resume = () => socket.resume();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async fill(n: number, what: string): Promise<void> {
    while (this.buffered < n) {
      if (this.ended) {
        const cause = this.ended.message === 'closed' ? 'closed the connection' : `connection failed (${this.ended.message})`;
        throw new NbdProtocolError(this.server, `${cause} in the middle of ${what} (${this.buffered} of ${n} bytes received)`);
      }
      this.resume();
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Copies the next `n` bytes into `dest` at `at`. */
  async readInto(dest: Buffer, at: number, n: number, what: string): Promise<void> {
    let done = 0;
    while (done < n) {
      await this.fill(1, what);
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - done);
      c.copy(dest, at + done, 0, k);
      done += k;
      this.buffered -= k;
      if (k < c.length) this.chunks[0] = c.subarray(k);
      else {
        this.chunks.shift();
        if (this.spare.length < SPARE_BUFFERS) this.spare.push(Buffer.from(c.buffer));
      }
    }
  }

  /** The next `n` bytes. */
  async read(n: number, what: string): Promise<Buffer> {
    await this.fill(n, what);
    const out = Buffer.allocUnsafe(n);
    await this.readInto(out, 0, n, what);
    return out;
  }

  /** Skips `n` bytes (a payload the client does not keep). */
  async skip(n: number, what: string): Promise<void> {
    const scratch = Buffer.allocUnsafe(Math.min(n, 1 << 16));
    for (let left = n; left > 0; left -= scratch.length) await this.readInto(scratch, 0, Math.min(left, scratch.length), what);
  }
}

/** A request in flight: what it asked, and how its reply is taken. */
interface Pending {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  readonly what: string;
  /** READ: where the bytes go. */
  readonly dest?: Buffer;
  readonly destAt?: number;
  /** READ: ranges of the request covered so far (data and holes), to find gaps and overlaps. */
  readonly covered: [number, number][];
  /** BLOCK_STATUS: extents by context id. */
  readonly extents: Map<number, NbdExtent[]>;
  error?: Error;
  resolve(): void;
  reject(e: Error): void;
}

/** An open connection to one export, in the transmission phase. */
export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private inFlight = 0;
  private readonly waiters: (() => void)[] = [];
  private broken: Error | undefined;
  private closed = false;
  /** Requests are being gathered for one write (`send`). */
  private corked = false;
  private readonly loop: Promise<void>;
  /** Largest read request sent. */
  readonly requestBytes: number;
  private readonly maxInFlight: number;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    /** The server, for messages. */
    readonly server: string,
    /** Bytes in the export. */
    readonly size: number,
    /** Transmission flags (`TFLAG`). */
    readonly flags: number,
    /** True when the server sends structured replies (needed for block status). */
    readonly structured: boolean,
    /** The metadata contexts the server agreed to, by name: their ids. */
    readonly contexts: ReadonlyMap<string, number>,
    maxRequest: number,
    opts: NbdClientOptions,
  ) {
    this.requestBytes = Math.max(512, Math.min(opts.requestBytes ?? NBD_REQUEST_BYTES, maxRequest));
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? NBD_IN_FLIGHT);
    this.loop = this.replies().catch((e: unknown) => this.fail(e instanceof Error ? e : new Error(String(e))));
  }

  /** Connects, negotiates, and selects the export. */
  static async connect(target: NbdTarget, opts: NbdClientOptions = {}): Promise<NbdClient> {
    const server = describeTarget(target);
    const reader = new SocketReader(server);
    const { onread } = reader;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = target.socket !== undefined ? connect({ path: target.socket, onread }) : connect({ host: target.host!, port: target.port ?? NBD_PORT, onread });
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(s);
      });
      s.once('error', (e) => reject(new NbdRefusedError(`cannot connect to the NBD server ${server}: ${e.message}`)));
    });
    socket.setNoDelay(true);
    reader.attach(socket);
    const onAbort = (): void => {
      socket.destroy();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await NbdClient.handshake(socket, reader, server, target, opts);
    } catch (e) {
      socket.destroy();
      opts.signal?.throwIfAborted();
      throw e;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  private static async handshake(socket: Socket, reader: SocketReader, server: string, target: NbdTarget, opts: NbdClientOptions): Promise<NbdClient> {
    const bad = (detail: string): never => {
      throw new NbdProtocolError(server, detail);
    };
    const hello = await reader.read(18, 'the greeting');
    if (!hello.subarray(0, 8).equals(NBDMAGIC)) bad('is not an NBD server (no NBDMAGIC in its greeting)');
    if (!hello.subarray(8, 16).equals(IHAVEOPT)) bad('speaks only the old-style handshake, which this client does not');
    const hflags = hello.readUInt16BE(16);
    if (!(hflags & FLAG_FIXED_NEWSTYLE)) bad('does not speak the fixed newstyle handshake');
    const cflags = Buffer.alloc(4);
    cflags.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES ? FLAG_C_NO_ZEROES : 0));
    socket.write(cflags);

    const sendOption = (option: number, data: Buffer = Buffer.alloc(0)): void => {
      const h = Buffer.alloc(16);
      IHAVEOPT.copy(h, 0);
      h.writeUInt32BE(option, 8);
      h.writeUInt32BE(data.length, 12);
      socket.write(Buffer.concat([h, data]));
    };
    const optionReply = async (option: number): Promise<{ reply: number; data: Buffer }> => {
      const what = `its reply to ${OPT_NAMES[option]}`;
      const h = await reader.read(20, what);
      if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) bad(`sent a bad magic number in ${what}`);
      if (h.readUInt32BE(8) !== option) bad(`answered option ${h.readUInt32BE(8)} where ${OPT_NAMES[option]} was asked`);
      const length = h.readUInt32BE(16);
      if (length > MAX_REPLY_PAYLOAD) bad(`sent a ${length}-byte reply to ${OPT_NAMES[option]}`);
      return { reply: h.readUInt32BE(12), data: await reader.read(length, what) };
    };
    const errorText = (reply: number, data: Buffer): string => {
      const name = Object.entries(REP).find(([, v]) => v === reply)?.[0] ?? `0x${reply.toString(16)}`;
      const msg = data.subarray(0, MAX_MESSAGE).toString('utf8').replace(/[^\x20-\x7e]/g, '?');
      return `NBD_REP_${name}${msg ? `: ${msg}` : ''}`;
    };
    const isError = (reply: number): boolean => (reply & 0x80000000) !== 0;
    const name = Buffer.from(target.exportName, 'utf8');
    const nameField = Buffer.alloc(4 + name.length);
    nameField.writeUInt32BE(name.length, 0);
    name.copy(nameField, 4);

    sendOption(OPT.STRUCTURED_REPLY);
    let structured = false;
    for (;;) {
      const { reply, data } = await optionReply(OPT.STRUCTURED_REPLY);
      if (reply === REP.ACK) {
        if (data.length !== 0) bad('sent data with its ACK of NBD_OPT_STRUCTURED_REPLY');
        structured = true;
        break;
      }
      if (isError(reply)) break;
      bad(`answered NBD_OPT_STRUCTURED_REPLY with reply type ${reply}`);
    }

    const contexts = new Map<string, number>();
    const wanted = opts.metaContexts ?? [];
    if (wanted.length > 0) {
      if (!structured) throw new NbdRefusedError(`the NBD server ${server} has no structured replies, so it cannot report ${wanted.join(', ')}`);
      const queries = wanted.map((q) => Buffer.from(q, 'utf8'));
      const body = Buffer.alloc(nameField.length + 4 + queries.reduce((a, q) => a + 4 + q.length, 0));
      let o = nameField.copy(body, 0);
      o = body.writeUInt32BE(queries.length, o);
      for (const q of queries) {
        o = body.writeUInt32BE(q.length, o);
        o += q.copy(body, o);
      }
      sendOption(OPT.SET_META_CONTEXT, body);
      for (;;) {
        const { reply, data } = await optionReply(OPT.SET_META_CONTEXT);
        if (reply === REP.ACK) break;
        if (reply === REP.META_CONTEXT) {
          if (data.length < 5) bad('sent a meta context reply too short to hold a context');
          const ctx = data.subarray(4).toString('utf8');
          if (!wanted.includes(ctx)) bad(`agreed to meta context "${ctx.slice(0, 200)}", which was not asked for`);
          contexts.set(ctx, data.readUInt32BE(0));
          continue;
        }
        if (isError(reply)) {
          if (reply === REP.ERR_UNKNOWN) throw new NbdRefusedError(`the NBD server ${server} has no export "${target.exportName}" (${errorText(reply, data)})`);
          // Old servers refuse the option: no contexts.
          break;
        }
        bad(`answered NBD_OPT_SET_META_CONTEXT with reply type ${reply}`);
      }
    }

    const go = Buffer.alloc(nameField.length + 4);
    nameField.copy(go, 0);
    go.writeUInt16BE(1, nameField.length);
    go.writeUInt16BE(INFO.BLOCK_SIZE, nameField.length + 2);
    sendOption(OPT.GO, go);
    let size: number | undefined;
    let tflags = 0;
    let maxRequest = DEFAULT_MAX_REQUEST;
    for (;;) {
      const { reply, data } = await optionReply(OPT.GO);
      if (reply === REP.ACK) break;
      if (reply === REP.INFO) {
        if (data.length < 2) bad('sent an empty NBD_REP_INFO');
        const type = data.readUInt16BE(0);
        if (type === INFO.EXPORT) {
          if (data.length !== 12) bad(`sent an NBD_INFO_EXPORT of ${data.length} bytes`);
          const s = data.readBigUInt64BE(2);
          if (s > BigInt(Number.MAX_SAFE_INTEGER)) bad(`claims an export of ${s} bytes`);
          size = Number(s);
          tflags = data.readUInt16BE(10);
        } else if (type === INFO.BLOCK_SIZE) {
          if (data.length !== 14) bad(`sent an NBD_INFO_BLOCK_SIZE of ${data.length} bytes`);
          const max = data.readUInt32BE(10);
          if (max >= 512) maxRequest = Math.min(maxRequest, max);
        }
        continue;
      }
      if (isError(reply)) {
        const text = errorText(reply, data);
        if (reply === REP.ERR_UNKNOWN) throw new NbdRefusedError(`the NBD server ${server} has no export "${target.exportName}" (${text})`);
        if (reply === REP.ERR_TLS_REQD) throw new NbdRefusedError(`the NBD server ${server} requires TLS, which this client does not speak (${text})`);
        throw new NbdRefusedError(`the NBD server ${server} refused export "${target.exportName}" (${text})`);
      }
      bad(`answered NBD_OPT_GO with reply type ${reply}`);
    }
    if (size === undefined) bad('ended NBD_OPT_GO without saying the export size');
    return new NbdClient(socket, reader, server, size!, tflags, structured, contexts, maxRequest, opts);
  }

  /** Fails every request in flight and drops the connection. */
  private fail(e: Error): void {
    this.broken ??= e;
    for (const p of this.pending.values()) p.reject(this.broken);
    this.pending.clear();
    this.socket.destroy();
    for (const w of this.waiters.splice(0)) w();
  }

  private bad(detail: string): never {
    throw new NbdProtocolError(this.server, detail);
  }

  /** The reply loop: one reply (or structured chunk) at a time, matched to its request. */
  private async replies(): Promise<void> {
    const r = this.reader;
    for (;;) {
      if (this.pending.size === 0 && this.closed) return;
      const magicBytes = await r.read(4, 'a reply').catch((e: unknown) => {
        // A server that hangs up while nothing is asked has ended the session, not a read.
        if (this.pending.size === 0) return undefined;
        throw e;
      });
      if (!magicBytes) {
        this.broken ??= new NbdProtocolError(this.server, 'closed the connection');
        return;
      }
      const magic = magicBytes.readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        const h = await r.read(12, 'a reply header');
        const error = h.readUInt32BE(0);
        const cookie = h.readBigUInt64BE(4);
        const p = this.pending.get(cookie) ?? this.bad(`sent a reply to request ${cookie}, which is not in flight`);
        if (error === 0 && p.type === CMD.READ) {
          if (this.structured) this.bad(`sent a simple reply to ${p.what} after agreeing to structured replies`);
          await r.readInto(p.dest!, p.destAt!, p.length, p.what);
        }
        this.pending.delete(cookie);
        if (error !== 0) p.reject(new NbdCommandError(this.server, error, p.what, ''));
        else p.resolve();
        continue;
      }
      if (magic !== STRUCTURED_REPLY_MAGIC) this.bad(`sent a reply with the bad magic number 0x${magic.toString(16)}`);
      if (!this.structured) this.bad('sent a structured reply it had not agreed to');
      const h = await r.read(16, 'a reply chunk header');
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const cookie = h.readBigUInt64BE(4);
      const length = h.readUInt32BE(12);
      const p = this.pending.get(cookie) ?? this.bad(`sent a reply to request ${cookie}, which is not in flight`);
      await this.chunk(p, type, length);
      if (flags & REPLY_FLAG_DONE) {
        this.pending.delete(cookie);
        this.done(p);
      }
    }
  }

  /** One structured reply chunk of request `p` (its payload not yet read). */
  private async chunk(p: Pending, type: number, length: number): Promise<void> {
    const r = this.reader;
    const end = p.offset + p.length;
    if (type === REPLY_TYPE.NONE) {
      if (length !== 0) this.bad(`sent an NBD_REPLY_TYPE_NONE of ${length} bytes`);
      return;
    }
    if (type & 0x8000) {
      if (length < 6 || length > MAX_MESSAGE + 14) this.bad(`sent an error chunk of ${length} bytes`);
      const b = await r.read(length, `an error reply to ${p.what}`);
      const mlen = b.readUInt16BE(4);
      if (6 + mlen > length) this.bad(`sent an error message of ${mlen} bytes in a ${length}-byte chunk`);
      const msg = b.subarray(6, 6 + mlen).toString('utf8').replace(/[^\x20-\x7e]/g, '?');
      p.error ??= new NbdCommandError(this.server, b.readUInt32BE(0), p.what, msg);
      return;
    }
    if (p.type === CMD.READ && type === REPLY_TYPE.OFFSET_DATA) {
      if (length < 8) this.bad(`sent a data chunk of ${length} bytes for ${p.what}`);
      const off = Number((await r.read(8, `a data chunk of ${p.what}`)).readBigUInt64BE(0));
      const n = length - 8;
      if (n === 0 || off < p.offset || off + n > end) this.bad(`sent ${n} bytes at ${off} in reply to ${p.what}: outside what was asked`);
      this.cover(p, off, n);
      await r.readInto(p.dest!, p.destAt! + (off - p.offset), n, p.what);
      return;
    }
    if (p.type === CMD.READ && type === REPLY_TYPE.OFFSET_HOLE) {
      if (length !== 12) this.bad(`sent a hole chunk of ${length} bytes for ${p.what}`);
      const b = await r.read(12, `a hole chunk of ${p.what}`);
      const off = Number(b.readBigUInt64BE(0));
      const n = b.readUInt32BE(8);
      if (n === 0 || off < p.offset || off + n > end) this.bad(`sent a hole of ${n} bytes at ${off} in reply to ${p.what}: outside what was asked`);
      this.cover(p, off, n);
      p.dest!.fill(0, p.destAt! + (off - p.offset), p.destAt! + (off - p.offset) + n);
      return;
    }
    if (p.type === CMD.BLOCK_STATUS && type === REPLY_TYPE.BLOCK_STATUS) {
      if (length < 12 || (length - 4) % 8 !== 0 || length > MAX_REPLY_PAYLOAD) this.bad(`sent a block status chunk of ${length} bytes`);
      const b = await r.read(length, `the block status of ${p.what}`);
      const id = b.readUInt32BE(0);
      if (![...this.contexts.values()].includes(id)) this.bad(`sent block status for context ${id}, which was not negotiated`);
      if (p.extents.has(id)) this.bad(`sent block status for context ${id} twice in one reply`);
      const out: NbdExtent[] = [];
      let at = p.offset;
      for (let o = 4; o < length; o += 8) {
        const n = b.readUInt32BE(o);
        if (n === 0) this.bad(`sent an empty extent in the block status of ${p.what}`);
        if (at + n > this.size) this.bad(`sent an extent ending at ${at + n}, beyond the end of the export (${this.size} bytes)`);
        out.push({ offset: at, length: n, flags: b.readUInt32BE(o + 4) });
        at += n;
      }
      p.extents.set(id, out);
      return;
    }
    this.bad(`sent a reply chunk of type ${type} to ${p.what}`);
  }

  /** Records that [off, off+n) of a read was answered; overlapping answers are refused. */
  private cover(p: Pending, off: number, n: number): void {
    for (const [a, b] of p.covered) if (off < b && a < off + n) this.bad(`answered bytes ${Math.max(a, off)}.. of ${p.what} twice`);
    p.covered.push([off, off + n]);
  }

  /** A structured reply is complete. */
  private done(p: Pending): void {
    if (p.error) return p.reject(p.error);
    if (p.type === CMD.READ) {
      const got = p.covered.reduce((a, [x, y]) => a + y - x, 0);
      if (got !== p.length) return p.reject(new NbdProtocolError(this.server, `ended its reply to ${p.what} after ${got} of ${p.length} bytes`));
    }
    if (p.type === CMD.BLOCK_STATUS && p.extents.size === 0) return p.reject(new NbdProtocolError(this.server, `ended its reply to ${p.what} without any extent`));
    p.resolve();
  }

  private async slot(): Promise<void> {
    while (this.inFlight >= this.maxInFlight && !this.broken) await new Promise<void>((r) => this.waiters.push(r));
    this.inFlight++;
  }

  private release(): void {
    this.inFlight--;
    this.waiters.shift()?.();
  }

  /**
   * Writes a request. The requests made in one turn of the event loop (a
   * batch of reads) leave in one write, not a system call each.
   */
  private send(h: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(h);
  }

  /** Sends one request and waits for its whole reply. */
  private async request(type: number, flags: number, offset: number, length: number, what: string, dest?: Buffer, destAt?: number): Promise<Pending> {
    await this.slot();
    try {
      if (this.broken) throw this.broken;
      if (this.closed) throw new Error(`the connection to ${this.server} is closed`);
      const cookie = this.nextCookie++;
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(flags, 4);
      h.writeUInt16BE(type, 6);
      h.writeBigUInt64BE(cookie, 8);
      h.writeBigUInt64BE(BigInt(offset), 16);
      h.writeUInt32BE(length, 24);
      let p!: Pending;
      const done = new Promise<void>((resolve, reject) => {
        p = { type, offset, length, what, ...(dest ? { dest, destAt: destAt ?? 0 } : {}), covered: [], extents: new Map(), resolve, reject };
      });
      this.pending.set(cookie, p);
      this.send(h);
      await done;
      return p;
    } finally {
      this.release();
    }
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read of ${length} bytes at ${offset} is outside the NBD export (${this.size} bytes)`);
    }
  }

  /** Reads [position, position+length) of the export into `dest` at `at`, in requests of at most `requestBytes`, several in flight. */
  async readInto(dest: Buffer, at: number, length: number, position: number): Promise<void> {
    this.check(position, length);
    const parts: Promise<Pending>[] = [];
    for (let o = 0; o < length; o += this.requestBytes) {
      const n = Math.min(this.requestBytes, length - o);
      parts.push(this.request(CMD.READ, 0, position + o, n, `the read of ${n} bytes at ${position + o}`, dest, at + o));
    }
    const settled = await Promise.allSettled(parts);
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Reads `length` bytes at `offset`. */
  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    await this.readInto(out, 0, length, offset);
    return out;
  }

  /**
   * The extents of metadata context `context` over [offset, offset+length),
   * in order, clipped to the range: the server may answer a part at a time,
   * so this asks again from where its answer ended.
   */
  async blockStatus(context: string, offset: number, length: number): Promise<NbdExtent[]> {
    this.check(offset, length);
    const id = this.contexts.get(context);
    if (id === undefined) throw new NbdRefusedError(`the NBD server ${this.server} did not agree to report ${context}`);
    const out: NbdExtent[] = [];
    const end = offset + length;
    for (let at = offset; at < end;) {
      const n = Math.min(end - at, 0x80000000);
      const p = await this.request(CMD.BLOCK_STATUS, 0, at, n, `the block status of ${n} bytes at ${at}`);
      const ext = p.extents.get(id);
      if (!ext) throw new NbdProtocolError(this.server, `sent no extents of ${context} for the block status of ${n} bytes at ${at}`);
      for (const e of ext) {
        if (e.offset >= end) break;
        const len = Math.min(e.length, end - e.offset);
        const last = out[out.length - 1];
        if (last && last.flags === e.flags && last.offset + last.length === e.offset) out[out.length - 1] = { ...last, length: last.length + len };
        else out.push({ offset: e.offset, length: len, flags: e.flags });
        at = e.offset + len;
      }
    }
    return out;
  }

  /** True when the export is read-only. */
  get readOnly(): boolean {
    return (this.flags & TFLAG.READ_ONLY) !== 0;
  }

  /** Sends NBD_CMD_DISC and closes the connection (requests still in flight fail); idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.broken) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD.DISC, 6);
      h.writeBigUInt64BE(this.nextCookie++, 8);
      await new Promise<void>((r) => this.socket.end(h, () => r()));
    }
    this.socket.destroy();
    await this.loop;
  }
}

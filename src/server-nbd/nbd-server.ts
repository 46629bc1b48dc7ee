/**
 * A read-only NBD server (fixed newstyle handshake) that exports one byte
 * source, for example an image snapshot: `qemu-img convert nbd://…` turns a
 * backup into a VM disk, `nbdcopy` streams it anywhere. Several clients may
 * be connected at once; each connection pipelines up to `MAX_IN_FLIGHT`
 * requests and gets its replies as they complete (matched by cookie).
 *
 *   connection
 *     greeting → client flags → options until GO / EXPORT_NAME (or ABORT)
 *       INFO, GO, EXPORT_NAME, LIST, STRUCTURED_REPLY, LIST/SET_META_CONTEXT
 *       (base:allocation) are served; STARTTLS is refused by policy; anything
 *       else is NBD_REP_ERR_UNSUP
 *     transmission: READ, FLUSH (nothing to flush), BLOCK_STATUS (holes of
 *       the export), DISC; writes, trims and zero-writes fail with EPERM
 *
 * Every length and offset a client sends is checked before use. A client
 * that breaks the framing (a bad magic number, an option or write payload
 * larger than the limits) is disconnected; the server itself never stops
 * because of what a client sent.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  BASE_ALLOCATION, CMD, CMD_FLAG, ERR, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO,
  NBDMAGIC, OPT, OPT_NAMES, REP, REPLY_FLAG_DONE, REPLY_TYPE, REQUEST_MAGIC, STATE_HOLE, STATE_ZERO, TFLAG,
  errorPayload, optionReply, simpleReply, structuredChunk,
} from '../sources/image/nbd-protocol.js';

/** What is exported: a fixed-size, read-only run of bytes. */
export interface NbdExport {
  /** Export name clients may ask for; the empty name (the default export) is always accepted too. */
  readonly name: string;
  /** Other names accepted for the export (a snapshot's full id beside its short one). */
  readonly aliases?: readonly string[];
  /** Shown by `nbdinfo` and in NBD_OPT_LIST. */
  readonly description?: string;
  /** Bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset` (the server checks the range first). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Which parts of a range are holes (read as zeros, nothing stored); enables base:allocation. */
  extents?(offset: number, length: number): Promise<readonly { offset: number; length: number; hole: boolean }[]>;
}

export interface NbdServerOptions {
  /** Connections served at once; more are refused (default 64). */
  readonly maxConnections?: number;
  /** Time a client has to finish the handshake (default 30 s). */
  readonly handshakeTimeoutMs?: number;
  /** Largest read (and largest write payload drained before refusing it), default 32 MiB. */
  readonly maxRequest?: number;
  /** Connection events and errors, for a log. */
  readonly onLog?: (message: string) => void;
}

const MAX_OPTION_LENGTH = 64 * 1024;
const MAX_STRING = 4096;
const MAX_IN_FLIGHT = 16;
const HIGH_WATER = 4 * 1024 * 1024;
const PREFERRED_BLOCK = 4096;
const META_CONTEXT_ID = 1;
/** Longest run one BLOCK_STATUS reply describes (keeps replies small). */
const MAX_STATUS_SPAN = 1024 * 1024 * 1024;

/** The client broke the protocol or went away: the connection ends. */
class Disconnect extends Error {}

/** Buffers a socket's bytes and hands them out in exact amounts, pausing the socket when enough is buffered. */
class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      if (this.buffered > HIGH_WATER) socket.pause();
      this.notify();
    });
    const end = (): void => {
      this.ended = true;
      this.notify();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Exactly `n` bytes; throws `Disconnect` if the connection ends first. */
  async read(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    while (this.buffered < n) {
      if (this.ended) throw new Disconnect('client closed the connection');
      this.socket.resume();
      await new Promise<void>((r) => (this.wake = r));
    }
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - o);
        c.copy(out, o, 0, take);
        o += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
    }
    this.buffered -= n;
    if (this.buffered <= HIGH_WATER) this.socket.resume();
    return out;
  }

  /** Reads and throws away `n` bytes without holding them all. */
  async skip(n: number): Promise<void> {
    for (let left = n; left > 0;) {
      const take = Math.min(left, 1 << 20);
      await this.read(take);
      left -= take;
    }
  }
}

/** One client's session. */
class Connection {
  private readonly reader: SocketReader;
  private noZeroes = false;
  private structured = false;
  private metaContext = false;
  private inFlight = 0;
  private slot: (() => void) | undefined;
  private closed = false;
  private drained: Promise<void> | undefined;

  constructor(private readonly socket: Socket, private readonly ex: NbdExport, private readonly opts: Required<Omit<NbdServerOptions, 'onLog'>> & NbdServerOptions, private readonly peer: string) {
    this.reader = new SocketReader(socket);
    socket.setNoDelay(true);
    socket.on('close', () => {
      this.closed = true;
      this.releaseSlot();
    });
  }

  private log(msg: string): void {
    this.opts.onLog?.(`${this.peer}: ${msg}`);
  }

  /** Writes one whole message; resolves when the socket can take more (one shared wait, however many replies are queued). */
  private send(b: Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return Promise.resolve();
    if (this.socket.write(b)) return Promise.resolve();
    this.drained ??= new Promise<void>((r) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        this.drained = undefined;
        r();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
    return this.drained;
  }

  async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.log('handshake not finished in time; disconnecting');
      this.socket.destroy();
    }, this.opts.handshakeTimeoutMs);
    try {
      const go = await this.handshake();
      clearTimeout(timer);
      if (go) await this.transmission();
    } catch (e) {
      if (!(e instanceof Disconnect)) this.log(`error: ${(e as Error).message}`);
      else if (e.message !== 'client closed the connection') this.log(e.message);
    } finally {
      clearTimeout(timer);
      // Let replies to requests still being served go out first.
      while (this.inFlight > 0 && !this.closed) await new Promise<void>((r) => (this.slot = r));
      this.socket.end();
    }
  }

  // ---- handshake ----

  /** Returns true when the client chose the export and transmission starts. */
  private async handshake(): Promise<boolean> {
    const greeting = Buffer.alloc(18);
    NBDMAGIC.copy(greeting, 0);
    IHAVEOPT.copy(greeting, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    await this.send(greeting);
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) throw new Disconnect(`unknown client flags 0x${clientFlags.toString(16)}; disconnecting`);
    const fixed = (clientFlags & FLAG_C_FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      const h = await this.reader.read(16);
      if (!h.subarray(0, 8).equals(IHAVEOPT)) throw new Disconnect('bad option magic; disconnecting');
      const option = h.readUInt32BE(8);
      const length = h.readUInt32BE(12);
      if (length > MAX_OPTION_LENGTH) {
        // Larger than any valid option: the client is confused or hostile.
        throw new Disconnect(`option ${OPT_NAMES[option] ?? option} with ${length} bytes of data; disconnecting`);
      }
      const data = await this.reader.read(length);
      if (!fixed && option !== OPT.EXPORT_NAME) throw new Disconnect('a client without fixed newstyle sent an option other than EXPORT_NAME; disconnecting');
      const done = await this.option(option, data);
      if (done !== undefined) return done;
    }
  }

  private knownName(name: string): boolean {
    return name === '' || name === this.ex.name || (this.ex.aliases?.includes(name) ?? false);
  }

  private transmissionFlags(): number {
    let f = TFLAG.HAS_FLAGS | TFLAG.READ_ONLY | TFLAG.SEND_FLUSH | TFLAG.CAN_MULTI_CONN;
    if (this.structured) f |= TFLAG.SEND_DF;
    return f;
  }

  private error(option: number, reply: number, message: string): Promise<void> {
    return this.send(optionReply(option, reply, Buffer.from(message, 'utf8')));
  }

  /** Handles one option; returns true to start transmission, false to end, undefined to go on. */
  private async option(option: number, data: Buffer): Promise<boolean | undefined> {
    switch (option) {
      case OPT.EXPORT_NAME: {
        const name = data.toString('utf8');
        if (!this.knownName(name)) throw new Disconnect(`unknown export "${name}" asked for with NBD_OPT_EXPORT_NAME; disconnecting`);
        const b = Buffer.alloc(10 + (this.noZeroes ? 0 : 124));
        b.writeBigUInt64BE(BigInt(this.ex.size), 0);
        b.writeUInt16BE(this.transmissionFlags(), 8);
        await this.send(b);
        return true;
      }
      case OPT.ABORT:
        await this.send(optionReply(option, REP.ACK));
        return false;
      case OPT.LIST: {
        if (data.length !== 0) return void (await this.error(option, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data'));
        const name = Buffer.from(this.ex.name, 'utf8');
        const desc = Buffer.from(this.ex.description ?? '', 'utf8');
        const len = Buffer.alloc(4);
        len.writeUInt32BE(name.length, 0);
        await this.send(optionReply(option, REP.SERVER, Buffer.concat([len, name, desc])));
        await this.send(optionReply(option, REP.ACK));
        return undefined;
      }
      case OPT.STARTTLS:
        await this.error(option, REP.ERR_POLICY, 'TLS is not offered by holdfast serve-nbd; listen on loopback or tunnel the connection (ssh -L)');
        return undefined;
      case OPT.INFO:
      case OPT.GO:
        return this.infoOrGo(option, data);
      case OPT.STRUCTURED_REPLY:
        if (data.length !== 0) return void (await this.error(option, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data'));
        this.structured = true;
        await this.send(optionReply(option, REP.ACK));
        return undefined;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT:
        await this.metaContextOption(option, data);
        return undefined;
      default:
        await this.error(option, REP.ERR_UNSUP, `option ${OPT_NAMES[option] ?? option} is not supported`);
        return undefined;
    }
  }

  private async infoOrGo(option: number, data: Buffer): Promise<boolean | undefined> {
    if (data.length < 6) return void (await this.error(option, REP.ERR_INVALID, 'truncated request'));
    const nameLength = data.readUInt32BE(0);
    if (nameLength > MAX_STRING || 4 + nameLength + 2 > data.length) return void (await this.error(option, REP.ERR_INVALID, 'bad export name length'));
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 4 + nameLength + 2 + 2 * count) return void (await this.error(option, REP.ERR_INVALID, 'option length does not match its information requests'));
    if (!this.knownName(name)) return void (await this.error(option, REP.ERR_UNKNOWN, `no export named "${name}"; this server exports "${this.ex.name}" (or the default, "")`));
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(data.readUInt16BE(4 + nameLength + 2 + 2 * i));
    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(INFO.EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(this.ex.size), 2);
    exportInfo.writeUInt16BE(this.transmissionFlags(), 10);
    await this.send(optionReply(option, REP.INFO, exportInfo));
    if (wanted.has(INFO.NAME)) {
      const b = Buffer.concat([Buffer.alloc(2), Buffer.from(this.ex.name, 'utf8')]);
      b.writeUInt16BE(INFO.NAME, 0);
      await this.send(optionReply(option, REP.INFO, b));
    }
    if (wanted.has(INFO.DESCRIPTION) && this.ex.description) {
      const b = Buffer.concat([Buffer.alloc(2), Buffer.from(this.ex.description, 'utf8')]);
      b.writeUInt16BE(INFO.DESCRIPTION, 0);
      await this.send(optionReply(option, REP.INFO, b));
    }
    // Block sizes are always sent: they tell clients the largest request served.
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(INFO.BLOCK_SIZE, 0);
    bs.writeUInt32BE(1, 2);
    bs.writeUInt32BE(PREFERRED_BLOCK, 6);
    bs.writeUInt32BE(this.opts.maxRequest, 10);
    await this.send(optionReply(option, REP.INFO, bs));
    await this.send(optionReply(option, REP.ACK));
    return option === OPT.GO ? true : undefined;
  }

  /** NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: only base:allocation exists. */
  private async metaContextOption(option: number, data: Buffer): Promise<void> {
    if (!this.structured) return this.error(option, REP.ERR_INVALID, 'negotiate structured replies first');
    let o = 0;
    const u32 = (): number | undefined => {
      if (o + 4 > data.length) return undefined;
      o += 4;
      return data.readUInt32BE(o - 4);
    };
    const str = (): string | undefined => {
      const n = u32();
      if (n === undefined || n > MAX_STRING || o + n > data.length) return undefined;
      o += n;
      return data.toString('utf8', o - n, o);
    };
    const name = str();
    const count = u32();
    if (name === undefined || count === undefined) return this.error(option, REP.ERR_INVALID, 'truncated request');
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      const q = str();
      if (q === undefined) return this.error(option, REP.ERR_INVALID, 'truncated query');
      queries.push(q);
    }
    if (o !== data.length) return this.error(option, REP.ERR_INVALID, 'trailing bytes after the queries');
    if (!this.knownName(name)) return this.error(option, REP.ERR_UNKNOWN, `no export named "${name}"`);
    const available = this.ex.extents !== undefined;
    const matches = (q: string): boolean => q === BASE_ALLOCATION || (option === OPT.LIST_META_CONTEXT && q === 'base:');
    const selected = available && (option === OPT.LIST_META_CONTEXT && queries.length === 0 ? true : queries.some(matches));
    if (option === OPT.SET_META_CONTEXT) this.metaContext = selected;
    if (selected) {
      const b = Buffer.concat([Buffer.alloc(4), Buffer.from(BASE_ALLOCATION, 'utf8')]);
      b.writeUInt32BE(option === OPT.SET_META_CONTEXT ? META_CONTEXT_ID : 0, 0);
      await this.send(optionReply(option, REP.META_CONTEXT, b));
    }
    await this.send(optionReply(option, REP.ACK));
  }

  // ---- transmission ----

  private releaseSlot(): void {
    const s = this.slot;
    this.slot = undefined;
    s?.();
  }

  private async transmission(): Promise<void> {
    this.log('transmission started');
    for (;;) {
      while (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => (this.slot = r));
      if (this.closed) return;
      const h = await this.reader.read(28);
      if (h.readUInt32BE(0) !== REQUEST_MAGIC) throw new Disconnect('bad request magic; disconnecting');
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const cookie = Buffer.from(h.subarray(8, 16));
      const offset = h.readBigUInt64BE(16);
      const length = h.readUInt32BE(24);
      if (type === CMD.DISC) return;
      if (type === CMD.WRITE) {
        // The payload follows the header and must be consumed to stay in step.
        if (length > this.opts.maxRequest) throw new Disconnect(`write of ${length} bytes is larger than the limit; disconnecting`);
        await this.reader.skip(length);
        await this.replyError(cookie, ERR.EPERM, 'the export is read-only');
        continue;
      }
      this.inFlight++;
      void this.serve(type, flags, cookie, offset, length).catch((e: unknown) => this.log(`error: ${(e as Error).message}`)).finally(() => {
        this.inFlight--;
        this.releaseSlot();
      });
    }
  }

  /** Checks a request's range; returns the offset as a number, or an error already replied. */
  private range(offset: bigint, length: number): number | string {
    if (offset > BigInt(this.ex.size) || offset + BigInt(length) > BigInt(this.ex.size)) return `range ${offset}+${length} is beyond the end of the export (${this.ex.size} bytes)`;
    return Number(offset);
  }

  private async serve(type: number, flags: number, cookie: Buffer, offset: bigint, length: number): Promise<void> {
    switch (type) {
      case CMD.READ: {
        const at = this.range(offset, length);
        if (typeof at === 'string') return this.replyError(cookie, ERR.EINVAL, at);
        if (length > this.opts.maxRequest) return this.replyError(cookie, ERR.EINVAL, `read of ${length} bytes is larger than the maximum (${this.opts.maxRequest})`);
        let data: Buffer;
        try {
          data = await this.ex.read(at, length);
        } catch (e) {
          this.log(`read of ${length} bytes at ${at} failed: ${(e as Error).message}`);
          return this.replyError(cookie, ERR.EIO, `read failed: ${(e as Error).message}`);
        }
        if (!this.structured) return this.send(Buffer.concat([simpleReply(cookie, 0), data]));
        const off = Buffer.alloc(8);
        off.writeBigUInt64BE(offset, 0);
        return this.send(Buffer.concat([structuredChunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + data.length), off, data]));
      }
      case CMD.FLUSH:
        return this.replyOk(cookie);
      case CMD.TRIM:
      case CMD.WRITE_ZEROES:
        return this.replyError(cookie, ERR.EPERM, 'the export is read-only');
      case CMD.BLOCK_STATUS:
        return this.blockStatus(flags, cookie, offset, length);
      default:
        return this.replyError(cookie, ERR.EINVAL, `command ${type} is not supported`);
    }
  }

  private async blockStatus(flags: number, cookie: Buffer, offset: bigint, length: number): Promise<void> {
    if (!this.structured || !this.metaContext || !this.ex.extents) return this.replyError(cookie, ERR.EINVAL, 'no metadata context was negotiated');
    const at = this.range(offset, length);
    if (typeof at === 'string') return this.replyError(cookie, ERR.EINVAL, at);
    if (length === 0) return this.replyError(cookie, ERR.EINVAL, 'block status of zero bytes');
    let extents;
    try {
      extents = await this.ex.extents(at, Math.min(length, MAX_STATUS_SPAN));
    } catch (e) {
      return this.replyError(cookie, ERR.EIO, `block status failed: ${(e as Error).message}`);
    }
    const list = flags & CMD_FLAG.REQ_ONE ? extents.slice(0, 1) : extents;
    if (list.length === 0) return this.replyError(cookie, ERR.EIO, 'no extents');
    const payload = Buffer.alloc(4 + 8 * list.length);
    payload.writeUInt32BE(META_CONTEXT_ID, 0);
    list.forEach((e, i) => {
      payload.writeUInt32BE(e.length, 4 + 8 * i);
      payload.writeUInt32BE(e.hole ? STATE_HOLE | STATE_ZERO : 0, 8 + 8 * i);
    });
    return this.send(Buffer.concat([structuredChunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, payload.length), payload]));
  }

  private replyOk(cookie: Buffer): Promise<void> {
    return this.send(simpleReply(cookie, 0));
  }

  private replyError(cookie: Buffer, error: number, message: string): Promise<void> {
    if (!this.structured) return this.send(simpleReply(cookie, error));
    const p = errorPayload(error, message);
    return this.send(Buffer.concat([structuredChunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, p.length), p]));
  }

  /** Ends the session (server shutting down). */
  stop(): void {
    this.socket.destroy();
  }
}

/** The server: listens, hands each connection its session. */
export class NbdServer {
  private readonly server: Server;
  private readonly sessions = new Set<Connection>();
  private readonly opts: Required<Omit<NbdServerOptions, 'onLog'>> & NbdServerOptions;
  private closing = false;

  constructor(private readonly ex: NbdExport, opts: NbdServerOptions = {}) {
    this.opts = { maxConnections: 64, handshakeTimeoutMs: 30_000, maxRequest: 32 * 1024 * 1024, ...opts };
    if (!Number.isSafeInteger(ex.size) || ex.size < 0) throw new RangeError(`bad export size ${ex.size}`);
    this.server = createServer((socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => undefined); // reported through the session's reader
    if (this.closing || this.sessions.size >= this.opts.maxConnections) {
      this.opts.onLog?.(`${peer}: refused (${this.closing ? 'shutting down' : `${this.opts.maxConnections} clients connected already`})`);
      socket.destroy();
      return;
    }
    const c = new Connection(socket, this.ex, this.opts, peer);
    this.sessions.add(c);
    this.opts.onLog?.(`${peer}: connected`);
    void c.run().finally(() => {
      this.sessions.delete(c);
      this.opts.onLog?.(`${peer}: disconnected`);
    });
  }

  /**
   * Starts listening; resolves with the bound address (port 0 picks a free
   * one). A failure to listen (EADDRINUSE) rejects, and is not logged: the
   * caller says it once.
   */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.server.on('error', (e) => this.opts.onLog?.(`server error: ${e.message}`));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Clients connected now. */
  get connections(): number {
    return this.sessions.size;
  }

  /** Stops accepting, ends every session. Idempotent. */
  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.sessions) s.stop();
    if (!this.server.listening) return;
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

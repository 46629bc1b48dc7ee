/**
 * A minimal client of QEMU's machine protocol (QMP) on a unix socket: one
 * JSON object a line; the server greets, `qmp_capabilities` leaves the
 * negotiation mode, then each command is answered with `return` or `error`
 * in order (asynchronous events between them are ignored). qmp-disk.ts
 * holds a connection only while it changes the VM: a QMP socket serves one
 * client at a time.
 */
import { createConnection, type Socket } from 'node:net';
import { QemuError } from './qemu.js';

/** How long connecting and each command may take. */
const QMP_TIMEOUT_MS = 30_000;

/** A QMP command answered with an error. */
export class QmpCommandError extends QemuError {
  constructor(readonly command: string, readonly errorClass: string, readonly description: string) {
    super(`QMP ${command} failed: ${description}`);
    this.name = 'QmpCommandError';
  }
}

interface Waiter {
  readonly command: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/** One QMP connection. */
export class QmpClient {
  private buffered = '';
  private readonly waiters: Waiter[] = [];
  private failure: Error | undefined;

  private constructor(private readonly socket: Socket, private readonly path: string) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (e) => this.fail(new QemuError(`QMP socket ${path}: ${e.message}`)));
    socket.on('close', () => this.fail(new QemuError(`QMP socket ${path} closed by the VM`)));
  }

  /** Connects to the QMP socket at `path` and negotiates capabilities. */
  static async connect(path: string): Promise<QmpClient> {
    const socket = createConnection({ path });
    const client = new QmpClient(socket, path);
    // The greeting is answered like a command.
    const greeting = new Promise((resolve, reject) => client.waiters.push({ command: 'greeting', resolve, reject }));
    try {
      await client.timed('greeting', greeting);
      await client.execute('qmp_capabilities');
    } catch (e) {
      socket.destroy();
      throw e;
    }
    return client;
  }

  /** Runs a command; resolves with its `return`, rejects with QmpCommandError. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.failure) throw this.failure;
    const answer = new Promise<unknown>((resolve, reject) => this.waiters.push({ command, resolve, reject }));
    this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    return await this.timed(command, answer) as T;
  }

  /** Closes the connection; idempotent. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      this.socket.destroySoon();
    });
  }

  private async timed<T>(command: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const busy = command === 'greeting' ? ' (a QMP socket serves one client at a time: is another connected to it?)' : '';
        const e = new QemuError(`QMP ${command} on ${this.path}: no answer within ${QMP_TIMEOUT_MS / 1000} s${busy}`);
        this.fail(e);
        reject(e);
      }, QMP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
    this.socket.destroy();
  }

  private onData(d: string): void {
    this.buffered += d;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return this.fail(new QemuError(`QMP socket ${this.path} sent a line that is not JSON`));
    }
    if ('event' in m) return;
    const w = this.waiters.shift();
    if (!w) return this.fail(new QemuError(`QMP socket ${this.path} answered a command never sent`));
    if ('QMP' in m || 'return' in m) return w.resolve(m['return']);
    const err = (m['error'] ?? {}) as { class?: unknown; desc?: unknown };
    w.reject(new QmpCommandError(w.command, String(err.class ?? 'GenericError'), String(err.desc ?? 'no description')));
  }
}

/**
 * A server in a process of its own (the *-main.ts scripts beside this file,
 * or the real `holdfast server`): started with its arguments, it says on
 * stdout where it listens (the scripts: one JSON line with the port). Tests
 * stop it, gently or with SIGKILL, to see what a client and the storage make
 * of a server that goes away; the bench reads its CPU time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

export interface ListeningChild {
  /** The port it listens on. */
  readonly port: number;
  /** Its process id (the endpoint's CPU time is read from /proc). */
  readonly pid: number | undefined;
  /** Sends `signal` (default SIGTERM) and waits for the process to exit; idempotent. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Reads what a child printed so far: what it was waiting for once all of it is there, else undefined. */
export type ReadyParser<T extends { port: number }> = (stdout: string) => T | undefined;

/** The *-main.ts scripts' port line: one JSON object. */
const jsonPortLine: ReadyParser<{ port: number }> = (out) => {
  const line = /^(\{.*\})\n/.exec(out)?.[1];
  return line ? { port: (JSON.parse(line) as { port: number }).port } : undefined;
};

/** Runs `node ARGS…` and waits for its port line; `what` names it when it exits first. */
export async function startListening(args: readonly string[], what: string): Promise<ListeningChild> {
  return startChild(args, what, jsonPortLine);
}

/** Where a child's stderr goes: ours, a file descriptor (a log file), or kept in memory for the test to read (`stderrText`). */
export type StderrTo = 'inherit' | number | 'keep';

/**
 * Runs `node ARGS…` (in `env`, default ours) until `ready` finds what it
 * waits for in its stdout, which it returns as `ready`; its stderr goes where
 * `stderr` says. `what` names it when it exits first.
 */
export async function startChild<T extends { port: number }>(args: readonly string[], what: string, ready: ReadyParser<T>, stderr: StderrTo = 'inherit', env: NodeJS.ProcessEnv = process.env): Promise<ListeningChild & { readonly ready: T; stderrText(): string }> {
  const c: ChildProcess = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', stderr === 'keep' ? 'pipe' : stderr], env });
  let kept = '';
  c.stderr?.on('data', (b: Buffer) => { kept += b.toString(); });
  const found = await new Promise<T>((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer): void => {
      out += b.toString();
      const r = ready(out);
      if (r === undefined) return;
      // What it prints later is not kept (nor left to fill the pipe).
      c.stdout!.off('data', onData);
      c.stdout!.resume();
      resolve(r);
    };
    c.stdout!.on('data', onData);
    c.on('error', reject);
    c.on('exit', (code) => reject(new Error(`${what} exited (${code}) before listening`)));
  });
  let running = true;
  return {
    port: found.port,
    pid: c.pid,
    ready: found,
    stderrText: () => kept,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!running) return;
      running = false;
      if (c.exitCode !== null || c.signalCode !== null) return; // it ended on its own
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill(signal);
      await exited;
    },
  };
}

/** A port on 127.0.0.1 that nothing listens on now (for a server that must come back on the same port, or one that cannot say which it got). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => srv.listen(0, '127.0.0.1', resolve).on('error', reject));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

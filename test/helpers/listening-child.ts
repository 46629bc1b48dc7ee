/**
 * A test server in a process of its own (the *-main.ts scripts beside this
 * file): started with its options, it prints one JSON line with the port it
 * listens on. Tests stop it, gently or with SIGKILL, to see what a client
 * and the storage make of a server that goes away.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ListeningChild {
  /** The port it listens on. */
  readonly port: number;
  /** Its process id (the endpoint's CPU time is read from /proc). */
  readonly pid: number | undefined;
  /** Sends `signal` (default SIGTERM) and waits for the process to exit; idempotent. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `node ARGS…` and waits for its port line; `what` names it when it exits first. */
export async function startListening(args: readonly string[], what: string): Promise<ListeningChild> {
  const c: ChildProcess = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    c.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = /^(\{.*\})\n/.exec(out)?.[1];
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
    c.on('error', reject);
    c.on('exit', (code) => reject(new Error(`${what} exited (${code}) before listening`)));
  });
  let running = true;
  return {
    port,
    pid: c.pid,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!running) return;
      running = false;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill(signal);
      await exited;
    },
  };
}

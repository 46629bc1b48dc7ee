/**
 * A producer command as a stream source (`backup --stdin-from-command` and
 * `backup --image-from-command`): its stdout is the stream, and how it ends
 * decides whether the stream is complete. A pipe cannot tell a producer that
 * died half way from one that finished; running the producer ourselves can.
 */
import { spawn } from 'node:child_process';
import type { ErrorCode } from '../core/errors.js';

/** The producer could not be started, or it did not exit 0: its output is not a complete stream. */
export class ProducerFailedError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'PRODUCER_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'ProducerFailedError';
  }
}

/** How `commandOutput` runs the producer. */
export interface CommandOutputOptions {
  /**
   * Runs the producer in a process group of its own and ends the whole group
   * when the consumer stops early (the agent: a producer's own children,
   * `sh -c 'pg_dump | gzip'`, must not outlive a cancelled job). Off for the
   * CLI, whose producer stays in the terminal's group (Ctrl-C reaches it, and
   * it may ask for a password on the terminal).
   */
  readonly ownGroup?: boolean;
  /** The producer's environment (default: ours). Front ends pass theirs: the engine reads no environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * Reads the producer's stderr instead of sharing ours: on failure its last
   * lines end the error's message (pg_dump's "password authentication
   * failed" is the reason the caller needs), its lines joined into one; on
   * success, any text it wrote is handed here (warnings).
   */
  readonly onStderr?: (text: string) => void;
  /** Ends the producer when aborted, and the stream with the abort's reason. */
  readonly signal?: AbortSignal;
  /** How messages name the producer (default: its file), e.g. "pg_dump of db1". */
  readonly label?: string;
}

/** The most stderr kept for an error message: its end, where the reason is. */
const STDERR_KEPT = 4096;

/**
 * Yields the stdout of `args` (file and arguments; stderr goes to ours).
 * After the last chunk it waits for the command and throws
 * `ProducerFailedError` unless it exited 0, so a consumer that writes its
 * result only after the stream's end writes nothing for a failed producer.
 * A consumer that stops reading early, or an abort of `opts.signal`, ends
 * the command (SIGTERM, and its stdout closed, so a write blocked on the
 * pipe fails at once).
 */
export async function* commandOutput(args: readonly string[], opts: CommandOutputOptions = {}): AsyncGenerator<Uint8Array> {
  const [file, ...rest] = args as [string, ...string[]];
  const label = opts.label ?? file;
  const child = spawn(file, rest, {
    stdio: ['ignore', 'pipe', opts.onStderr ? 'pipe' : 'inherit'],
    detached: opts.ownGroup === true,
    ...(opts.env ? { env: opts.env } : {}),
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_KEPT);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((res) => {
    child.once('error', (error) => res({ code: null, signal: null, error }));
    child.once('close', (code, sig) => res({ code, signal: sig }));
  });
  /** Ends the producer (and its group): its stdout closed, so a write blocked on the pipe fails at once. */
  const end = (): void => {
    child.stdout!.destroy();
    if (opts.ownGroup && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // The group is gone already.
      }
    } else if (child.exitCode === null && child.signalCode === null) {
      child.kill();
    }
  };
  // A producer that writes nothing for a while (pg_dump waiting for a lock) is ended on abort, not when its next chunk comes.
  opts.signal?.addEventListener('abort', end, { once: true });
  let complete = false;
  try {
    try {
      for await (const chunk of child.stdout!) yield chunk as Buffer;
    } catch (e) {
      opts.signal?.throwIfAborted();
      throw e;
    }
    const { code, signal, error } = await exited;
    opts.signal?.throwIfAborted();
    complete = true;
    if (error) throw new ProducerFailedError(`cannot run ${label}: ${error.message}; no snapshot was written`);
    // One line, as every message of the CLI is.
    const said = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '').join('; ');
    if (code !== 0) throw new ProducerFailedError(`${label} failed (${signal ? `killed by ${signal}` : `exit code ${code}`})${said ? `: ${said}` : ''}; no snapshot was written`);
    if (said) opts.onStderr?.(said);
  } finally {
    opts.signal?.removeEventListener('abort', end);
    // A consumer that stops early (an error, Ctrl-C, a cancelled job) leaves no producer running behind it.
    if (!complete) end();
  }
}

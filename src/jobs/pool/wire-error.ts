/**
 * Errors across the thread boundary. A worker thread's error reaches the
 * main thread as a message: structured cloning keeps an `Error`'s message
 * and stack but drops its class and its `code`, so a `CorruptObjectError`
 * raised in a worker would reach the CLI as a plain error (another exit
 * code, a stack trace instead of its message). Workers send `wireError(e)`; the
 * main thread rebuilds it with `rebuildError`: the engine's errors that workers
 * raise come back as their own class (so `instanceof` and `errorCode` see
 * what the main thread would have seen), any other keeps its name, message,
 * `code` (an errno code too: ENOSPC) and stack on a `WorkerError`.
 */
import { AuthenticationError } from '../../core/crypto.js';
import { DecompressionError } from '../../core/compress.js';
import { CorruptObjectError, ForgedObjectError } from '../../repo/errors.js';

/** An error as it crosses threads. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  /** The error's `code` when it is a string: the engine's (src/core/errors.ts) or a system errno code. */
  readonly code?: string;
  /** The worker's stack trace (printed only where the CLI prints stacks: HOLDFAST_DEBUG). */
  readonly stack?: string;
  /** `CorruptObjectError.object`: the stored object at fault. */
  readonly object?: string;
}

/** An error raised in a worker thread that is none of the engine's classes rebuilt by `rebuildError`. */
export class WorkerError extends Error {
  /** The original error's `code`, if it had one. */
  readonly code?: string;
  constructor(w: WireError) {
    super(w.message);
    this.name = w.name;
    if (w.code !== undefined) this.code = w.code;
    if (w.stack !== undefined) this.stack = w.stack;
  }
}

/** The classes rebuilt as themselves, by code: the errors of reading blobs, which workers open. */
const REBUILT: Readonly<Record<string, { prototype: Error }>> = {
  CORRUPT: CorruptObjectError,
  FORGED: ForgedObjectError,
  AUTHENTICATION: AuthenticationError,
  DECOMPRESSION: DecompressionError,
};

/** `e` as it crosses to the main thread. */
export function wireError(e: unknown): WireError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const { code, object } = e as { code?: unknown; object?: unknown };
  return {
    name: e.name,
    message: e.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(e.stack !== undefined ? { stack: e.stack } : {}),
    ...(typeof object === 'string' ? { object } : {}),
  };
}

/** The error `w` describes, rebuilt on this thread; see the module comment. */
export function rebuildError(w: WireError): Error {
  const cls = w.code === undefined ? undefined : REBUILT[w.code];
  if (!cls) return new WorkerError(w);
  // The instance gets its class's prototype (its `code` is a field of that
  // class: set here) without calling a constructor that would word the message again.
  const e = Object.create(cls.prototype) as Error & { code?: string };
  Object.defineProperties(e, {
    message: { value: w.message, writable: true, configurable: true },
    name: { value: w.name, writable: true, configurable: true },
    code: { value: w.code, writable: true, configurable: true, enumerable: true },
    stack: { value: w.stack ?? `${w.name}: ${w.message}`, writable: true, configurable: true },
    object: { value: w.object ?? '', enumerable: true },
  });
  return e;
}

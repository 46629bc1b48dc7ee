/**
 * One thread of a `WorkerPool`. It serves several sessions (jobs) at once:
 * each session names a task script (the blob worker, the block worker) and
 * its init (keys, codecs); the thread imports the script once and keeps one
 * task handler per open session, so that a backup and a restore test running
 * in one process share the process's threads.
 *
 *   { open: { session, script, init } }   → handler = (await import(script)).createHandler(init)
 *   { session, id, task }                 → { id, result } | { id, error }   (error: a `WireError`)
 *   { close: session }                    → the handler (and its keys) dropped
 *   { load: script }                      → the script imported ahead of its sessions (no reply)
 */
import { parentPort } from 'node:worker_threads';
import { wireError } from './wire-error.js';

/** Runs one task of a session; buffers to move back to the main thread go into `transfer`. */
export type TaskHandler<TTask = unknown> = (task: TTask, transfer: ArrayBuffer[]) => unknown;

/** What a task script exports. */
export interface TaskScript<TInit = unknown, TTask = unknown> {
  createHandler(init: TInit): TaskHandler<TTask>;
}

/** A message from the pool to a thread. */
export type PoolMessage =
  | { readonly open: { readonly session: number; readonly script: string; readonly init: unknown } }
  | { readonly close: number }
  | { readonly load: string }
  | { readonly session: number; readonly id: number; readonly task: unknown };

const sessions = new Map<number, Promise<TaskHandler>>();

parentPort!.on('message', (msg: PoolMessage) => {
  if ('open' in msg) {
    const { session, script, init } = msg.open;
    const handler = import(script).then((m: TaskScript) => m.createHandler(init));
    handler.catch(() => undefined); // reported to each task of the session
    sessions.set(session, handler);
    return;
  }
  if ('load' in msg) {
    // A failure shows again, and is reported, when a session opens the script.
    import(msg.load).catch(() => undefined);
    return;
  }
  if ('close' in msg) {
    sessions.delete(msg.close);
    return;
  }
  const { session, id, task } = msg;
  const handler = sessions.get(session);
  if (!handler) {
    parentPort!.postMessage({ id, error: wireError(new Error(`session ${session} is not open in this worker`)) });
    return;
  }
  void handler.then((run) => {
    const transfer: ArrayBuffer[] = [];
    const result = run(task, transfer);
    parentPort!.postMessage({ id, result }, transfer);
  }).catch((e: unknown) => {
    parentPort!.postMessage({ id, error: wireError(e) });
  });
});

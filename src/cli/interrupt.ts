/**
 * Ctrl-C and SIGTERM for the commands: the first of either runs the command's
 * own reaction (abort its job, or end a serving loop); a second one then finds
 * no handler and ends the process as usual, so a stuck command can still be killed.
 */

/** Calls `handler` on the first SIGINT or SIGTERM; returns the function that stops listening (idempotent). */
export function onInterrupt(handler: () => void): () => void {
  const off = (): void => {
    process.off('SIGINT', fire);
    process.off('SIGTERM', fire);
  };
  const fire = (): void => {
    off();
    handler();
  };
  process.on('SIGINT', fire);
  process.on('SIGTERM', fire);
  return off;
}

/** A promise that settles on the first SIGINT or SIGTERM, and the function that stops listening. */
export function untilInterrupted(): { interrupted: Promise<void>; off: () => void } {
  let off: () => void = () => undefined;
  const interrupted = new Promise<void>((resolve) => {
    off = onInterrupt(resolve);
  });
  return { interrupted, off };
}

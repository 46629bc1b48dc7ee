/**
 * What a command that walks a snapshot (`ls`, `dump`) could not show: names
 * refused by the walker and folders whose listing cannot be read. Each is
 * warned about as it is met, the walk goes on with the rest, and the command
 * ends with exit 1 once its output is complete, as `restore` does.
 */
import type { WalkEntry, WalkOptions } from '../jobs/tree-walk.js';
import { BlobNotFoundError, CorruptObjectError } from '../repo/errors.js';
import { warn } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';

export class WalkReport {
  private missed = 0;

  /** `unsafe` words the warning for a refused name; `failsOnUnsafe` counts them against the exit code. */
  constructor(private readonly command: string, private readonly unsafe: (why: string) => string, private readonly failsOnUnsafe: boolean) {}

  /** Options for `walkTree`. */
  readonly walk: Pick<WalkOptions, 'onUnsafe' | 'onTreeError'> = {
    onUnsafe: (path, why) => {
      if (this.failsOnUnsafe) this.missed++;
      warn(`${path}: ${this.unsafe(why)}`);
    },
    // Damage of one listing leaves the rest of the snapshot to show; anything else ends the walk.
    onTreeError: (entry: WalkEntry, e: unknown) => {
      if (!(e instanceof CorruptObjectError || e instanceof BlobNotFoundError)) throw e;
      this.missed++;
      warn(`${entry.path.toString()}: its listing cannot be read (${e.message})`);
    },
  };

  /** Throws the exit-1 error when anything was missed; call once the output is complete. */
  end(): void {
    if (this.missed > 0) throw new ExitError(`${this.command} INCOMPLETE: ${this.missed} path(s) could not be read or were refused (see the warnings)`, EXIT.failed);
  }
}

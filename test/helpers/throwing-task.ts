/**
 * A task script for the worker pool (pool-worker.ts) whose tasks throw the
 * error they name, as a blob worker would meet it: test/jobs/worker-errors.test.ts.
 */
import type { TaskHandler } from '../../src/jobs/pool/pool-worker.js';
import { CorruptObjectError, ForgedObjectError } from '../../src/repo/errors.js';

/** Which error to throw. */
export type ThrowTask = 'corrupt' | 'forged' | 'enospc' | 'plain';

/** See the module comment. */
export function createHandler(): TaskHandler<ThrowTask> {
  return (task) => {
    switch (task) {
      case 'corrupt': throw new CorruptObjectError('pack 00ff, blob 11ee', 'authentication failed');
      case 'forged': throw new ForgedObjectError('snapshot 22dd', 'it is left out');
      case 'enospc': throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
      case 'plain': throw new RangeError('out of range');
    }
  };
}

/**
 * `verifyRestore`: proves that a snapshot can be restored, and returns what
 * it found as data (result.ts), for the CLI to print and an agent to send.
 * A snapshot of files: a sample is restored into a scratch folder and
 * compared with the snapshot (verify-files.ts); an image snapshot: each
 * ext2/3/4 file system in it is checked by e2fsck and read end to end
 * (verify-image.ts). Parameters in, a result out: nothing is read from the
 * environment, nothing printed.
 */
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { FilesystemNotSupportedError } from '../../sources/image/fs/image-volume.js';
import type { JobPoolOptions } from '../pool/worker-pool.js';
import { verifyFiles, type VerifyFilesOptions } from './verify-files.js';
import { verifyImage } from './verify-image.js';
import type { FilesystemResult, VerifyRestoreResult } from './result.js';

export type { VerifyRestoreResult, FileSampleResult, FilesystemResult, E2fsckResult, PathProblem } from './result.js';
export { BadScratchError } from './scratch.js';

export interface VerifyRestoreOptions extends JobPoolOptions {
  /**
   * The folder the test works in (a file snapshot's sample is restored
   * there; an image snapshot is mounted there): empty, or not existing yet
   * (it is then made, mode 0700). Emptied, or removed when the test made
   * it, however the test ends.
   */
  readonly scratch: string;
  /** Files: the share of the files to restore, in (0, 1]. */
  readonly share: number;
  /** Files: at least this many (all, when the snapshot has fewer). */
  readonly minFiles: number;
  /** Files: chooses the sample; the same seed restores the same files. */
  readonly seed: string;
  /** The process runs as root: owners are restored and compared, and an image can be mounted for e2fsck. */
  readonly privileged?: boolean;
  readonly signal?: AbortSignal;
  /** Files: told once the sample is chosen, before anything is restored. */
  readonly onSample?: VerifyFilesOptions['onSample'];
  /** Images: told what each file system's check found, as each ends. */
  readonly onFilesystem?: (result: FilesystemResult) => void;
  /** Images: what a user should know (a damaged partition table, a journal not replayed). */
  readonly onWarning?: (message: string) => void;
}

/** Tests the restore of snapshot `id`. */
export async function verifyRestore(repo: Repository, id: string, snapshot: Snapshot, opts: VerifyRestoreOptions): Promise<VerifyRestoreResult> {
  const startedMs = Date.now();
  const started = new Date(startedMs).toISOString();
  const seconds = (): number => Math.round((Date.now() - startedMs) / 100) / 10;
  if (snapshot.image) {
    const filesystems = await verifyImage(repo, id, snapshot, {
      scratch: opts.scratch,
      ...(opts.privileged ? { privileged: true } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onFilesystem ? { onFilesystem: opts.onFilesystem } : {}),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
    if (!filesystems.some((f) => f.checked)) {
      const found = filesystems.map((f) => `${f.path}: ${f.kind ?? 'nothing recognised'}`).join(', ');
      throw new FilesystemNotSupportedError(`snapshot ${id.slice(0, 8)} holds no ext2/3/4 file system (${found}): nothing a restore test can check; "holdfast check --read-data" verifies its stored blocks`);
    }
    return { snapshot: id, kind: 'image', restorable: filesystems.every((f) => f.restorable), started, seconds: seconds(), filesystems };
  }
  const files = await verifyFiles(repo, snapshot.tree, opts);
  return { snapshot: id, kind: 'files', restorable: files.failed.length === 0, started, seconds: seconds(), files };
}

/**
 * `verifyRestore`: proves that a snapshot can be restored, and returns what
 * it found as data (result.ts), for the CLI to print and an agent to send.
 * A snapshot of files: a sample is restored into a scratch folder and
 * compared with the snapshot (verify-files.ts); an image snapshot: each
 * ext2/3/4 file system in it is checked by e2fsck and read end to end
 * (verify-image.ts). Parameters in, a result out: nothing is read from the
 * environment, nothing printed.
 */
import { randomBytes } from 'node:crypto';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { FilesystemNotSupportedError } from '../../sources/image/fs/image-volume.js';
import { verifyFiles, type VerifyFilesOptions } from './verify-files.js';
import { verifyImage } from './verify-image.js';
import type { FilesystemResult, VerifyRestoreResult } from './result.js';

export type { VerifyRestoreResult, FileSampleResult, FilesystemResult, E2fsckResult, PathProblem } from './result.js';
export { BadScratchError } from './scratch.js';

/**
 * The file sample's options (verify-files.ts), and the image check's.
 * `scratch` is where either works: a file snapshot's sample is restored
 * there, an image snapshot is mounted there. `privileged` (root) also lets
 * an image be mounted for e2fsck.
 */
export interface VerifyRestoreOptions extends VerifyFilesOptions {
  /** Images: told what each file system's check found, as each ends. */
  readonly onFilesystem?: (result: FilesystemResult) => void;
  /** Images: what a user should know (a damaged partition table, a journal not replayed). */
  readonly onWarning?: (message: string) => void;
}

/** The sample a file snapshot's test restores unless told otherwise: 1 % of its files, and at least 100. */
export const DEFAULT_SAMPLE = { share: 0.01, minFiles: 100 } as const;

/** A new seed for a sample (at most 15 digits, as a run prints it). */
export function randomSeed(): string {
  return String(randomBytes(6).readUIntBE(0, 6) % 1e15);
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

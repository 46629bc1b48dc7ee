/**
 * What a restore test found, as data: `verifyRestore` returns it, the CLI
 * prints it (or, with --json, prints it as it is), and an agent can send it
 * to the server that scheduled the test.
 */
import type { ErrorCode } from '../../core/errors.js';

/** The outcome of one `verifyRestore` of one snapshot. */
export interface VerifyRestoreResult {
  /** The snapshot's full id. */
  readonly snapshot: string;
  /** A snapshot of files (a sample is restored) or of a disk image (its file systems are checked). */
  readonly kind: 'files' | 'image';
  /** Nothing checked failed: every sampled file restored exactly, every file system checked clean and read whole. */
  readonly restorable: boolean;
  /** When the test started (ISO 8601, UTC) and how long it took. */
  readonly started: string;
  readonly seconds: number;
  /** For a snapshot of files. */
  readonly files?: FileSampleResult;
  /** For an image snapshot: each file system (or partition) of the image. */
  readonly filesystems?: readonly FilesystemResult[];
}

/** A path that did not restore (or read) as the snapshot has it, and why. */
export interface PathProblem {
  readonly path: string;
  readonly error: string;
  /** The engine's code of the error, when it raised one (src/core/errors.ts). */
  readonly code?: ErrorCode;
}

/** The restore of a sample of a file snapshot. */
export interface FileSampleResult {
  /** What chose the sample: the same seed, share and minimum take the same files of the same snapshot. */
  readonly seed: string;
  readonly share: number;
  readonly minFiles: number;
  /** Regular files and symlinks in the snapshot, sampled from. */
  readonly candidates: number;
  /** The sampled paths, in the snapshot's order. */
  readonly paths: readonly string[];
  /** The largest regular file and the newest node, always in the sample. */
  readonly largest?: string;
  readonly newest?: string;
  /** Bytes of the sampled regular files. */
  readonly bytes: number;
  /** Sampled paths restored with the snapshot's bytes and metadata. */
  readonly verified: number;
  /** Everything that did not restore exactly (sampled paths, and folders on their way). */
  readonly failed: readonly PathProblem[];
}

/** What `e2fsck -fn` said of one file system. */
export interface E2fsckResult {
  /**
   * `clean`: exit 0; `damaged`: it found errors (exit 4, or 1 or 2);
   * `failed`: it could not check (exit 8 or more, or a signal);
   * `skipped`: it did not run (`reason` says why).
   */
  readonly status: 'clean' | 'damaged' | 'failed' | 'skipped';
  readonly exitCode?: number;
  /** Its output (the end of it, when long), unless it found the file system clean. */
  readonly output?: string;
  readonly reason?: string;
}

/** One file system (or partition) of an image snapshot. */
export interface FilesystemResult {
  /** Its root in the image's tree: "/" for a bare file system, "/p1" for partition 1. */
  readonly path: string;
  /** What it is (ext4, vfat, swap …); undefined when nothing was recognised. */
  readonly kind?: string;
  /** Where it lies in the image, in bytes. */
  readonly offset: number;
  readonly size: number;
  /** Only ext2/3/4 file systems are checked; `reason` says why another was not. */
  readonly checked: boolean;
  readonly reason?: string;
  readonly e2fsck?: E2fsckResult;
  /** Regular files read end to end (every block's id checked as it was read), and their bytes. */
  readonly files: number;
  readonly bytes: number;
  /** Files and folders that could not be read. */
  readonly failed: readonly PathProblem[];
  /** Checked, not found damaged by e2fsck, and every file read. */
  readonly restorable: boolean;
}

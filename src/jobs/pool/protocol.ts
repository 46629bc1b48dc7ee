/**
 * Messages between the main thread and the blob workers. Buffers travel as
 * transferred ArrayBuffers (moved, not copied).
 *
 *   init      secrets, compression and chunker parameters (once per worker)
 *   seal      one chunk read by the main thread → its prepared blob
 *   files     a batch of small files, read by the worker → per file its
 *             content list and prepared blobs (duplicates the parent
 *             snapshot already has are not sealed again)
 *   unpack    one pack's needed blobs → opened and written to their files
 *   verify    restored files → read back and checked against their ids
 */
import type { ChunkerParams } from '../../core/chunker.js';
import type { CompressionMode } from '../../core/compress.js';
import type { BlobType } from '../../repo/pack.js';
import type { ContentEntry } from '../../repo/tree.js';

export interface InitMessage {
  readonly encryption: Uint8Array;
  readonly id: Uint8Array;
  readonly chunkerSeed: Uint8Array;
  readonly chunker: ChunkerParams;
  readonly compression: CompressionMode;
}

/** A prepared blob as it crosses threads (`sealed` is transferred). */
export interface WireBlob {
  readonly type: BlobType;
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  readonly sealed: Uint8Array;
}

export interface SealTask {
  readonly kind: 'seal';
  readonly type: BlobType;
  readonly data: Uint8Array;
}

export interface SealResult {
  /** Absent when the chunk is all zeros (a hole). */
  readonly blob?: WireBlob;
  readonly rawLength: number;
}

export interface FileJob {
  /** Path for system calls (may be a /proc/self/fd/N/... form for long paths). */
  readonly path: Uint8Array;
  readonly size: number;
  readonly mtime: bigint;
  readonly ctime: bigint;
  /** Blob ids the repository is known to hold (from the parent snapshot): not sealed again. */
  readonly known?: readonly string[];
}

export interface FilesTask {
  readonly kind: 'files';
  readonly files: readonly FileJob[];
}

export interface FileResult {
  readonly content?: ContentEntry[];
  readonly size?: number;
  readonly blobs?: WireBlob[];
  /** The file changed while being read. */
  readonly changed?: boolean;
  readonly error?: { code?: string; message: string };
}

/** Metadata applied to a file once its content is complete. */
export interface FileMeta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds for utimes (`utimesSeconds` in src/sources/posix.ts). */
  readonly mtime: number;
  readonly size: number;
  readonly chown: boolean;
}

export interface UnpackTarget {
  readonly path: Uint8Array;
  readonly offset: number;
  /** Set when this blob is the file's whole content: the worker creates, writes, finishes and closes it. */
  readonly whole?: FileMeta;
}

export interface UnpackBlob {
  readonly id: string;
  readonly type: BlobType;
  readonly flags: number;
  readonly rawLength: number;
  /** Offset and length within `data`. */
  readonly offset: number;
  readonly length: number;
  readonly targets: readonly UnpackTarget[];
}

export interface UnpackTask {
  readonly kind: 'unpack';
  readonly pack: string;
  readonly data: Uint8Array;
  readonly blobs: readonly UnpackBlob[];
}

export interface UnpackResult {
  readonly bytes: number;
  /** Targets that failed, by path, and blobs that failed to open. */
  readonly failed: { path: Uint8Array; message: string }[];
}

export interface VerifyJob {
  readonly path: Uint8Array;
  readonly content: readonly ContentEntry[];
  /** Raw length of each blob entry of `content` (holes carry their own length). */
  readonly lengths: readonly number[];
  readonly size: number;
}

export interface VerifyTask {
  readonly kind: 'verify';
  readonly files: readonly VerifyJob[];
}

export interface VerifyResult {
  /** Indexes (into the task's files) of files that do not match. */
  readonly bad: number[];
}

export type Task = SealTask | FilesTask | UnpackTask | VerifyTask;

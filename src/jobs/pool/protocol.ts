/**
 * Messages between the main thread and the blob workers. Buffers travel as
 * transferred ArrayBuffers (moved, not copied).
 *
 *   init      secrets, compression and chunker parameters (once per worker)
 *   seal      one chunk read by the main thread → its prepared blob
 *   files     a batch of small files, read by the worker and stored as one
 *             blob → per file its content (a slice of that blob) and
 *             fingerprint; a file whose fingerprint equals its parent's is
 *             left out (its old content is reused)
 *   file      one mid-size file, read whole by the worker → its content list
 *             (chunked, whole blobs and holes) and prepared blobs (ids the
 *             parent snapshot's version already has are not sealed again)
 *   unpack    one pack's needed blobs → opened and written to their files
 *   verify    restored files → read back and checked against their ids
 */
import type { ChunkerParams } from '../../core/chunker.js';
import type { CompressionMode } from '../../core/compress.js';
import type { BlobType } from '../../repo/pack.js';
import type { ContentEntry } from '../../repo/tree.js';
import type { ReadError } from '../../sources/file-tree.js';
import type { WireError } from './wire-error.js';

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
  /** The parent snapshot's fingerprint of this file, when its content can be reused. */
  readonly fingerprint?: string;
  /** Read its extended attributes too, from the descriptor the worker reads it through. */
  readonly xattrs?: true;
}

/** A file's extended attributes as read by a worker (`FileJob.xattrs`): sorted by name; none when it has none; or why they could not be read. */
export interface XattrsRead {
  readonly xattrs?: readonly { readonly name: Uint8Array; readonly value: Uint8Array }[];
  readonly xattrError?: ReadError;
}

export interface FilesTask {
  readonly kind: 'files';
  readonly files: readonly FileJob[];
}

export interface FileResult extends XattrsRead {
  /** Absent when the content equals the parent's (`fingerprint` matched). */
  readonly content?: ContentEntry[];
  readonly size?: number;
  readonly fingerprint?: string;
  /** The file changed while being read. */
  readonly changed?: boolean;
  readonly error?: ReadError;
}

export interface ChunkFileTask {
  readonly kind: 'file';
  readonly file: FileJob;
  /** Blob ids the repository holds from the parent snapshot's version: not sealed again. */
  readonly known?: readonly string[];
}

export interface ChunkFileResult extends XattrsRead {
  readonly content?: ContentEntry[];
  readonly size?: number;
  readonly blobs?: WireBlob[];
  readonly changed?: boolean;
  readonly error?: ReadError;
}

export interface FilesResult {
  /** One per job, in order. */
  readonly files: FileResult[];
  /** The blobs of the batch's stream, in stream order. */
  readonly blobs: WireBlob[];
}

export interface UnpackBlob {
  readonly id: string;
  readonly type: BlobType;
  readonly flags: number;
  readonly rawLength: number;
  /** Offset and length within `data`. */
  readonly offset: number;
  readonly length: number;
  /** How many targets it goes to: the next ones of the task's, after those of the blobs before it. */
  readonly targets: number;
}

/**
 * A pack segment's blobs and the files they go to. The targets are flat,
 * one buffer of each kind per segment (transferred), not an object per file
 * to clone: target i's path is `paths` from `pathStarts[i]` to
 * `pathStarts[i + 1]`, and its WRITE_FIELDS numbers (src/sources/native.ts)
 * at `fields[i * WRITE_FIELDS]` are what native/restore.cc's writeFiles
 * reads, with its bytes' start and length within the blob's plaintext (a
 * slice, or all of it) and, for a file the blob makes whole
 * (`WRITE_FLAGS.whole`), the file's size, mode, owner and mtime.
 */
export interface UnpackTask {
  readonly kind: 'unpack';
  /** The restore's target folder (a descriptor of this process); `paths` are below it, never reached through a symlink. */
  readonly dir: number;
  readonly pack: string;
  readonly data: Uint8Array;
  readonly blobs: readonly UnpackBlob[];
  readonly paths: Uint8Array;
  readonly pathStarts: Uint32Array;
  readonly fields: Float64Array;
}

export interface UnpackResult {
  readonly bytes: number;
  /** Targets that could not be written, by index in the task, and why. */
  readonly failed: { target: number; message: string }[];
  /** Blobs that failed to open or to match their id (by index in the task), and why; nothing was written for them. */
  readonly bad: { index: number; error: WireError }[];
}

export interface VerifyJob {
  /** Below the task's `dir`. */
  readonly path: Uint8Array;
  readonly size: number;
  /** The file's fingerprint: when set, the whole file is checked against it. */
  readonly fingerprint?: string;
  /** Otherwise each entry is checked: whole blobs by id, holes as zeros. */
  readonly content: readonly ContentEntry[];
  /** Raw length of each blob entry of `content` (holes carry their own length). */
  readonly lengths: readonly number[];
  /** The mtime the file must have (ns, floored to the microsecond). */
  readonly mtime: bigint;
}

export interface VerifyTask {
  readonly kind: 'verify';
  /** The restore's target folder, as `UnpackTask.dir`. */
  readonly dir: number;
  readonly files: readonly VerifyJob[];
}

export interface VerifyResult {
  /** Files that do not match: their index into the task's files, and what differs. */
  readonly bad: { readonly index: number; readonly reason: string }[];
}

export type Task = SealTask | FilesTask | ChunkFileTask | UnpackTask | VerifyTask;

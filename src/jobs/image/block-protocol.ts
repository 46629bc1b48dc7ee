/**
 * Messages between an image backup and its block workers. Block bytes live
 * in SharedArrayBuffer slots that the main thread fills and the workers read:
 * nothing is copied between threads but the results.
 *
 *   scan  slot of n blocks + the fingerprints expected (from the changed-block
 *         cache) → per block: zero, same (fingerprint matched), or changed with
 *         its fingerprint and keyed id
 *   seal  slot + the changed blocks the repository does not have → sealed blobs
 *   unpack  (restore) a range of a pack → each blob opened, then written with
 *         pwrite at its image positions (fd ≥ 0: file descriptors are shared
 *         by the threads of a process), or handed back (fd < 0: a stream)
 */
import type { CompressionMode } from '../../core/compress.js';
import type { Repository } from '../../repo/repository.js';
import type { WireError } from '../pool/wire-error.js';

export interface BlockInit {
  readonly encryption: Uint8Array;
  readonly id: Uint8Array;
  readonly compression: CompressionMode;
}

/** What a block worker needs from a repository: its blob keys, and the compression to seal with (default the repository's). */
export function blockInit(repo: Repository, compression: CompressionMode = repo.config.compression): BlockInit {
  const s = repo.workerSecrets();
  return { encryption: s.encryption, id: s.id, compression };
}

/** What became of each block of a scan. */
export const enum BlockKind {
  Zero = 0,
  Same = 1,
  Changed = 2,
}

export interface ScanTask {
  readonly kind: 'scan';
  readonly data: SharedArrayBuffer;
  /** Bytes of `data` in use. */
  readonly length: number;
  readonly blockSize: number;
  /** 16 bytes per block: the cached fingerprint, or zeros for none. */
  readonly expect: Uint8Array;
  /**
   * The slot was not read: the worker maps these bytes of the source (a
   * file or block device open in the process) and copies into `data` only
   * the blocks it finds changed.
   */
  readonly source?: { readonly fd: number; readonly position: number };
}

export interface ScanResult {
  /** `BlockKind` per block. */
  readonly kinds: Uint8Array;
  /** 16 bytes per block: the fingerprint (zeros for zero blocks). */
  readonly fingerprints: Uint8Array;
  /** 32 bytes per block: the keyed id of changed blocks (zeros otherwise). */
  readonly ids: Uint8Array;
  /** With `source`: the errno of a mapping that failed (nothing scanned; read the slot instead), or -1 when the source ended inside the range. */
  readonly mapError?: number;
}

export interface SealTask {
  readonly kind: 'seal';
  readonly data: SharedArrayBuffer;
  readonly blockSize: number;
  readonly length: number;
  /** Block indexes within the slot, and their ids (hex). */
  readonly blocks: readonly { index: number; id: string }[];
}

export interface SealedBlock {
  readonly index: number;
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  /** Offset and length of the sealed bytes in `SealResult.sealed`. */
  readonly offset: number;
  readonly length: number;
}

export interface SealResult {
  readonly blobs: readonly SealedBlock[];
  readonly sealed: Uint8Array;
}

export interface UnpackBlob {
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  /** Offset and length of the sealed blob within `data`. */
  readonly offset: number;
  readonly length: number;
  /** Byte positions in the image where the plaintext goes. */
  readonly positions: readonly number[];
}

export interface UnpackTask {
  readonly kind: 'unpack';
  readonly pack: string;
  /** Transferred bytes of the pack range. */
  readonly data: Uint8Array;
  readonly blobs: readonly UnpackBlob[];
  /** Target file descriptor; -1: return the plaintexts. */
  readonly fd: number;
}

export interface UnpackResult {
  readonly bytes: number;
  /** With fd < 0: the plaintext of each blob, in task order (transferred); empty for a bad one. */
  readonly plain?: Uint8Array[];
  /** Blobs that failed to open or to match their id (by index in the task), and why; nothing was written for them. */
  readonly bad: { index: number; error: WireError }[];
}

export type BlockTask = ScanTask | SealTask | UnpackTask;

/** The block worker script, for `PoolSession.open<BlockTask>(opts, BLOCK_WORKER, blockInit(repo))`. */
export const BLOCK_WORKER = new URL('./block-worker.js', import.meta.url);

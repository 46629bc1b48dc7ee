/**
 * The holdfast_native addon (binding.gyp, native/): the system calls Node
 * offers not at all with Buffer paths (the xattr family), only one entry
 * per call (a folder's names and their lstat; restored files' open, write,
 * metadata and close) or not at all (openat2 and mknod, for restores that
 * never follow a symlink; mmap, for the image backups' scan).
 * `npm ci` builds it with node-gyp into build/Release.
 */

import { loadAddon } from '../core/addon.js';

/**
 * The functions the addon exports (native/*.cc); each part adds its own.
 * Their errors are Errors with `code` (Node's errno name: ENODATA, ENOTSUP,
 * EPERM, ...), `errno` and `syscall`, as node:fs throws; `listDirStats`
 * returns its errors as errno values instead (a folder's entries may fail
 * one by one, and the walk carries on).
 */
export interface NativeAddon {
  /**
   * The names of a path's extended attributes, not following a final
   * symlink, or of an open file given its descriptor (native/xattr.cc).
   */
  llistxattr(path: Buffer | number): Buffer[];
  /** The value of one extended attribute (ENODATA when it has none of that name). */
  lgetxattr(path: Buffer | number, name: Buffer): Buffer;
  /** Creates or replaces one extended attribute. */
  lsetxattr(path: Buffer | number, name: Buffer, value: Buffer): void;
  /** Removes one extended attribute (ENODATA when it has none of that name). */
  lremovexattr(path: Buffer | number, name: Buffer): void;
  /**
   * A folder's entries sorted bytewise and the lstat of each, or the errno of
   * opening or reading the folder (native/walk.cc). Three buffers of their
   * own: the names back to back, the end of each (uint32), ten int64 stat
   * fields per entry (file-tree.ts `DirListing`); then the entries whose
   * lstat failed as index, errno pairs, or undefined when none did.
   */
  listDirStats(dir: Buffer): number | [names: ArrayBuffer, ends: ArrayBuffer, fields: ArrayBuffer, failures: number[] | undefined];
  /**
   * Writes bytes of `data` into files, each with its own system calls but
   * one call for all (native/restore.cc, which lists the WRITE_FIELDS
   * numbers per path in `fields`): path i is `paths` from `starts[i]` to
   * `starts[i + 1]`, below the folder `dirFd` as `openBeneath` opens it.
   * Returns undefined, or for each path that failed its index and the
   * message Node's fs would have given, in pairs; the others are written.
   */
  writeFiles(dirFd: number, data: Uint8Array, paths: Uint8Array, starts: Uint32Array, fields: Float64Array): (number | string)[] | undefined;
  /**
   * The descriptor of `path` (leading slashes ignored) below the folder
   * `dirFd`, opened with `flags` (and `mode` when creating) without
   * following any symlink on the way or at its end (ELOOP) and without
   * leaving the folder (EXDEV): openat2 with RESOLVE_BENEATH |
   * RESOLVE_NO_SYMLINKS, one component at a time where the kernel has no
   * openat2, or when `walk` says so (native/beneath.cc).
   */
  openBeneath(dirFd: number, path: Buffer, flags: number, mode: number, walk?: boolean): number;
  /**
   * Makes the folder `path` below `dirFd` (resolved as `openBeneath` does)
   * with mkdirat in its parent's descriptor, with `mode` (the umask
   * applies), and opens what is then at that name from that descriptor,
   * never following a symlink: its inode and its owner (a folder put there in
   * its place meanwhile passes: the caller tells it by its owner); -1 when
   * something is at that name already (nothing made). Errors as
   * `openBeneath`'s.
   */
  makeFolderBeneath(dirFd: number, path: Buffer, mode: number): [ino: number, owner: number] | -1;
  /** mknod(2): a FIFO or device node (the type's bits in `mode`; the umask applies). */
  mknod(path: Buffer, mode: number, dev: bigint): void;
  /** The owner of what an O_PATH descriptor names, a symlink itself included (fchownat, AT_EMPTY_PATH). */
  fchownPath(fd: number, uid: number, gid: number): void;
  /** Access and modification times of what an O_PATH descriptor names, a symlink itself included (utimensat, AT_EMPTY_PATH; EINVAL before Linux supported it). */
  utimesPath(fd: number, seconds: number, nanoseconds: number): void;
  /** close(2) of a descriptor `openBeneath` gave a worker thread (Node's closeSync there warns about descriptors its fs did not open). */
  close(fd: number): void;
  /**
   * An image backup's scan of `length` bytes of `fd` at `position` (a
   * multiple of the page size) without copying them (native/mapscan.cc): per
   * block its kind into `kinds` (block-protocol.ts `BlockKind`) and its
   * fingerprint (crypto.ts `fingerprint` under `fpKey`; zeros for a zero
   * block) into `fingerprints`, a block whose fingerprint is not the one in
   * `expect` copied into `copyTo` at its offset. Returns 0, the errno of a
   * failed mmap, or -1 when the source ended inside the range (SIGBUS).
   */
  scanMapped(fd: number, position: number, length: number, blockSize: number, fpKey: Uint8Array, expect: Uint8Array, kinds: Uint8Array, fingerprints: Uint8Array, copyTo: Uint8Array): number;
  /**
   * The keyed fingerprint of a file or block (format §6.1; 16 bytes, about
   * 10 GB/s a core): the Poly1305 tag of a ChaCha20-Poly1305 seal of nothing
   * under `key` (32 bytes, `fingerprintKey`) and a zero nonce, with `data`
   * as the associated data. A universal hash with a secret key: without the
   * key (fingerprints are only ever stored encrypted, or locally) collisions
   * cannot be aimed at. Not a MAC for anything an attacker can read. One
   * OpenSSL context per thread (native/gcm.cc).
   */
  fingerprint(key: Uint8Array, data: Uint8Array): Buffer;
  /**
   * Has the C library serve blocks up to 32 MiB from its heap and keep up to
   * `bytes` freed at its top, instead of mapping each large block afresh
   * (glibc's mallopt; native/memory.cc): for a long-running server holding
   * pack bodies whole. false where the C library has no such setting.
   */
  keepLargeBlocks(bytes: number): boolean;
}

/** Numbers per path in `NativeAddon.writeFiles`'s `fields` (native/restore.cc lists them). */
export const WRITE_FIELDS = 11;

/** Flags of a path in `NativeAddon.writeFiles` (its field 3; native/restore.cc). */
export const WRITE_FLAGS = {
  /** Create the file and finish it: size, owner, mode, times (else only write into it). */
  whole: 1,
  /** Set its owner... */
  chown: 2,
  /** ...unless it is new and creating gave it that owner. */
  ownedOnCreate: 4,
  /** Create it with its mode (no fchmod for a new file). */
  createMode: 8,
} as const;

/** The loaded addon (its AES-256-GCM is core/crypto.ts's). */
export const native = loadAddon<NativeAddon>('holdfast_native');

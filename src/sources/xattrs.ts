/**
 * A file system entry's extended attributes (POSIX ACLs, file capabilities
 * and SELinux labels are extended attributes on Linux), read and written by
 * Buffer path through the native addon (native/xattr.cc), never following a
 * final symlink.
 *
 * Reading costs one llistxattr per entry when it has none (the common
 * case), and nothing at all on a file system without support for them.
 */
import type { Xattr } from '../repo/tree.js';
import { native } from './native.js';
import type { PosixPath } from './posix.js';

const asBuffer = (p: PosixPath): Buffer => (typeof p === 'string' ? Buffer.from(p) : p);
/** A path as the addon takes it, or a descriptor as it is. */
const asTarget = (p: PosixPath | number): Buffer | number => (typeof p === 'number' ? p : asBuffer(p));

/** The label a restore leaves to the target's policy when the snapshot has none. */
const SELINUX = Buffer.from('security.selinux');

/** Orders names by their bytes. */
const byName = (a: Xattr, b: Xattr): number => Buffer.compare(a.name, b.name);

/** Node's errno name of an error from the addon. */
const codeOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/**
 * The attributes of a path (a final symlink not followed) or of an open
 * file, sorted by name; undefined when it has none, 'unsupported' when its
 * file system supports none. An attribute removed between listing and
 * reading is left out; any other error is thrown.
 */
export function readXattrs(target: PosixPath | number): Xattr[] | undefined | 'unsupported' {
  const p = asTarget(target);
  let names: Buffer[];
  try {
    names = native.llistxattr(p);
  } catch (e) {
    if (codeOf(e) === 'ENOTSUP') return 'unsupported';
    throw e;
  }
  if (names.length === 0) return undefined;
  const xattrs: Xattr[] = [];
  for (const name of names) {
    try {
      xattrs.push({ name, value: native.lgetxattr(p, name) });
    } catch (e) {
      if (codeOf(e) !== 'ENODATA') throw e;
    }
  }
  return xattrs.length === 0 ? undefined : xattrs.sort(byName);
}

/** Reads the extended attributes of the entries of one walk by path. */
export class XattrReader {
  /** Devices whose file system said it has no extended attributes (ENOTSUP): not asked again. */
  private readonly unsupported = new Set<bigint>();

  /** The entry's attributes as `readXattrs` gives them, undefined too when its file system supports none. */
  read(path: PosixPath, device: bigint): Xattr[] | undefined {
    if (this.unsupported.has(device)) return undefined;
    const xattrs = readXattrs(path);
    if (xattrs !== 'unsupported') return xattrs;
    this.unsupported.add(device);
    return undefined;
  }
}

/** An attribute the target refused, and why (Node's errno name: ENOTSUP, EPERM, ...). */
export interface RefusedXattr {
  readonly name: Buffer;
  readonly code: string;
}

/**
 * Gives `path` (or the open file `path` is the descriptor of) exactly the attributes `xattrs` (undefined: none). With
 * `clear`, attributes it has that are not in the list are removed first (it
 * existed before, or creating it gave it some, such as an ACL inherited
 * from a default ACL), except an SELinux label the list does not replace:
 * that one is the target policy's. Returns what the target refused; every
 * other attribute is still written. Throws when the attributes it has
 * cannot be listed.
 */
export function writeXattrs(path: PosixPath | number, xattrs: readonly Xattr[] | undefined, clear: boolean): RefusedXattr[] {
  const p = asTarget(path);
  const refused: RefusedXattr[] = [];
  const attempt = (name: Buffer, f: () => void): void => {
    try {
      f();
    } catch (e) {
      refused.push({ name, code: codeOf(e) ?? (e as Error).message });
    }
  };
  if (clear) {
    for (const name of listOrNone(p)) {
      if (name.equals(SELINUX) || xattrs?.some((x) => x.name.equals(name))) continue;
      attempt(name, () => native.lremovexattr(p, name));
    }
  }
  for (const x of xattrs ?? []) attempt(x.name, () => native.lsetxattr(p, x.name, x.value));
  return refused;
}

/** Whether `path` has attributes other than an SELinux label (what creating a file in a folder gave it, such as an inherited ACL). */
export function hasXattrsBeyondLabel(path: PosixPath): boolean {
  return listOrNone(asBuffer(path)).some((name) => !name.equals(SELINUX));
}

/**
 * How the attributes `path` has differ from `want` (undefined: none), in
 * words, or undefined when they are the same: what `restore --verify`
 * checks. Left aside: the names in `refused` (the target refused them, and
 * the restore warned already) and an SELinux label `want` does not have
 * (the target policy's).
 */
export function xattrDifference(path: PosixPath | number, want: readonly Xattr[] | undefined, refused: readonly Buffer[] = []): string | undefined {
  const p = asTarget(path);
  const skip = (name: Buffer): boolean => refused.some((r) => r.equals(name));
  const wanted = (want ?? []).filter((x) => !skip(x.name));
  const names = listOrNone(p).filter((n) => !skip(n) && !(n.equals(SELINUX) && !wanted.some((x) => x.name.equals(SELINUX))));
  const extra = names.filter((n) => !wanted.some((x) => x.name.equals(n))).sort(Buffer.compare);
  if (extra.length > 0) return `restored extended attributes the snapshot does not have: ${extra.map((n) => n.toString()).join(', ')}`;
  for (const x of wanted) {
    if (!names.some((n) => n.equals(x.name))) return `extended attribute ${x.name.toString()} was not restored`;
    let value: Buffer;
    try {
      value = native.lgetxattr(p, x.name);
    } catch (e) {
      return `extended attribute ${x.name.toString()} cannot be read back: ${(e as Error).message}`;
    }
    if (!value.equals(x.value)) return `restored extended attribute ${x.name.toString()} differs from the snapshot's`;
  }
  return undefined;
}

/** The names of a path's attributes; none where its file system has none. */
function listOrNone(p: Buffer | number): Buffer[] {
  try {
    return native.llistxattr(p);
  } catch (e) {
    if (codeOf(e) === 'ENOTSUP') return [];
    throw e;
  }
}

/**
 * The rules every backend applies to the arguments it is given: which object
 * names are valid for which type, and which byte ranges `load` accepts. Kept
 * in one place so that all backends agree; the conformance suite in
 * `test/storage/conformance.ts` checks that they do.
 *
 * The name rules are also what keeps `LocalBackend` paths inside the
 * repository root: a valid name has no slash, no backslash and cannot be `.`
 * or `..` or start with a dot (so it never collides with a temporary file).
 */
import { OBJECT_TYPES, ObjectTooLargeError, ShortReadError, type Handle, type ObjectType } from './backend.js';

/**
 * The folder (local) or key prefix (object storage) each type but `config`
 * lives under, below the repository's root; `data` has one more level, the
 * first two characters of the name (docs/format.md §2).
 */
export const OBJECT_FOLDERS: Readonly<Record<Exclude<ObjectType, 'config'>, string>> = {
  key: 'keys',
  data: 'data',
  index: 'index',
  snapshot: 'snapshots',
  lock: 'locks',
  deletion: 'deletions',
};

/** The most bytes a config or key file is read with: they are a few hundred (repo/objects.ts `MAX_OBJECT_BYTES`). */
export const MAX_SMALL_OBJECT_BYTES = 64 * 1024;

/** What every object name must match: lowercase letters, digits, `.`, `_` and `-`, not starting with `.`, `_` or `-`. */
export const NAME_RE = /^[0-9a-z][0-9a-z._-]*$/;

/** The longest valid object name: the file name limit of every common file system. */
export const MAX_NAME_LENGTH = 255;

/** Why `name` is not a valid name for an object of `type`, or undefined when it is. */
export function nameProblem(type: ObjectType, name: unknown): string | undefined {
  if (typeof name !== 'string' || !NAME_RE.test(name)) return `names must match ${String(NAME_RE)}`;
  if (name.length > MAX_NAME_LENGTH) return `names are at most ${MAX_NAME_LENGTH} characters`;
  if (type === 'config' && name !== 'config') return 'the config object is always named "config"';
  if (type === 'data' && !/^[0-9a-f]{2}/.test(name)) return 'data names start with two hex digits';
  return undefined;
}

/** Throws when `type` is not one of `OBJECT_TYPES` (callers may bypass the type checker). */
export function checkType(type: ObjectType): void {
  if (!OBJECT_TYPES.includes(type)) throw new Error(`invalid object type ${JSON.stringify(type)}`);
}

/** What a listing prefix must match: the characters of names, possibly none. */
const PREFIX_RE = /^[0-9a-z._-]*$/;

/**
 * The prefix of `Backend.list`'s options, checked: '' when absent; throws
 * when it holds a character no name can (a slash, an upper-case letter).
 */
export function checkPrefix(prefix: string | undefined): string {
  if (prefix === undefined) return '';
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix) || prefix.length > MAX_NAME_LENGTH) {
    throw new Error(`invalid listing prefix ${JSON.stringify(prefix)}: prefixes must match ${String(PREFIX_RE)}`);
  }
  return prefix;
}

/** Throws when `h` has an invalid type, or a name `nameProblem` rejects for that type. */
export function checkHandle(h: Handle): void {
  checkType(h.type);
  const problem = nameProblem(h.type, h.name);
  if (problem !== undefined) throw new Error(`invalid ${h.type} name ${JSON.stringify(h.name)}: ${problem}`);
}

/**
 * Throws a `RangeError` when the `offset` or `length` given to `Backend.load`
 * is malformed: `offset` must be a safe integer (negative counts from the
 * end), `length` and `maxBytes` non-negative safe integers. Any may be absent.
 */
export function checkRangeArgs(offset: number | undefined, length: number | undefined, maxBytes?: number): void {
  if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes >= 0)) {
    throw new RangeError(`maxBytes must be a non-negative integer, got ${maxBytes}`);
  }
  if (offset !== undefined && !Number.isSafeInteger(offset)) throw new RangeError(`offset must be an integer, got ${offset}`);
  if (length !== undefined && !(Number.isSafeInteger(length) && length >= 0)) {
    throw new RangeError(`length must be a non-negative integer, got ${length}`);
  }
}

/**
 * Throws `ObjectTooLargeError` when `size`, the bytes a load of `h` would
 * return, is more than `maxBytes` (`LoadOptions.maxBytes`; no limit when
 * undefined). Backends call it once the size is declared, before reading.
 */
export function checkMaxBytes(h: Handle, size: number, maxBytes: number | undefined): void {
  if (maxBytes !== undefined && size > maxBytes) throw new ObjectTooLargeError(h, size, maxBytes);
}

/**
 * The [start, end) byte range a load of an object of `size` bytes asks for,
 * following the `Backend.load` contract. Throws `ShortReadError` when the
 * range goes past the end of the object. Expects arguments that passed
 * `checkRangeArgs`.
 */
export function byteRange(h: Handle, size: number, offset = 0, length?: number): [number, number] {
  if (offset < 0) {
    if (-offset > size) throw new ShortReadError(h, -offset, size);
    return [size + offset, size];
  }
  const end = length === undefined ? Math.max(offset, size) : offset + length;
  if (end > size) throw new ShortReadError(h, end, size);
  return [offset, end];
}

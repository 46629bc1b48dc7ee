/**
 * Objects without the key: load a content-addressed one and check that its
 * name is the SHA-256 of its bytes, save one under that name (docs/format.md
 * §2.1), read the config. The one place these rules are written: the store,
 * the keyed repository, its writers and the snapshot fence all use them.
 * Each passes the caller's `signal` to every backend call it makes.
 */
import { sha256 } from '../core/crypto.js';
import { mapInOrder } from '../core/for-each-limit.js';
import {
  AlreadyExistsError, NotFoundError, ObjectTooLargeError, type Backend, type Handle, type ObjectType, type OperationOptions,
} from '../storage/backend.js';
import { MAX_SMALL_OBJECT_BYTES } from '../storage/object-names.js';
import { decodeConfig, type RepoConfig } from './config.js';
import { CorruptObjectError, NameTakenError, NotARepositoryError } from './errors.js';
import { MAX_LOCK_BYTES } from './lock.js';
import { MAX_PACK_BYTES } from './pack.js';

/** A handle. */
export const handleOf = (type: ObjectType, name: string): Handle => ({ type, name });

/** The options of a backend call that passes on the caller's signal (absent when there is none). */
export function io(opts: OperationOptions): OperationOptions {
  return opts.signal ? { signal: opts.signal } : {};
}

/**
 * The most bytes an object of each type is read whole with
 * (`LoadOptions.maxBytes`): a larger one is damage, refused before any of it
 * is read, so a planted or broken object cannot make a reader hold more. The
 * config and key files are a few hundred bytes; a lock at most
 * MAX_LOCK_BYTES; packs at most MAX_PACK_BYTES (the largest a writer makes).
 * Index files, snapshots (their blob lists) and deletion markers grow with
 * the repository and have no bound of their own in the format: they share
 * the packs' bound, which Node can also hold in one buffer.
 */
export const MAX_OBJECT_BYTES: Readonly<Record<ObjectType, number>> = {
  config: MAX_SMALL_OBJECT_BYTES,
  key: MAX_SMALL_OBJECT_BYTES,
  lock: MAX_LOCK_BYTES,
  data: MAX_PACK_BYTES,
  index: MAX_PACK_BYTES,
  snapshot: MAX_PACK_BYTES,
  deletion: MAX_PACK_BYTES,
};

/**
 * Loads a whole object of at most `MAX_OBJECT_BYTES` of its type; a larger
 * one is `CorruptObjectError` (`what` names it), not read.
 */
export async function loadBounded(backend: Backend, h: Handle, what: string, opts: OperationOptions = {}): Promise<Buffer> {
  try {
    return await backend.load(h, { ...opts, maxBytes: MAX_OBJECT_BYTES[h.type] });
  } catch (e) {
    if (e instanceof ObjectTooLargeError) throw new CorruptObjectError(what, `${e.size} bytes, more than any ${h.type} object holds (${e.maxBytes})`);
    throw e;
  }
}

/** Loads an object and checks its name is the SHA-256 of its bytes; `CorruptObjectError` otherwise. */
export async function loadChecked(backend: Backend, h: Handle, what: string, opts: OperationOptions = {}): Promise<Buffer> {
  const bytes = await loadBounded(backend, h, what, io(opts));
  if (sha256(bytes).toString('hex') !== h.name) throw new CorruptObjectError(what, 'checksum of stored bytes does not match its name');
  return bytes;
}

/** Attempts at saving one object whose name a removal frees between the save and its read-back. */
const SAVE_ATTEMPTS = 3;

/**
 * Saves `bytes` under the SHA-256 of its bytes and returns the name.
 * `opts.name`: that SHA-256 in hex, when the caller has computed it already;
 * `opts.signal` is passed to the backend.
 *
 * A name that exists already is read back: holding the same bytes (a retry
 * whose answer was lost, an identical object saved before) is success;
 * holding others, it was planted by a client that can add objects (names are
 * predictable where the bytes are, as a copy's packs are) or damaged, and
 * counting it as saved would make the caller reference what is not there:
 * `NameTakenError`.
 */
export async function saveAddressed(backend: Backend, type: ObjectType, bytes: Buffer, opts: OperationOptions & { name?: string } = {}): Promise<string> {
  const name = opts.name ?? sha256(bytes).toString('hex');
  const h = handleOf(type, name);
  const o = io(opts);
  for (let attempt = 1; ; attempt++) {
    try {
      await backend.save(h, bytes, o);
      return name;
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      // Another size cannot be these bytes, and is not read: a planted object may be of any size.
      const held = await backend.stat(h, o);
      if (held === undefined) throw new NotFoundError(h);
      if (held.size === bytes.length && (await backend.load(h, o)).equals(bytes)) return name;
    } catch (e) {
      if (e instanceof NotFoundError && attempt < SAVE_ATTEMPTS) continue; // removed meanwhile: save it again
      throw e;
    }
    throw new NameTakenError(`${type} ${name}`);
  }
}

/**
 * The config's bytes and what they say, not yet authenticated (a keyed
 * client checks its MAC); `NotARepositoryError` when there is none.
 */
export async function readConfig(backend: Backend, opts: OperationOptions = {}): Promise<{ bytes: Buffer; config: RepoConfig }> {
  try {
    const bytes = await loadBounded(backend, handleOf('config', 'config'), 'config', io(opts));
    return { bytes, config: decodeConfig(bytes) };
  } catch (e) {
    if (e instanceof NotFoundError) throw new NotARepositoryError(backend.location);
    throw e;
  }
}

/** Every object name of a type with its size. */
export async function listObjects(backend: Backend, type: ObjectType, opts: OperationOptions = {}): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const info of backend.list(type, io(opts))) out.set(info.name, info.size);
  return out;
}

/**
 * Loads every object of a type through `load` (which may return undefined to
 * leave one out), as many at once as the backend serves well
 * (`capabilities.connections`), kept in the listing's order. An object
 * removed between the listing and its load was replaced by one written
 * before the removal (prune and repair always write the replacement first),
 * so the type is listed again, up to a few times, until no listed object has
 * vanished: the caller then has the replacement.
 */
export async function loadEvery<T>(backend: Backend, type: ObjectType, load: (name: string) => Promise<T | undefined>, opts: OperationOptions = {}): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  const seen = new Set<string>();
  for (let round = 0; round < 8; round++) {
    const names: string[] = [];
    for await (const info of backend.list(type, io(opts))) {
      if (seen.has(info.name)) continue;
      seen.add(info.name);
      names.push(info.name);
    }
    let vanished = false;
    const loaded = mapInOrder(names, backend.capabilities.connections, async (name) => {
      try {
        return await load(name);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        vanished = true;
        return undefined;
      }
    });
    let i = 0;
    for await (const v of loaded) {
      const name = names[i++]!;
      if (v !== undefined) out.set(name, v);
    }
    if (!vanished) break;
  }
  return out;
}

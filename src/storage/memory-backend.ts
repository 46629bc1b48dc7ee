/**
 * A repository held in process memory, for tests and for throwaway
 * repositories (`memory:` locations). Same semantics as `LocalBackend`,
 * checked by the same conformance suite, minus durability: everything is
 * gone when the process exits.
 *
 * Bytes are copied on the way in and on the way out, so a caller that reuses
 * its buffer after `save`, or scribbles on what `load` returned, cannot change
 * what is stored.
 */
import {
  AlreadyExistsError,
  NotFoundError,
  OBJECT_TYPES,
  type Backend,
  type Handle,
  type ObjectInfo,
  type ObjectType,
} from './backend.js';
import { byteRange, checkHandle, checkRangeArgs, checkType } from './object-names.js';

/** In-memory implementation of `Backend`. */
export class MemoryBackend implements Backend {
  /** `memory:` or `memory:<name>` for a named, process-wide instance. */
  readonly location: string;

  private readonly objects = new Map<ObjectType, Map<string, Buffer>>(OBJECT_TYPES.map((t) => [t, new Map()]));

  /** `name` only shows up in `location`; `openBackend` keeps named instances. */
  constructor(name?: string) {
    this.location = name === undefined ? 'memory:' : `memory:${name}`;
  }

  /** Nothing to create: every type's table exists from the start. */
  async create(): Promise<void> {}

  /** See `Backend.save`. Stores a copy of `data`. */
  async save(h: Handle, data: Uint8Array): Promise<void> {
    const table = this.table(h);
    if (table.has(h.name)) throw new AlreadyExistsError(h);
    table.set(h.name, Buffer.from(data));
  }

  /** See `Backend.load`. Returns a copy the caller may modify. */
  async load(h: Handle, offset?: number, length?: number): Promise<Buffer> {
    const stored = this.table(h).get(h.name);
    checkRangeArgs(offset, length);
    if (stored === undefined) throw new NotFoundError(h);
    const [start, end] = byteRange(h, stored.length, offset, length);
    return Buffer.from(stored.subarray(start, end));
  }

  /** See `Backend.stat`. */
  async stat(h: Handle): Promise<ObjectInfo | undefined> {
    const stored = this.table(h).get(h.name);
    return stored === undefined ? undefined : { name: h.name, size: stored.length };
  }

  /** See `Backend.list`. Lists the objects present when iteration starts. */
  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    checkType(type);
    const entries = [...(this.objects.get(type) ?? [])];
    for (const [name, data] of entries) yield { name, size: data.length };
  }

  /** See `Backend.remove`. */
  async remove(h: Handle): Promise<void> {
    if (!this.table(h).delete(h.name)) throw new NotFoundError(h);
  }

  /** Keeps the objects: a named instance may be opened again by `openBackend`. */
  async close(): Promise<void> {}

  private table(h: Handle): Map<string, Buffer> {
    checkHandle(h);
    const table = this.objects.get(h.type);
    if (table === undefined) throw new Error(`invalid object type ${JSON.stringify(h.type)}`);
    return table;
  }
}

/**
 * A repository held in process memory, for tests and for throwaway
 * repositories (`memory:` locations). Same semantics as `LocalBackend`,
 * checked by the same conformance suite, minus durability: everything is
 * gone when the process exits.
 *
 * Bytes are copied on the way in and on the way out, so a caller that reuses
 * its buffer after `save`, or scribbles on what `load` returned, cannot change
 * what is stored.
 *
 * Each type keeps its names sorted beside the objects, so a listing reads a
 * page of names after the last one it handed out (as S3's StartAfter): it
 * never copies the whole table, and an object present throughout a listing
 * is listed exactly once however the table changes meanwhile.
 */
import {
  AlreadyExistsError,
  NotFoundError,
  OBJECT_TYPES,
  type Backend,
  type BackendCapabilities,
  type Handle,
  type ListOptions,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from './backend.js';
import { byteRange, checkHandle, checkMaxBytes, checkPrefix, checkRangeArgs, checkType } from './object-names.js';

/** How a `MemoryBackend` lists. */
export interface MemoryBackendOptions {
  /** `memory:<name>` in `location`; `openBackend` keeps named instances. */
  readonly name?: string;
  /** Names a listing takes from a table at a time. Default 1000. */
  readonly listPageSize?: number;
}

interface Table {
  readonly objects: Map<string, Buffer>;
  /** The keys of `objects`, sorted. */
  readonly names: string[];
}

/** In-memory implementation of `Backend`. */
export class MemoryBackend implements Backend {
  /** `memory:` or `memory:<name>` for a named, process-wide instance. */
  readonly location: string;

  /** See `Backend.capabilities`: no limit worth stating on parallel calls; removing a missing object is an error. */
  readonly capabilities: BackendCapabilities = { connections: 4, appendOnly: false, removeMissingIsError: true };

  private readonly pageSize: number;
  private readonly tables = new Map<ObjectType, Table>(OBJECT_TYPES.map((t) => [t, { objects: new Map(), names: [] }]));

  /** An empty in-memory repository. */
  constructor(opts: MemoryBackendOptions = {}) {
    this.location = opts.name === undefined ? 'memory:' : `memory:${opts.name}`;
    this.pageSize = opts.listPageSize ?? 1000;
    if (!(Number.isSafeInteger(this.pageSize) && this.pageSize > 0)) throw new RangeError(`listPageSize must be a positive integer, got ${this.pageSize}`);
  }

  /** Nothing to create: every type's table exists from the start. */
  async create(opts: OperationOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
  }

  /** See `Backend.save`. Stores a copy of `data`. */
  async save(h: Handle, data: Uint8Array, opts: OperationOptions = {}): Promise<void> {
    const table = this.table(h);
    opts.signal?.throwIfAborted();
    if (table.objects.has(h.name)) throw new AlreadyExistsError(h);
    table.objects.set(h.name, Buffer.from(data));
    table.names.splice(firstAtOrAfter(table.names, h.name), 0, h.name);
  }

  /** See `Backend.load`. Returns a copy the caller may modify. */
  async load(h: Handle, opts: LoadOptions = {}): Promise<Buffer> {
    const stored = this.table(h).objects.get(h.name);
    checkRangeArgs(opts.offset, opts.length, opts.maxBytes);
    opts.signal?.throwIfAborted();
    if (stored === undefined) throw new NotFoundError(h);
    const [start, end] = byteRange(h, stored.length, opts.offset, opts.length);
    checkMaxBytes(h, end - start, opts.maxBytes);
    return Buffer.from(stored.subarray(start, end));
  }

  /** See `Backend.stat`. */
  async stat(h: Handle, opts: OperationOptions = {}): Promise<ObjectInfo | undefined> {
    const stored = this.table(h).objects.get(h.name);
    opts.signal?.throwIfAborted();
    return stored === undefined ? undefined : { name: h.name, size: stored.length };
  }

  /** See `Backend.list`. Takes `listPageSize` names at a time from the sorted names, after the last one listed. */
  async *list(type: ObjectType, opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    checkType(type);
    const prefix = checkPrefix(opts.prefix);
    const table = this.tables.get(type);
    if (table === undefined) return;
    let after: string | undefined;
    for (;;) {
      opts.signal?.throwIfAborted();
      const page = this.page(table, prefix, after);
      for (const info of page) {
        opts.signal?.throwIfAborted();
        yield info;
      }
      if (page.length < this.pageSize) return;
      after = page[page.length - 1]?.name;
    }
  }

  /** See `Backend.remove`. */
  async remove(h: Handle, opts: OperationOptions = {}): Promise<void> {
    const table = this.table(h);
    opts.signal?.throwIfAborted();
    if (!table.objects.delete(h.name)) throw new NotFoundError(h);
    table.names.splice(firstAtOrAfter(table.names, h.name), 1);
  }

  /** Keeps the objects: a named instance may be opened again by `openBackend`. */
  async close(): Promise<void> {}

  /** Up to `pageSize` objects of `table` named with `prefix`, the first named after `after`. */
  private page(table: Table, prefix: string, after: string | undefined): ObjectInfo[] {
    const { names, objects } = table;
    let i = firstAtOrAfter(names, after ?? prefix);
    if (after !== undefined && names[i] === after) i++;
    const out: ObjectInfo[] = [];
    for (; i < names.length && out.length < this.pageSize; i++) {
      const name = names[i] ?? '';
      if (!name.startsWith(prefix)) break;
      out.push({ name, size: objects.get(name)?.length ?? 0 });
    }
    return out;
  }

  private table(h: Handle): Table {
    checkHandle(h);
    const table = this.tables.get(h.type);
    if (table === undefined) throw new Error(`invalid object type ${JSON.stringify(h.type)}`);
    return table;
  }
}

/** The index of the first of the sorted `names` that is not below `name`. */
function firstAtOrAfter(names: readonly string[], name: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((names[mid] ?? '') < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Image sources read over NBD: an export named by an NBD URI
 * (`nbd://host:port/export`, `nbd+unix:///export?socket=PATH`), and a qcow2
 * file, whose virtual disk a private `qemu-nbd` exports read-only (qemu.ts)
 * for as long as the source is open. Both are random-access sources with a
 * size, so partition tables and file-system allocation are read as for raw
 * files; `zeroRanges` (base:allocation) lets the backup skip what reads as
 * zeros, and `dirtyRanges` (qemu:dirty-bitmap:NAME) what a persistent dirty
 * bitmap of a qcow2 file left clean.
 */
import { NbdClient, NbdRefusedError, parseNbdUri, type NbdExtent, type NbdTarget } from './nbd-client.js';
import { BASE_ALLOCATION, STATE_ZERO } from './nbd-protocol.js';
import { addBitmap, qcow2Info, removeBitmap, serveQemuNbd } from './qemu.js';
import { BitmapAddError, type DirtyBitmapDisk } from './dirty-bitmap-disk.js';
import { inRange, type RandomAccessSource } from './random-access.js';
import type { ImageInput } from './image-input.js';

/** The meta context of a qemu dirty bitmap. */
export const dirtyBitmapContext = (bitmap: string): string => `qemu:dirty-bitmap:${bitmap}`;
/** Bit 0 of a dirty-bitmap extent: written since the bitmap started. */
const STATE_DIRTY = 1;
/** How long a connect to a just-started qemu-nbd is retried. */
const CONNECT_RETRY_MS = 10_000;

/** A byte range. */
export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

function rangesWhere(extents: readonly NbdExtent[], test: (flags: number) => boolean): ByteRange[] {
  return extents.filter((e) => test(e.flags)).map(({ offset, length }) => ({ offset, length }));
}

/** An open NBD connection as an image source. */
function nbdImageInput(path: string, kind: 'nbd' | 'qcow2' | 'qmp', client: NbdClient, bitmap: string | undefined, cleanup: () => Promise<void>, format?: 'qcow2'): ImageInput {
  const size = client.size;
  const random: RandomAccessSource = {
    size,
    async read(offset: number, length: number): Promise<Buffer> {
      if (!inRange(size, offset, length)) throw new RangeError(`read of ${length} bytes at ${offset} is outside ${path} (${size} bytes)`);
      return client.read(offset, length);
    },
  };
  let closed = false;
  return {
    path,
    kind,
    ...(format ? { format } : {}),
    size,
    random,
    readAt: async (buf, offset, length, position) => {
      const n = Math.max(0, Math.min(length, size - position));
      await client.readInto(buf, offset, n, position);
      return n;
    },
    currentSize: async () => size,
    ...(client.contexts.has(BASE_ALLOCATION) ? { zeroRanges: async () => rangesWhere(await client.blockStatus(BASE_ALLOCATION, 0, size), (f) => (f & STATE_ZERO) !== 0) } : {}),
    ...(bitmap !== undefined ? { dirtyRanges: async () => rangesWhere(await client.blockStatus(dirtyBitmapContext(bitmap), 0, size), (f) => (f & STATE_DIRTY) !== 0) } : {}),
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await client.close();
      } finally {
        await cleanup();
      }
    },
  };
}

/**
 * Connects, retrying a refused connect until `retryMs` passes (a qemu-nbd
 * that is still starting) unless `ended` says the server is gone.
 */
async function connectRetrying(target: NbdTarget, contexts: string[], retryMs: number, signal?: AbortSignal, ended?: () => Error | undefined): Promise<NbdClient> {
  const deadline = Date.now() + retryMs;
  for (;;) {
    try {
      return await NbdClient.connect(target, { metaContexts: contexts, ...(signal ? { signal } : {}) });
    } catch (e) {
      const gone = ended?.();
      if (gone) throw gone;
      if (!(e instanceof NbdRefusedError) || !/ECONNREFUSED|ENOENT/.test(e.message) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Opens an NBD URI as an image source (base:allocation negotiated where the server has it). */
export async function openNbdUri(uri: string, signal?: AbortSignal): Promise<ImageInput> {
  const client = await connectRetrying(parseNbdUri(uri), [BASE_ALLOCATION], 0, signal);
  return nbdImageInput(uri, 'nbd', client, undefined, async () => undefined);
}

/**
 * Opens the export at `target` that a VM serves for a backup (qmp-disk.ts)
 * as the source `path`; with `bitmap`, its dirty clusters are
 * `dirtyRanges`. `cleanup` runs when the source closes (not when this fails).
 */
export async function openNbdExport(
  path: string, kind: 'qmp', target: NbdTarget, opts: { cleanup: () => Promise<void>; bitmap?: string; format?: 'qcow2'; signal?: AbortSignal },
): Promise<ImageInput> {
  const contexts = [BASE_ALLOCATION, ...(opts.bitmap !== undefined ? [dirtyBitmapContext(opts.bitmap)] : [])];
  const client = await connectRetrying(target, contexts, 0, opts.signal);
  if (opts.bitmap !== undefined && !client.contexts.has(dirtyBitmapContext(opts.bitmap))) {
    await client.close();
    throw new NbdRefusedError(`${path}: the VM did not export the dirty bitmap ${opts.bitmap}`);
  }
  return nbdImageInput(path, kind, client, opts.bitmap, opts.cleanup, opts.format);
}

/**
 * Opens the virtual disk of a qcow2 file through a private read-only
 * qemu-nbd; with `bitmap`, its dirty clusters are `dirtyRanges`. qemu-nbd
 * ends and its socket is removed when the source closes, or when opening fails.
 */
export async function openQcow2(path: string, opts: { bitmap?: string; signal?: AbortSignal } = {}): Promise<ImageInput> {
  const server = await serveQemuNbd(path, { format: 'qcow2', ...(opts.bitmap !== undefined ? { bitmap: opts.bitmap } : {}) });
  try {
    const contexts = [BASE_ALLOCATION, ...(opts.bitmap !== undefined ? [dirtyBitmapContext(opts.bitmap)] : [])];
    const client = await connectRetrying(server.target, contexts, CONNECT_RETRY_MS, opts.signal, () => server.ended());
    if (opts.bitmap !== undefined && !client.contexts.has(dirtyBitmapContext(opts.bitmap))) {
      await client.close();
      throw new NbdRefusedError(`qemu-nbd did not export the dirty bitmap ${opts.bitmap} of ${path}`);
    }
    return nbdImageInput(path, 'qcow2', client, opts.bitmap, () => server.stop(), 'qcow2');
  } catch (e) {
    // qemu-nbd that accepted and then failed (a damaged file) resets the connection: its own message says why.
    const gone = await server.endedWithin(2000);
    await server.stop();
    throw gone ?? e;
  }
}

/**
 * A qcow2 file no qemu holds, as a disk whose dirty bitmaps a backup
 * rotates: `qemu-img bitmap` adds and removes them, a private qemu-nbd
 * reads it (nothing writes to it meanwhile, so the instant is the read's).
 */
export function qcow2FileDisk(path: string): DirtyBitmapDisk {
  return {
    name: path,
    inspect: async () => {
      const info = await qcow2Info(path);
      return { virtualSize: info.virtualSize, bitmaps: info.bitmaps.map((b) => ({ name: b.name, recording: b.flags.includes('auto'), inconsistent: b.flags.includes('in-use') })) };
    },
    removeBitmap: (name) => removeBitmap(path, name),
    open: async (add, since, signal) => {
      if (add !== undefined) await addBitmap(path, add).catch((e: unknown) => {
        throw new BitmapAddError((e as Error).message);
      });
      try {
        return await openQcow2(path, { ...(since !== undefined ? { bitmap: since } : {}), ...(signal ? { signal } : {}) });
      } catch (e) {
        // As the interface promises: the bitmap added is not left behind (a later backup could take it for the one a snapshot names).
        if (add !== undefined) await removeBitmap(path, add).catch(() => undefined);
        throw e;
      }
    },
  };
}

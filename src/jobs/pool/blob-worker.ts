/**
 * A blob worker thread: the per-byte work of backups and restores (reading
 * small files, chunking, keyed ids, compression, encryption; opening blobs
 * and writing restored files), run by a pool thread (pool-worker.ts) for
 * each session that opens it. Tasks are described in `protocol.ts`; a
 * session keeps no state between tasks but its keys, its codecs and the
 * small files it has stored (a session lives for one job).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { isZero } from '../../core/zeros.js';
import { FastCDC, gearTable } from '../../core/chunker.js';
import { fingerprintKey } from '../../core/crypto.js';
import { BlobCompressor } from '../../core/compress.js';
import { blobIdHex, openBlob, prepareBlob, reusingOpener, type BlobKeys, type PreparedBlob } from '../../repo/blob-codec.js';
import { BlobType } from '../../repo/pack.js';
import { pushEntry, slicePlain, type ContentEntry } from '../../repo/tree.js';
import { errorOf } from '../../sources/file-tree.js';
import { WRITE_FIELDS, native } from '../../sources/native.js';
import { readXattrs } from '../../sources/xattrs.js';
import type { ChunkFileResult, ChunkFileTask, FileJob, FileResult, FilesResult, FilesTask, InitMessage, SealResult, SealTask, Task, UnpackResult, UnpackTask, VerifyJob, VerifyResult, VerifyTask, WireBlob, XattrsRead } from './protocol.js';
import type { TaskHandler } from './pool-worker.js';
import { wireError } from './wire-error.js';

/** What one session (one job) keeps: its keys, its codecs, the small files it stored. */
interface Session {
  readonly keys: BlobKeys;
  readonly cdc: FastCDC;
  readonly fpKey: Buffer;
  readonly compressor: BlobCompressor;
  readonly storedFiles: Map<string, ContentEntry>;
}

// The session whose task runs. A thread runs one task at a time, synchronously
// from start to end, so these are that session's for the whole task.
let keys: BlobKeys;
let cdc: FastCDC;
let fpKey: Buffer;
let compressor: BlobCompressor;
let storedFiles: Map<string, ContentEntry>;

const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Packs sealed blobs into one transferable buffer (one copy of the small, compressed bytes, unless there is one blob). */
function toWire(blobs: PreparedBlob[], transfer: ArrayBuffer[]): WireBlob[] {
  const only = blobs.length === 1 ? blobs[0]! : undefined;
  if (only && only.sealed.byteOffset === 0 && only.sealed.buffer.byteLength === only.sealed.length) {
    // A blob that owns its memory travels as it is.
    transfer.push(only.sealed.buffer as ArrayBuffer);
    return [{ type: only.type, id: only.id, flags: only.flags, rawLength: only.rawLength, sealed: only.sealed }];
  }
  const total = blobs.reduce((n, b) => n + b.sealed.length, 0);
  if (total === 0) return [];
  const out = Buffer.allocUnsafeSlow(total);
  let o = 0;
  const wire = blobs.map((b) => {
    b.sealed.copy(out, o);
    const sealed = new Uint8Array(out.buffer, o, b.sealed.length);
    o += b.sealed.length;
    return { type: b.type, id: b.id, flags: b.flags, rawLength: b.rawLength, sealed };
  });
  transfer.push(out.buffer as ArrayBuffer);
  return wire;
}

function seal(t: SealTask, transfer: ArrayBuffer[]): SealResult {
  const data = buf(t.data);
  if (t.type === BlobType.Data && isZero(data)) return { rawLength: data.length };
  const [blob] = toWire([prepareBlob(keys, compressor, t.type, data)], transfer);
  return { blob: blob!, rawLength: data.length };
}

function openForRead(path: Buffer): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NOATIME | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  }
}

let reusable = Buffer.alloc(0);
/** Opens a restored blob's sealed bytes into a buffer the thread reuses (`reusedBuffer` then holds its plaintext). */
const openReused = reusingOpener();

/**
 * A buffer of at least `size` bytes, reused from task to task (files read,
 * blobs decompressed): a fresh allocation per file costs the kernel a page
 * fault and a zeroed page for every 4 KiB (measured: 1.8 s against 0.6 s of
 * reading the Linux tree). It grows at least twofold, so batches a little
 * larger each time do not each fault in a new buffer; pages never written
 * cost nothing.
 */
function reusedBuffer(size: number): Buffer {
  if (reusable.length < size) reusable = Buffer.allocUnsafeSlow(Math.max(size, 2 * reusable.length, 1 << 20));
  return reusable;
}

/**
 * The extended attributes of an open file, as `XattrsRead` carries them: a
 * system call on the descriptor, where the main thread's by path would look
 * the path up again (0.9 s of the main thread's 6.6 s on the Linux tree).
 */
function xattrsOf(fd: number): XattrsRead {
  try {
    const xattrs = readXattrs(fd);
    return xattrs === undefined || xattrs === 'unsupported' ? {} : { xattrs };
  } catch (e) {
    return { xattrError: errorOf(e) };
  }
}

/**
 * Reads a file into `into` at `at`; at most `max` bytes. A short read is the
 * end of the file when fstat agrees (no second read just to see 0 bytes);
 * a file system that returns fewer bytes than asked mid-file is read on.
 * Its extended attributes too when the job asks for them.
 */
function readInto(path: Buffer, into: Buffer, at: number, max: number, job: FileJob): { size: number; changed: boolean; read: XattrsRead } {
  const fd = openForRead(path);
  try {
    const read = job.xattrs ? xattrsOf(fd) : {};
    let size = 0;
    let st: BigIntStats | undefined;
    while (size < max) {
      const n = readSync(fd, into, at + size, max - size, null);
      if (n === 0) break;
      size += n;
      if (size < max) {
        st = fstatSync(fd, { bigint: true });
        if (Number(st.size) <= size) break;
        st = undefined;
      }
    }
    st ??= fstatSync(fd, { bigint: true });
    return { size, read, changed: size !== job.size || st.mtimeNs !== job.mtime || st.ctimeNs !== job.ctime || Number(st.size) !== size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Small files of REMEMBER_FROM bytes or more this worker has stored in this
 * job, by size and fingerprint, and their content: another copy of one, in
 * any folder, becomes the same slice instead of bytes stored again (batches
 * deduplicate only as a whole). Only the earlier batches of this worker are
 * sure to be stored before a later one (the archiver stores results in the
 * order it handed them out), so each worker remembers its own. Smaller
 * copies are stored again: remembering every file cost 0.25 CPU-seconds per
 * worker on the Linux tree, while 94% of the duplicated bytes of
 * /usr/share/doc are in files of 16 KiB or more. At most REMEMBERED files
 * (~150 bytes each); then it starts over.
 */
const REMEMBER_FROM = 16 << 10;
const REMEMBERED = 131_072;

/**
 * Reads a batch of small files and stores them as one blob: the files'
 * bytes, back to back (the batch's edges were chosen by the archiver, so no
 * chunker runs here). Each file's content is its slice of that blob (the
 * blob's id when it is the only file). An all-zero file is a hole; a file
 * whose fingerprint equals the parent's is read and fingerprinted but left
 * out: its old content is reused. A copy of a file this worker stored
 * before, or earlier in the batch, gets that file's slice.
 */
function files(t: FilesTask, transfer: ArrayBuffer[]): FilesResult {
  // One byte more than expected per file, to notice a file that grew.
  const data = reusedBuffer(t.files.reduce((n, f) => n + f.size + 1, 0));
  const results: FileResult[] = [];
  /** Files that go into the blob: their result, their range in `data`, and the copies of them later in the batch. */
  const parts: { result: FileResult & { content: ContentEntry[] }; start: number; length: number; key: string; copies: ContentEntry[][] }[] = [];
  const inBatch = new Map<string, (typeof parts)[number]>();
  let end = 0;
  for (const f of t.files) {
    let r: { size: number; changed: boolean; read: XattrsRead };
    try {
      r = readInto(buf(f.path), data, end, f.size + 1, f);
    } catch (e) {
      results.push({ error: errorOf(e) });
      continue;
    }
    const bytes = data.subarray(end, end + r.size);
    const fp = native.fingerprint(fpKey, bytes).toString('hex');
    // What every result of this file carries: that it changed while read, its extended attributes.
    const extra = r.changed ? { changed: true, ...r.read } : r.read;
    if (fp === f.fingerprint) {
      results.push({ size: r.size, fingerprint: fp, ...extra });
    } else if (r.size === 0 || isZero(bytes)) {
      results.push({ size: r.size, fingerprint: fp, content: r.size === 0 ? [] : [r.size], ...extra });
    } else {
      const key = r.size >= REMEMBER_FROM ? `${r.size}:${fp}` : '';
      const earlier = key ? storedFiles.get(key) : undefined;
      const first = key ? inBatch.get(key) : undefined;
      const result = { size: r.size, fingerprint: fp, content: earlier ? [earlier] : [], ...extra };
      results.push(result);
      if (first) {
        first.copies.push(result.content);
      } else if (!earlier) {
        const part = { result, start: end, length: r.size, key, copies: [] };
        parts.push(part);
        if (key) inBatch.set(key, part);
        end += r.size;
      }
    }
  }
  if (parts.length === 0) return { files: results, blobs: [] };
  const blob = prepareBlob(keys, compressor, BlobType.Data, data.subarray(0, end));
  if (storedFiles.size + parts.length > REMEMBERED) storedFiles.clear();
  for (const p of parts) {
    const slice = parts.length === 1 ? blob.id : { blob: blob.id, offset: p.start, length: p.length };
    p.result.content.push(slice);
    for (const c of p.copies) c.push(slice);
    if (p.key) storedFiles.set(p.key, slice);
  }
  return { files: results, blobs: toWire([blob], transfer) };
}

/**
 * Reads one mid-size file whole and chunks it (FastCDC): each chunk is a
 * blob, all-zero chunks are holes; chunks whose ids the parent's version
 * already has are not sealed again.
 */
function chunkFile(t: ChunkFileTask, transfer: ArrayBuffer[]): ChunkFileResult {
  const f = t.file;
  // One byte more than expected, to notice a file that grew.
  const data = reusedBuffer(f.size + 1);
  let r: { size: number; changed: boolean; read: XattrsRead };
  try {
    r = readInto(buf(f.path), data, 0, f.size + 1, f);
  } catch (e) {
    return { error: errorOf(e) };
  }
  const known = new Set(t.known);
  const content: ContentEntry[] = [];
  const blobs: PreparedBlob[] = [];
  for (let start = 0; start < r.size;) {
    const end = cdc.cut(data, start, r.size, true);
    const chunk = data.subarray(start, end);
    start = end;
    if (isZero(chunk)) {
      pushEntry(content, chunk.length);
      continue;
    }
    const id = blobIdHex(keys, chunk);
    content.push(id);
    if (!known.has(id)) blobs.push(prepareBlob(keys, compressor, BlobType.Data, chunk, id));
  }
  return { content, size: r.size, blobs: toWire(blobs, transfer), ...r.read, ...(r.changed ? { changed: true } : {}) };
}

/**
 * Opens a segment's blobs and writes each into all its files with one native
 * call (native/restore.cc), with the fields the main thread laid out:
 * creating a file with its final mode when that survives the umask (a
 * name taken meanwhile is refused), or writing into the descriptor of a
 * file written in pieces; zero blocks left as holes, then size, owner,
 * mode and times for a file the blob makes whole.
 */
function unpack(t: UnpackTask): UnpackResult {
  const data = buf(t.data);
  const failed: UnpackResult['failed'] = [];
  const bad: UnpackResult['bad'] = [];
  let bytes = 0;
  let first = 0;
  for (const [index, b] of t.blobs.entries()) {
    const from = first;
    first += b.targets;
    let plain: Buffer;
    const what = `pack ${t.pack}, blob ${b.id}`;
    try {
      // Each blob is written out before the next is opened: one reused buffer holds them all.
      plain = openBlob(keys, { type: b.type, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength }, data.subarray(b.offset, b.offset + b.length), what, reusedBuffer, openReused);
    } catch (e) {
      bad.push({ index, error: wireError(e) });
      continue;
    }
    const fields = t.fields.subarray(from * WRITE_FIELDS, first * WRITE_FIELDS);
    const failures = native.writeFiles(t.dir, plain, t.paths, t.pathStarts.subarray(from, first + 1), fields);
    const lost = new Set<number>();
    for (let i = 0; failures && i < failures.length; i += 2) {
      const at = failures[i] as number;
      lost.add(at);
      failed.push({ target: from + at, message: sliceProblem(plain, fields, at, what) ?? (failures[i + 1] as string) });
    }
    for (let i = 0; i < b.targets; i++) if (!lost.has(i)) bytes += fields[i * WRITE_FIELDS + 1]!;
  }
  return { bytes, failed, bad };
}

/** Why target `at`'s bytes (a slice the snapshot recorded) are not in the blob's plaintext, if they are not. */
function sliceProblem(plain: Buffer, fields: Float64Array, at: number, what: string): string | undefined {
  try {
    slicePlain(plain, { offset: fields[at * WRITE_FIELDS]!, length: fields[at * WRITE_FIELDS + 1]! }, what);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Reads restored files back and checks every chunk's keyed id (or the fingerprint), the size and the mtime. */
function verify(t: VerifyTask): VerifyResult {
  const bad: VerifyResult['bad'] = [];
  t.files.forEach((f, index) => {
    let fd = -1;
    try {
      // Non-blocking: a FIFO put in its place cannot hang the check.
      fd = native.openBeneath(t.dir, buf(f.path), constants.O_RDONLY | constants.O_NONBLOCK, 0);
      if (!fstatSync(fd).isFile()) bad.push({ index, reason: 'restored file is no longer a regular file' });
      else if (!contentMatches(fd, f)) bad.push({ index, reason: 'restored bytes differ from the snapshot' });
      else {
        const mtime = fstatSync(fd, { bigint: true }).mtimeNs;
        if (mtime !== f.mtime) bad.push({ index, reason: `restored mtime ${mtime} ns differs from the snapshot's ${f.mtime} ns` });
      }
    } catch (e) {
      bad.push({ index, reason: `cannot read it back: ${(e as Error).message}` });
    } finally {
      if (fd >= 0) native.close(fd);
    }
  });
  return { bad };
}

/** Whether an open restored file holds exactly the content `f` describes. */
function contentMatches(fd: number, f: VerifyJob): boolean {
  if (f.fingerprint !== undefined) {
    // One byte more than recorded, to notice a file that is too long.
    const b = reusedBuffer(f.size + 1);
    let got = 0;
    while (got <= f.size) {
      const n = readSync(fd, b, got, f.size + 1 - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === f.size && native.fingerprint(fpKey, b.subarray(0, got)).toString('hex') === f.fingerprint;
  }
  let pos = 0;
  for (let j = 0; j < f.content.length; j++) {
    const c = f.content[j]!;
    const len = f.lengths[j]!;
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = readSync(fd, b, got, len - got, pos + got);
      if (n === 0) break;
      got += n;
    }
    if (got !== len || !(typeof c === 'number' ? isZero(b) : blobIdHex(keys, b) === c)) return false;
    pos += len;
  }
  return fstatSync(fd).size === f.size && pos === f.size;
}

/** The task handler of one session (pool-worker.ts). */
export function createHandler(i: InitMessage): TaskHandler<Task> {
  const k: BlobKeys = { encryption: buf(i.encryption), id: buf(i.id) };
  const session: Session = {
    keys: k,
    fpKey: fingerprintKey(k.id, 'file-fingerprint'),
    cdc: new FastCDC(i.chunker, gearTable(i.chunkerSeed)),
    compressor: new BlobCompressor(i.compression),
    storedFiles: new Map(),
  };
  return (task, transfer) => {
    ({ keys, cdc, fpKey, compressor, storedFiles } = session);
    switch (task.kind) {
      case 'seal': return seal(task, transfer);
      case 'files': return files(task, transfer);
      case 'file': return chunkFile(task, transfer);
      case 'unpack': return unpack(task);
      case 'verify': return verify(task);
    }
  };
}

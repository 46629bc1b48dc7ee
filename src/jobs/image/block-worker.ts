/**
 * A block worker thread of image backups: zero checks, fingerprints, keyed
 * ids, compression and encryption of fixed-size blocks (see
 * `block-protocol.ts`), run by a pool thread (pool-worker.ts) for each
 * session that opens it. A session keeps nothing between tasks but its keys
 * and codec.
 */
import { writeSync } from 'node:fs';
import { BlobCompressor } from '../../core/compress.js';
import { isZero } from '../../core/zeros.js';
import { blobIdHex, openBlob, prepareBlob, reusingOpener, type BlobKeys, type Sealer } from '../../repo/blob-codec.js';
import { BlobType } from '../../repo/pack.js';
import { fingerprintKey, FP_BYTES, SEAL_OVERHEAD, seal as sealWith } from '../../core/crypto.js';
import { native } from '../../sources/native.js';
import type { TaskHandler } from '../pool/pool-worker.js';
import { wireError } from '../pool/wire-error.js';
import { BlockKind, type BlockInit, type BlockTask, type ScanResult, type ScanTask, type SealResult, type SealTask, type SealedBlock, type UnpackResult, type UnpackTask } from './block-protocol.js';

// The session whose task runs. A thread runs one task at a time, synchronously
// from start to end, so these are that session's for the whole task.
let keys: BlobKeys;
let fpKey: Buffer;
let compressor: BlobCompressor;
/** Reused by every session of the thread: only ever holds one block's bytes for the task that runs. */
let scratch = Buffer.alloc(0);
/** The same for a seal task's sealed blocks, before they are copied out. */
let sealing = Buffer.alloc(0);
/** Opens a block's sealed bytes into a buffer the thread reuses. */
const openReused = reusingOpener();

/** Opens a data blob into the scratch buffers (no fresh pages per block); valid until the next call. */
function openInto(b: UnpackTask['blobs'][number], sealed: Uint8Array, what: string): Buffer {
  return openBlob(keys, { type: BlobType.Data, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength }, sealed, what, (n) => {
    if (scratch.length < n) scratch = Buffer.allocUnsafeSlow(n);
    return scratch;
  }, openReused);
}

const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function blockAt(data: SharedArrayBuffer, length: number, blockSize: number, i: number): Buffer {
  const start = i * blockSize;
  return Buffer.from(data, start, Math.min(blockSize, length - start));
}

function scan(t: ScanTask): ScanResult {
  const n = Math.ceil(t.length / t.blockSize);
  const kinds = new Uint8Array(n);
  const fingerprints = new Uint8Array(n * FP_BYTES);
  const ids = new Uint8Array(n * 32);
  if (t.source) {
    const mapError = native.scanMapped(t.source.fd, t.source.position, t.length, t.blockSize, fpKey, t.expect, kinds, fingerprints, new Uint8Array(t.data, 0, t.length));
    if (mapError !== 0) return { kinds, fingerprints, ids, mapError };
    for (let i = 0; i < n; i++) {
      if (kinds[i] === BlockKind.Changed) ids.set(Buffer.from(blobIdHex(keys, blockAt(t.data, t.length, t.blockSize, i)), 'hex'), i * 32);
    }
    return { kinds, fingerprints, ids };
  }
  const expect = buf(t.expect);
  for (let i = 0; i < n; i++) {
    const block = blockAt(t.data, t.length, t.blockSize, i);
    if (isZero(block)) {
      kinds[i] = BlockKind.Zero;
      continue;
    }
    const fp = native.fingerprint(fpKey, block);
    fingerprints.set(fp, i * FP_BYTES);
    if (fp.equals(expect.subarray(i * FP_BYTES, (i + 1) * FP_BYTES))) {
      kinds[i] = BlockKind.Same;
      continue;
    }
    kinds[i] = BlockKind.Changed;
    ids.set(Buffer.from(blobIdHex(keys, block), 'hex'), i * 32);
  }
  return { kinds, fingerprints, ids };
}

/**
 * Seals a task's blocks back to back into `sealing` (no buffer per block),
 * then copies them out in one buffer of their exact size for the main
 * thread.
 */
function seal(t: SealTask, transfer: ArrayBuffer[]): SealResult {
  // A block is stored compressed only when that is smaller: sealed, at most its length plus the overhead.
  const bound = t.blocks.reduce((s, b) => s + Math.min(t.blockSize, t.length - b.index * t.blockSize) + SEAL_OVERHEAD, 0);
  if (sealing.length < bound) sealing = Buffer.allocUnsafeSlow(bound);
  let o = 0;
  const sealInPlace: Sealer = (key, plain, aad) => sealWith(key, plain, aad, sealing.subarray(o));
  const blobs: SealedBlock[] = t.blocks.map((b) => {
    const p = prepareBlob(keys, compressor, BlobType.Data, blockAt(t.data, t.length, t.blockSize, b.index), b.id, sealInPlace);
    const r = { index: b.index, id: b.id, flags: p.flags, rawLength: p.rawLength, offset: o, length: p.sealed.length };
    o += p.sealed.length;
    return r;
  });
  const out = Buffer.allocUnsafeSlow(Math.max(1, o));
  sealing.copy(out, 0, 0, o);
  transfer.push(out.buffer as ArrayBuffer);
  return { blobs, sealed: out };
}

/** Opens one block of an unpack task; `CorruptObjectError` when it fails authentication or its id. */
function openChecked(b: UnpackTask['blobs'][number], sealed: Uint8Array, what: string, into: boolean): Buffer {
  return into ? openInto(b, sealed, what) : openBlob(keys, { type: BlobType.Data, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength }, sealed, what);
}

function unpack(t: UnpackTask, transfer: ArrayBuffer[]): UnpackResult {
  const data = buf(t.data);
  let bytes = 0;
  const plain: Uint8Array[] = [];
  const bad: UnpackResult['bad'] = [];
  for (const [index, b] of t.blobs.entries()) {
    const what = `pack ${t.pack}, block ${b.id}`;
    const sealed = data.subarray(b.offset, b.offset + b.length);
    let p: Buffer;
    try {
      p = openChecked(b, sealed, what, t.fd >= 0);
    } catch (e) {
      bad.push({ index, error: wireError(e) });
      plain.push(new Uint8Array(0));
      continue;
    }
    if (t.fd >= 0) {
      for (const pos of b.positions) {
        let done = 0;
        while (done < p.length) done += writeSync(t.fd, p, done, p.length - done, pos + done);
        bytes += p.length;
      }
      continue;
    }
    const own = p.byteOffset === 0 && p.buffer.byteLength === p.length ? p : Buffer.from(p);
    transfer.push(own.buffer as ArrayBuffer);
    plain.push(own);
  }
  return t.fd < 0 ? { bytes, plain, bad } : { bytes, bad };
}

/** The task handler of one session (pool-worker.ts). */
export function createHandler(init: BlockInit): TaskHandler<BlockTask> {
  const k: BlobKeys = { encryption: buf(init.encryption), id: buf(init.id) };
  const session = { keys: k, fpKey: fingerprintKey(k.id, 'image-fingerprint'), compressor: new BlobCompressor(init.compression, 'blocks') };
  return (task, transfer) => {
    ({ keys, fpKey, compressor } = session);
    return task.kind === 'scan' ? scan(task) : task.kind === 'seal' ? seal(task, transfer) : unpack(task, transfer);
  };
}

/**
 * Keys, authenticated encryption and keyed ids. No I/O.
 *
 * - A repository has one master key: three independent 32-byte secrets, for
 *   blob encryption, for chunk ids, and for the chunker's gear table.
 * - Blobs are sealed with AES-256-GCM under a fresh random 96-bit nonce;
 *   the associated data binds a sealed blob to its type and id, so storage
 *   cannot swap two blobs without the swap being detected.
 * - Chunk ids are keyed hashes of the plaintext under idKey (BLAKE3 in keyed
 *   mode, or HMAC-SHA256 in repositories made before BLAKE3): storage never
 *   sees a plain hash of content and so cannot confirm a guess about it.
 * - Passwords wrap the master key through scrypt (parameters recorded in
 *   each key file, bounded so that a planted key file cannot make a reader
 *   spend more than a few times what an honest one costs).
 * - The master key lives in one SharedArrayBuffer: worker threads get views
 *   of it, not copies, and `wipeMasterKey` zeroes it for every thread at once.
 *   Nothing is sealed or opened under a wiped (all-zero) key.
 * - The plain objects a keyed reader must trust (the config, snapshots)
 *   carry an HMAC-SHA256 under a key derived from the master key.
 * - The master key has a public name, a one-way derivation of all three
 *   secrets, so that two repositories can be told to share it without it.
 */
import { createHash, createHmac, hkdfSync, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { loadAddon } from './addon.js';
import type { Blake3Hasher } from '@napi-rs/blake-hash';
import type { ErrorCode } from './errors.js';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Bytes a sealed message is longer than its plaintext. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Thrown when a sealed message fails authentication: wrong key or damaged bytes. */
export class AuthenticationError extends Error {
  /** Stable code for callers (src/core/errors.ts). */
  readonly code: ErrorCode = 'AUTHENTICATION';
  constructor(what: string) {
    super(`${what}: authentication failed (wrong key, or the stored bytes are damaged)`);
    this.name = 'AuthenticationError';
  }
}

/** The secrets of a repository. Never stored unwrapped. */
export interface MasterKey {
  /** AES-256-GCM key for blobs. */
  readonly encryption: Buffer;
  /** Key of the keyed hash that makes chunk ids. */
  readonly id: Buffer;
  /** Seed of the chunker's gear table. */
  readonly chunker: Buffer;
}

/** The three secrets as views of one new SharedArrayBuffer. */
function sharedMasterKey(): MasterKey {
  const shared = new SharedArrayBuffer(3 * KEY_BYTES);
  return { encryption: Buffer.from(shared, 0, KEY_BYTES), id: Buffer.from(shared, KEY_BYTES, KEY_BYTES), chunker: Buffer.from(shared, 2 * KEY_BYTES, KEY_BYTES) };
}

/** Makes a fresh master key from the system's CSPRNG. */
export function newMasterKey(): MasterKey {
  const key = sharedMasterKey();
  randomFillSync(Buffer.from(key.encryption.buffer));
  return key;
}

/** Moves three 32-byte secrets into a master key (one shared buffer), zeroing the sources. */
export function masterKeyFrom(encryption: Buffer, id: Buffer, chunker: Buffer): MasterKey {
  const key = sharedMasterKey();
  for (const [from, to] of [[encryption, key.encryption], [id, key.id], [chunker, key.chunker]] as const) {
    from.copy(to);
    from.fill(0);
  }
  return key;
}

/**
 * Zeroes a master key, in every thread that holds a view of it. Afterwards
 * `seal` and `open` refuse it; keys derived from it (the fingerprint and
 * blob-type keys, the BLAKE3 hashers' state) are not reached.
 */
export function wipeMasterKey(key: MasterKey): void {
  for (const b of [key.encryption, key.id, key.chunker]) b.fill(0);
}

/** Thrown when a wiped key is used: a bug, since sealing under it would store readable data. */
function assertNotWiped(key: Buffer): void {
  for (let i = 0; i < key.length; i++) if (key[i] !== 0) return;
  throw new Error('the key was wiped: the repository was closed');
}

/**
 * Nonces are drawn from the CSPRNG 4096 at a time: the same random bytes as
 * one call per nonce, without a system call per blob (measured: 3% of a
 * worker's time went to randomFillSync).
 */
let noncePool = Buffer.alloc(0);
let nonceOffset = 0;

/** A fresh random nonce for `seal` (or a sealer of the same layout); a view valid until 4096 more are drawn. */
export function nextNonce(): Buffer {
  if (nonceOffset + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_BYTES * 4096);
    nonceOffset = 0;
  }
  const n = noncePool.subarray(nonceOffset, nonceOffset + NONCE_BYTES);
  nonceOffset += NONCE_BYTES;
  return n;
}

/** The addon's AES-256-GCM (native/gcm.cc): one OpenSSL context per thread and direction. */
interface GcmAddon {
  gcmSeal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, aad: Uint8Array, out: Uint8Array): number;
  gcmOpen(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array, out: Uint8Array): number;
}

let gcmAddon: GcmAddon | undefined;

/**
 * The AEAD of every sealed object, by the addon: Node's createCipheriv and
 * createDecipheriv cost an OpenSSL cipher fetch, a JavaScript object and
 * fresh output buffers per call (docs/decisions.md, "AEAD"). Loaded with the
 * first seal or open, so not on the way to the CLI's early key derivation.
 */
const gcm = (): GcmAddon => (gcmAddon ??= loadAddon<GcmAddon>('holdfast_native'));

/**
 * Encrypts and authenticates `plaintext`. Output layout:
 * nonce (12) || ciphertext (len(plaintext)) || GCM tag (16); into the start
 * of `into` when given (at least SEAL_OVERHEAD bytes more than `plaintext`,
 * and not overlapping it or `aad`: a RangeError), else into a new buffer.
 */
export function seal(key: Buffer, plaintext: Uint8Array, aad: Uint8Array, into?: Buffer): Buffer {
  assertNotWiped(key);
  const out = into ?? Buffer.allocUnsafe(SEAL_OVERHEAD + plaintext.length);
  return out.subarray(0, gcm().gcmSeal(key, nextNonce(), plaintext, aad, out));
}

/**
 * Reverses `seal`; throws `AuthenticationError` naming `what` on any
 * mismatch. The plaintext goes into the start of `into` when given (at least
 * `sealed.length - SEAL_OVERHEAD` bytes, not overlapping `sealed`: a
 * RangeError; after a failure that room is zeroed), else into a buffer of
 * its own.
 */
export function open(key: Buffer, sealed: Uint8Array, aad: Uint8Array, what: string, into?: Buffer): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError(what);
  assertNotWiped(key);
  // A buffer of its own, as createDecipheriv's were: a caller may transfer it to another thread.
  const out = into ?? Buffer.allocUnsafeSlow(sealed.length - SEAL_OVERHEAD);
  const n = gcm().gcmOpen(key, sealed, aad, out);
  if (n < 0) throw new AuthenticationError(what);
  return out.subarray(0, n);
}

/** One keyed BLAKE3 hasher per key, reset after each use: a new one costs 15 µs (docs/decisions.md). */
const blake3Hashers = new WeakMap<Buffer, Blake3Hasher>();

type Blake3Module = typeof import('@napi-rs/blake-hash');
let blake3Module: Blake3Module | undefined;

/**
 * @napi-rs/blake-hash, loaded with the first key that hashes, so that its
 * loading is not on the way to the CLI's early key derivation
 * (src/cli/early-key.ts), which needs this module but no hash. On Linux its
 * glibc build is required by name: the package's own loader asks for a
 * process report to tell glibc from musl, 5 of its 7 ms in every thread that
 * loads it (docs/decisions.md, "Fixed costs per run"). That loader is the
 * fallback (musl, whose build it finds; other systems).
 */
function blake3(): Blake3Module {
  if (blake3Module) return blake3Module;
  const require = createRequire(import.meta.url);
  if (process.platform === 'linux') {
    try {
      blake3Module = require(`@napi-rs/blake-hash-linux-${process.arch}-gnu`) as Blake3Module;
    } catch {
      // Not installed here (another libc), or not loadable: the package's loader chooses.
    }
  }
  blake3Module ??= require('@napi-rs/blake-hash') as Blake3Module;
  return blake3Module;
}

/** Keyed chunk id: BLAKE3 in keyed mode of `data` under `idKey` (32 bytes). */
export function blobId(idKey: Buffer, data: Uint8Array): Buffer {
  let h = blake3Hashers.get(idKey);
  if (!h) blake3Hashers.set(idKey, (h = blake3().Blake3Hasher.newKeyed(idKey)));
  try {
    return h.update(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).digestBuffer();
  } finally {
    h.reset();
  }
}

/** Bytes of a fingerprint (the addon's `fingerprint`, src/sources/native.ts). */
export const FP_BYTES = 16;

/** What a fingerprint key is for; each use has its own key. */
export type FingerprintUse = 'image-fingerprint' | 'file-fingerprint';

/**
 * A fingerprint key: HMAC-SHA512 (not the keyed hash of blob ids, so it can
 * never equal a blob id that storage sees) of a label under the id key.
 */
export function fingerprintKey(idKey: Uint8Array, use: FingerprintUse): Buffer {
  return createHmac('sha512', idKey).update(`holdfast/${use}/v1`).digest().subarray(0, 32);
}

/** What a metadata MAC authenticates; each use has its own key. */
export type MacUse = 'config' | 'snapshot' | 'snapshot-header';

/** Bytes of a metadata MAC. */
export const MAC_BYTES = 32;

/**
 * The key of a metadata MAC: HKDF-SHA256 (RFC 5869) with the master
 * encryption key as input key material, no salt, and the info
 * "holdfast/mac/<use>" (docs/format.md §3.6). One key per use, so a MAC made
 * for one kind of object never verifies another.
 */
export function macKey(master: MasterKey, use: MacUse): Buffer {
  return Buffer.from(hkdfSync('sha256', master.encryption, Buffer.alloc(0), `holdfast/mac/${use}`, KEY_BYTES));
}

/**
 * The master key's public name (64 hex): HKDF-SHA256 (RFC 5869) with the
 * three secrets concatenated as input key material, no salt, and the info
 * "holdfast/master-key-id" (docs/format.md §3.7). Equal for two repositories
 * exactly when they share the master key; tells nothing about the key.
 */
export function masterKeyId(master: MasterKey): string {
  const ikm = Buffer.concat([master.encryption, master.id, master.chunker]);
  try {
    return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), 'holdfast/master-key-id', KEY_BYTES)).toString('hex');
  } finally {
    ikm.fill(0);
  }
}

/** HMAC-SHA256 of `data` under a MAC key. */
export function mac(key: Buffer, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** True when `tag` is the MAC of `data` under `key` (compared in constant time). */
export function macMatches(key: Buffer, data: Uint8Array, tag: Uint8Array): boolean {
  return tag.length === MAC_BYTES && timingSafeEqual(mac(key, data), tag);
}

/** Unkeyed SHA-256, the checksum of stored bytes. */
export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** scrypt cost parameters, recorded in every key file. */
export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** N of new key files (docs/decisions.md, "KDF"). */
export const DEFAULT_SCRYPT_N = 2 ** 16;

/** Work of one derivation, in units of N=1, r=1, p=1 (memory is 128·N·r bytes, time grows with N·r·p). */
export const scryptCost = (p: ScryptParams): number => p.N * p.r * p.p;

/**
 * The most work a reader spends on one key file: 4 times the default (N=2^18
 * at r=8, p=1: 256 MiB). A planted key file must not make every command spend
 * seconds and gigabytes (docs/decisions.md, "Hostile repositories").
 */
export const MAX_SCRYPT_COST = 4 * DEFAULT_SCRYPT_N * 8;

/** "N=2^16, r=8, p=1" */
export function describeScrypt(p: ScryptParams): string {
  const log = Math.log2(p.N);
  return `N=${Number.isInteger(log) ? `2^${log}` : p.N}, r=${p.r}, p=${p.p}`;
}

/**
 * Cost of new key files: N=2^16, r=8, p=1 (64 MiB; see docs/decisions.md).
 * A caller may choose another N within the bound readers accept (tests use
 * 2^10); the value used is recorded in the key file so every reader derives alike.
 */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { N: DEFAULT_SCRYPT_N, r: 8, p: 1 };

/** Checks scrypt parameters read from a file before spending memory or time on them. */
export function validScryptParams(p: ScryptParams): boolean {
  return Number.isInteger(p.N) && p.N >= 2 && (p.N & (p.N - 1)) === 0
    && Number.isInteger(p.r) && p.r >= 1 && p.r <= 32
    && Number.isInteger(p.p) && p.p >= 1 && p.p <= 16
    && scryptCost(p) <= MAX_SCRYPT_COST;
}

/** True for characters whose UTF-8 bytes are all below 0x80: NFC leaves them as they are. */
function isAscii(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return false;
  return true;
}

/** native/scrypt.cc; dist/src/core/crypto.js sits three folders below the package root. */
interface ScryptAddon {
  scrypt(password: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, length: number): Promise<Buffer>;
}

let scryptAddon: ScryptAddon | undefined;

/**
 * Derivations run at once on the thread pool (4 threads, shared with file
 * I/O); the others wait their turn. A burst of server logins otherwise held
 * every pool thread, and a file read waited seconds behind them.
 */
const SCRYPT_AT_ONCE = 2;
let scryptRunning = 0;
const scryptWaiting: (() => void)[] = [];

/** A turn at the thread pool for one derivation; `scryptDone` hands it to the next in line. */
async function scryptTurn(): Promise<void> {
  if (scryptRunning < SCRYPT_AT_ONCE) {
    scryptRunning++;
    return;
  }
  await new Promise<void>((resolve) => scryptWaiting.push(resolve));
}

function scryptDone(): void {
  const next = scryptWaiting.shift();
  if (next) next();
  else scryptRunning--;
}

/**
 * scrypt (RFC 7914) on the thread pool: libsodium's implementation, the same
 * function as Node's `crypto.scrypt` (OpenSSL's) in two thirds of its time
 * (docs/decisions.md, "KDF"). Loaded with the first derivation. Rejects
 * parameters out of scrypt's range and lengths over 64 KiB; callers bound the
 * cost first.
 */
export async function scryptKey(password: Uint8Array, salt: Uint8Array, length: number, params: ScryptParams): Promise<Buffer> {
  scryptAddon ??= loadAddon<ScryptAddon>('holdfast_scrypt');
  const addon = scryptAddon;
  await scryptTurn();
  try {
    return await addon.scrypt(password, salt, params.N, params.r, params.p, length);
  } finally {
    scryptDone();
  }
}

/**
 * Derives a 32-byte wrapping key from a password (UTF-8 bytes, or a string).
 * The caller owns a password buffer and zeroes it; a non-ASCII one passes
 * through a JavaScript string for NFC, which cannot be zeroed.
 */
export async function deriveKey(password: string | Uint8Array, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const normalized = typeof password === 'string' || !isAscii(password)
    ? Buffer.from((typeof password === 'string' ? password : Buffer.from(password.buffer, password.byteOffset, password.byteLength).toString('utf8')).normalize('NFC'), 'utf8')
    : undefined;
  try {
    return await scryptKey(normalized ?? (password as Uint8Array), salt, KEY_BYTES, params);
  } finally {
    normalized?.fill(0);
  }
}

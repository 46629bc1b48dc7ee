/**
 * Key files (`keys/<sha256>`): the master key wrapped by one password.
 * Plain JSON: who made it and when, the KDF and its parameters, and the
 * master key sealed with AES-256-GCM under the password-derived key.
 */
import { hostname, userInfo } from 'node:os';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  deriveKey, describeScrypt, masterKeyFrom, open, scryptCost, seal, validScryptParams, DEFAULT_SCRYPT_N, KEY_BYTES, MAX_SCRYPT_COST, type MasterKey, type ScryptParams,
} from '../core/crypto.js';
import { asRecord, parseJson } from './binary.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';

const KEY_VERSION = 1;
const AAD = Buffer.from('holdfast key v1', 'utf8');

export interface KeyFile {
  readonly version: number;
  readonly created: string;
  readonly hostname: string;
  readonly username: string;
  readonly kdf: { readonly algorithm: 'scrypt'; readonly salt: string } & ScryptParams;
  /** base64 of seal(derived, JSON of the master key) */
  readonly data: string;
}

interface MasterKeyJson {
  encryption: string;
  id: string;
  chunker: string;
  repository: string;
}

/**
 * A password as the user gave it: UTF-8 bytes (which the caller zeroes when
 * done), or a string (tests and callers that never had bytes).
 */
export type Password = string | Uint8Array;

/** Wraps `key` (of repository `repoId`) with `password`, at the KDF cost `params` (refused outside what readers accept). */
export async function wrapMasterKey(key: MasterKey, repoId: string, password: Password, params: ScryptParams): Promise<Buffer> {
  if (!validScryptParams(params)) throw new Error(`scrypt ${describeScrypt(params)} is outside what readers accept (N a power of two from 2 to 2^18, r=8, p=1 at most that cost)`);
  const salt = randomBytes(32);
  const wrapping = await deriveKey(password, salt, params);
  // The base64 strings stay in the heap until collected; the bytes made of them are zeroed.
  const plain: MasterKeyJson = {
    encryption: key.encryption.toString('base64'),
    id: key.id.toString('base64'),
    chunker: key.chunker.toString('base64'),
    repository: repoId,
  };
  const plainBytes = Buffer.from(JSON.stringify(plain), 'utf8');
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry for this uid: keep "unknown"
  }
  const file: KeyFile = {
    version: KEY_VERSION,
    created: new Date().toISOString(),
    hostname: hostname(),
    username: user,
    kdf: { algorithm: 'scrypt', N: params.N, r: params.r, p: params.p, salt: salt.toString('base64') },
    data: seal(wrapping, plainBytes, AAD).toString('base64'),
  };
  plainBytes.fill(0);
  wrapping.fill(0);
  return Buffer.from(JSON.stringify(file), 'utf8');
}

/** Parses a key file's plain part. */
export function decodeKeyFile(bytes: Buffer, what: string): KeyFile {
  const o = asRecord(parseJson(bytes, what), what);
  if (o['version'] !== KEY_VERSION) throw new UnsupportedVersionError(what, o['version'], KEY_VERSION);
  const kdf = asRecord(o['kdf'], what);
  const params = { N: kdf['N'], r: kdf['r'], p: kdf['p'] } as ScryptParams;
  if (kdf['algorithm'] !== 'scrypt' || typeof kdf['salt'] !== 'string') throw new CorruptObjectError(what, 'bad kdf parameters');
  if (!validScryptParams(params)) {
    const over = [params.N, params.r, params.p].every((v) => Number.isSafeInteger(v) && v > 0) && scryptCost(params) > MAX_SCRYPT_COST;
    throw new CorruptObjectError(what, over
      ? `refused: scrypt ${describeScrypt(params)} would cost ${costTimes(params)} times the default, more than the ${MAX_SCRYPT_COST / (DEFAULT_SCRYPT_N * 8)} a reader spends (planted, or made with a raised HOLDFAST_SCRYPT_N)`
      : 'bad kdf parameters');
  }
  for (const f of ['created', 'hostname', 'username', 'data']) {
    if (typeof o[f] !== 'string') throw new CorruptObjectError(what, `bad ${f}`);
  }
  return o as unknown as KeyFile;
}

/** How many times the default's work a key file's KDF costs (1 for the default, 4 at the bound). */
export function costTimes(params: ScryptParams): number {
  return scryptCost(params) / (DEFAULT_SCRYPT_N * 8);
}

/**
 * A key file's wrapping key, derived before the repository is opened: the
 * CLI starts the derivation a command will need while the command's modules
 * load (src/cli/early-key.ts). `unwrapMasterKey` takes it for the key file
 * (salt and parameters) and password it was started for, and derives anew
 * for any other; what is not taken, `dispose` zeroes.
 */
export class KeyDerivation {
  private pending: Promise<Buffer> | undefined;
  private readonly password: Buffer;

  /** Starts deriving `file`'s wrapping key from a copy of `password`; the caller keeps and zeroes its own. */
  constructor(private readonly kdf: KeyFile['kdf'], password: Uint8Array) {
    // Outside the JavaScript heap, as password.ts keeps passwords: the collector would copy a small one.
    this.password = Buffer.from(new ArrayBuffer(password.length));
    this.password.set(password);
    this.pending = deriveKey(this.password, Buffer.from(kdf.salt, 'base64'), kdf);
    this.pending.catch(() => undefined); // a failure is the caller's when it takes the derivation
  }

  /** The wrapping key, once, when it was derived for this key file and password; the caller zeroes it. */
  take(file: KeyFile, password: Password): Promise<Buffer> | undefined {
    const pending = this.pending;
    if (pending === undefined || !sameKdf(file.kdf, this.kdf)) return undefined;
    const given = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
    const same = given.length === this.password.length && timingSafeEqual(given, this.password);
    if (typeof password === 'string') given.fill(0);
    if (!same) return undefined;
    this.pending = undefined;
    this.password.fill(0);
    return pending;
  }

  /** Zeroes the password now and the key once derived, unless they were taken; nothing is taken after. */
  dispose(): void {
    const pending = this.pending;
    this.pending = undefined;
    this.password.fill(0);
    pending?.then((key) => key.fill(0), () => undefined);
  }
}

const sameKdf = (a: KeyFile['kdf'], b: KeyFile['kdf']): boolean => a.algorithm === b.algorithm && a.salt === b.salt && a.N === b.N && a.r === b.r && a.p === b.p;

/**
 * Unwraps the master key, with the wrapping key of `ahead` when it was
 * derived for this file and password. Throws `AuthenticationError` for a
 * wrong password and `CorruptObjectError` for a malformed file.
 */
export async function unwrapMasterKey(file: KeyFile, password: Password, repoId: string, what: string, ahead?: KeyDerivation): Promise<MasterKey> {
  const wrapping = await (ahead?.take(file, password) ?? deriveKey(password, Buffer.from(file.kdf.salt, 'base64'), file.kdf));
  let plain: Buffer;
  try {
    plain = open(wrapping, Buffer.from(file.data, 'base64'), AAD, what);
  } finally {
    wrapping.fill(0);
  }
  try {
    const o = asRecord(parseJson(plain, what), what);
    if (o['repository'] !== repoId) throw new CorruptObjectError(what, 'belongs to another repository');
    const get = (f: string): Buffer => {
      const v = o[f];
      const b = typeof v === 'string' ? Buffer.from(v, 'base64') : Buffer.alloc(0);
      if (b.length !== KEY_BYTES) throw new CorruptObjectError(what, `bad ${f} key`);
      return b;
    };
    return masterKeyFrom(get('encryption'), get('id'), get('chunker'));
  } finally {
    plain.fill(0);
  }
}

/**
 * Password escrow (docs/format.md §2.8): a customer's recovery key pair
 * (X25519), its public key as text, its private key file (optionally sealed
 * with a passphrase), and the sealed box that wraps a disk safe's password
 * for the public key, so that a server can keep the box and never open it.
 * Encoding and cryptography only; no I/O.
 *
 *   seal(R, password, safe):
 *     e, E  = a fresh X25519 key pair
 *     Z     = X25519(e, R)                      (all zero: refused)
 *     okm   = HKDF-SHA256(Z, salt = E || R, info = "holdfast escrow 1", 44)
 *     head  = "HFE1" || R || E
 *     box   = head || AES-256-GCM(okm[0..32], nonce okm[32..44], password, aad = head || safe)
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { AuthenticationError, deriveKey, open, seal, validScryptParams, type ScryptParams } from './crypto.js';

/** The bytes an X25519 key has, public or private. */
const X25519_BYTES = 32;
const TAG_BYTES = 16;
const NONCE_BYTES = 12;
const MAGIC = Buffer.from('HFE1', 'latin1');
const HEAD_BYTES = MAGIC.length + 2 * X25519_BYTES;
const HKDF_INFO = Buffer.from('holdfast escrow 1', 'latin1');
/** The public key's text: this prefix and the 32 raw bytes in unpadded base64url. */
const PUBLIC_PREFIX = 'hfrk_';
const PUBLIC_TEXT = /^hfrk_[A-Za-z0-9_-]{43}$/;
/** The longest password a box holds (the agent's are 64 characters). */
export const MAX_ESCROWED_BYTES = 1024;

/** Text that is not a recovery public key, a key file or an escrow box. */
export class EscrowFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EscrowFormatError';
  }
}

/** The box was sealed for another recovery key than the one given to open it. */
export class WrongRecoveryKeyError extends Error {
  constructor(readonly sealedFor: string, readonly given: string) {
    super(`the escrowed password was wrapped for recovery key ${sealedFor}, not for this key (${given})`);
    this.name = 'WrongRecoveryKeyError';
  }
}

/** The passphrase given does not open a sealed private key file. */
export class WrongPassphraseError extends Error {
  constructor(what: string) {
    super(`the passphrase does not open ${what} (or the file is damaged)`);
    this.name = 'WrongPassphraseError';
  }
}

/** A recovery key pair; `publicKey` is its text (`hfrk_…`). */
export interface RecoveryKeyPair {
  readonly publicKey: string;
  /** The raw 32-byte X25519 private key. */
  readonly privateKey: Buffer;
}

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(k.export({ format: 'jwk' }).x!, 'base64url');
}

/** The DER prefixes of an X25519 key in SPKI and PKCS #8 (RFC 8410), before its 32 raw bytes. */
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

function publicObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function privateObject(raw: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

/** Makes a new recovery key pair. */
export function newRecoveryKeyPair(): RecoveryKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { publicKey: PUBLIC_PREFIX + b64u(rawPublic(publicKey)), privateKey: Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url') };
}

/** The public key's text for a raw private key. */
export function publicKeyOf(privateKey: Buffer): string {
  return PUBLIC_PREFIX + b64u(rawPublic(createPublicKey(privateObject(privateKey))));
}

/** The raw 32 bytes of public key text `text`; EscrowFormatError when it is not one. */
export function parsePublicKey(text: string): Buffer {
  if (!PUBLIC_TEXT.test(text)) throw new EscrowFormatError(`"${text.slice(0, 60)}" is not a recovery public key (hfrk_ and 43 characters of base64url, as holdfast escrow keygen prints)`);
  const raw = Buffer.from(text.slice(PUBLIC_PREFIX.length), 'base64url');
  if (raw.length !== X25519_BYTES || b64u(raw) !== text.slice(PUBLIC_PREFIX.length)) throw new EscrowFormatError(`"${text}" is not a recovery public key`);
  return raw;
}

function keys(shared: Buffer, ephemeral: Buffer, recipient: Buffer): { key: Buffer; nonce: Buffer } {
  if (shared.every((b) => b === 0)) throw new EscrowFormatError('the escrow box\'s ephemeral key is not a valid X25519 key');
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephemeral, recipient]), HKDF_INFO, 32 + NONCE_BYTES));
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32) };
}

function aadOf(head: Buffer, safe: string): Buffer {
  return Buffer.concat([head, Buffer.from(safe, 'utf8')]);
}

/** Wraps `secret` for public key `recipient` (text), bound to disk safe `safe` (its name); see the module comment. */
export function sealForRecovery(recipient: string, secret: Uint8Array, safe: string): Buffer {
  if (secret.length === 0 || secret.length > MAX_ESCROWED_BYTES) throw new EscrowFormatError(`an escrowed password has 1 to ${MAX_ESCROWED_BYTES} bytes, not ${secret.length}`);
  const r = parsePublicKey(recipient);
  const eph = generateKeyPairSync('x25519');
  const e = rawPublic(eph.publicKey);
  const { key, nonce } = keys(diffieHellman({ privateKey: eph.privateKey, publicKey: publicObject(r) }), e, r);
  const head = Buffer.concat([MAGIC, r, e]);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aadOf(head, safe));
  return Buffer.concat([head, cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
}

/**
 * The public key (text) a box was sealed for, read without any key: what
 * the server checks an upload against. EscrowFormatError when `box` is not
 * an escrow box.
 */
export function sealedFor(box: Buffer): string {
  if (box.length < HEAD_BYTES + 1 + TAG_BYTES || box.length > HEAD_BYTES + MAX_ESCROWED_BYTES + TAG_BYTES || !box.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new EscrowFormatError(`not an escrow box (HFE1, two X25519 keys, 1 to ${MAX_ESCROWED_BYTES} sealed bytes and a tag; got ${box.length} bytes)`);
  }
  return PUBLIC_PREFIX + b64u(box.subarray(MAGIC.length, MAGIC.length + X25519_BYTES));
}

/**
 * Opens a box with the raw private key: the secret's bytes. Throws
 * WrongRecoveryKeyError when the box is for another key, AuthenticationError
 * when it was altered or is for another safe.
 */
export function openRecoveryBox(privateKey: Buffer, box: Buffer, safe: string): Buffer {
  const mine = publicKeyOf(privateKey);
  const theirs = sealedFor(box);
  if (theirs !== mine) throw new WrongRecoveryKeyError(theirs, mine);
  const head = box.subarray(0, HEAD_BYTES);
  const e = box.subarray(MAGIC.length + X25519_BYTES, HEAD_BYTES);
  const { key, nonce } = keys(diffieHellman({ privateKey: privateObject(privateKey), publicKey: publicObject(Buffer.from(e)) }), e, parsePublicKey(mine));
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(aadOf(head, safe));
  decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(box.subarray(HEAD_BYTES, box.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new AuthenticationError(`the escrowed password of disk safe ${safe}`);
  }
}

/** The private key file, as JSON (docs/format.md §2.8). */
interface KeyFileJson {
  type: 'holdfast-recovery-key';
  version: 1;
  public_key: string;
  /** The raw private key (base64url), when not sealed with a passphrase. */
  private_key?: string;
  /** How the passphrase's key is derived, when sealed. */
  scrypt?: { N: number; r: number; p: number; salt: string };
  /** nonce || AES-256-GCM(private key) || tag (base64url), aad: the public key's text. */
  sealed_private_key?: string;
}

/** The text of a private key file; sealed under `passphrase` when one is given. */
export async function encodeRecoveryKeyFile(pair: RecoveryKeyPair, passphrase?: Uint8Array, params?: ScryptParams): Promise<string> {
  const file: KeyFileJson = { type: 'holdfast-recovery-key', version: 1, public_key: pair.publicKey };
  if (passphrase === undefined) {
    file.private_key = b64u(pair.privateKey);
  } else {
    const salt = randomBytes(16);
    const p = params ?? { N: 2 ** 16, r: 8, p: 1 };
    const key = await deriveKey(passphrase, salt, p);
    file.scrypt = { N: p.N, r: p.r, p: p.p, salt: b64u(salt) };
    file.sealed_private_key = b64u(seal(key, pair.privateKey, Buffer.from(pair.publicKey, 'utf8')));
    key.fill(0);
  }
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** What a key file says before any passphrase: its public key, and whether a passphrase seals it. */
export interface RecoveryKeyFile {
  readonly publicKey: string;
  readonly sealed: boolean;
  /** The raw private key; `passphrase` is needed when the file is sealed. */
  privateKey(passphrase?: Uint8Array): Promise<Buffer>;
}

/** Reads a private key file's text; EscrowFormatError names what is wrong. */
export function decodeRecoveryKeyFile(text: string, what: string): RecoveryKeyFile {
  let f: KeyFileJson;
  try {
    f = JSON.parse(text) as KeyFileJson;
  } catch {
    throw new EscrowFormatError(`${what} is not a recovery key file (not JSON)`);
  }
  if (f?.type !== 'holdfast-recovery-key' || f.version !== 1 || typeof f.public_key !== 'string') {
    throw new EscrowFormatError(`${what} is not a recovery key file of a version this holdfast reads (type holdfast-recovery-key, version 1)`);
  }
  parsePublicKey(f.public_key);
  const checked = (raw: Buffer): Buffer => {
    if (raw.length !== X25519_BYTES || publicKeyOf(raw) !== f.public_key) throw new EscrowFormatError(`${what} is damaged: its private key does not match its public key`);
    return raw;
  };
  if (typeof f.private_key === 'string') {
    const raw = Buffer.from(f.private_key, 'base64url');
    return { publicKey: f.public_key, sealed: false, privateKey: async () => checked(raw) };
  }
  const s = f.scrypt;
  if (typeof f.sealed_private_key !== 'string' || !s || !validScryptParams(s) || typeof s.salt !== 'string') {
    throw new EscrowFormatError(`${what} is damaged: it holds neither a private key nor a sealed one with valid scrypt parameters`);
  }
  return {
    publicKey: f.public_key,
    sealed: true,
    async privateKey(passphrase?: Uint8Array): Promise<Buffer> {
      if (passphrase === undefined) throw new EscrowFormatError(`${what} is sealed with a passphrase: give it`);
      const key = await deriveKey(passphrase, Buffer.from(s.salt, 'base64url'), s);
      try {
        return checked(open(key, Buffer.from(f.sealed_private_key!, 'base64url'), Buffer.from(f.public_key, 'utf8'), what));
      } catch (e) {
        if (e instanceof AuthenticationError) throw new WrongPassphraseError(what);
        throw e;
      } finally {
        key.fill(0);
      }
    },
  };
}

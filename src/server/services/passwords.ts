/**
 * Password hashing with scrypt (the repository keys' `scryptKey`). The parameters are stored with each
 * hash (`scrypt$N$r$p$SALT$HASH`, base64url), so that raising them later
 * leaves older hashes verifiable (docs/decisions.md, "Server passwords").
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { scryptKey, validScryptParams } from '../../core/crypto.js';

/** N = 2^15, r = 8, p = 3: one of OWASP's equivalent scrypt minimums, at 32 MiB a hash instead of 128 (docs/decisions.md). */
const N = 2 ** 15;
const R = 8;
const P = 3;
const KEY_LENGTH = 32;

/** Shortest password a person may choose. */
export const MIN_PASSWORD_LENGTH = 12;

async function derive(password: string, salt: Buffer, n: number, r: number, p: number, length: number): Promise<Buffer> {
  const bytes = Buffer.from(password.normalize('NFC'), 'utf8');
  try {
    return await scryptKey(bytes, salt, length, { N: n, r, p });
  } finally {
    bytes.fill(0);
  }
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, N, R, P, KEY_LENGTH);
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/**
 * What a stored hash may ask before it is computed: the parameters a key
 * file may ask (`validScryptParams`), and a key of 16 to 64 bytes. A planted
 * or damaged row must not hold the thread pool for minutes at each login
 * attempt (p=100000 took two), nor match every password (a key of 0 bytes
 * did through node:crypto, which derives an empty key for it).
 */
function readableParams(n: number, r: number, p: number, keyLength: number): boolean {
  return validScryptParams({ N: n, r, p }) && keyLength >= 16 && keyLength <= 64;
}

/** Whether `password` matches `stored` (compared in constant time); false for a stored value it cannot read. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, salt, key] = stored.split('$');
  if (alg !== 'scrypt' || !salt || !key) return false;
  const want = Buffer.from(key, 'base64url');
  if (!readableParams(Number(n), Number(r), Number(p), want.length)) return false;
  const got = await derive(password, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p), want.length);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A hash no password matches, verified against when the account does not exist, so that both take as long. */
export const DUMMY_HASH = `scrypt$${N}$${R}$${P}$${Buffer.alloc(16).toString('base64url')}$${Buffer.alloc(KEY_LENGTH).toString('base64url')}`;

/** A password the server makes (the first admin's, a new user's): 20 characters of base64url, 120 bits. */
export const oneTimePassword = (): string => randomBytes(15).toString('base64url');

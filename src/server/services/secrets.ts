/**
 * Bearer secrets: session tokens (`hfs_…`), API tokens (`hft_…`) and the
 * metrics token (`hfm_…`, which reads /metrics and nothing else). A
 * token is a public id and a random secret; the database keeps the id and
 * the SHA-256 of the secret, so a stolen database opens nothing, and a
 * presented secret's hash is compared with the stored one in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type SecretKind = 'session' | 'token' | 'metrics';

const PREFIX: Record<SecretKind, string> = { session: 'hfs', token: 'hft', metrics: 'hfm' };
const KIND_OF: Record<string, SecretKind> = { hfs: 'session', hft: 'token', hfm: 'metrics' };
const PARSE = /^(hfs|hft|hfm)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/** A new secret: what the client gets once, and what is stored. */
export interface MintedSecret {
  readonly id: string;
  /** The whole bearer token, shown once. */
  readonly token: string;
  readonly secretHash: string;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

export function mintSecret(kind: SecretKind): MintedSecret {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `${PREFIX[kind]}_${id}_${secret}`, secretHash: sha256(secret) };
}

/** The kind, id and secret of a bearer token, or undefined when it is not one of ours. */
export function parseSecret(token: string): { kind: SecretKind; id: string; secret: string } | undefined {
  const m = PARSE.exec(token);
  if (!m) return undefined;
  return { kind: KIND_OF[m[1]!]!, id: m[2]!, secret: m[3]! };
}

/** Whether `secret` hashes to `storedHash`, compared in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const got = Buffer.from(sha256(secret), 'hex');
  const want = Buffer.from(storedHash, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

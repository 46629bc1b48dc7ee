/**
 * The environment variables that tune the engine, read here and nowhere
 * below src/cli: the engine takes each as an option, so that a long-running
 * process (agent, server) chooses them per job and tests need no globals.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { describeScrypt, validScryptParams, DEFAULT_SCRYPT_PARAMS, type ScryptParams } from '../core/crypto.js';
import { DEFAULT_MIN_GRACE_MS, parseDuration } from '../repo/deletion-marker.js';
import type { S3Settings } from '../storage/s3-backend-config.js';
import { parseFingerprint, type HttpSettings } from '../storage/http-backend.js';
import { ExitError, EXIT } from './exit-codes.js';

type Env = NodeJS.ProcessEnv;

/** KDF cost of new key files: N from HOLDFAST_SCRYPT_N (tests and benchmarks), else the default. */
export function scryptParams(env: Env = process.env): ScryptParams {
  const text = env['HOLDFAST_SCRYPT_N'];
  if (!text) return DEFAULT_SCRYPT_PARAMS;
  const params = { ...DEFAULT_SCRYPT_PARAMS, N: Number(text) };
  if (!validScryptParams(params)) throw new ExitError(`HOLDFAST_SCRYPT_N=${text} is not a power of two between 2 and 2^18 (${describeScrypt(DEFAULT_SCRYPT_PARAMS)} is the default)`, EXIT.usage);
  return params;
}

/** The shortest grace period of prunes, and so the writers' commit window: HOLDFAST_MIN_GRACE (a duration, for tests), else 10 minutes. */
export function minGraceMs(env: Env = process.env): number {
  const text = env['HOLDFAST_MIN_GRACE'];
  if (!text) return DEFAULT_MIN_GRACE_MS;
  try {
    return parseDuration(text);
  } catch (e) {
    throw new ExitError(`HOLDFAST_MIN_GRACE: ${(e as Error).message}`, EXIT.usage);
  }
}

/** Worker threads of this process: HOLDFAST_WORKERS, else one per core. */
export function workerCount(env: Env = process.env): number {
  const n = Number(env['HOLDFAST_WORKERS']);
  return Number.isInteger(n) && n > 0 ? n : availableParallelism();
}

/**
 * How to reach an S3 repository (src/storage/s3-backend-config.ts): the
 * access key from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN), else none, and the AWS SDK's own chain looks (the
 * profile AWS_PROFILE names in the shared files, SSO, instance roles); the region from
 * AWS_DEFAULT_REGION or AWS_REGION; a CA certificate to trust besides the
 * system's from --cacert or HOLDFAST_CACERT (a PEM file).
 */
export async function s3Settings(cacert: string | undefined, env: Env = process.env): Promise<S3Settings> {
  const id = env['AWS_ACCESS_KEY_ID'];
  const secret = env['AWS_SECRET_ACCESS_KEY'];
  if (!id !== !secret) {
    throw new ExitError(`${id ? 'AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not' : 'AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not'}: set both, or neither to use a profile`, EXIT.usage);
  }
  const token = env['AWS_SESSION_TOKEN'];
  const region = env['AWS_DEFAULT_REGION'] || env['AWS_REGION'];
  const profile = env['AWS_PROFILE'];
  const ca = await caCertificate(cacert, env);
  return {
    ...(id && secret ? { credentials: { accessKeyId: id, secretAccessKey: secret, ...(token ? { sessionToken: token } : {}) } } : {}),
    ...(region ? { region } : {}),
    ...(profile ? { profile } : {}),
    ...(ca === undefined ? {} : { ca }),
  };
}

/** The PEM of --cacert or HOLDFAST_CACERT, read and checked; undefined when neither is given. */
async function caCertificate(cacert: string | undefined, env: Env): Promise<string | undefined> {
  const caFile = cacert ?? (env['HOLDFAST_CACERT'] || undefined);
  if (caFile === undefined) return undefined;
  let ca: string;
  try {
    ca = await readFile(caFile, 'utf8');
  } catch (e) {
    throw new ExitError(`cannot read the CA certificate ${caFile}: ${(e as Error).message}`, EXIT.usage);
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ExitError(`${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, EXIT.usage);
  return ca;
}

/**
 * How to reach a disk safe on a holdfast server (src/storage/http-backend.ts):
 * the token from HOLDFAST_TOKEN; the server certificate's fingerprint to pin
 * from --fingerprint or HOLDFAST_FINGERPRINT (then no CA is asked), else a CA
 * to trust besides the system's from --cacert or HOLDFAST_CACERT.
 */
export async function httpSettings(fingerprint: string | undefined, cacert: string | undefined, env: Env = process.env): Promise<HttpSettings> {
  const token = env['HOLDFAST_TOKEN'] || undefined;
  const pin = fingerprint ?? (env['HOLDFAST_FINGERPRINT'] || undefined);
  if (pin !== undefined) {
    try {
      parseFingerprint(pin);
    } catch (e) {
      throw new ExitError((e as Error).message, EXIT.usage);
    }
  }
  const ca = pin === undefined ? await caCertificate(cacert, env) : undefined;
  return { ...(token === undefined ? {} : { token }), ...(pin === undefined ? {} : { fingerprint: pin }), ...(ca === undefined ? {} : { ca }) };
}

/**
 * How long a storage call that keeps failing transiently is tried again:
 * HOLDFAST_RETRY_FOR (a duration such as 30s or 10m), else the retrying
 * wrapper's own 2 minutes (src/storage/retrying-backend.ts).
 */
export function retryForMs(env: Env = process.env): number | undefined {
  const text = env['HOLDFAST_RETRY_FOR'];
  if (!text) return undefined;
  try {
    return parseDuration(text);
  } catch (e) {
    throw new ExitError(`HOLDFAST_RETRY_FOR: ${(e as Error).message}`, EXIT.usage);
  }
}

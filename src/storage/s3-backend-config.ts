/**
 * What an S3 repository location means, and the settings that go with it.
 *
 * Locations take restic's forms (the part after `s3:`):
 *
 *   s3:https://host:port/bucket/prefix   a self-hosted endpoint (MinIO, Ceph, Garage, s3rver…), path-style
 *   s3:http://127.0.0.1:9000/bucket      the same without TLS (everything travels in the clear)
 *   s3:host:port/bucket/prefix           https://host:port/…
 *   s3:s3.amazonaws.com/bucket/prefix    AWS itself: virtual-hosted addressing, the region from the settings
 *   s3:s3.eu-west-1.amazonaws.com/bucket AWS, in that region
 *
 * The prefix is optional; every object of the repository lives under it
 * (`prefix/config`, `prefix/keys/…`, `prefix/data/xx/…`, as in a local folder).
 * Credentials never go in the location: they come in `S3Settings`, which the
 * CLI fills from the environment, or from the AWS SDK's own default chain
 * (profile files and the rest) when none are given.
 */
import { BadLocationError } from './backend.js';

/** Where an S3 repository lives: an endpoint, a bucket, and a key prefix in it. */
export interface S3Location {
  /**
   * The endpoint's origin (`https://host:port`) for anything but AWS;
   * undefined for AWS, whose regional endpoint the SDK picks from the region.
   */
  readonly endpoint: string | undefined;
  /** The bucket's name. */
  readonly bucket: string;
  /** The key prefix, without leading or trailing slash; '' for the bucket's root. */
  readonly prefix: string;
  /**
   * Path-style addressing (`https://host/bucket/key`), which self-hosted
   * endpoints need; false for AWS, which addresses `https://bucket.host/key`.
   */
  readonly pathStyle: boolean;
  /** The region an AWS host names (`s3.eu-west-1.amazonaws.com`); undefined otherwise. */
  readonly region: string | undefined;
}

/** An access key, as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) give it. */
export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** For temporary credentials only. */
  readonly sessionToken?: string;
}

/** How to reach an S3 location, besides the location itself. Every field is optional. */
export interface S3Settings {
  /**
   * The access key; when absent, the AWS SDK's default provider chain looks
   * for one (environment, `~/.aws/credentials` and `~/.aws/config` with
   * AWS_PROFILE, SSO, web identity, container and instance metadata).
   */
  readonly credentials?: S3Credentials;
  /**
   * The profile of the shared config files to take the credentials (when
   * `credentials` is absent) and the region from, as AWS_PROFILE names it;
   * else `default`. Named in the error when it yields no credentials.
   */
  readonly profile?: string;
  /**
   * The region to sign for; else the one the location's AWS host names, else
   * the profile's in the AWS SDK's shared config files (AWS_PROFILE or
   * `default`, ~/.aws/config or AWS_CONFIG_FILE), else `us-east-1`.
   */
  readonly region?: string;
  /**
   * PEM certificates trusted besides the system's roots, for an endpoint whose
   * certificate a private CA signed (or a self-signed one): restic's --cacert.
   * Verification stays on: nothing else is ever trusted.
   */
  readonly ca?: string;
  /** How many requests run at once (sockets per endpoint). Default `DEFAULT_S3_CONNECTIONS`. */
  readonly connections?: number;
  /** Objects larger than this are uploaded in parts. Default `DEFAULT_MULTIPART_THRESHOLD`. */
  readonly multipartThreshold?: number;
  /** The size of each part but the last. Default `DEFAULT_PART_SIZE` (AWS wants at least 5 MiB). */
  readonly partSize?: number;
  /** A request that makes no progress (no byte sent or received) for this long fails. Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** How many names one listing request asks for, 1 to 1000. Default 1000. */
  readonly listPageSize?: number;
}

/** Requests in flight at once: enough to hide the round trip on a fast link; restic takes 5. */
export const DEFAULT_S3_CONNECTIONS = 8;
/** docs/decisions.md, "S3": a default 16 MiB pack goes in one PUT; larger ones in parts. */
export const DEFAULT_MULTIPART_THRESHOLD = 32 * 1024 * 1024;
/** The part size of a multipart upload. */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

/** `s3.amazonaws.com`, `s3.REGION.amazonaws.com` or the older `s3-REGION.amazonaws.com`. */
const AWS_HOST = /^s3(?:[.-]([a-z0-9-]+))?\.amazonaws\.com$/;

/** S3's bucket naming rule: 3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses what follows `s3:` in a repository location; see the module comment
 * for the forms. A malformed one throws an error that says which rule it
 * breaks (as `openBackend` refuses an unsupported location: a plain error).
 */
export function parseS3Location(rest: string): S3Location {
  const bad = (problem: string): Error =>
    new BadLocationError(`bad S3 location "s3:${rest}": ${problem} (the form is s3:https://host[:port]/bucket[/prefix])`);
  if (rest === '') throw bad('it is empty');
  const explicit = /^https?:\/\//i.test(rest);
  if (!explicit && /^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) throw bad('only http:// and https:// endpoints are known');
  // Checked before URL parsing, which would quietly resolve them away.
  if (/\/(\.|%2e){1,2}(\/|$)/i.test(rest)) throw bad('the prefix may not have empty, "." or ".." parts');
  let url: URL;
  try {
    url = new URL(explicit ? rest : `https://${rest}`);
  } catch {
    throw bad('it is not a valid URL');
  }
  if (url.username !== '' || url.password !== '') {
    throw bad('credentials do not belong in the location: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  if (url.search !== '' || url.hash !== '') throw bad('it may not have a query (?…) or fragment (#…)');
  if (url.hostname === '') throw bad('it names no host');
  const segments = url.pathname.split('/').slice(1);
  if (segments.at(-1) === '') segments.pop(); // one trailing slash is harmless
  const [bucket, ...prefix] = segments.map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw bad(`"${s}" is not valid percent-encoding`);
    }
  });
  if (bucket === undefined || bucket === '') throw bad('it names no bucket');
  if (!BUCKET.test(bucket)) throw bad(`"${bucket}" is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)`);
  for (const p of prefix) {
    if (p === '' || p === '.' || p === '..') throw bad('the prefix may not have empty, "." or ".." parts');
  }
  const aws = url.protocol === 'https:' && url.port === '' ? AWS_HOST.exec(url.hostname.toLowerCase()) : null;
  return {
    endpoint: aws ? undefined : url.origin,
    bucket,
    prefix: prefix.join('/'),
    pathStyle: !aws,
    region: aws?.[1],
  };
}

/** The canonical form of a location, for messages: `s3:https://host:port/bucket/prefix`. */
export function formatS3Location(loc: S3Location): string {
  const origin = loc.endpoint ?? (loc.region ? `https://s3.${loc.region}.amazonaws.com` : 'https://s3.amazonaws.com');
  return `s3:${origin}/${loc.bucket}${loc.prefix === '' ? '' : `/${loc.prefix}`}`;
}

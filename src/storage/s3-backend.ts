/**
 * A repository in an S3 bucket (AWS, or any S3-compatible endpoint), through
 * the AWS SDK. The AWS SDK's types stay in this file: callers see `Backend`,
 * `S3Location` and `S3Settings` only.
 *
 * Layout: the local folder layout (docs/format.md §2.2) under the location's
 * prefix, with `/` between the parts: `prefix/config`, `prefix/keys/<name>`,
 * `prefix/data/<name[0..2]>/<name>`, …
 *
 *   save    in-process: one save of a name at a time (a second waits, then finds it)
 *           HEAD → exists: AlreadyExistsError
 *           size ≤ multipartThreshold: PUT, If-None-Match: *
 *           larger: CreateMultipartUpload, parts of partSize (4 at once),
 *                   CompleteMultipartUpload with If-None-Match: *; any failure
 *                   aborts the upload, which never shows as an object
 *           412 Precondition Failed → AlreadyExistsError
 *   load    GET, with a Range for a part; the Content-Range the endpoint answers
 *           is checked against what was asked (ShortReadError past the end);
 *           a body is read up to the size the answer declared and no further
 *           (an answer without a size is asked again by range, after a HEAD)
 *   list    ListObjectsV2 a page at a time, as the caller iterates; a page
 *           that does not get past the one before is an error, not a loop;
 *           one that is not this bucket's ListBucketResult (an HTML page, no
 *           body, no KeyCount) is transient, never an empty listing
 *   remove  DELETE, which succeeds on a missing key too (removeMissingIsError: false)
 *
 * Endpoints that ignore If-None-Match (s3rver, older gateways) still refuse
 * a name they already hold, by the HEAD; two processes racing to write one
 * name on such an endpoint may both succeed, which a content-addressed name
 * makes harmless (docs/format.md §2.3 says why, and what protects the config
 * and locks).
 *
 * Every request is bounded (src/storage/http-transfer-bound.ts): its answer
 * must begin within the idle timeout (plus its body's bytes at MIN_RATE) and
 * come at MIN_RATE or faster, so that no endpoint can hold a call forever.
 *
 * Errors: a missing object is `NotFoundError`; a dropped connection, a
 * timeout, a request past its bound, 500, 502, 503, 504, 429 and SlowDown are `TransientError` (the SDK
 * itself does not retry: `RetryingBackend` does, so that there is one retry
 * policy), except a refused connection before the endpoint has ever
 * answered, which is a wrong endpoint rather than a restart (docs/decisions.md,
 * "Retries"); an untrusted certificate, refused credentials, HTTPS to a
 * plain-HTTP endpoint and plain HTTP to a TLS one are plain errors with a message that says what to do.
 */
import { Agent as HttpAgent, STATUS_CODES } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { createRequire } from 'node:module';
import { createSecureContext, rootCertificates } from 'node:tls';

import type * as S3Module from '@aws-sdk/client-s3';

import {
  objectLabel,
  AlreadyExistsError,
  NotFoundError,
  ShortReadError,
  TransientError,
  type Backend,
  type BackendCapabilities,
  type Handle,
  type ListOptions,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
  type OperationOptions,
} from './backend.js';
import { boundTransfers, TooSlowError } from './http-transfer-bound.js';
import { speaksTls } from './tls-probe.js';
import { byteRange, checkHandle, checkMaxBytes, checkPrefix, checkRangeArgs, checkType, nameProblem, OBJECT_FOLDERS } from './object-names.js';
import {
  DEFAULT_MULTIPART_THRESHOLD,
  DEFAULT_PART_SIZE,
  DEFAULT_S3_CONNECTIONS,
  formatS3Location,
  type S3Location,
  type S3Settings,
} from './s3-backend-config.js';

/** Parts of one multipart upload sent at once. */
const PART_CONCURRENCY = 4;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The slowest transfer worth waiting for, in bytes per second: an endpoint
 * that sends a byte now and then keeps the socket's idle timeout from ever
 * firing (src/storage/http-transfer-bound.ts).
 */
const MIN_RATE = 1024;

/** The SDK's module, loaded on first use, and the client made with it. */
interface Sdk {
  readonly S3: typeof S3Module;
  readonly client: S3Module.S3Client;
}

/** The subset of an SDK error this file reads. */
interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

/** The subset of a response body this file uses (a Node stream with the SDK's helpers). */
interface Body extends AsyncIterable<Uint8Array> {
  destroy(error?: Error): void;
}

const TRANSIENT_STATUS = new Set([429, 500, 502, 503, 504]);
const TRANSIENT_NAMES = new Set([
  'SlowDown', 'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'Throttling', 'ThrottlingException',
  'RequestThrottled', 'TimeoutError', 'ConditionalRequestConflict',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE',
]);
/** A certificate no trusted CA signs: a private CA's certificate (--cacert) is the remedy. */
const UNSIGNED_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);
const CERT_CODES = new Set([...UNSIGNED_CODES, 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const AUTH_NAMES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken']);

/** An S3 implementation of `Backend`; see the module comment. */
export class S3Backend implements Backend {
  /** `s3:https://host:port/bucket/prefix`. */
  readonly location: string;
  /** `connections` from the settings; S3's DELETE cannot tell a missing key. */
  readonly capabilities: BackendCapabilities;
  private readonly config: S3Module.S3ClientConfig;
  private loaded: Promise<Sdk> | undefined;
  private readonly bucket: string;
  /** The key prefix with its trailing slash, or '' for the bucket's root. */
  private readonly base: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly pageSize: number;
  /** Cleared when the endpoint refuses If-None-Match as not implemented; the HEAD before each PUT remains. */
  private conditional = true;
  /** The saves in flight in this process, by key: a second save of a key waits for the first. */
  private readonly saving = new Map<string, Promise<void>>();
  /** The region the settings or the location name; else the profile's (`region()`). */
  private readonly regionGiven: string | undefined;
  /** The shared-config profile (`S3Settings.profile`), named when it yields no credentials. */
  private readonly profile: string | undefined;
  private regionFound: Promise<string> | undefined;
  private readonly idleTimeoutMs: number;
  /** Set once the endpoint has answered any request: a refused connection is a wrong endpoint until then. */
  private answered = false;
  /** A CA certificate was given (--cacert): an unsigned certificate is then one it does not sign. */
  private readonly caGiven: boolean;
  private closed = false;

  constructor(private readonly loc: S3Location, settings: S3Settings = {}) {
    this.location = formatS3Location(loc);
    this.caGiven = settings.ca !== undefined;
    this.bucket = loc.bucket;
    this.base = loc.prefix === '' ? '' : `${loc.prefix}/`;
    this.multipartThreshold = positive(settings.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD, 'multipartThreshold');
    this.partSize = positive(settings.partSize ?? DEFAULT_PART_SIZE, 'partSize');
    this.pageSize = Math.min(1000, positive(settings.listPageSize ?? 1000, 'listPageSize'));
    const connections = positive(settings.connections ?? DEFAULT_S3_CONNECTIONS, 'connections');
    this.capabilities = { connections, appendOnly: false, removeMissingIsError: false };
    this.regionGiven = settings.region ?? loc.region;
    this.profile = settings.profile;
    this.idleTimeoutMs = positive(settings.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs');
    // `timeout` makes the agent honour an endpoint's `Keep-Alive: timeout=N`
    // (Node's agent lets an idle connection go a second before N only when it
    // has a timeout of its own): without it an idle connection was kept until
    // the endpoint closed it, and a request sent on it just then failed with
    // "socket hang up" and a retry warning (s3rver closes after 5 s).
    const agentOptions = { keepAlive: true, maxSockets: connections, timeout: this.idleTimeoutMs };
    const httpAgent = new HttpAgent(agentOptions);
    // `ca` replaces the roots Node trusts, so they are given again beside the extra one.
    // One context for every socket: given as `ca`, the 144 roots were parsed
    // again for each new connection (60-90 ms of CPU each) and joined into
    // the agent's pool key (217 kB) on every request.
    const httpsAgent = new HttpsAgent({ ...agentOptions, ...(settings.ca ? { secureContext: createSecureContext({ ca: [...rootCertificates, settings.ca] }) } : {}) });
    for (const agent of [httpAgent, httpsAgent]) boundTransfers(agent, { idleTimeoutMs: this.idleTimeoutMs, minBytesPerSecond: MIN_RATE });
    this.config = {
      region: () => this.region(),
      ...(loc.endpoint === undefined ? {} : { endpoint: loc.endpoint }),
      forcePathStyle: loc.pathStyle,
      ...(settings.credentials ? { credentials: { ...settings.credentials } } : {}),
      ...(settings.profile ? { profile: settings.profile } : {}),
      // One retry policy, RetryingBackend's, rather than the SDK's under it.
      maxAttempts: 1,
      // Checksums only where S3 requires them: S3-compatible endpoints differ on
      // the newer ones, and every object is checked against its own hash or MAC.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent,
        httpsAgent,
        connectionTimeout: CONNECT_TIMEOUT_MS,
        socketTimeout: this.idleTimeoutMs,
        // The SDK's handler warns on the console when requests queue for a socket;
        // queueing is expected here (callers may ask for more than `connections`).
        logger: SILENT,
      },
    };
  }

  /**
   * The SDK and the client, made on first use: loading the SDK costs about
   * 100 ms of CPU, which only commands on an S3 location pay. It is required,
   * not imported: `import()` of the CommonJS SDK sent it and every module it
   * requires through the ES module loader's format detection and export
   * lexing, twice the CPU (about 200 ms) and two to three times the wall time.
   */
  private sdk(): Promise<Sdk> {
    this.loaded ??= Promise.resolve().then(() => {
      const S3 = createRequire(import.meta.url)('@aws-sdk/client-s3') as typeof S3Module;
      const client = new S3.S3Client(this.config);
      // Any HTTP answer, an error status included, shows the endpoint is there.
      client.middlewareStack.add((next) => async (args) => {
        try {
          const out = await next(args);
          this.answered = true;
          return out;
        } catch (e) {
          if (status(e) !== undefined) this.answered = true;
          else if (!this.answered && await this.tlsSpokenTo(args.request, e)) throw new EndpointSpeaksTlsError(e);
          throw e;
        }
      }, { step: 'deserialize', name: 'holdfastAnswered' });
      // Over HTTPS the body is not hashed into the signature (restic's S3
      // backend does the same): TLS already protects it on the way, every object
      // is checked against its own SHA-256 name or AES-GCM tags, and the SDK's
      // hash of each body ran on the event loop at about 420 MB/s here. Over
      // plain HTTP the signed hash is what keeps a body from being changed.
      client.middlewareStack.add((next) => (args) => {
        const req = args.request as { protocol?: string; body?: unknown; headers?: Record<string, string> };
        if (req.protocol === 'https:' && req.body !== undefined && req.headers) req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      }, { step: 'build', name: 'holdfastUnsignedPayload' });
      return { S3, client };
    });
    return this.loaded;
  }

  /**
   * The region to sign for: the settings', else the one the location's AWS
   * host names, else the `region` of the profile in the shared config files
   * (AWS_PROFILE or `default`, in ~/.aws/config or AWS_CONFIG_FILE, and
   * ~/.aws/credentials), read by the SDK's own loader as its clients read
   * it, else us-east-1. Not the SDK's own fallback: it asks the EC2 instance
   * metadata service, a network call that hangs off EC2.
   */
  private region(): Promise<string> {
    this.regionFound ??= this.regionGiven !== undefined ? Promise.resolve(this.regionGiven) : import('@smithy/core/config').then(async (config) => {
      const fromProfile = config.loadConfig<string | undefined>({
        environmentVariableSelector: () => undefined,
        configFileSelector: (profile) => profile[config.REGION_INI_NAME],
        default: () => undefined,
      }, { ...config.NODE_REGION_CONFIG_FILE_OPTIONS, ...(this.profile === undefined ? {} : { profile: this.profile }) });
      return (await fromProfile()) ?? 'us-east-1';
    });
    return this.regionFound;
  }

  /** See `Backend.create`: makes the bucket when it does not exist (as restic's init does). */
  async create({ signal }: OperationOptions = {}): Promise<void> {
    signal?.throwIfAborted();
    const { S3, client } = await this.sdk();
    try {
      await client.send(new S3.HeadBucketCommand({ Bucket: this.bucket }), opts(signal));
      return;
    } catch (e) {
      if (status(e) !== 404) throw this.failure(e, 'HEAD bucket', undefined, signal);
    }
    try {
      const region = await this.region();
      const outside = this.loc.endpoint === undefined && region !== 'us-east-1';
      await client.send(new S3.CreateBucketCommand({
        Bucket: this.bucket,
        ...(outside ? { CreateBucketConfiguration: { LocationConstraint: region as S3Module.BucketLocationConstraint } } : {}),
      }), opts(signal));
    } catch (e) {
      if ((e as SdkError).name !== 'BucketAlreadyOwnedByYou') throw this.failure(e, 'create bucket', undefined, signal);
    }
  }

  /**
   * See `Backend.entries`: the keys and common prefixes ("folders") right
   * under the prefix, in one listing page of at most 1000; 0 when the bucket
   * does not exist yet.
   */
  async entries({ signal }: OperationOptions = {}): Promise<number> {
    signal?.throwIfAborted();
    const { S3, client } = await this.sdk();
    try {
      const page = await client.send(new S3.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.base, Delimiter: '/', MaxKeys: 1000 }), opts(signal));
      return (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
    } catch (e) {
      if ((e as SdkError).name === 'NoSuchBucket') return 0;
      throw this.failure(e, 'LIST', undefined, signal);
    }
  }

  /** See `Backend.save` and the module comment. */
  async save(h: Handle, data: Uint8Array, { signal }: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    signal?.throwIfAborted();
    const key = this.keyOf(h);
    for (let before = this.saving.get(key); before !== undefined; before = this.saving.get(key)) {
      await before.catch(() => undefined);
    }
    const saving = this.saveNew(h, key, data, signal);
    this.saving.set(key, saving);
    try {
      await saving;
    } finally {
      this.saving.delete(key);
    }
  }

  private async saveNew(h: Handle, key: string, data: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    if (await this.head(h, key, signal) !== undefined) throw new AlreadyExistsError(h);
    try {
      if (data.length <= this.multipartThreshold) await this.putWhole(key, data, signal);
      else await this.putInParts(h, key, data, signal);
    } catch (e) {
      if (status(e) === 412) throw new AlreadyExistsError(h);
      throw this.failure(e, 'PUT', h, signal);
    }
  }

  private async putWhole(key: string, data: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const { S3, client } = await this.sdk();
    const put = (conditional: boolean) => client.send(new S3.PutObjectCommand({
      Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length, ...(conditional ? { IfNoneMatch: '*' } : {}),
    }), opts(signal));
    try {
      await put(this.conditional);
    } catch (e) {
      if (!this.conditional || !notImplemented(e)) throw e;
      this.conditional = false;
      await put(false);
    }
  }

  /**
   * A multipart upload: parts of `partSize`, PART_CONCURRENCY at once. The
   * object appears only when CompleteMultipartUpload succeeds; any failure,
   * or `signal`, stops the parts still running and aborts the upload (best
   * effort: an endpoint that cannot abort drops it on its own lifecycle rules,
   * and an unfinished upload is never listed or read as an object).
   */
  private async putInParts(h: Handle, key: string, data: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const { S3, client } = await this.sdk();
    const { UploadId } = await client.send(new S3.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }), opts(signal));
    if (UploadId === undefined) throw new Error(`S3 ${this.location}: CreateMultipartUpload of ${key} returned no upload id`);
    const stop = new AbortController();
    const stopParts = (): void => stop.abort(signal?.reason);
    signal?.addEventListener('abort', stopParts, { once: true });
    try {
      const count = Math.ceil(data.length / this.partSize);
      const etags: string[] = [];
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let i = next++; i < count && !stop.signal.aborted; i = next++) {
          const body = data.subarray(i * this.partSize, Math.min(data.length, (i + 1) * this.partSize));
          const { ETag } = await client.send(new S3.UploadPartCommand({
            Bucket: this.bucket, Key: key, UploadId, PartNumber: i + 1, Body: body, ContentLength: body.length,
          }), opts(stop.signal));
          if (ETag === undefined) throw new Error(`S3 ${this.location}: part ${i + 1} of ${key} was stored without an ETag`);
          etags[i] = ETag;
        }
      };
      // The first failure is the one to report: the parts it stops fail after it, as aborted.
      let failure: { error: unknown } | undefined;
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, () => worker().catch((e: unknown) => {
        failure ??= { error: e };
        stop.abort(e);
      })));
      if (failure) throw failure.error;
      signal?.throwIfAborted();
      const complete = (conditional: boolean) => client.send(new S3.CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: key, UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        ...(conditional ? { IfNoneMatch: '*' } : {}),
      }), opts(signal));
      try {
        await complete(this.conditional);
      } catch (e) {
        if (!this.conditional || !notImplemented(e)) throw e;
        this.conditional = false;
        await complete(false);
      }
    } catch (e) {
      // Without the caller's signal: the upload must be aborted even when the caller gave up.
      await client.send(new S3.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId })).catch(() => undefined);
      throw e;
    } finally {
      signal?.removeEventListener('abort', stopParts);
    }
  }

  /** See `Backend.load` and the module comment. */
  async load(h: Handle, { offset, length, signal, maxBytes }: LoadOptions = {}): Promise<Buffer> {
    checkHandle(h);
    checkRangeArgs(offset, length, maxBytes);
    signal?.throwIfAborted();
    const key = this.keyOf(h);
    if (length !== undefined && (offset ?? 0) >= 0) checkMaxBytes(h, length, maxBytes);
    if ((offset ?? 0) === 0 && length === undefined) return this.getWhole(h, key, signal, maxBytes);
    if (length === 0 && offset !== undefined && offset >= 0) {
      const size = await this.head(h, key, signal);
      if (size === undefined) throw new NotFoundError(h);
      byteRange(h, size, offset, 0);
      return Buffer.alloc(0);
    }
    const from = offset ?? 0;
    const asked = from < 0 ? `bytes=${from}` : length === undefined ? `bytes=${from}-` : `bytes=${from}-${from + length - 1}`;
    const got = await this.getRange(h, key, asked, signal);
    if (got === 'past-end') {
      // 416: nothing of the range exists; only an empty read at the very end is fine.
      const size = await this.head(h, key, signal);
      if (size === undefined) throw new NotFoundError(h);
      byteRange(h, size, offset, length);
      return Buffer.alloc(0);
    }
    const [start, end] = rangeOrDiscard(got, () => {
      const range = byteRange(h, got.total, offset, length);
      checkMaxBytes(h, range[1] - range[0], maxBytes);
      return range;
    });
    if (got.start <= start && end <= got.end) return this.sliceOf(h, got, start, end);
    // The endpoint answered another range than asked (s3rver reads "bytes=-n"
    // as "bytes=0-n"): ask again for the absolute range, now that the size is known.
    got.body.destroy();
    const again = await this.getRange(h, key, `bytes=${start}-${end - 1}`, signal);
    if (again === 'past-end' || again.start > start || again.end < end) {
      if (again !== 'past-end') again.body.destroy();
      throw new Error(`S3 ${this.location}: GET ${key} with Range bytes=${start}-${end - 1} returned another range`);
    }
    return this.sliceOf(h, again, start, end);
  }

  private async getWhole(h: Handle, key: string, signal: AbortSignal | undefined, maxBytes: number | undefined): Promise<Buffer> {
    const { S3, client } = await this.sdk();
    let res: S3Module.GetObjectCommandOutput;
    try {
      res = await client.send(new S3.GetObjectCommand({ Bucket: this.bucket, Key: key }), opts(signal));
    } catch (e) {
      throw this.failure(e, 'GET', h, signal);
    }
    const body = res.Body as Body | undefined;
    if (body === undefined) return Buffer.alloc(0);
    const size = res.ContentLength;
    if (size === undefined) {
      // A body of no declared size could be endless: the object's size is asked, and then that range.
      body.destroy();
      return this.getSized(h, key, signal, maxBytes);
    }
    if (maxBytes !== undefined && size > maxBytes) {
      body.destroy();
      checkMaxBytes(h, size, maxBytes);
    }
    try {
      const bytes = await this.readBody(body, size, size);
      if (bytes.length !== size) {
        throw new TransientError(`S3 ${this.location}: GET ${key} ended after ${bytes.length} of ${size} bytes`);
      }
      return bytes;
    } catch (e) {
      throw this.failure(e, 'GET', h, signal);
    }
  }

  /** The whole object, by a HEAD for its size and a GET of that range. */
  private async getSized(h: Handle, key: string, signal: AbortSignal | undefined, maxBytes: number | undefined): Promise<Buffer> {
    const size = await this.head(h, key, signal);
    if (size === undefined) throw new NotFoundError(h);
    checkMaxBytes(h, size, maxBytes);
    if (size === 0) return Buffer.alloc(0);
    const got = await this.getRange(h, key, `bytes=0-${size - 1}`, signal);
    if (got === 'past-end' || got.start > 0 || got.end < size) {
      if (got !== 'past-end') got.body.destroy();
      throw new Error(`S3 ${this.location}: GET ${key} with Range bytes=0-${size - 1} returned another range`);
    }
    return this.sliceOf(h, got, 0, size);
  }

  /** A ranged GET: the part the endpoint sent ([start, end) of an object of `total` bytes), or 'past-end' for a 416. */
  private async getRange(h: Handle, key: string, range: string, signal: AbortSignal | undefined): Promise<Part | 'past-end'> {
    const { S3, client } = await this.sdk();
    let res: S3Module.GetObjectCommandOutput;
    try {
      res = await client.send(new S3.GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }), opts(signal));
    } catch (e) {
      if (status(e) === 416) return 'past-end';
      throw this.failure(e, 'GET', h, signal);
    }
    const body = res.Body as Body | undefined;
    if (body === undefined) throw new Error(`S3 ${this.location}: GET ${key} returned no body`);
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? '');
    if (cr) return { start: Number(cr[1]), end: Number(cr[2]) + 1, total: Number(cr[3]), body };
    // No Content-Range: the endpoint ignored the Range and sent the whole object.
    const total = res.ContentLength;
    if (total === undefined) {
      body.destroy();
      throw new Error(`S3 ${this.location}: GET ${key} with a Range returned neither Content-Range nor Content-Length`);
    }
    return { start: 0, end: total, total, body };
  }

  /** Bytes [start, end) of the object, read from `part` and no further than `end`. */
  private async sliceOf(h: Handle, part: Part, start: number, end: number): Promise<Buffer> {
    let bytes: Buffer;
    const need = end - part.start;
    try {
      bytes = await this.readBody(part.body, part.end - part.start, need);
    } catch (e) {
      throw this.failure(e, 'GET', h);
    }
    if (bytes.length < need) {
      throw new TransientError(`S3 ${this.location}: GET ${this.keyOf(h)} ended after ${bytes.length} of ${part.end - part.start} bytes`);
    }
    return bytes.subarray(start - part.start, need);
  }

  /**
   * The body, read until it ends or `enough` bytes have come (the rest is
   * let go). More than `size`, the size the answer declared, is an error
   * rather than a read without end: the endpoint broke its own answer, and
   * asking again would only read as much again. (A body slower than
   * MIN_RATE is ended by the transfer bound, as every answer is.)
   */
  private async readBody(body: Body, size: number, enough: number): Promise<Buffer> {
    // One buffer of the bytes wanted, filled as they come: no list of chunks copied again at the end.
    const out = Buffer.allocUnsafe(Math.min(size, enough));
    let total = 0;
    try {
      for await (const chunk of body) {
        if (total + chunk.length > size) throw new Error(`the endpoint sent more than the ${size} bytes its answer declared`);
        if (total < out.length) out.set(chunk.subarray(0, out.length - total), total);
        total += chunk.length;
        // Only a part of what was sent is wanted (an endpoint that answered a larger range).
        if (total >= enough && enough < size) break;
      }
    } finally {
      body.destroy();
    }
    return total >= out.length ? out : out.subarray(0, total);
  }

  /** See `Backend.stat`. */
  async stat(h: Handle, { signal }: OperationOptions = {}): Promise<ObjectInfo | undefined> {
    checkHandle(h);
    signal?.throwIfAborted();
    const size = await this.head(h, this.keyOf(h), signal);
    return size === undefined ? undefined : { name: h.name, size };
  }

  /** The object's size, or undefined when there is no object of that key. */
  private async head(h: Handle, key: string, signal: AbortSignal | undefined): Promise<number | undefined> {
    const { S3, client } = await this.sdk();
    try {
      const res = await client.send(new S3.HeadObjectCommand({ Bucket: this.bucket, Key: key }), opts(signal));
      return res.ContentLength ?? 0;
    } catch (e) {
      if (status(e) === 404) return undefined;
      throw this.failure(e, 'HEAD', h, signal);
    }
  }

  /**
   * See `Backend.list`: one ListObjectsV2 page (of `listPageSize` keys) at a
   * time, as the caller iterates. A prefix of data names of two characters or
   * more reaches into one `data/xx/` folder only.
   */
  async *list(type: ObjectType, { prefix: namePrefix, signal }: ListOptions = {}): AsyncIterable<ObjectInfo> {
    checkType(type);
    const prefix = checkPrefix(namePrefix);
    signal?.throwIfAborted();
    if (type === 'config') {
      const info = 'config'.startsWith(prefix) ? await this.stat({ type, name: 'config' }, { signal }) : undefined;
      if (info) yield info;
      return;
    }
    const folder = `${this.base}${OBJECT_FOLDERS[type]}/`;
    const keyPrefix = folder + (type === 'data' && prefix.length >= 2 ? `${prefix.slice(0, 2)}/${prefix}` : prefix);
    const { S3, client } = await this.sdk();
    // Each page starts after the last key of the one before. Continuation
    // tokens would do the same, but s3rver's are DES-encrypted, which Node's
    // OpenSSL 3 refuses (HTTP 500); StartAfter means the same on every endpoint.
    let after: string | undefined;
    for (let pageNo = 1; ; pageNo++) {
      let page;
      try {
        const command = new S3.ListObjectsV2Command({
          Bucket: this.bucket, Prefix: keyPrefix, MaxKeys: this.pageSize, ...(after === undefined ? {} : { StartAfter: after }),
        });
        command.middlewareStack.add(listingBodyCheck(this.where('LIST', undefined), this.pageSize),
          { step: 'deserialize', priority: 'low', name: 'holdfastListingBody' });
        page = await client.send(command, opts(signal));
      } catch (e) {
        throw this.failure(e, 'LIST', undefined, signal);
      }
      const contents = page.Contents ?? [];
      this.checkListing(page, contents.length, pageNo);
      // A page must begin after the one before (StartAfter): an endpoint that
      // says "more" but answers the same page again would be listed forever.
      const stuck = after === undefined ? undefined : contents.find((o) => o.Key !== undefined && o.Key <= after!);
      const last = contents.at(-1)?.Key;
      if (stuck !== undefined || (page.IsTruncated && last === undefined)) {
        throw new Error(`LIST ${this.location}: the endpoint's listing does not advance (page ${pageNo} `
          + `${stuck === undefined ? 'is marked truncated but is empty' : `holds ${stuck.Key}, not after ${after}`}); the endpoint is not listing correctly`);
      }
      for (const o of contents) {
        // A key outside the prefix asked for is the endpoint's mistake, never cut into a name.
        if (o.Key === undefined || !o.Key.startsWith(keyPrefix)) continue;
        const rest = o.Key.slice(folder.length);
        const [dir, name] = type === 'data' ? rest.split('/', 3) : [undefined, rest];
        // Skips whatever `load` could not address (someone else's keys beside ours).
        if (name === undefined || nameProblem(type, name) !== undefined) continue;
        if (type === 'data' ? rest !== `${dir}/${name}` || !name.startsWith(dir ?? '') || dir?.length !== 2 : rest.includes('/')) continue;
        if (!name.startsWith(prefix)) continue;
        signal?.throwIfAborted();
        yield { name, size: o.Size ?? 0 };
      }
      if (!page.IsTruncated || last === undefined) return;
      after = last;
    }
  }

  /**
   * Refuses a parsed page that is not this bucket's listing. The SDK reads a
   * 200 answer of any body (a proxy's HTML page, nothing, another document)
   * as a page with every field absent, which would be an empty listing: an
   * empty snapshots/ listing makes prune delete every pack. A page must name
   * the bucket and say how many keys it holds and whether more follow; one
   * that does not is transient (a gateway's maintenance page passes).
   */
  private checkListing(page: S3Module.ListObjectsV2CommandOutput, listed: number, pageNo: number): void {
    const problem = page.Name !== this.bucket ? `names the bucket ${page.Name === undefined ? '(none)' : JSON.stringify(page.Name)}`
      : page.IsTruncated === undefined ? 'does not say whether it is complete (no IsTruncated)'
        : page.KeyCount === undefined ? 'does not say how many keys it holds (no KeyCount)'
          : page.KeyCount !== listed ? `says it holds ${page.KeyCount} keys but lists ${listed}`
            : undefined;
    if (problem !== undefined) {
      throw new TransientError(`${this.where('LIST', undefined)}: page ${pageNo} of the endpoint's listing ${problem}, `
        + `not a listing of the bucket ${this.bucket}`);
    }
  }

  /** See `Backend.remove`: S3's DELETE succeeds on a missing key too. */
  async remove(h: Handle, { signal }: OperationOptions = {}): Promise<void> {
    checkHandle(h);
    signal?.throwIfAborted();
    const { S3, client } = await this.sdk();
    const key = this.keyOf(h);
    try {
      await client.send(new S3.DeleteObjectCommand({ Bucket: this.bucket, Key: key }), opts(signal));
    } catch (e) {
      throw this.failure(e, 'DELETE', h, signal);
    }
  }

  /** See `Backend.close`: closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.loaded) (await this.loaded).client.destroy();
  }

  /**
   * Whether `e`, a plain-HTTP request's failure without an answer (a reset,
   * or bytes that are no HTTP), came from an endpoint that speaks TLS.
   */
  private async tlsSpokenTo(request: unknown, e: unknown): Promise<boolean> {
    const req = request as { protocol?: string; hostname?: string; port?: number };
    const code = (e as SdkError).code ?? '';
    if (req.protocol !== 'http:' || req.hostname === undefined || !(code === 'ECONNRESET' || code.startsWith('HPE_'))) return false;
    return speaksTls(req.hostname, req.port ?? 80);
  }

  /** How messages name a request: "GET data/… in s3:…". */
  private where(what: string, h: Handle | undefined): string {
    return h === undefined ? `${what} ${this.location}` : `${what} ${objectLabel(h)} in ${this.location}`;
  }

  private keyOf(h: Handle): string {
    if (h.type === 'config') return `${this.base}config`;
    return `${this.base}${OBJECT_FOLDERS[h.type]}/${h.type === 'data' ? `${h.name.slice(0, 2)}/` : ''}${h.name}`;
  }

  /**
   * The error to throw for `e`, a failed request: the signal's reason when
   * the caller aborted, `NotFoundError` for a missing key, `TransientError`
   * for what may pass, and otherwise an error that names the endpoint and
   * says what the endpoint said.
   */
  private failure(e: unknown, what: string, h: Handle | undefined, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason;
    if (e instanceof NotFoundError || e instanceof ShortReadError || e instanceof AlreadyExistsError || e instanceof TransientError) return e;
    const err = (e ?? {}) as SdkError;
    const code = err.code ?? (err as { cause?: SdkError }).cause?.code;
    const name = err.name ?? 'Error';
    const where = this.where(what, h);
    if (e instanceof TooSlowError) return new TransientError(`${where}: ${e.message}`, { cause: e });
    const httpStatus = status(e);
    // A HEAD answer has no body, so the SDK knows no error name: the status says it.
    const said = name === 'Unknown' && httpStatus !== undefined ? STATUS_CODES[httpStatus] ?? 'no error body'
      : `${name === 'Error' ? '' : `${name}: `}${err.message ?? String(e)}`;
    // Before the 404s of missing keys: a missing bucket answers 404 too. An
    // object read from it is missing all the same (a config: no repository there).
    if (name === 'NoSuchBucket' && h !== undefined && (what === 'GET' || what === 'HEAD')) return new NotFoundError(h);
    if (name === 'NoSuchBucket') return new Error(`${where}: the bucket ${this.bucket} does not exist (init creates it)`, { cause: e });
    if (h !== undefined && (name === 'NoSuchKey' || status(e) === 404)) return new NotFoundError(h);
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      const tls = ((err as { cause?: unknown }).cause ?? err) as { host?: string; cert?: { subjectaltname?: string; subject?: { CN?: string } } };
      return new Error(`${where}: the endpoint's TLS certificate is for ${certificateNames(tls.cert)}, but the location names ${tls.host ?? 'another'}; `
        + 'use a name the certificate holds', { cause: e });
    }
    if (code !== undefined && UNSIGNED_CODES.has(code)) {
      return new Error(this.caGiven
        ? `${where}: the CA certificate given (--cacert or HOLDFAST_CACERT) does not sign the endpoint's TLS certificate (${err.message ?? code})`
        : `${where}: the endpoint's TLS certificate is not trusted (${err.message ?? code}); if a private CA signed it, give that CA's certificate with --cacert FILE`, { cause: e });
    }
    if (code !== undefined && CERT_CODES.has(code)) return new Error(`${where}: the endpoint's TLS certificate is not valid (${err.message ?? code})`, { cause: e });
    if (code === 'EPROTO' && /wrong version number/.test(err.message ?? '')) {
      return new Error(`${where}: the endpoint does not speak TLS; for plain HTTP use ${this.location.replace(/^s3:https:/, 's3:http:')}`, { cause: e });
    }
    if (e instanceof EndpointSpeaksTlsError) {
      return new Error(`${where}: the endpoint speaks TLS; use ${this.location.replace(/^s3:http:/, 's3:https:')}`, { cause: e.cause });
    }
    if (code === 'ECONNREFUSED' && !this.answered) {
      return new Error(`${where}: the connection was refused; check the endpoint's address and port (nothing answers there)`, { cause: e });
    }
    if (AUTH_NAMES.has(name) || status(e) === 403) {
      return new Error(`${where}: the endpoint refused the credentials (${said}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions`, { cause: e });
    }
    if (name === 'CredentialsProviderError') {
      const from = this.profile === undefined ? '' : ` in the profile "${this.profile}" (AWS_PROFILE)`;
      return new Error(`${where}: no S3 credentials${from} (${said}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile of ~/.aws/credentials or ~/.aws/config that has them`, { cause: e });
    }
    if ((httpStatus !== undefined && TRANSIENT_STATUS.has(httpStatus)) || TRANSIENT_NAMES.has(name) || (code !== undefined && NETWORK_CODES.has(code))) {
      return new TransientError(`${where}: ${httpStatus === undefined ? '' : `HTTP ${httpStatus} `}${said}`, { cause: e });
    }
    return new Error(`${where}: ${httpStatus === undefined ? '' : `HTTP ${httpStatus} `}${said}`, { cause: e });
  }
}

/** The names a certificate is for: its subject alternative names ("DNS:a, IP Address:b"), else its common name. */
function certificateNames(cert: { subjectaltname?: string; subject?: { CN?: string } } | undefined): string {
  const alt = cert?.subjectaltname?.split(', ').map((n) => n.replace(/^[^:]*:/, ''));
  return alt?.join(', ') ?? cert?.subject?.CN ?? 'another name';
}

/** A plain-HTTP request failed without an answer, and the endpoint's port speaks TLS. */
class EndpointSpeaksTlsError extends Error {
  constructor(cause: unknown) {
    super('the endpoint speaks TLS', { cause });
  }
}

/** A ranged response: bytes [start, end) of an object of `total` bytes, still to be read from `body`. */
interface Part {
  readonly start: number;
  readonly end: number;
  readonly total: number;
  readonly body: Body;
}

/** `compute()`, or, when it throws (a range past the end), that error once the unread body is let go. */
function rangeOrDiscard(part: Part, compute: () => [number, number]): [number, number] {
  try {
    return compute();
  } catch (e) {
    part.body.destroy();
    throw e;
  }
}

/** The raw answer the SDK's deserializer middleware is given (the subset read here). */
interface RawAnswer {
  readonly response: { statusCode?: number; headers?: Record<string, string | undefined>; body?: unknown };
}

/** Bytes a listing page of one key may take: a key of up to 1024 bytes, escaped, and its fields. */
const LISTING_BYTES_PER_KEY = 8192;

/**
 * A middleware that runs under the SDK's deserializer on a ListObjectsV2
 * answer: a 2xx answer must be XML whose root is ListBucketResult, of at most
 * what `pageSize` keys take, else a `TransientError` (see
 * `S3Backend.checkListing`, which checks the parsed fields). The body it
 * reads is handed on to the deserializer as bytes.
 */
function listingBodyCheck(where: string, pageSize: number) {
  const limit = 65_536 + pageSize * LISTING_BYTES_PER_KEY;
  return <Args, Output>(next: (args: Args) => Promise<Output>) => async (args: Args): Promise<Output> => {
    const out = await next(args);
    const { response } = out as RawAnswer;
    const code = response.statusCode ?? 0;
    if (code < 200 || code > 299) return out;
    const type = response.headers?.['content-type'] ?? '';
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > limit) {
        (response.body as Body).destroy();
        throw new TransientError(`${where}: the endpoint's listing page is larger than ${limit} bytes, more than ${pageSize} keys take`);
      }
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    }
    const body = Buffer.concat(chunks, total);
    const start = body.subarray(0, 512).toString('latin1');
    const root = /^(?:\uFEFF)?\s*(?:<\?xml[^>]*\?>\s*)?<([A-Za-z_][\w.:-]*)/.exec(start)?.[1];
    if (!/\bxml\b/i.test(type) || root !== 'ListBucketResult') {
      const what = total === 0 ? 'an empty body' : root === undefined ? `${total} bytes that are not XML` : `a document of <${root}>`;
      throw new TransientError(`${where}: the endpoint answered the listing with ${what} (Content-Type: ${type || 'none'}), `
        + 'not a ListBucketResult');
    }
    response.body = body;
    return out;
  };
}

function status(e: unknown): number | undefined {
  return (e as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/** The endpoint does not implement a header it was sent (here: If-None-Match on a write). */
function notImplemented(e: unknown): boolean {
  return (e as SdkError | undefined)?.name === 'NotImplemented' || status(e) === 501;
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`S3 ${what} must be a positive integer, got ${n}`);
  return n;
}

/** The SDK's per-request options: the caller's signal, when there is one. */
function opts(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

const ignore = (): void => undefined;
const SILENT = { trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };

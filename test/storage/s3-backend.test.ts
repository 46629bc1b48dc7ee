/**
 * The S3 backend against a real endpoint: s3rver on 127.0.0.1 over HTTPS with
 * a self-signed certificate (test/helpers/s3rver.ts). The shared conformance
 * suite runs first, each test under a fresh prefix of one bucket; then what
 * only S3 shows: TLS verification, the key layout and keys that are not
 * ours, multipart uploads; then, over plain HTTP behind a proxy that injects
 * faults, multipart uploads that fail or are aborted midway (no object),
 * 500s, 503s and answers that never come (transient, retried), and the
 * error when they do not pass.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'node:https';

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';

import { NotFoundError, ObjectTooLargeError, TransientError } from '../../src/storage/backend.js';
import { CorruptObjectError } from '../../src/repo/errors.js';
import { readConfig } from '../../src/repo/objects.js';
import { RetriesExhaustedError, RetryingBackend } from '../../src/storage/retrying-backend.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { parseS3Location, type S3Settings } from '../../src/storage/s3-backend-config.js';
import { startFaultProxy, startS3rver, TEST_BUCKET, type FaultAction, type FaultProxy, type TestS3 } from '../helpers/s3rver.js';
import { backendConformance, bytes, handleOf, hexName, listAll } from './conformance.js';

let s3: TestS3;
let counter = 0;
before(async () => {
  s3 = await startS3rver();
});
after(async () => {
  await s3.close();
});

/** A backend on a prefix no other test uses. */
function fresh(extra: S3Settings = {}): S3Backend {
  return new S3Backend(parseS3Location(s3.locationRest(`repo-${++counter}`)), { ...s3.settings, ...extra });
}

/** A client of the test endpoint that sees the bucket's raw keys. */
function rawClient(): S3Client {
  return new S3Client({
    endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.settings.credentials!,
    requestHandler: { httpsAgent: new Agent({ ca: s3.ca }) },
  });
}

/** Every key of the test bucket under `prefix`, sorted. */
async function rawKeys(prefix: string): Promise<string[]> {
  const client = rawClient();
  try {
    const page = await client.send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key ?? '').sort();
  } finally {
    client.destroy();
  }
}

/** Stores three bytes under `key`, past the backend. */
async function putRaw(key: string): Promise<void> {
  const client = rawClient();
  try {
    await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: key, Body: Buffer.from('abc') }));
  } finally {
    client.destroy();
  }
}

backendConformance('S3Backend (s3rver, HTTPS)', async (o) => fresh({ listPageSize: o.listPageSize }));

/** The x-amz-content-sha256 of each PUT that passes through the proxy, by key. */
type PayloadHashes = Map<string, string | undefined>;

/**
 * An HTTPS pass-through to the test endpoint on loopback, with its key and
 * certificate, that records the payload hash each PUT was signed with.
 */
async function recordingProxy(): Promise<{ endpoint: string; puts: PayloadHashes; close(): Promise<void> }> {
  const puts: PayloadHashes = new Map();
  const up = new URL(s3.endpoint);
  const server = createHttpsServer({ key: await readFile(join(s3.dir, 'key.pem')), cert: s3.ca }, (req, res) => {
    if (req.method === 'PUT') puts.set(new URL(req.url ?? '', 'https://x').pathname, req.headers['x-amz-content-sha256'] as string | undefined);
    const fwd = httpsRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, ca: s3.ca }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    puts,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

describe('S3Backend', () => {
  it('over HTTPS sends a body without hashing it into the signature (TLS protects it), and the endpoint stores it', async () => {
    const proxy = await recordingProxy();
    const b = new S3Backend(parseS3Location(`${proxy.endpoint}/${TEST_BUCKET}/unsigned`), s3.settings);
    try {
      const h = handleOf('data', 'unsigned');
      await b.save(h, bytes(5000, 7));
      assert.deepEqual(await b.load(h), bytes(5000, 7));
      assert.deepEqual([...proxy.puts], [[`/${TEST_BUCKET}/unsigned/data/${h.name.slice(0, 2)}/${h.name}`, 'UNSIGNED-PAYLOAD']]);
    } finally {
      await b.close();
      await proxy.close();
    }
  });

  it('refuses an endpoint whose certificate it does not trust, saying how to trust it', async () => {
    const b = new S3Backend(parseS3Location(s3.locationRest('untrusted')), { credentials: s3.settings.credentials! });
    try {
      await assert.rejects(b.create(), (e: Error) => {
        assert.match(e.message, /TLS certificate is not trusted \(self-signed certificate\).*--cacert FILE/);
        assert.ok(e.message.includes(s3.endpoint), e.message);
        return true;
      });
      await assert.rejects(b.load(handleOf('config')), /not trusted/);
    } finally {
      await b.close();
    }
  });

  it('stores objects under the prefix in the local layout, and lists only what it could load', async () => {
    const prefix = `layout-${++counter}`;
    const b = new S3Backend(parseS3Location(s3.locationRest(`${prefix}/`)), s3.settings);
    await b.create();
    const pack = handleOf('data', 'layout');
    const snap = handleOf('snapshot', 'layout');
    await b.save(pack, bytes(10));
    await b.save(snap, bytes(4));
    await b.save(handleOf('config'), bytes(3));
    assert.deepEqual(await rawKeys(`${prefix}/`), [
      `${prefix}/config`,
      `${prefix}/data/${pack.name.slice(0, 2)}/${pack.name}`,
      `${prefix}/snapshots/${snap.name}`,
    ]);
    // Keys another tool left beside ours: none is an object of the repository.
    const other = hexName('other');
    for (const key of [`data/${other}`, `data/zz/${other}`, `data/${pack.name.slice(0, 2)}/${other}`, `data/${other.slice(0, 2)}/x/${other}`,
      `snapshots/sub/${other}`, `snapshots/.tmp-1`, `snapshots/UPPER`, `snapshotsx/${other}`]) await putRaw(`${prefix}/${key}`);
    assert.deepEqual(await listAll(b, 'data'), [{ name: pack.name, size: 10 }]);
    assert.deepEqual(await listAll(b, 'snapshot'), [{ name: snap.name, size: 4 }]);
    await b.close();
  });

  it('says that the endpoint refused the credentials, and does not take it for a passing fault', async () => {
    // (s3rver checks the key id of a V4 signature, not the signature itself)
    for (const [credentials, name] of [[{ accessKeyId: 'NOBODY', secretAccessKey: 'S3RVER' }, 'InvalidAccessKeyId']] as const) {
      const b = new S3Backend(parseS3Location(s3.locationRest('denied')), { ...s3.settings, credentials });
      await assert.rejects(b.load(handleOf('config')), (e: Error) => {
        assert.ok(!(e instanceof TransientError), String(e));
        assert.match(e.message, new RegExp(`^GET config in s3:https://.*: the endpoint refused the credentials \\(${name}: .*\\); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions$`));
        return true;
      });
      await b.close();
    }
  });

  it('create() makes a bucket that does not exist, once', async () => {
    const b = new S3Backend(parseS3Location(`${s3.endpoint}/made-by-create/repo`), s3.settings);
    await assert.rejects(b.save(handleOf('key', 'early'), bytes(1)), /bucket made-by-create does not exist/);
    await b.create();
    await b.create();
    await b.save(handleOf('key', 'after'), bytes(5));
    assert.deepEqual(await b.load(handleOf('key', 'after')), bytes(5));
    await b.close();
  });

  it('uploads a large object in parts and reads it back whole and in ranges', async () => {
    const b = fresh({ multipartThreshold: 1000, partSize: 300 });
    await b.create();
    const h = handleOf('data', 'parts');
    const data = bytes(2345, 5);
    await b.save(h, data);
    assert.deepEqual(await b.load(h), data);
    assert.deepEqual(await b.load(h, { offset: 299, length: 302 }), data.subarray(299, 601));
    assert.deepEqual(await b.stat(h), { name: h.name, size: 2345 });
    assert.deepEqual(await listAll(b, 'data'), [{ name: h.name, size: 2345 }]);
    await b.close();
  });

});

describe('S3Backend when the endpoint fails (s3rver over HTTP, behind a fault proxy)', () => {
  let plain: TestS3;
  let proxy: FaultProxy;
  before(async () => {
    plain = await startS3rver({ tls: false });
    proxy = await startFaultProxy(plain.endpoint);
  });
  after(async () => {
    await proxy.close();
    await plain.close();
  });

  /** A backend on a fresh prefix, through the proxy. */
  function behindProxy(extra: S3Settings = {}): S3Backend {
    return new S3Backend(parseS3Location(`${proxy.endpoint}/${TEST_BUCKET}/faults-${++counter}`), { ...plain.settings, ...extra });
  }

  /** Retries quickly: the tests see the outcome, not the waiting. */
  const retrying = (b: S3Backend, attempts = 4): RetryingBackend =>
    new RetryingBackend(b, { policy: { attempts, baseDelayMs: 1, maxDelayMs: 5, maxElapsedMs: 60_000 } });

  const part = (n: number) => (req: IncomingMessage): boolean => req.method === 'PUT' && new URL(req.url ?? '', 'http://x').searchParams.get('partNumber') === String(n);

  it('over plain HTTP signs each body\'s SHA-256 (nothing else keeps it from being changed on the way)', async () => {
    const b = behindProxy();
    const puts: PayloadHashes = new Map();
    proxy.setRule((req) => {
      if (req.method === 'PUT') puts.set(new URL(req.url ?? '', 'http://x').pathname, req.headers['x-amz-content-sha256'] as string | undefined);
      return 'pass';
    });
    try {
      const h = handleOf('snapshot', 'signed');
      await b.save(h, bytes(3000, 2));
      assert.deepEqual(await b.load(h), bytes(3000, 2));
      assert.deepEqual([...puts.values()], [createHash('sha256').update(bytes(3000, 2)).digest('hex')]);
    } finally {
      proxy.setRule(() => 'pass');
      await b.close();
    }
  });

  it('a multipart upload whose part fails is aborted and leaves no object', async () => {
    const b = behindProxy({ multipartThreshold: 1000, partSize: 300 });
    await b.create();
    const h = handleOf('data', 'part-fails');
    proxy.setRule((req) => (part(3)(req) ? 500 : 'pass'));
    try {
      await assert.rejects(b.save(h, bytes(2000)), (e: Error) => e instanceof TransientError && /HTTP 500 InternalError/.test(e.message));
    } finally {
      proxy.setRule(() => 'pass');
    }
    assert.equal(await b.stat(h), undefined);
    assert.deepEqual(await listAll(b, 'data'), []);
    await b.save(h, bytes(2000, 3));
    assert.deepEqual(await b.load(h), bytes(2000, 3), 'the name is free for the next upload');
    await b.close();
  });

  it('a multipart upload aborted while a part is in flight leaves no object', async () => {
    const b = behindProxy({ multipartThreshold: 1000, partSize: 300 });
    await b.create();
    const h = handleOf('data', 'part-held');
    const ac = new AbortController();
    const reason = new Error('stopped by the test');
    proxy.setRule((req) => {
      if (!part(2)(req)) return 'pass';
      setImmediate(() => ac.abort(reason));
      return 'hold';
    });
    try {
      await assert.rejects(b.save(h, bytes(2000), { signal: ac.signal }), (e) => e === reason);
    } finally {
      proxy.setRule(() => 'pass');
      proxy.releaseHeld();
    }
    assert.equal(await b.stat(h), undefined);
    assert.deepEqual(await listAll(b, 'data'), []);
    await assert.rejects(b.load(h), NotFoundError);
    await b.close();
  });

  it('500s, 503s and slow answers are transient: retried, then the call succeeds', async () => {
    const inner = behindProxy({ idleTimeoutMs: 300 });
    const b = retrying(inner, 6);
    await b.create();
    const h = handleOf('snapshot', 'flaky');
    const faults: FaultAction[] = [];
    proxy.setRule(() => faults.shift() ?? 'pass');
    try {
      faults.push(503, 500, 'hold');
      await b.save(h, bytes(100));
      assert.equal(faults.length, 0, 'each fault was met');
      faults.push('hold', 503);
      assert.deepEqual(await b.load(h), bytes(100));
      faults.push(500);
      assert.deepEqual(await listAll(b, 'snapshot'), [{ name: h.name, size: 100 }]);
      assert.equal(faults.length, 0, 'each fault was met');
    } finally {
      proxy.setRule(() => 'pass');
      proxy.releaseHeld();
    }
    await b.close();
  });

  it('a fault that does not pass ends in a clear error naming the call, and nothing is stored', async () => {
    const b = retrying(behindProxy({ idleTimeoutMs: 300 }), 3);
    await b.create();
    const h = handleOf('data', 'down');
    for (const fault of [503, 'hold'] as const) {
      // (the rule is put back to 'pass' after the loop, and by the next test's own rule)
      proxy.setRule(() => fault);
      await assert.rejects(b.save(h, bytes(10)), (e: Error) => {
        assert.ok(e instanceof RetriesExhaustedError, String(e));
        assert.match(e.message, new RegExp(`^save data/${h.name.slice(0, 8)}.* failed after 3 attempts over \\d+\\.\\d s: .*${fault === 503 ? `HEAD data/${h.name} in .*: HTTP 503 Service Unavailable$` : '(timed out|no answer within 0\\.3 s)'}`));
        return true;
      });
      proxy.releaseHeld();
    }
    proxy.setRule(() => 'pass');
    assert.equal(await b.stat(h), undefined);
    await b.close();
  });

  it('a refused connection is a wrong endpoint before it ever answered, a transient fault after; a missing key is NotFoundError', async () => {
    const b = behindProxy();
    await b.create();
    await assert.rejects(b.load(handleOf('index', 'nothing')), NotFoundError);
    const wrongPort = new S3Backend(parseS3Location(`http://127.0.0.1:1/${TEST_BUCKET}/x`), plain.settings);
    await assert.rejects(retrying(wrongPort).stat(handleOf('index', 'x')), (e: Error) => {
      assert.ok(!(e instanceof TransientError) && !(e instanceof RetriesExhaustedError), String(e));
      assert.match(e.message, /^HEAD index\/[0-9a-f]{64} in s3:http:\/\/127\.0\.0\.1:1\/holdfast-test\/x: the connection was refused; check the endpoint's address and port/);
      return true;
    });
    await wrongPort.close();
    // Straight to s3rver, which is then restarted: the endpoint had answered, so the refusal may pass.
    const direct = new S3Backend(parseS3Location(`${plain.endpoint}/${TEST_BUCKET}/restart-${++counter}`), plain.settings);
    await direct.create();
    await plain.stop();
    try {
      // Refused, or (a kept-alive connection the stop closed, met before the client saw it close) hung up: transient either way.
      await assert.rejects(direct.stat(handleOf('index', 'x')), (e: Error) => e instanceof TransientError && /ECONNREFUSED|socket hang up|ECONNRESET/.test(e.message));
    } finally {
      await plain.start();
    }
    await direct.close();
    await b.close();
  });

  it('https:// to an endpoint of plain HTTP says so and names the http:// location', async () => {
    const rest = `${plain.endpoint.replace(/^http:/, 'https:')}/${TEST_BUCKET}/tls`;
    for (const b of [new S3Backend(parseS3Location(rest), plain.settings), new S3Backend(parseS3Location(rest.replace(/^https:\/\//, '')), plain.settings)]) {
      await assert.rejects(b.create(), (e: Error) => {
        assert.ok(!(e instanceof TransientError), String(e));
        assert.equal(e.message, `HEAD bucket s3:${rest}: the endpoint does not speak TLS; for plain HTTP use s3:${plain.endpoint}/${TEST_BUCKET}/tls`);
        return true;
      });
      await b.close();
    }
  });
});

/**
 * A hostile endpoint on 127.0.0.1: `answer` gets each request (and its URL)
 * and answers it as it likes; the SDK checks nothing that would stop it.
 */
async function startHostile(answer: (req: IncomingMessage, url: URL, res: ServerResponse) => void): Promise<{ rest: string; close(): Promise<void> }> {
  const server = createServer((req, res) => answer(req, new URL(req.url ?? '', 'http://x'), res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    rest: `http://127.0.0.1:${port}/bkt/repo`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * An endpoint on 127.0.0.1 that reads each request and then drips the
 * headers of an answer that never ends: a line every 20 ms, so that no
 * socket is ever idle for long. With `headMissing`, a HEAD is answered at
 * once with 404 (so that a save goes on to its PUT).
 */
async function startHeaderDrip(): Promise<{ rest: string; requests: () => number; headMissing: (on: boolean) => void; close(): Promise<void> }> {
  let requests = 0;
  let headMissing = false;
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let dripping = false;
    socket.on('data', (chunk: Buffer) => {
      if (dripping) return; // the rest of a request body
      requests++;
      if (headMissing && chunk.toString('latin1').startsWith('HEAD ')) {
        socket.write('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      dripping = true;
      socket.write('HTTP/1.1 200 OK\r\n');
      const t = setInterval(() => (socket.destroyed ? clearInterval(t) : socket.write('x-drip: 1\r\n')), 20);
      socket.once('close', () => clearInterval(t));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    rest: `http://127.0.0.1:${port}/bkt/repo`,
    requests: () => requests,
    headMissing: (on) => (headMissing = on),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A ListObjectsV2 answer of `keys`, `truncated` or not. */
function listing(res: ServerResponse, keys: string[], truncated: boolean): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name><KeyCount>${keys.length}</KeyCount><IsTruncated>${truncated}</IsTruncated>`
    + `${keys.map((k) => `<Contents><Key>${k}</Key><Size>5</Size></Contents>`).join('')}</ListBucketResult>`;
  res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Writes 64 KiB chunks for as long as the client reads them. */
function endless(res: ServerResponse): void {
  const chunk = Buffer.alloc(1 << 16, 7);
  const pump = (): void => {
    while (!res.destroyed && res.write(chunk));
  };
  res.on('drain', pump);
  res.on('close', () => res.off('drain', pump));
  pump();
}

describe('S3Backend against a hostile endpoint (a loopback server of the test\'s own)', { timeout: 20_000 }, () => {
  const creds = { credentials: { accessKeyId: 'x', secretAccessKey: 'y' } };
  const h = handleOf('data', 'hostile');
  const name = h.name;
  const other = hexName('other');

  it('lets an idle connection go before the keep-alive timeout the endpoint announced, instead of sending on one it may be closing', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'keep-alive': 'timeout=2', 'content-length': 3 });
        res.end('abc');
      });
    });
    // The endpoint itself never closes an idle connection: only the client can.
    server.keepAliveTimeout = 0;
    const closed: Promise<void>[] = [];
    server.on('connection', (socket: Socket) => void closed.push(new Promise((resolve) => socket.once('close', () => resolve()))));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const b = new S3Backend(parseS3Location(`http://127.0.0.1:${(server.address() as AddressInfo).port}/bkt/repo`), creds);
    try {
      assert.deepEqual(await b.load(h), Buffer.from('abc'));
      // Kept until the backend closes, the connection would hold this test until its timeout.
      await closed[0];
      assert.deepEqual(await b.load(h), Buffer.from('abc'));
      assert.equal(closed.length, 2, 'the second request opened a connection of its own');
    } finally {
      await b.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a listing whose pages do not advance is an error, not a loop; keys outside the prefix are skipped', async () => {
    let mode: 'same' | 'empty' = 'same';
    let lists = 0;
    const evil = await startHostile((_req, url, res) => {
      lists++;
      assert.equal(url.searchParams.get('prefix'), mode === 'same' ? 'repo/data/' : 'repo/index/');
      // The same page each time: a key of ours, and one outside the prefix that cutting the prefix's length off would make a valid name.
      listing(res, mode === 'same' ? [`repo/data/${name.slice(0, 2)}/${name}`, `repo/datx/${other.slice(0, 2)}/${other}`] : [], true);
    });
    const b = new S3Backend(parseS3Location(evil.rest), creds);
    try {
      const seen: string[] = [];
      await assert.rejects((async () => {
        for await (const o of b.list('data')) seen.push(o.name);
      })(), (e: Error) => {
        assert.ok(!(e instanceof TransientError), String(e));
        assert.match(e.message, /^LIST s3:http:\/\/127\.0\.0\.1:\d+\/bkt\/repo: the endpoint's listing does not advance \(page 2 holds repo\/data\/[0-9a-f]{2}\/[0-9a-f]{64}, not after repo\/datx\/[0-9a-f]{2}\/[0-9a-f]{64}\); the endpoint is not listing correctly$/);
        return true;
      });
      assert.deepEqual(seen, [name], 'the key outside the prefix is not listed');
      assert.equal(lists, 2);
      mode = 'empty';
      await assert.rejects(listAll(b, 'index'), /does not advance \(page 1 is marked truncated but is empty\)/);
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('a 200 answer to a listing that is not this bucket\'s ListBucketResult is transient, never an empty listing', async () => {
    const page = (inner: string): string => `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</ListBucketResult>`;
    const answers: [string, string, string | RegExp][] = [
      ['text/html', '<html><body><h1>Maintenance</h1></body></html>', 'the endpoint answered the listing with a document of <html> (Content-Type: text/html), not a ListBucketResult'],
      ['application/xml', '', 'the endpoint answered the listing with an empty body (Content-Type: application/xml), not a ListBucketResult'],
      ['application/xml', '<?xml version="1.0"?><ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>',
        'the endpoint answered the listing with a document of <ListAllMyBucketsResult> (Content-Type: application/xml), not a ListBucketResult'],
      ['text/plain', page('<Name>bkt</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>'), /with a document of <ListBucketResult> \(Content-Type: text\/plain\)/],
      ['application/xml', page('<Name>other</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>'), 'page 1 of the endpoint\'s listing names the bucket "other", not a listing of the bucket bkt'],
      ['application/xml', page('<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>'), 'page 1 of the endpoint\'s listing names the bucket (none), not a listing of the bucket bkt'],
      ['application/xml', page('<Name>bkt</Name><KeyCount>0</KeyCount>'), 'page 1 of the endpoint\'s listing does not say whether it is complete (no IsTruncated), not a listing of the bucket bkt'],
      ['application/xml', page('<Name>bkt</Name><IsTruncated>false</IsTruncated>'), 'page 1 of the endpoint\'s listing does not say how many keys it holds (no KeyCount), not a listing of the bucket bkt'],
      ['application/xml', page(`<Name>bkt</Name><KeyCount>2</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>repo/snapshots/${name}</Key><Size>5</Size></Contents>`),
        'page 1 of the endpoint\'s listing says it holds 2 keys but lists 1, not a listing of the bucket bkt'],
      ['application/xml', page(`<Name>bkt</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>${'<Contents><Key>x</Key></Contents>'.repeat(2500)}`),
        /the endpoint's listing page is larger than 73728 bytes, more than 1 keys take$/],
    ];
    let current = answers[0]!;
    const evil = await startHostile((_req, _url, res) => {
      res.writeHead(200, { 'content-type': current[0], 'content-length': Buffer.byteLength(current[1]) });
      res.end(current[1]);
    });
    const b = new S3Backend(parseS3Location(evil.rest), { ...creds, listPageSize: 1 });
    try {
      for (const answer of answers) {
        current = answer;
        await assert.rejects(listAll(b, 'snapshot'), (e: Error) => {
          assert.ok(e instanceof TransientError, String(e));
          const said = e.message.replace(/^LIST s3:http:\/\/127\.0\.0\.1:\d+\/bkt\/repo: /, '');
          if (typeof answer[2] === 'string') assert.equal(said, answer[2]);
          else assert.match(said, answer[2]);
          return true;
        });
      }
      current = ['application/xml', page(`<Name>bkt</Name><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>repo/snapshots/${name}</Key><Size>5</Size></Contents>`), ''];
      assert.deepEqual((await listAll(b, 'snapshot')).map((o) => o.name), [name], 'a true page is read as before');
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('a body longer than its answer declared is not read past that size', async () => {
    let sent = 0;
    const evil = await startHostile((req, url, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-length': 100 });
        res.end();
        return;
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      // Chunked, so no Content-Length stops Node's parser: the body runs on, as the attacker's did.
      res.writeHead(range ? 206 : 200, range ? { 'content-range': `bytes ${range[1]}-${range[2]}/100` } : {});
      res.on('close', () => (sent = res.writableLength + (res.socket?.bytesWritten ?? 0)));
      endless(res);
      void url;
    });
    const b = new S3Backend(parseS3Location(evil.rest), creds);
    try {
      await assert.rejects(b.load(h), /^Error: GET data\/[0-9a-f]{64} in s3:.*: the endpoint sent more than the 100 bytes its answer declared$/);
      await assert.rejects(b.load(h, { offset: 10, length: 20 }), /the endpoint sent more than the 20 bytes its answer declared$/);
      assert.ok(sent < 16 << 20, `read ${sent} bytes`);
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('an answer whose headers drip in is given up on, for HEAD, PUT and LIST alike; retried, then a clear error', async () => {
    const evil = await startHeaderDrip();
    const inner = new S3Backend(parseS3Location(evil.rest), { ...creds, idleTimeoutMs: 300 });
    const b = new RetryingBackend(inner, { policy: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5, maxElapsedMs: 60_000 } });
    const noAnswer = (call: string, within: string): RegExp =>
      new RegExp(`^${call} s3:http://127\\.0\\.0\\.1:\\d+/bkt/repo: no answer within ${within} s of sending the request`);
    try {
      await assert.rejects(inner.stat(h), (e: Error) => {
        assert.ok(e instanceof TransientError, String(e));
        assert.match(e.message, noAnswer(`HEAD data/${name} in`, '0\\.3'));
        return true;
      });
      await assert.rejects(b.stat(h), (e: Error) => {
        assert.ok(e instanceof RetriesExhaustedError, String(e));
        assert.match(e.message, /^stat data\/[0-9a-f]{8}.* failed after 2 attempts over \d+\.\d s: HEAD .*: no answer within 0\.3 s of sending the request$/);
        return true;
      });
      await assert.rejects(listAll(inner, 'index'), (e: Error) => e instanceof TransientError && noAnswer('LIST', '0\\.3').test(e.message));
      evil.headMissing(true);
      // The body's bytes at 1024 bytes/s are added to the bound: 2000 bytes give 2 s more.
      await assert.rejects(inner.save(h, bytes(2000)), (e: Error) => {
        assert.ok(e instanceof TransientError, String(e));
        assert.match(e.message, noAnswer(`PUT data/${name} in`, '2\\.3'));
        assert.match(e.message, /\(2000 bytes, given 1024 bytes\/s\)$/);
        return true;
      });
      assert.equal(evil.requests(), 6, 'HEAD, HEAD twice, LIST, HEAD and PUT');
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('a listing whose body drips in is given up on as transient', async () => {
    const evil = await startHostile((_req, _url, res) => {
      res.writeHead(200, { 'content-type': 'application/xml', 'content-length': 100_000 });
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 20);
    });
    const b = new S3Backend(parseS3Location(evil.rest), { ...creds, idleTimeoutMs: 300 });
    try {
      await assert.rejects(listAll(b, 'index'), (e: Error) => {
        assert.ok(e instanceof TransientError, String(e));
        assert.match(e.message, /^LIST s3:.*: the endpoint sent \d+ bytes in 0\.3 s, slower than the 1024 bytes\/s waited for$/);
        return true;
      });
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('an object declared larger than maxBytes is refused before its body is read; a config of 400 MiB is damage', async () => {
    const declared = 400 << 20;
    let sent = 0;
    const evil = await startHostile((req, _url, res) => {
      res.writeHead(200, { 'content-length': declared });
      if (req.method === 'HEAD') return void res.end();
      res.on('close', () => (sent += res.socket?.bytesWritten ?? 0));
      endless(res);
    });
    const b = new S3Backend(parseS3Location(evil.rest), creds);
    try {
      await assert.rejects(b.load(h, { maxBytes: 1 << 20 }), (e: unknown) => e instanceof ObjectTooLargeError && e.size === declared);
      await assert.rejects(readConfig(b), (e: unknown) => {
        assert.ok(e instanceof CorruptObjectError, String(e));
        assert.match(e.message, new RegExp(`config is damaged: ${declared} bytes, more than any config object holds \\(65536\\)`));
        return true;
      });
      assert.ok(sent < 16 << 20, `sent ${sent} bytes`);
    } finally {
      await b.close();
      await evil.close();
    }
  });

  it('a body that drips in is given up on as transient, naming the call', async () => {
    const evil = await startHostile((_req, _url, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      // One byte every 20 ms: the socket is never idle for the 300 ms idle timeout, and 1000 bytes take 20 s.
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write('x')), 20);
    });
    const b = new S3Backend(parseS3Location(evil.rest), { ...creds, idleTimeoutMs: 300 });
    try {
      await assert.rejects(b.load(h), (e: Error) => {
        assert.ok(e instanceof TransientError, String(e));
        assert.match(e.message, /^GET data\/[0-9a-f]{64} in s3:http:\/\/127\.0\.0\.1:\d+\/bkt\/repo: the endpoint sent \d+ bytes in 0\.3 s, slower than the 1024 bytes\/s waited for$/);
        return true;
      });
    } finally {
      await b.close();
      await evil.close();
    }
  });
});

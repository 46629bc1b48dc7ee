/**
 * The repository over HTTPS, on loopback with a self-signed certificate: the
 * storage conformance suite for `HttpBackend` against the server's plugin
 * (src/server/http/repo-routes.ts), then the server's rules from the
 * attacker's side, with raw requests: uploads checked against their names,
 * declared lengths, bodies cut off, sizes bounded, names validated, rights
 * (read, append, full), tokens that are unknown or another safe's; a
 * server that drips its answer; then pinning: the right fingerprint, a
 * wrong one, none.
 */
import { errorCode } from '../../src/core/errors.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';

import Fastify, { type FastifyInstance } from 'fastify';

import { AlreadyExistsError, NotFoundError, TransientError } from '../../src/storage/backend.js';
import { AppendOnlyError } from '../../src/storage/append-only-backend.js';
import { HttpBackend, parseHttpLocation, PinMismatchError, type HttpSettings } from '../../src/storage/http-backend.js';
import { repoRoutes } from '../../src/server/http/repo-routes.js';
import { UploadRefusedError } from '../../src/server/services/upload-refused-error.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { encodeIndex } from '../../src/repo/index-file.js';
import { encodeLock, processIdentity } from '../../src/repo/lock.js';
import { buildRepoServer, type TestToken } from '../helpers/repo-server-app.js';
import { makeTestCert, type TestCert } from '../helpers/repo-server.js';
import { backendConformance, bytes } from './conformance.js';

let dir = '';
let cert: TestCert;
let other: TestCert;
/** The conformance server: any content under any name, a token per test. */
let loose: FastifyInstance;
let looseOrigin = '';
const looseTokens: Record<string, TestToken> = {};
let counter = 0;
/** The real rules. */
let strict: FastifyInstance;
let origin = '';
const TOKENS: Record<string, TestToken> = {
  full: { safe: 'a', rights: 'full' },
  append: { safe: 'a', rights: 'append' },
  append2: { safe: 'a', rights: 'append' },
  read: { safe: 'a', rights: 'read' },
  foreign: { safe: 'b', rights: 'full' },
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'holdfast-http-'));
  cert = await makeTestCert(dir);
  other = await makeTestCert(dir, 'other');
  loose = await buildRepoServer({ dir: join(dir, 'loose'), key: cert.key, cert: cert.cert, tokens: looseTokens, verifyUploads: false, listPageSize: 2 });
  await loose.listen({ host: '127.0.0.1', port: 0 });
  looseOrigin = `https://127.0.0.1:${(loose.server.address() as AddressInfo).port}`;
  strict = await buildRepoServer({ dir: join(dir, 'strict'), key: cert.key, cert: cert.cert, tokens: TOKENS });
  await strict.listen({ host: '127.0.0.1', port: 0 });
  origin = `https://127.0.0.1:${(strict.server.address() as AddressInfo).port}`;
});
after(async () => {
  await loose.close();
  await strict.close();
  await rm(dir, { recursive: true, force: true });
});

backendConformance('HttpBackend (loopback HTTPS)', async (o) => {
  const n = ++counter;
  looseTokens[`t${n}`] = { safe: `s${n}`, rights: 'full' };
  return new HttpBackend(parseHttpLocation(`${looseOrigin}/safes/s${n}`), { token: `t${n}`, fingerprint: cert.fingerprint, listPageSize: o.listPageSize });
});

/** A backend on the strict server's safe `safe` with `token`. */
function client(token: string, safe = 'a', extra: HttpSettings = {}): HttpBackend {
  return new HttpBackend(parseHttpLocation(`${origin}/safes/${safe}`), { token, fingerprint: cert.fingerprint, ...extra });
}

/** An answer: status, headers and the parsed JSON body (or undefined). */
interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: { code?: string; message?: string; created?: boolean } | undefined;
}

/** One raw request to the strict server. */
function raw(method: string, path: string, opts: { token?: string; body?: Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${origin}${path}`, {
      method, rejectUnauthorized: false, agent: false,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The objects of a type in the strict server's safe, as files. */
async function stored(folder: string, safe = 'a'): Promise<string[]> {
  const root = join(dir, 'strict', safe, folder);
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else out.push(e.name);
    }
  };
  await walk(root);
  return out.sort();
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('the repository protocol, from the attacker\'s side', () => {
  before(async () => {
    await client('full').create();
    await client('foreign', 'b').create();
  });

  it('stores an upload only when its bytes hash to its name', async () => {
    const body = bytes(5000, 3);
    const wrong = sha(bytes(5000, 4));
    const r = await raw('PUT', `/safes/a/data/${wrong}`, { token: 'append', body });
    assert.equal(r.status, 400);
    assert.equal(r.json?.code, 'CHECKSUM_MISMATCH');
    assert.match(r.json?.message ?? '', new RegExp(`SHA-256 is ${sha(body)}, not its name ${wrong}`));
    const notHex = await raw('PUT', '/safes/a/index/abc', { token: 'append', body });
    assert.equal(notHex.status, 400);
    assert.equal(notHex.json?.code, 'BAD_NAME');
    assert.deepEqual(await stored('data'), []);
    assert.deepEqual(await stored('index'), []);
    const ok = await raw('PUT', `/safes/a/data/${sha(body)}`, { token: 'append', body });
    assert.equal(ok.status, 201);
    assert.deepEqual(await client('read').load({ type: 'data', name: sha(body) }), body);
  });

  it('refuses a config that does not check itself, and never overwrites one', async () => {
    const head = Buffer.from('{"not":"checked"}');
    const bad = await raw('PUT', '/safes/a/config', { token: 'full', body: Buffer.concat([head, Buffer.alloc(32)]) });
    assert.equal(bad.json?.code, 'CHECKSUM_MISMATCH');
    const good = Buffer.concat([head, createHash('sha256').update(head).digest()]);
    assert.equal((await raw('PUT', '/safes/a/config', { token: 'append', body: good })).status, 201);
    const head2 = Buffer.from('{"other":"config"}');
    const replaced = await raw('PUT', '/safes/a/config', { token: 'append', body: Buffer.concat([head2, createHash('sha256').update(head2).digest()]) });
    assert.equal(replaced.status, 409);
    assert.equal(replaced.json?.code, 'ALREADY_EXISTS');
    assert.deepEqual(await client('read').load({ type: 'config', name: 'config' }), good);
    // The same bytes again (a retry whose answer was lost) succeed.
    const again = await raw('PUT', '/safes/a/config', { token: 'append', body: good });
    assert.equal(again.status, 200);
    assert.equal(again.json?.created, false);
    await assert.rejects(client('append').save({ type: 'config', name: 'config' }, good), AlreadyExistsError, 'the Backend contract: the name is taken');
  });

  it('stores nothing of a body shorter than its Content-Length or cut off midway, and refuses one too large before reading it', async () => {
    const body = bytes(300_000, 9);
    // The client declares more than it sends, then goes away.
    await new Promise<void>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: Number(new URL(origin).port), rejectUnauthorized: false }, () => {
        socket.write(`PUT /safes/a/data/${sha(body)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer append\r\nContent-Length: ${body.length}\r\n\r\n`);
        socket.write(body.subarray(0, 100_000), () => setImmediate(() => socket.destroy()));
      });
      socket.on('close', () => resolve());
    });
    const big = await raw('PUT', `/safes/a/data/${sha(body)}`, { token: 'append', headers: { 'content-length': String(2 ** 31) }, body: Buffer.alloc(0) });
    assert.equal(big.status, 413);
    assert.equal(big.json?.code, 'TOO_LARGE');
    const chunked = await new Promise<Answer>((resolve, reject) => {
      const req = request(`${origin}/safes/a/data/${sha(body)}`, { method: 'PUT', rejectUnauthorized: false, agent: false, headers: { authorization: 'Bearer append' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json: undefined });
      });
      req.on('error', reject);
      req.write(body.subarray(0, 10));
      req.end();
    });
    assert.equal(chunked.status, 411);
    assert.equal(await client('read').stat({ type: 'data', name: sha(body) }), undefined);
    assert.ok((await stored('data')).every((n) => n !== sha(body) && !n.startsWith('.')), 'no object, no temporary file');
  });

  it('validates names and ranges: traversal, upper case, unknown folders, malformed ranges', async () => {
    for (const path of ['/safes/a/keys/..%2F..%2Fconfig', '/safes/a/keys/ABC', '/safes/a/data/zz00', '/safes/a/keys/.tmp-1']) {
      const r = await raw('GET', path, { token: 'full' });
      assert.equal(r.status, 400, path);
      assert.equal(r.json?.code, 'BAD_NAME', path);
    }
    assert.equal((await raw('GET', '/safes/a/../b/config', { token: 'full' })).status, 404);
    assert.equal((await raw('GET', '/safes/a/secrets/x', { token: 'full' })).json?.code, 'NO_SUCH_ROUTE');
    const h = sha(bytes(5000, 3));
    for (const range of ['bytes=5-2', 'bytes=0-1,4-5', 'lines=1-2', 'bytes=-']) {
      const r = await raw('GET', `/safes/a/data/${h}`, { token: 'read', headers: { range } });
      assert.equal(r.status, 400, range);
    }
    const past = await raw('GET', `/safes/a/data/${h}`, { token: 'read', headers: { range: 'bytes=4990-5009' } });
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], 'bytes */5000');
    for (const q of ['prefix=../', 'limit=0', 'limit=x', 'after=..%2Fx']) {
      assert.equal((await raw('GET', `/safes/a/data?${q}`, { token: 'read' })).status, 400, q);
    }
  });

  it('answers an unknown token, another safe\'s token and a safe that does not exist alike: 404', async () => {
    const answers = await Promise.all([
      raw('GET', '/safes/a/config', { token: 'nobody' }),
      raw('GET', '/safes/a/config', { token: 'foreign' }),
      raw('GET', '/safes/nothing/config', { token: 'full' }),
    ]);
    for (const r of answers) {
      assert.equal(r.status, 404);
      assert.equal(r.json?.code, 'NO_SUCH_SAFE');
      assert.equal(r.headers['holdfast-rights'], undefined);
    }
    assert.deepEqual(answers[0]?.json, { ...answers[0]?.json, message: answers[0]?.json?.message?.replace('"nothing"', '"a"') });
    assert.equal((await raw('GET', '/safes/a/config')).status, 401);
    await assert.rejects(client('foreign').stat({ type: 'config', name: 'config' }), /no such disk safe, or the token \(HOLDFAST_TOKEN\) does not give access to it/);
    const foreignKey = { type: 'key' as const, name: sha(Buffer.from('k')) };
    await assert.rejects(client('foreign').save(foreignKey, Buffer.from('k')), /no such disk safe/);
    assert.deepEqual(await stored('keys'), []);
  });

  it('read rights read and list only; append rights add but never remove or overwrite; full rights remove', async () => {
    const body = encodeIndex({ packs: [], supersedes: [] });
    const h = { type: 'index' as const, name: sha(body) };
    const reader = client('read');
    await assert.rejects(reader.save(h, body), /the token may only read/);
    const appender = client('append');
    await appender.save(h, body);
    assert.equal(appender.capabilities.appendOnly, true, 'the server said: append');
    await assert.rejects(appender.remove(h), AppendOnlyError);
    await assert.rejects(reader.remove(h), /the token may only read/);
    const marker = Buffer.from('a forged deletion marker');
    await assert.rejects(appender.save({ type: 'deletion', name: sha(marker) }, marker), AppendOnlyError);
    assert.deepEqual(await stored('deletions'), []);
    // Locks: an append token removes its own, not another's.
    const lockOf = (id: string): Buffer => encodeLock({ ...processIdentity(), version: 1, id, operation: 'backup', exclusive: false, created: new Date().toISOString(), heartbeat: new Date().toISOString() });
    const lock = lockOf('append');
    const lh = { type: 'lock' as const, name: sha(lock) };
    const otherLock = lockOf('append2');
    const oh = { type: 'lock' as const, name: sha(otherLock) };
    await appender.save(lh, lock);
    await client('append2').save(oh, otherLock);
    await assert.rejects(appender.remove(oh), AppendOnlyError);
    await appender.remove(lh);
    assert.deepEqual(await stored('locks'), [oh.name]);
    assert.deepEqual(await stored('index'), [h.name]);
    const owner = client('full');
    await owner.stat(h);
    assert.equal(owner.capabilities.appendOnly, false);
    await owner.remove(h);
    await owner.remove(oh);
    await assert.rejects(owner.remove(h), NotFoundError);
    await Promise.all([reader, appender, owner].map((b) => b.close()));
  });
});

describe('the plugin inside a server of its own', () => {
  it('leaves the rest of the server alone: its JSON routes, its not-found handler, its error handler', async () => {
    const app = Fastify();
    app.setNotFoundHandler((_req, reply) => void reply.code(404).send({ mine: true }));
    app.setErrorHandler((_e, _req, reply) => void reply.code(500).send({ mineToo: true }));
    app.post('/api/v1/echo', async (req) => req.body);
    app.get('/api/v1/fail', async () => {
      throw new Error('boom');
    });
    await app.register(repoRoutes, { resolver: { resolveSafe: async () => undefined } });
    const echo = await app.inject({ method: 'POST', url: '/api/v1/echo', payload: { a: 1 } });
    assert.deepEqual(echo.json(), { a: 1 });
    assert.deepEqual((await app.inject({ url: '/nowhere' })).json(), { mine: true });
    assert.deepEqual((await app.inject({ url: '/api/v1/fail' })).json(), { mineToo: true });
    const safe = await app.inject({ url: '/safes/x/config', headers: { authorization: 'Bearer t' } });
    assert.equal(safe.statusCode, 404);
    assert.equal(safe.json().code, 'NO_SUCH_SAFE');
    await app.close();
  });
});

describe('upload hooks', () => {
  it('a refusal before the body is read (a quota) reaches the client with its code, and nothing is stored', async () => {
    const app = Fastify({ https: { key: cert.key, cert: cert.cert } });
    const backend = new LocalBackend(join(dir, 'hooked'));
    const seen: number[] = [];
    await app.register(repoRoutes, {
      resolver: {
        resolveSafe: async () => ({
          backend, rights: 'append', principal: 'p',
          beforeSave: async (_h, size) => {
            seen.push(size);
            if (size > 1000) throw new UploadRefusedError(413, 'QUOTA_EXCEEDED', `the upload of ${size} bytes would exceed the safe's quota of 5000 bytes (4500 used)`);
          },
        }),
      },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const b = new HttpBackend(parseHttpLocation(`https://127.0.0.1:${(app.server.address() as AddressInfo).port}/safes/h`), { token: 't', fingerprint: cert.fingerprint });
    try {
      await b.create();
      const big = bytes(4 << 20, 1);
      await assert.rejects(b.save({ type: 'data', name: sha(big) }, big), (e: unknown) => errorCode(e) === 'QUOTA_EXCEEDED' && /would exceed the safe's quota of 5000 bytes \(4500 used\)$/.test((e as Error).message));
      assert.equal(await b.stat({ type: 'data', name: sha(big) }), undefined);
      const small = bytes(500, 2);
      await b.save({ type: 'data', name: sha(small) }, small);
      assert.deepEqual(seen, [4 << 20, 500]);
    } finally {
      await b.close();
      await app.close();
    }
  });
});

describe('memory held by uploads', () => {
  it('answers 503 BUSY (retried) to an upload that would hold more than the bound, unless it is alone', async () => {
    const app = Fastify({ https: { key: cert.key, cert: cert.cert } });
    await app.register(repoRoutes, {
      maxBytesInFlight: 1 << 20,
      resolver: { resolveSafe: async () => ({ backend: new LocalBackend(join(dir, 'bounded')), rights: 'full', principal: 'p' }) },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    const b = new HttpBackend(parseHttpLocation(`https://127.0.0.1:${port}/safes/m`), { token: 't', fingerprint: cert.fingerprint });
    try {
      await b.create();
      const alone = bytes(3 << 20, 4);
      await b.save({ type: 'data', name: sha(alone) }, alone);
      // A slow client holds 800 kB of a declared 800 kB upload's budget while sending half of it.
      const slow = bytes(800_000, 5);
      const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
      socket.write(`PUT /safes/m/data/${sha(slow)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: ${slow.length}\r\n\r\n`);
      socket.write(slow.subarray(0, 400_000));
      const answer = new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('created')) resolve(text);
        });
      });
      const other = bytes(500_000, 6);
      await assert.rejects(b.save({ type: 'data', name: sha(other) }, other), (e: Error) => e instanceof TransientError && /HTTP 503 .*try again/.test(e.message));
      socket.write(slow.subarray(400_000));
      assert.match(await answer, /^HTTP\/1\.1 201/);
      socket.destroy();
      await b.save({ type: 'data', name: sha(other) }, other);
      assert.deepEqual(await b.load({ type: 'data', name: sha(slow) }), slow);
    } finally {
      await b.close();
      await app.close();
    }
  });
});

describe('a server that answers too slowly', () => {
  it('gives up on a body that drips in, as a transient fault', async () => {
    const drip = createServer({ key: cert.key, cert: cert.cert }, (_req, res) => {
      res.writeHead(200, { 'content-length': '100000' });
      const t = setInterval(() => res.write('x'), 50);
      res.on('close', () => clearInterval(t));
    });
    await new Promise<void>((r) => drip.listen(0, '127.0.0.1', () => r()));
    const b = new HttpBackend(parseHttpLocation(`https://127.0.0.1:${(drip.address() as AddressInfo).port}/safes/a`), {
      token: 't', fingerprint: cert.fingerprint, idleTimeoutMs: 300,
    });
    try {
      await assert.rejects(b.load({ type: 'config', name: 'config' }), (e: Error) => e instanceof TransientError && /slower than the 1024 bytes\/s/.test(e.message));
    } finally {
      await b.close();
      drip.closeAllConnections();
      drip.close();
    }
  });
});

describe('pinning the server\'s certificate', () => {
  it('talks to the server whose certificate has the pinned fingerprint, in any case and with or without colons', async () => {
    const plain = cert.fingerprint.replace(/:/g, '').toUpperCase().replace('SHA256', 'SHA256:');
    const b = client('read', 'a', { fingerprint: plain });
    assert.equal((await b.stat({ type: 'config', name: 'config' }))?.name, 'config');
    await b.close();
  });

  it('refuses another certificate, naming both fingerprints, before sending the token', async () => {
    const b = client('read', 'a', { fingerprint: other.fingerprint });
    await assert.rejects(b.stat({ type: 'config', name: 'config' }), (e: Error) => {
      assert.ok(e instanceof PinMismatchError, String(e));
      assert.ok(e.message.includes(cert.fingerprint) && e.message.includes(other.fingerprint), e.message);
      assert.match(e.message, /has the fingerprint SHA256:[0-9a-f:]+, not the pinned SHA256:/);
      return true;
    });
    await b.close();
  });

  it('without a pin, asks the CA: refused untrusted (saying how to pin), accepted with the certificate as CA', async () => {
    const untrusted = new HttpBackend(parseHttpLocation(`${origin}/safes/a`), { token: 'read' });
    await assert.rejects(untrusted.stat({ type: 'config', name: 'config' }), /TLS certificate is not trusted \(self-signed certificate\); give its fingerprint with --fingerprint SHA256:/);
    const withCa = new HttpBackend(parseHttpLocation(`${origin}/safes/a`), { token: 'read', ca: cert.cert });
    assert.equal((await withCa.stat({ type: 'config', name: 'config' }))?.name, 'config');
    await Promise.all([untrusted.close(), withCa.close()]);
  });

  it('refuses locations that are not a safe and a missing token', () => {
    for (const bad of [`${origin}/safes/`, `${origin}/other/a`, `${origin}/safes/a/keys`, `${origin}/safes/a?x=1`]) {
      assert.throws(() => parseHttpLocation(bad), /https:\/\/HOST:PORT\/safes\/NAME/, bad);
    }
    assert.throws(() => new HttpBackend(parseHttpLocation(`${origin}/safes/a`), {}), /no token: set HOLDFAST_TOKEN/);
    assert.throws(() => new HttpBackend(parseHttpLocation(`${origin}/safes/a`), { token: 't', fingerprint: 'SHA256:12' }), /bad fingerprint/);
  });
});

/**
 * The process `startS3rver` (s3rver.ts) runs: s3rver on 127.0.0.1 with the
 * options given as JSON in argv[2]. It prints `{"port":N}` once listening.
 * On SIGTERM it stops as an endpoint being shut down does: no new connection
 * is taken, requests in flight are answered, then it exits.
 *
 * A process of its own because s3rver's listing continuation tokens are
 * DES-encrypted, which Node's OpenSSL 3 refuses without
 * --openssl-legacy-provider (every listing longer than a page failed with
 * HTTP 500); and so that stopping it is stopping a server, not a module.
 * s3rver 3.7 ships no types: `S3rverLike` declares the part used here.
 * Two of its behaviours that S3 does not share are put right below: a PUT
 * is stored whole or not at all, and a listing is in key order.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';

/** The part of s3rver's API used here. */
interface S3rverLike {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  readonly httpServer: Server;
  readonly store: {
    listObjects: (bucket: string, options: ListOptions) => Promise<Listing>;
    getMetadata: (bucket: string, key: string) => Promise<object>;
    putObject: (object: StoredObject) => Promise<{ size: number; md5: string }>;
    putMetadata: (bucket: string, key: string, metadata: object, md5: string) => Promise<void>;
    getResourcePath: (bucket: string, key: string, resource: string) => string;
  };
}

/** What s3rver's store is given to store. */
interface StoredObject {
  readonly bucket: string;
  readonly key: string;
  readonly metadata: object;
  readonly content: Readable | Buffer;
}

/** What s3rver's store takes and gives for one page of a listing. */
interface ListOptions {
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly startAfter?: string;
  readonly maxKeys?: number;
}
interface Listing {
  readonly objects: object[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
}

/** What `startS3rver` passes. */
export interface S3rverMainOptions {
  readonly port: number;
  readonly directory: string;
  readonly bucket: string;
  /** PEM files for HTTPS; plain HTTP without them. */
  readonly keyFile?: string;
  readonly certFile?: string;
}

const require = createRequire(import.meta.url);
const S3rver = require('s3rver') as new (options: object) => S3rverLike;
/** s3rver's listing entry. */
const S3Object = require('s3rver/lib/models/object') as new (bucket: string, key: string, content: null, metadata: object) => object;

const arg = process.argv[2];
// `node --test dist/test/` runs every file below test/, this one too: with no options there is nothing to start.
if (arg === undefined) process.exit(0);
const o = JSON.parse(arg) as S3rverMainOptions;
const server = new S3rver({
  address: '127.0.0.1',
  port: o.port,
  directory: o.directory,
  silent: true,
  configureBuckets: [{ name: o.bucket }],
  ...(o.keyFile && o.certFile ? { key: readFileSync(o.keyFile), cert: readFileSync(o.certFile) } : {}),
});
const { store } = server;

// s3rver writes a PUT's body in place, and answers before the file is
// written out: a PUT cut off midway left a partial object that was listed and
// read, and a GET right after a PUT could read a short one. S3 stores a PUT
// whole or not at all; so does this: a temporary name (never listed, as it
// does not end in the object suffix), renamed once all is written.
store.putObject = async (object) => {
  const path = store.getResourcePath(object.bucket, object.key, 'object');
  const tmp = `${path}.${randomBytes(6).toString('hex')}.partial`;
  await mkdir(dirname(path), { recursive: true });
  const md5 = createHash('md5');
  let size = 0;
  try {
    if (Buffer.isBuffer(object.content)) {
      md5.update(object.content);
      size = object.content.length;
      await writeFile(tmp, object.content);
    } else {
      const count = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          md5.update(chunk);
          size += chunk.length;
          done(null, chunk);
        },
      });
      await pipeline(object.content, count, createWriteStream(tmp));
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const digest = md5.digest('hex');
  await store.putMetadata(object.bucket, object.key, object.metadata, digest);
  await rename(tmp, path);
  return { size, md5: digest };
};

// s3rver walks its folders in file-name order, which is not key order when
// one key is a prefix of another ("x" is stored as "x._S3rver_object", after
// "x-y._S3rver_object"), and then pages by comparing keys: a listing in pages
// skipped or repeated such keys. S3 lists in key order; so does this (for
// listings without a delimiter, the only ones holdfast makes).
const OBJECT_SUFFIX = '._S3rver_object';
const listInFileOrder = store.listObjects.bind(store);
store.listObjects = async (bucket, options) => {
  if (options.delimiter) return listInFileOrder(bucket, options);
  const prefix = options.prefix ?? '';
  const after = options.startAfter ?? '';
  const keys: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(o.directory, bucket, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (r.startsWith(prefix) || prefix.startsWith(`${r}/`)) await walk(r);
      } else if (r.endsWith(OBJECT_SUFFIX)) {
        const key = r.slice(0, -OBJECT_SUFFIX.length);
        if (key.startsWith(prefix) && key > after) keys.push(key);
      }
    }
  };
  await walk(prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '');
  keys.sort();
  const page = keys.slice(0, options.maxKeys ?? Infinity);
  const objects = await Promise.all(page.map(async (key) => new S3Object(bucket, key, null, await store.getMetadata(bucket, key))));
  return { objects, commonPrefixes: [], isTruncated: page.length < keys.length };
};
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
// The test process holds the other end of stdin: when it goes, so does this one.
process.stdin.on('end', () => process.exit(0)).resume();
process.on('SIGTERM', () => {
  const closed = server.close();
  // A keep-alive connection goes idle only once its request is answered.
  const idle = setInterval(() => server.httpServer.closeIdleConnections(), 20);
  server.httpServer.closeIdleConnections();
  void closed.then(() => {
    clearInterval(idle);
    process.exit(0);
  });
});

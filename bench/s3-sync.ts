// The copy rows' yardstick: moving a folder's files to or from S3 with nothing
// but the SDK, as `aws s3 sync` would, in a process of its own so that it pays
// what a command pays (start, loading the SDK) like the copy it is set beside.
//
//   node dist/bench/s3-sync.js up|down DIR s3:https://host:port/bucket/prefix
//   node dist/bench/s3-sync.js down --durable DIR s3:…
//
// --durable stores each file as a local repository stores an object, so that
// a copy S3 -> local, which does, is set beside a download that is as safe
// against a crash: a temporary file fsynced, linked to its name, its folder
// fsynced.
//
// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the endpoint's
// CA from S3_SYNC_CA (a PEM file). DEFAULT_S3_CONNECTIONS requests at once,
// holdfast's default; over HTTPS the bodies are not hashed into the signature
// (the AWS CLI does not either; neither does holdfast).

import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { dirname, join, relative } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DEFAULT_S3_CONNECTIONS, parseS3Location } from '../src/storage/s3-backend-config.js';

async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.isFile()) out.push(relative(dir, join(d, e.name)));
    }
  };
  await walk(dir);
  return out;
}

/** Calls `fn` on every item, DEFAULT_S3_CONNECTIONS at once. */
async function eachAtOnce<T>(items: readonly T[], fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: DEFAULT_S3_CONNECTIONS }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** Writes `body` to `path` as LocalBackend.save does: a temporary file, fsynced, linked to its name, the folder fsynced. */
async function writeDurably(path: string, body: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${randomBytes(8).toString('hex')}`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(body);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await link(tmp, path);
  await unlink(tmp);
  const folder = await open(dirname(path), 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

const args = process.argv.slice(2);
const durable = args[1] === '--durable';
if (durable) args.splice(1, 1);
const [direction, dir, location] = args;
if ((direction !== 'up' && direction !== 'down') || dir === undefined || location === undefined || !location.startsWith('s3:') || (durable && direction !== 'down')) {
  console.error('usage: s3-sync up|down DIR s3:https://host:port/bucket/prefix, or down --durable DIR s3:…');
  process.exit(2);
}
const loc = parseS3Location(location.slice(3));
const caFile = process.env['S3_SYNC_CA'];
const client = new S3Client({
  region: 'us-east-1',
  ...(loc.endpoint === undefined ? {} : { endpoint: loc.endpoint }),
  forcePathStyle: loc.pathStyle,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
  requestHandler: { httpsAgent: new Agent({ keepAlive: true, maxSockets: DEFAULT_S3_CONNECTIONS, ...(caFile ? { ca: await readFile(caFile, 'utf8') } : {}) }) },
});
client.middlewareStack.add((next) => (args) => {
  const req = args.request as { protocol?: string; body?: unknown; headers?: Record<string, string> };
  if (req.protocol === 'https:' && req.body !== undefined && req.headers) req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  return next(args);
}, { step: 'build', name: 'unsignedPayload' });
const base = loc.prefix === '' ? '' : `${loc.prefix}/`;
let bytes = 0;
if (direction === 'up') {
  const files = await filesOf(dir);
  await eachAtOnce(files, async (f) => {
    const body = await readFile(join(dir, f));
    bytes += body.length;
    await client.send(new PutObjectCommand({ Bucket: loc.bucket, Key: base + f, Body: body, ContentLength: body.length }));
  });
  console.log(`uploaded ${files.length} files, ${bytes} bytes`);
} else {
  const keys: string[] = [];
  for (let after: string | undefined; ;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: base, ...(after === undefined ? {} : { StartAfter: after }) }));
    for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
    after = page.Contents?.at(-1)?.Key;
    if (!page.IsTruncated || after === undefined) break;
  }
  await eachAtOnce(keys, async (key) => {
    const res = await client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: key }));
    const body = await res.Body!.transformToByteArray();
    bytes += body.length;
    const path = join(dir, key.slice(base.length));
    await mkdir(dirname(path), { recursive: true });
    await (durable ? writeDurably(path, body) : writeFile(path, body));
  });
  console.log(`downloaded ${keys.length} files, ${bytes} bytes`);
}
client.destroy();

/**
 * The real CLI on a repository in S3: s3rver on 127.0.0.1 (test/helpers/s3rver.ts).
 *
 *  - over HTTPS with a self-signed certificate: refused untrusted, then a
 *    whole life through --cacert: init, backup, restore with bytes and
 *    metadata compared, forget, prune, check --read-data;
 *  - over plain HTTP behind a proxy that injects faults: 500s and 503s are
 *    retried and the backup completes; a fault that does not pass, and the
 *    endpoint stopped in the middle of a backup, end the backup with a clear
 *    message and exit 1, and once the endpoint is back the repository checks
 *    clean and takes the next backup; a wrong port, and https:// to plain
 *    HTTP, fail at once with a message that says what to check; a listing
 *    answered with an HTML page stops prune, which deletes nothing.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { OBJECT_TYPES } from '../../src/storage/backend.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { parseS3Location } from '../../src/storage/s3-backend-config.js';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { writeRandom } from '../helpers/random-file.js';
import { startFaultProxy, startS3rver, TEST_BUCKET, type FaultProxy, type TestS3 } from '../helpers/s3rver.js';

/** Retries give up after this long, so that a fault that does not pass ends the command soon. */
const RETRY_FOR = '3s';

describe('the CLI on S3 over HTTPS', () => {
  let s3: TestS3;
  let s: Sandbox;
  let src: string;
  let env: Record<string, string>;

  before(async () => {
    s3 = await startS3rver();
    s = await Sandbox.create();
    src = s.path('src');
    await buildTree(src, EVERYTHING);
    env = { ...s3.env, HOLDFAST_REPOSITORY: s3.location('cli/repo'), HOLDFAST_MIN_GRACE: '6s' };
  });
  after(async () => {
    await s3.close();
    await removeTree(s.dir);
  });

  it('refuses the endpoint until its certificate is trusted, and never shows the SDK\'s Node warning', async () => {
    const r = await s.run(['init'], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^holdfast: .*s3:https:\/\/127\.0\.0\.1:\d+\/holdfast-test\/cli\/repo: the endpoint's TLS certificate is not trusted \(self-signed certificate\); if a private CA signed it, give that CA's certificate with --cacert FILE\n$/);
    const bad = await s.run(['--cacert', join(src, 'sizes', 'text.txt'), 'init'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /holds no PEM certificate/);
  });

  // Both said "if a private CA signed it, give that CA's certificate with --cacert FILE".
  it('a name the certificate does not hold, and a --cacert that does not sign it, are each said as such', async () => {
    const byName = await s.run(['--cacert', s3.caFile, '-r', s3.location('cli/name').replace('127.0.0.1', 'localhost'), 'init'], { env });
    assert.equal(byName.code, 1, byName.stderr);
    assert.match(byName.stderr, /^holdfast: .*s3:https:\/\/localhost:\d+\/holdfast-test\/cli\/name: the endpoint's TLS certificate is for 127\.0\.0\.1, but the location names localhost; use a name the certificate holds\n$/);
    const other = s.path('other-ca.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', s.path('other-ca.key'), '-out', other, '-subj', '/CN=another CA'], { stdio: 'ignore' });
    const wrongCa = await s.run(['--cacert', other, 'init'], { env });
    assert.equal(wrongCa.code, 1, wrongCa.stderr);
    assert.match(wrongCa.stderr, /^holdfast: .*: the CA certificate given \(--cacert or HOLDFAST_CACERT\) does not sign the endpoint's TLS certificate \(self-signed certificate\)\n$/);
    assert.doesNotMatch(byName.stderr + wrongCa.stderr, /private CA/);
  });

  // It was retried for about 19 s, ending in "socket hang up".
  it('s3:http:// to this HTTPS endpoint fails at once naming the https:// location', async () => {
    const https = s3.location('cli/http');
    const r = await s.run(['-r', https.replace('s3:https:', 's3:http:'), 'init'], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /warning|retrying|hang up/);
    assert.match(r.stderr, new RegExp(`^holdfast: .*: the endpoint speaks TLS; use ${https.replace(/[.]/g, '\\.')}\n$`));
  });

  it('init, backup, restore, forget, prune and check --read-data', { timeout: 180_000 }, async () => {
    const withCa = { env: { ...env, HOLDFAST_CACERT: s3.caFile } };
    const init = await s.ok(['init'], withCa);
    assert.match(init.stdout, new RegExp(`created holdfast repository [0-9a-f]+ at ${s3.location('cli/repo').replace(/[.]/g, '\\.')}\\n`));
    await s.ok(['--cacert', s3.caFile, 'backup', src], { env });
    await writeFile(join(src, 'sizes', 'text.txt'), 'changed after the first backup\n');
    await s.ok(['backup', src], withCa);
    const snapshots = (): Promise<unknown[]> => s.ok(['snapshots', '--json'], withCa).then((r) => JSON.parse(r.stdout) as unknown[]);
    assert.equal((await snapshots()).length, 2);

    const target = s.path('restored');
    await s.ok(['restore', 'latest', '--target', target], withCa);
    await compareTrees(src, join(target, src));

    const forget = await s.ok(['forget', '--keep-last', '1'], withCa);
    assert.match(forget.stdout, /^removed 1 snapshot$/m);
    assert.equal((await snapshots()).length, 1);
    await s.ok(['prune', '--grace', '6s'], withCa);
    await sleep(6500);
    const pruned = await s.ok(['prune', '--grace', '6s'], withCa);
    assert.doesNotMatch(pruned.stderr, /warning/);
    const check = await s.ok(['check', '--read-data'], withCa);
    assert.match(check.stdout, /no errors were found/);

    const again = s.path('restored-after-prune');
    await s.ok(['restore', 'latest', '--target', again], withCa);
    await compareTrees(src, join(again, src));
    for (const r of [init, forget, pruned, check]) assert.doesNotMatch(r.stderr, /NodeVersionSupportWarning|AWS SDK/);
  });
});

describe('the CLI on S3 when the endpoint fails', () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  let s: Sandbox;
  let src: string;
  let env: Record<string, string>;
  let n = 0;

  /** A fresh repository behind the proxy, with one backup of `src`. */
  async function freshRepo(): Promise<void> {
    env = { ...s3.env, HOLDFAST_REPOSITORY: `s3:${proxy.endpoint}/${TEST_BUCKET}/faults-${++n}`, HOLDFAST_RETRY_FOR: RETRY_FOR };
    await s.ok(['init'], { env });
  }

  /** Every object of the current repository, as `type/name`, read past the proxy. */
  async function s3Keys(): Promise<string[]> {
    const backend = new S3Backend(parseS3Location(s3.locationRest(`faults-${n}`)), s3.settings);
    try {
      const keys: string[] = [];
      for (const type of OBJECT_TYPES) for await (const o of backend.list(type)) keys.push(`${type}/${o.name}`);
      return keys.sort();
    } finally {
      await backend.close();
    }
  }

  /** Is `req` the upload of a pack (the bulk of a backup)? */
  const packPut = (method: string | undefined, url: string | undefined): boolean =>
    method === 'PUT' && /\/data\/[0-9a-f]{2}\/[0-9a-f]{64}(\?|$)/.test(url ?? '');

  before(async () => {
    s3 = await startS3rver({ tls: false });
    proxy = await startFaultProxy(s3.endpoint);
    s = await Sandbox.create();
    src = s.path('src');
    await buildTree(src, EVERYTHING);
    await writeRandom(join(src, 'random.bin'), 3 << 20);
  });
  after(async () => {
    await proxy.close();
    await s3.close();
    await removeTree(s.dir);
  });

  it('a wrong port fails at once asking to check the endpoint; https or no scheme to plain HTTP names the http:// location', async () => {
    const port = new URL(s3.endpoint).port;
    const refused = await s.run(['-r', `s3:http://127.0.0.1:1/${TEST_BUCKET}/wrong`, 'init'], { env: s3.env });
    assert.equal(refused.code, 1, refused.stderr);
    assert.doesNotMatch(refused.stderr, /warning|retrying/);
    assert.match(refused.stderr, /^holdfast: .*the connection was refused; check the endpoint's address and port/m);
    for (const location of [`s3:https://127.0.0.1:${port}/${TEST_BUCKET}/tls`, `s3:127.0.0.1:${port}/${TEST_BUCKET}/tls`]) {
      const r = await s.run(['-r', location, 'init'], { env: s3.env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`the endpoint does not speak TLS; for plain HTTP use s3:http://127\\.0\\.0\\.1:${port}/${TEST_BUCKET}/tls\\n$`));
      assert.doesNotMatch(r.stderr, /wrong version number/);
    }
  });

  it('takes the access key and the region from the AWS profile files: the default profile in ~/.aws, or AWS_PROFILE in AWS_CONFIG_FILE', async () => {
    const home = s.path('home');
    await mkdir(join(home, '.aws'), { recursive: true });
    await writeFile(join(home, '.aws', 'credentials'), '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n');
    await writeFile(join(home, '.aws', 'config'), '[default]\nregion = eu-west-3\n');
    const files = s.path('aws-files');
    await mkdir(files);
    await writeFile(join(files, 'keys'), '[backup]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n');
    await writeFile(join(files, 'conf'), '[default]\nregion = us-west-1\n\n[profile backup]\nregion = ap-south-1\n');
    // Nothing from the environment but where the files are.
    const bare = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined, AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined, AWS_PROFILE: undefined };
    const cases = [
      { env: { ...bare, HOME: home }, region: 'eu-west-3' },
      { env: { ...bare, HOME: home, AWS_PROFILE: 'backup', AWS_CONFIG_FILE: join(files, 'conf'), AWS_SHARED_CREDENTIALS_FILE: join(files, 'keys') }, region: 'ap-south-1' },
    ];
    for (const { env: profileEnv, region } of cases) {
      const scopes = new Set<string>();
      proxy.setRule((req) => {
        // SigV4: Credential=KEY/DATE/REGION/s3/aws4_request
        const scope = /Credential=([^/]+)\/\d+\/([^/]+)\//.exec(req.headers.authorization ?? '');
        scopes.add(scope ? `${scope[1]} ${scope[2]}` : 'unsigned');
        return 'pass';
      });
      try {
        const r = await s.run(['-r', `s3:${proxy.endpoint}/${TEST_BUCKET}/profile-${region}`, 'init'], { env: { ...profileEnv, HOLDFAST_PASSWORD: 'pw' } });
        assert.equal(r.code, 0, r.stderr);
      } finally {
        proxy.setRule(() => 'pass');
      }
      assert.deepEqual([...scopes], [`S3RVER ${region}`], 'every request signed with the profile\'s key for its region');
    }
    // A profile the files do not have: the message names it (the SDK says only "from any providers").
    const none = await s.run(['-r', `s3:${proxy.endpoint}/${TEST_BUCKET}/profile-none`, 'snapshots'],
      { env: { ...bare, HOME: home, AWS_PROFILE: 'nope', AWS_CONFIG_FILE: join(files, 'conf'), AWS_SHARED_CREDENTIALS_FILE: join(files, 'keys'), HOLDFAST_PASSWORD: 'pw' } });
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /no S3 credentials in the profile "nope" \(AWS_PROFILE\)/);
  });

  it('init beside other keys warns as for a local folder; init where a repository is refuses, as for a local folder', async () => {
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.settings.credentials! });
    try {
      await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: 'shared/notes.txt', Body: 'not a repository' }));
      await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: 'shared/photos/a.jpg', Body: 'a photo' }));
    } finally {
      client.destroy();
    }
    const location = s3.location('shared');
    const env = { ...s3.env, HOLDFAST_PASSWORD: 'pw' };
    const first = await s.run(['-r', location, 'init'], { env });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, `warning: ${location} was not empty (2 entries); the repository is created beside them, and holdfast leaves them alone\n`);
    const empty = await s.run(['-r', s3.location('shared/photos/new'), 'init'], { env });
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stderr, '', 'a prefix with nothing under it is empty');
    for (const repo of [location, s.path('local-twice')]) {
      if (!repo.startsWith('s3:')) await s.ok(['-r', repo, 'init'], { env });
      const again = await s.run(['-r', repo, 'init'], { env });
      assert.equal(again.code, 1, again.stderr);
      assert.match(again.stderr, new RegExp(`^holdfast: a repository exists already at (local:)?${repo.replace(/[.]/g, '\\.')}\n$`));
    }
  });

  it('retries 500s and 503s and completes the backup', { timeout: 120_000 }, async () => {
    await freshRepo();
    let left = 4;
    proxy.setRule((req) => (packPut(req.method, req.url) && left-- > 0 ? (left % 2 === 0 ? 500 : 503) : 'pass'));
    const r = await s.ok(['backup', src], { env });
    assert.equal(left < 0 ? 0 : left, 0, 'every injected fault was met');
    assert.match(r.stderr, /warning: save data\/[0-9a-f]+.*HTTP 503 SlowDown.*retrying in/);
    assert.match(r.stderr, /warning: save data\/[0-9a-f]+.*HTTP 500 InternalError.*retrying in/);
    proxy.setRule(() => 'pass');
    assert.match((await s.ok(['check', '--read-data'], { env })).stdout, /no errors were found/);
    const target = s.path(`restored-${n}`);
    await s.ok(['restore', 'latest', '--target', target], { env });
    await compareTrees(src, join(target, src));
  });

  it('a fault that does not pass ends the backup with a clear error; the repository stays valid', { timeout: 120_000 }, async () => {
    await freshRepo();
    proxy.setRule((req) => (packPut(req.method, req.url) ? 503 : 'pass'));
    const r = await s.run(['backup', src], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^holdfast: .*save data\/[0-9a-f]+ failed after \d+ attempts over \d+\.\d s: .*HTTP 503 SlowDown: Please reduce your request rate\.$/m);
    proxy.setRule(() => 'pass');
    assert.match((await s.ok(['check', '--read-data'], { env })).stdout, /no errors were found/);
    assert.equal((await s.ok(['snapshots', '--json'], { env })).stdout.trim(), '[]');
    await s.ok(['backup', src], { env });
    const target = s.path(`restored-${n}`);
    await s.ok(['restore', 'latest', '--target', target], { env });
    await compareTrees(src, join(target, src));
  });

  it('a listing answered with an HTML page is not an empty listing: prune stops and deletes nothing', { timeout: 120_000 }, async () => {
    await freshRepo();
    await s.ok(['backup', src], { env });
    const before = await s3Keys();
    const snapshotList = (req: http.IncomingMessage): boolean => req.method === 'GET' && /[?&]list-type=2/.test(req.url ?? '')
      && /[?&]prefix=[^&]*%2Fsnapshots%2F/.test(req.url ?? '');
    proxy.setRule((req) => (snapshotList(req) ? 'html' : 'pass'));
    for (let i = 0; i < 2; i++) {
      const r = await s.run(['prune', '--grace', '2s'], { env: { ...env, HOLDFAST_MIN_GRACE: '2s' } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^holdfast: list snapshot failed after \d+ attempts over \d+\.\d s: LIST s3:http:\/\/127\.0\.0\.1:\d+\/holdfast-test\/faults-\d+: the endpoint answered the listing with a document of <html> \(Content-Type: text\/html\), not a ListBucketResult$/m);
    }
    assert.ok(proxy.faults > 0);
    proxy.setRule(() => 'pass');
    assert.deepEqual(await s3Keys(), before, 'nothing was deleted or marked');
    const target = s.path(`restored-${n}`);
    await s.ok(['restore', 'latest', '--target', target], { env });
    await compareTrees(src, join(target, src));
  });

  it('the endpoint stopped in the middle of a backup: a clear error; started again, the repository checks clean and backs up', { timeout: 120_000 }, async () => {
    await freshRepo();
    let reached!: () => void;
    const packUploadStarted = new Promise<void>((resolve) => (reached = resolve));
    proxy.setRule((req) => {
      if (!packPut(req.method, req.url)) return 'pass';
      reached();
      return 'hold';
    });
    const backup = s.start(['backup', src], { env });
    await packUploadStarted;
    await s3.stop({ abrupt: true });
    proxy.setRule(() => 'pass');
    proxy.releaseHeld();
    const r = await backup.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^holdfast: .* failed after \d+ attempts? over \d+\.\d s: .*(ECONNREFUSED|ECONNRESET|socket hang up)/m);

    await s3.start();
    const check = await s.ok(['check', '--read-data'], { env });
    assert.match(check.stdout, /no errors were found/);
    await s.ok(['backup', src], { env });
    const target = s.path(`restored-${n}`);
    await s.ok(['restore', 'latest', '--target', target], { env });
    await compareTrees(src, join(target, src));
  });
});

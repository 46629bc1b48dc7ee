/**
 * `holdfast server --storage s3:https://…/bucket/prefix`, as a user runs it
 * (the real CLI process, s3rver on loopback over TLS): a disk safe made with
 * the admin commands is backed up to over HTTPS and restored byte-exact,
 * its objects are in the bucket below PREFIX/safes/ID and none are in the
 * data directory; a deleted safe leaves none of its objects in the bucket;
 * `server info` shows the storage, and a start with another storage is
 * refused while safes exist.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Sandbox, startCli, type Started } from '../helpers/cli.js';
import { assertSameTree } from '../helpers/restore-check.js';
import { startS3rver, TEST_BUCKET, type TestS3 } from '../helpers/s3rver.js';

/** Every file under `dir`, recursively, relative to it. */
async function filesUnder(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true }).catch(() => [])) {
    const p = join(rel, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(dir, p));
    else out.push(p);
  }
  return out;
}

let s: Sandbox;
let s3: TestS3;
let server: Started | undefined;

before(async () => {
  s = await Sandbox.create('holdfast-server-s3-');
  s3 = await startS3rver();
});
after(async () => {
  server?.child.kill('SIGTERM');
  await server?.done;
  await s3.close();
  await s.remove();
});

it('keeps every disk safe in the bucket: a backup through the server restores byte-exact, and nothing is in the data directory', { timeout: 120_000 }, async () => {
  const data = s.path('data');
  const storage = s3.location('provider');
  server = startCli(['server', '--data', data, '--listen', '127.0.0.1:0', '--storage', storage, '--cacert', s3.caFile], { env: s3.env });
  let out = '';
  server.child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise<void>((resolve, reject) => {
    server!.child.stdout!.on('data', () => { if (/must be changed at the first login/.test(out)) resolve(); });
    void server!.done.then((r) => reject(new Error(`the server ended early (${r.code}): ${r.stderr}`)));
  });
  const origin = `https://127.0.0.1:${/listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]}`;
  const fingerprint = /certificate fingerprint: (\S+)/.exec(out)![1]!;
  assert.match(out, new RegExp(`disk safes: s3:${s3.endpoint}/${TEST_BUCKET}/provider\\n`));

  // The admin commands make the safe and the machine's backup token.
  const env = { XDG_CONFIG_HOME: s.path('config'), HOLDFAST_REPOSITORY: undefined, HOLDFAST_PASSWORD: undefined };
  await writeFile(s.path('otp'), `${/one-time password: (\S+)/.exec(out)![1]}\n`);
  await writeFile(s.path('new'), 'a long admin password\n');
  await s.ok(['server', 'login', '--server', origin, '--fingerprint', fingerprint, '--password-file', s.path('otp'), '--new-password-file', s.path('new')], { env });
  await s.ok(['server', 'customer', 'create', 'Acme'], { env });
  await s.ok(['server', 'machine', 'create', 'web1', '--customer', 'Acme'], { env });
  const safe = JSON.parse((await s.ok(['server', 'safe', 'create', 'acme-web1', '--customer', 'Acme', '--machine', 'web1', '--json'], { env })).stdout) as { id: string };
  const token = JSON.parse((await s.ok(['server', 'token', 'create', '--customer', 'Acme', '--machine', 'web1', '--name', 'web1', '--rights', 'backup', '--json'], { env })).stdout) as { secret: string };

  const src = s.path('src');
  await mkdir(join(src, 'etc'), { recursive: true });
  await writeFile(join(src, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  await writeFile(join(src, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
  const repo = { HOLDFAST_REPOSITORY: `${origin}/safes/acme-web1`, HOLDFAST_TOKEN: token.secret, HOLDFAST_FINGERPRINT: fingerprint };
  await s.ok(['init'], { env: repo });
  await s.ok(['backup', src], { env: repo });
  await s.ok(['restore', 'latest', '--target', s.path('out')], { env: repo });
  assertSameTree(src, join(s.path('out'), src));

  // In the bucket below PREFIX/safes/ID; nothing of the safe in the data directory.
  const stored = await filesUnder(join(s3.dir, 'store', TEST_BUCKET));
  const safeKeys = stored.filter((k) => k.startsWith(join('provider', 'safes', safe.id)));
  assert.ok(safeKeys.some((k) => k.includes('/config')) && safeKeys.some((k) => k.includes('/data/')) && safeKeys.some((k) => k.includes('/snapshots/')), stored.join('\n'));
  assert.deepEqual(await filesUnder(join(data, 'safes')), []);

  // A deleted safe leaves no object in the bucket.
  const old = JSON.parse((await s.ok(['server', 'safe', 'create', 'acme-old', '--customer', 'Acme', '--json'], { env })).stdout) as { id: string };
  const reader = JSON.parse((await s.ok(['server', 'token', 'create', '--customer', 'Acme', '--name', 'old', '--rights', 'backup', '--json'], { env })).stdout) as { secret: string };
  const oldRepo = { ...repo, HOLDFAST_REPOSITORY: `${origin}/safes/acme-old`, HOLDFAST_TOKEN: reader.secret };
  await s.ok(['init'], { env: oldRepo });
  await s.ok(['backup', join(src, 'etc')], { env: oldRepo });
  const oldKeys = async () => (await filesUnder(join(s3.dir, 'store', TEST_BUCKET))).filter((k) => k.startsWith(join('provider', 'safes', old.id)));
  assert.ok((await oldKeys()).some((k) => k.includes('/snapshots/')));
  await s.ok(['server', 'safe', 'delete', 'acme-old', '--confirm', 'acme-old'], { env });
  assert.deepEqual(await oldKeys(), []);
  assert.ok((await filesUnder(join(s3.dir, 'store', TEST_BUCKET))).some((k) => k.startsWith(join('provider', 'safes', safe.id, 'snapshots'))), 'the other safe is kept');

  server.child.kill('SIGTERM');
  assert.equal((await server.done).code, 0);
  server = undefined;
  const info = await s.ok(['server', 'info', '--data', data], { env });
  assert.match(info.stdout, new RegExp(`disk safes: s3:${s3.endpoint}/${TEST_BUCKET}/provider\\n`));
  // Started without the storage its safe is in: refused, naming both.
  const moved = await s.run(['server', '--data', data, '--listen', '127.0.0.1:0', '--storage', s3.location('elsewhere'), '--cacert', s3.caFile], { env: s3.env });
  assert.equal(moved.code, 1, moved.stderr);
  assert.match(moved.stderr, /the server's 1 disk safe is in s3:.*\/provider, not in s3:.*\/elsewhere: start it with --storage s3:/);
});

/**
 * `holdfast agent enroll` through the real CLI against a server on loopback
 * over real TLS, its fingerprint pinned: the machine and its disk safe
 * appear on the server, the configuration is written 0600 in a 0700 folder,
 * the safe opens with the password in it, and that password is nowhere on
 * the server (its database files and its storage). Enrolling again over an
 * existing configuration is refused and changes nothing. An enrolment whose
 * init failed (the server answered 502 for the safe) can be finished by
 * enrolling again; until then `agent run` stops and says so.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { filesUnder, setUp, type TestServer } from '../helpers/server.js';

let t: TestServer;
let s: Sandbox;
let enrolToken = '';

before(async () => {
  s = await Sandbox.create('holdfast-enroll-');
  t = await setUp(`sqlite:${s.path('control.sqlite')}`);
  const mk = (path: string, body: unknown) => t.create(path, body);
  const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
  enrolToken = (await mk('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] })).secret;
});
after(async () => {
  await t.stop();
  await rm(s.dir, { recursive: true, force: true });
});

it('enrols the machine, writes its configuration 0600 and keeps the safe\'s password off the server', { timeout: 60_000 }, async () => {
  const config = s.path('etc', 'holdfast', 'agent.json');
  const server = `https://127.0.0.1:${t.server.port}`;
  const args = ['agent', 'enroll', '--server', server, '--token', enrolToken, '--fingerprint', t.server.fingerprint, '--name', 'web1', '--config', config];
  const r = await s.ok(args, { env: { HOLDFAST_PASSWORD: undefined } });
  assert.match(r.stdout, /enrolled web1/);
  assert.equal((await stat(config)).mode & 0o777, 0o600);
  assert.equal((await stat(s.path('etc', 'holdfast'))).mode & 0o777, 0o700);
  const c = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  assert.match(c['password'] as string, /^[0-9a-f]{64}$/);
  assert.equal(c['server'], server);
  assert.equal(c['allow_restore_overwrite'], false);

  const machines = (await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as { id: string; name: string }[];
  assert.deepEqual(machines.map((m) => m.name), ['web1']);
  assert.equal(c['machine_id'], machines[0]!.id);

  // The safe is initialised and opens with the password made on the machine.
  const repo = { HOLDFAST_REPOSITORY: `${server}/safes/${c['safe'] as string}`, HOLDFAST_TOKEN: c['token'] as string, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: c['password'] as string };
  const snaps = await s.ok(['snapshots', '--json'], { env: repo });
  assert.deepEqual(JSON.parse(snaps.stdout), []);
  const wrong = await s.run(['snapshots'], { env: { ...repo, HOLDFAST_PASSWORD: 'not the password' } });
  assert.equal(wrong.code, 12, wrong.stderr);

  // Nowhere on the server: not in its database (and journal files), not in the safe's storage.
  const password = c['password'] as string;
  const serverFiles = [...(await readdir(s.dir)).filter((n) => n.startsWith('control.sqlite')).map((n) => s.path(n)), ...await filesUnder(t.dataDir)];
  assert.ok(serverFiles.some((f) => f.endsWith('control.sqlite')) && serverFiles.some((f) => f.includes('/safes/')), serverFiles.join(', '));
  for (const f of serverFiles) {
    const bytes = await readFile(f);
    assert.ok(!bytes.includes(password) && !bytes.includes(Buffer.from(password, 'hex')), `${f} holds the safe's password`);
  }

  const again = await s.run(args, { env: { HOLDFAST_PASSWORD: undefined } });
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /exists: this machine is enrolled already/);
  assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), c, 'the configuration is unchanged');
  assert.equal(((await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as unknown[]).length, 1);
});

/**
 * An HTTPS proxy in front of the test server, with its certificate (so the
 * pinned fingerprint is the same): answers 502 to every request for a disk
 * safe while `failSafes` is set, and passes everything else on.
 */
async function flakyProxy(): Promise<{ url: string; failSafes: boolean; close(): Promise<void> }> {
  const tls = join(t.dataDir, 'data', 'tls');
  const state = { url: '', failSafes: true, close: async () => undefined as void };
  const proxy = createServer({ key: await readFile(join(tls, 'key.pem')), cert: t.cert }, (req, res) => {
    if (state.failSafes && req.url!.startsWith('/safes/')) {
      req.resume();
      res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway');
      return;
    }
    const up = request({ host: '127.0.0.1', port: t.server.port, method: req.method, path: req.url, headers: req.headers, ca: t.cert, servername: 'localhost', agent: false }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  state.url = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((resolve) => {
    proxy.closeAllConnections();
    proxy.close(() => resolve());
  });
  return state;
}

it('finishes an enrolment whose init failed by enrolling again; until then agent run stops and says how', { timeout: 60_000 }, async () => {
  const proxy = await flakyProxy();
  try {
    const config = s.path('interrupted', 'agent.json');
    const args = ['agent', 'enroll', '--server', proxy.url, '--token', enrolToken, '--fingerprint', t.server.fingerprint, '--name', 'web2', '--config', config];
    const failed = await s.run(args, { env: { HOLDFAST_PASSWORD: undefined } });
    assert.notEqual(failed.code, 0, failed.stdout);
    assert.match(failed.stderr, /502|bad gateway/i);
    const c = JSON.parse(await readFile(config, 'utf8')) as Record<string, string>;
    const machines = (await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as { name: string }[];
    assert.ok(machines.some((m) => m.name === 'web2'), 'the server registered the machine');
    proxy.failSafes = false;

    // The agent does not wait for a repository that will never come: it stops and says what to do.
    const run = await s.run(['agent', 'run', '--config', config], { env: { HOLDFAST_PASSWORD: undefined } });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`disk safe ${c['safe']} .* holds no repository yet: the enrolment of web2 did not finish .*run "holdfast agent enroll" again with the same --server and --config to finish it`));

    const finished = await s.ok(args, { env: { HOLDFAST_PASSWORD: undefined } });
    assert.match(finished.stdout, new RegExp(`finished the enrolment of web2 with ${proxy.url}: disk safe ${c['safe']}, initialised with the password in ${config}`));
    assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), c, 'the configuration is the same: its token and password');
    const repo = { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/${c['safe']}`, HOLDFAST_TOKEN: c['token'], HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: c['password'] };
    assert.deepEqual(JSON.parse((await s.ok(['snapshots', '--json'], { env: repo })).stdout), []);

    // Finished, it is enrolled like any other: enrolling again is refused.
    const again = await s.run(args, { env: { HOLDFAST_PASSWORD: undefined } });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /exists: this machine is enrolled already/);
  } finally {
    await proxy.close();
  }
});

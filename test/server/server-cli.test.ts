/**
 * `holdfast server` as a user runs it: the real CLI process. The first start
 * makes the data directory (0700), the certificate (key 0600) and the first
 * admin, printing the fingerprint and the one-time password; the
 * certificate the server presents over HTTPS has that fingerprint; the
 * one-time password logs in but must be changed before anything else; a
 * second start prints no password and keeps the certificate; `server info`
 * shows what the data directory holds; SIGTERM ends it cleanly; the log on
 * stderr carries no secret.
 */
import assert from 'node:assert/strict';
import { readFile, rm, stat } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { runCli, startCli, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson } from '../helpers/server.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Starts the server and waits for its last start-up line (`until`); returns the process and what it printed so far. */
async function start(args: string[], until: RegExp): Promise<{ p: Started; out: () => string; port: number }> {
  const p = startCli(['server', ...args]);
  let out = '';
  p.child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const port = await new Promise<number>((resolve, reject) => {
    const look = (): void => {
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && until.test(out)) resolve(Number(m[1]));
    };
    p.child.stdout!.on('data', look);
    void p.done.then((r) => reject(new Error(`the server ended early (${r.code}): ${r.stderr}`)));
  });
  return { p, out: () => out, port };
}

databaseSuites('holdfast server (the CLI process)', (fx) => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-server-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('starts with a certificate, a first admin and a one-time password, and again without one', async () => {
    const data = join(dir, `data-${fx.kind}`);
    const db = fx.kind === 'postgres' ? ['--db', await fx.newUrl()] : [];
    const first = await start(['--data', data, '--listen', '127.0.0.1:0', ...db], /must be changed at the first login.*\n/);
    const fingerprint = /certificate fingerprint: (SHA256:(?:[0-9a-f]{2}:){31}[0-9a-f]{2}) \(new self-signed certificate\)/.exec(first.out())?.[1];
    assert.ok(fingerprint, first.out());
    const password = /first admin account: admin\none-time password: (\S+)\n/.exec(first.out())?.[1];
    assert.ok(password, first.out());

    assert.equal((await stat(data)).mode & 0o777, 0o700);
    assert.equal((await stat(join(data, 'tls', 'key.pem'))).mode & 0o777, 0o600);
    const cert = await readFile(join(data, 'tls', 'cert.pem'), 'utf8');
    // The client pins the printed fingerprint: httpsJson refuses a certificate that does not have it.
    const call = (port: number, m: string, p: string, o = {}) => httpsJson(port, cert, m, p, o);
    const login = await call(first.port, 'POST', '/api/v1/login', { body: { name: 'admin', password } });
    assert.equal(login.status, 200, login.text);
    assert.equal(login.body.user.must_change_password, true);
    const token = login.body.token as string;
    const early = await call(first.port, 'GET', '/api/v1/customers', { token });
    assert.equal(early.status, 403);
    assert.equal(early.body.code, 'PASSWORD_CHANGE_REQUIRED');
    assert.equal((await call(first.port, 'POST', '/api/v1/me/password', { token, body: { current_password: password, new_password: 'short' } })).status, 400);
    assert.equal((await call(first.port, 'POST', '/api/v1/me/password', { token, body: { current_password: password, new_password: 'the new admin password' } })).status, 204);
    assert.equal((await call(first.port, 'GET', '/api/v1/customers', { token })).status, 200);

    first.p.child.kill('SIGTERM');
    const ended = await first.p.done;
    assert.equal(ended.code, 0, ended.stderr);
    assert.ok(!ended.stderr.includes(password!), 'the log shows the one-time password');
    assert.ok(!ended.stderr.includes(token.slice(21)), 'the log shows a session secret');
    assert.match(ended.stderr, /"url":"\/api\/v1\/login"/);

    // Second start: the recorded listen address and database are used, no new admin, the same certificate.
    const second = await start(['--data', data, '--listen', '127.0.0.1:0'], /disk safes: .*\n/);
    assert.doesNotMatch(second.out(), /one-time password|first admin|new self-signed/);
    assert.ok(second.out().includes(`certificate fingerprint: ${fingerprint}\n`), second.out());
    assert.equal((await call(second.port, 'POST', '/api/v1/login', { body: { name: 'admin', password } })).status, 401);
    assert.equal((await call(second.port, 'POST', '/api/v1/login', { body: { name: 'admin', password: 'the new admin password' } })).status, 200);
    second.p.child.kill('SIGINT');
    assert.equal((await second.p.done).code, 0);

    const info = await runCli(['server', 'info', '--data', data]);
    assert.equal(info.code, 0, info.stderr);
    assert.ok(info.stdout.includes(`certificate fingerprint: ${fingerprint}\n`), info.stdout);
    assert.match(info.stdout, /^listen: 127\.0\.0\.1:0$/m);
    assert.match(info.stdout, fx.kind === 'postgres' ? /^database: postgres:\/\/postgres@127\.0\.0\.1:\d+\/t\d+$/m : /^database: .*holdfast\.db$/m);
  });
});

it('says what is wrong with a data directory that has no server, and with a --db it cannot use', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'holdfast-server-cli-'));
  try {
    const info = await runCli(['server', 'info', '--data', join(dir, 'none')]);
    assert.equal(info.code, 1);
    assert.match(info.stderr, /is not a server's data directory .*holdfast server --data/);
    const bad = await runCli(['server', '--data', join(dir, 'd'), '--db', 'mysql://root:hunter2@x/y', '--listen', '127.0.0.1:0']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--db wants postgres:\/\//);
    assert.doesNotMatch(bad.stderr, /hunter2/);
    const none = await runCli(['server']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /needs --data DIR/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

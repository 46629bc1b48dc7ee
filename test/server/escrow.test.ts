/**
 * Password escrow end to end, through the real CLI against a server on
 * loopback over real TLS (SQLite and PostgreSQL): a customer admin makes a
 * recovery key (holdfast escrow keygen, sealed with a passphrase) and
 * registers its public key; an agent enrols and escrows its disk safe's
 * password; the server's database, files and log hold only the sealed form;
 * holdfast escrow recover with the private key gives the exact password,
 * which opens the safe, and an image restored with a restore token and that
 * password is byte-identical. From the attacker's side: another customer
 * gets 404 on the escrow routes, the provider may not set the key, people
 * may not upload a box, a wrong private key or passphrase is a clear error.
 * A changed recovery key makes the next poll ask for escrow, and holdfast
 * agent escrow, or the running agent at its next poll, wraps the password
 * again.
 */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase } from '../../src/server/db/open-database.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { filesUnder, setUp, type TestServer } from '../helpers/server.js';
import { mkExt4, mkfsUnavailable, makeTree } from '../image/images.js';

databaseSuites('password escrow and recovery', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  let dbUrl = '';
  let log = '';
  let acme = '';
  let bravo = '';
  let alice = '';
  let bob = '';
  let server = '';
  let publicKey = '';
  let agent: Record<string, string> = {};
  let safeId = '';

  before(async () => {
    s = await Sandbox.create('holdfast-escrow-');
    dbUrl = await fx.newUrl();
    const logStream = new PassThrough();
    logStream.on('data', (c: Buffer) => {
      log += c.toString('utf8');
    });
    t = await setUp(dbUrl, undefined, { logStream });
    server = `https://127.0.0.1:${t.server.port}`;
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
    bravo = (await t.create('/api/v1/customers', { name: 'Bravo' })).id;
    const a = await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: acme });
    alice = await t.login('alice', a.password, 'alice has a long password');
    const b = await t.create('/api/v1/users', { name: 'bob', role: 'customer-admin', customer_id: bravo });
    bob = await t.login('bob', b.password, 'bob has a long password too');
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  const cli = (args: string[], env: Record<string, string | undefined> = {}) => s.run(args, {
    env: { HOLDFAST_PASSWORD: undefined, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('config'), HOLDFAST_SERVER: undefined, HOLDFAST_SERVER_TOKEN: undefined, ...env },
  });

  it('keygen writes a sealed private key file 0600 and prints the public key, which a customer admin registers', async () => {
    await writeFile(s.path('passphrase'), 'a passphrase for the recovery key\n');
    const r = await cli(['escrow', 'keygen', '--out', s.path('recovery.key'), '--passphrase-file', s.path('passphrase'), '--public-out', s.path('recovery.pub')]);
    assert.equal(r.code, 0, r.stderr);
    publicKey = r.stdout.trim().split('\n').at(-1)!;
    assert.match(publicKey, /^hfrk_[A-Za-z0-9_-]{43}$/);
    assert.equal((await readFile(s.path('recovery.pub'), 'utf8')).trim(), publicKey);
    assert.equal((await stat(s.path('recovery.key'))).mode & 0o777, 0o600);
    const file = JSON.parse(await readFile(s.path('recovery.key'), 'utf8'));
    assert.equal(file.private_key, undefined, 'sealed: no plain private key in the file');
    assert.ok(file.sealed_private_key);
    const again = await cli(['escrow', 'keygen', '--out', s.path('recovery.key')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists: the private key is never written over an existing file/);

    const byProvider = await t.call('PUT', `/api/v1/customers/${acme}/recovery-key`, { token: t.adminToken, body: { public_key: publicKey } });
    assert.equal(byProvider.status, 403, byProvider.text);
    const byBob = await t.call('PUT', `/api/v1/customers/${acme}/recovery-key`, { token: bob, body: { public_key: publicKey } });
    assert.equal(byBob.status, 404, byBob.text);
    const bad = await t.call('PUT', `/api/v1/customers/${acme}/recovery-key`, { token: alice, body: { public_key: 'hfrk_not-a-key' } });
    assert.equal(bad.status, 400, bad.text);
    // The admin CLI registers it, as the customer's admin.
    const none = await cli(['server', 'customer', 'recovery-key', 'Acme'], { HOLDFAST_SERVER: server, HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(none.code, 1, none.stderr);
    const set = await cli(['server', 'customer', 'recovery-key', 'Acme', '--set-file', s.path('recovery.pub')], { HOLDFAST_SERVER: server, HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, new RegExp(`^registered the recovery key of customer Acme.*\ncustomer: +Acme\npublic key: +${publicKey}\nset: +.* by user:alice\n$`));
    assert.equal((await t.call('GET', `/api/v1/customers/${acme}/recovery-key`, { token: alice })).body.public_key, publicKey);
    assert.equal((await t.call('GET', `/api/v1/customers/${acme}/recovery-key`, { token: bob })).status, 404);
  });

  it('an agent of a customer with no recovery key says where the password it cannot escrow is', { timeout: 60_000 }, async () => {
    const enrol = (await t.create('/api/v1/tokens', { customer_id: bravo, name: 'installer', rights: ['enroll'] }, bob)).secret;
    const config = s.path('bravo-etc', 'agent.json');
    const r = await cli(['agent', 'enroll', '--server', server, '--token', enrol, '--name', 'bravo1', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`the customer has no recovery key, so the password is not escrowed: keep a copy of it (the "password" field of ${config}) somewhere safe`), r.stdout);
    const stored = JSON.parse(await readFile(config, 'utf8')) as { password: string };
    assert.ok(stored.password.length >= 20);
  });

  it('an enrolled agent escrows its password sealed: the server\'s database, files and log never hold it', { timeout: 60_000 }, async () => {
    const enrol = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] }, alice)).secret;
    const config = s.path('etc', 'agent.json');
    const r = await cli(['agent', 'enroll', '--server', server, '--token', enrol, '--name', 'web1', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`the password is escrowed for the customer's recovery key ${publicKey}`));
    agent = JSON.parse(await readFile(config, 'utf8'));
    safeId = ((await t.call('GET', '/api/v1/safes', { token: alice })).body as { id: string; name: string }[]).find((x) => x.name === agent['safe'])!.id;

    const escrowed = await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: alice });
    assert.equal(escrowed.status, 200, escrowed.text);
    const shown = await cli(['server', 'safe', 'escrow', agent['safe']!], { HOLDFAST_SERVER: server, HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^safe: +${agent['safe']!}\nrecovery key: +${publicKey}\ncurrent: +yes\nstored: +.* by token:`));
    assert.equal(escrowed.body.recovery_key, publicKey);
    assert.equal(escrowed.body.current, true);
    assert.equal(escrowed.body.stored_by.startsWith('token:'), true);

    // The password's bytes are nowhere on the server: every row of every table, the database's files, the data directory, the log.
    const password = agent['password']!;
    const forms = [Buffer.from(password), Buffer.from(password, 'hex'), Buffer.from(password).toString('base64'), Buffer.from(password, 'hex').toString('base64')];
    const db = await openDatabase(dbUrl, '');
    try {
      for (const table of ['customers', 'users', 'sessions', 'api_tokens', 'machines', 'disk_safes', 'audit_log', 'jobs', 'job_events', 'recovery_keys', 'safe_escrows'] as const) {
        const rows = JSON.stringify(await db.db.selectFrom(table).selectAll().execute());
        for (const f of forms) assert.ok(!rows.includes(f.toString()), `table ${table} holds the password`);
      }
    } finally {
      await db.close();
    }
    const files = [...await filesUnder(t.dataDir), ...(fx.kind === 'sqlite' ? await filesUnder(dirname(dbUrl.slice('sqlite:'.length))) : [])];
    assert.ok(files.some((f) => f.includes('/safes/')));
    for (const f of files) {
      const bytes = await readFile(f);
      for (const form of forms) assert.ok(!bytes.includes(form), `${f} holds the password`);
    }
    assert.match(log, /escrow/, 'the log has the escrow requests');
    for (const form of forms) assert.ok(!log.includes(form.toString()), 'the server\'s log holds the password');

    const audit = ((await t.call('GET', '/api/v1/audit', { token: alice })).body as { action: string }[]).map((e) => e.action);
    assert.ok(audit.includes('recovery-key.set') && audit.includes('safe.escrow') && audit.includes('safe.escrow.read'), audit.join(' '));
  });

  it('recover with the private key gives the exact password, which opens the safe', { timeout: 60_000 }, async () => {
    const base = ['escrow', 'recover', '--key', s.path('recovery.key'), '--passphrase-file', s.path('passphrase'), '--server', server, '--safe', agent['safe']!];
    const r = await cli(base, { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${agent['password']}\n`);
    const toFile = await cli([...base, '--out', s.path('recovered')], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.equal(await readFile(s.path('recovered'), 'utf8'), `${agent['password']}\n`);
    assert.equal((await stat(s.path('recovered'))).mode & 0o777, 0o600);
    // With the session of holdfast server login, as every admin command: no --server, no token in the environment.
    const login = await s.run(['server', 'login', '--server', server, '--user', 'alice'], {
      env: { HOLDFAST_PASSWORD: undefined, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('config'), HOLDFAST_SERVER: undefined, HOLDFAST_SERVER_TOKEN: undefined },
      input: 'alice has a long password\n',
    });
    assert.equal(login.code, 0, login.stderr);
    const bySession = await cli(['escrow', 'recover', '--key', s.path('recovery.key'), '--passphrase-file', s.path('passphrase'), '--safe', agent['safe']!], { HOLDFAST_FINGERPRINT: undefined });
    assert.equal(bySession.stdout, `${agent['password']}\n`, bySession.stderr);
    assert.equal((await cli(['server', 'logout'], { HOLDFAST_FINGERPRINT: undefined })).code, 0);

    const repo = { HOLDFAST_REPOSITORY: `${server}/safes/${agent['safe']}`, HOLDFAST_TOKEN: agent['token'] };
    const snaps = await cli(['snapshots', '--json', '--password-file', s.path('recovered')], repo);
    assert.equal(snaps.code, 0, snaps.stderr);
    assert.deepEqual(JSON.parse(snaps.stdout), []);
  });

  it('a wrong private key, a wrong passphrase and another customer are refused clearly', { timeout: 60_000 }, async () => {
    const other = await cli(['escrow', 'keygen', '--out', s.path('other.key')]);
    assert.equal(other.code, 0, other.stderr);
    const wrongKey = await cli(['escrow', 'recover', '--key', s.path('other.key'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(wrongKey.code, 1);
    assert.equal(wrongKey.stdout, '');
    assert.match(wrongKey.stderr, new RegExp(`wrapped for recovery key ${publicKey}, not for this key`));

    await writeFile(s.path('wrong-passphrase'), 'not the passphrase\n');
    const wrongPass = await cli(['escrow', 'recover', '--key', s.path('recovery.key'), '--passphrase-file', s.path('wrong-passphrase'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(wrongPass.code, 1);
    assert.match(wrongPass.stderr, /the passphrase does not open/);

    const foreign = await cli(['escrow', 'recover', '--key', s.path('recovery.key'), '--passphrase-file', s.path('passphrase'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: bob });
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /no disk safe .* that you may read/);
    assert.equal((await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: bob })).status, 404);
    const box = (await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: alice })).body.wrapped_password;
    assert.equal((await t.call('PUT', `/api/v1/safes/${safeId}/escrow`, { token: bob, body: { wrapped_password: box } })).status, 404);
    // Only the safe's agent uploads a box: not the customer's admin, not the provider.
    assert.equal((await t.call('PUT', `/api/v1/safes/${safeId}/escrow`, { token: alice, body: { wrapped_password: box } })).status, 403);
    assert.equal((await t.call('PUT', `/api/v1/safes/${safeId}/escrow`, { token: t.adminToken, body: { wrapped_password: box } })).status, 403);
    const garbage = await t.call('PUT', `/api/v1/safes/${safeId}/escrow`, { token: agent['token'], body: { wrapped_password: Buffer.from('not a box at all').toString('base64') } });
    assert.equal(garbage.status, 400, garbage.text);
  });

  it('a new recovery key makes the next poll ask for escrow; holdfast agent escrow wraps the password again', { timeout: 60_000 }, async () => {
    const oldBox = (await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: alice })).body.wrapped_password;
    const quiet = await t.call('GET', '/api/v1/agent/jobs/next', { token: agent['token'] });
    assert.equal(quiet.status, 204);
    assert.equal(quiet.headers['holdfast-escrow'], undefined);

    const k2 = await cli(['escrow', 'keygen', '--out', s.path('second.key')]);
    const key2 = k2.stdout.trim().split('\n').at(-1)!;
    assert.equal((await t.call('PUT', `/api/v1/customers/${acme}/recovery-key`, { token: alice, body: { public_key: key2 } })).status, 200);
    const poll = await t.call('GET', '/api/v1/agent/jobs/next', { token: agent['token'] });
    assert.equal(poll.headers['holdfast-escrow'], 'wanted');
    assert.equal((await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: alice })).body.current, false);
    // A box for the old key is refused now.
    const stale = await t.call('PUT', `/api/v1/safes/${safeId}/escrow`, { token: agent['token'], body: { wrapped_password: oldBox } });
    assert.equal(stale.status, 409, stale.text);

    const r = await cli(['agent', 'escrow', '--config', s.path('etc', 'agent.json')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`escrowed for the customer's recovery key ${key2}`));
    assert.equal((await t.call('GET', '/api/v1/agent/jobs/next', { token: agent['token'] })).headers['holdfast-escrow'], undefined);
    const again = await cli(['agent', 'escrow', '--config', s.path('etc', 'agent.json')]);
    assert.match(again.stdout, /\(it was already\)/);

    const recovered = await cli(['escrow', 'recover', '--key', s.path('second.key'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(recovered.stdout, `${agent['password']}\n`, recovered.stderr);
    const old = await cli(['escrow', 'recover', '--key', s.path('recovery.key'), '--passphrase-file', s.path('passphrase'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(old.code, 1);
    assert.match(old.stderr, /wrapped for recovery key .*, not for this key/);
  });

  it('bare metal: an image backed up by the agent restores byte-identical with a restore token and the recovered password', { skip: mkfsUnavailable(), timeout: 120_000 }, async () => {
    const image = s.path('disk.img');
    await makeTree(s.path('tree'));
    mkExt4(image, 16, s.path('tree'));
    const repo = `${server}/safes/${agent['safe']}`;
    const backup = await cli(['-r', repo, 'backup', '--image', image], { HOLDFAST_TOKEN: agent['token'], HOLDFAST_PASSWORD: agent['password'] });
    assert.equal(backup.code, 0, backup.stderr);

    const restoreToken = (await t.create(`/api/v1/safes/${safeId}/restore-tokens`, { expires_in: 3600 }, alice)).secret;
    const recovered = s.path('recovered-2');
    const got = await cli(['escrow', 'recover', '--key', s.path('second.key'), '--server', server, '--safe', agent['safe']!, '--out', recovered], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(got.code, 0, got.stderr);
    const out = s.path('restored.img');
    // As the README has it, on the rescue system.
    const r = await cli(['restore-image', '-r', repo, '--fingerprint', t.server.fingerprint, '--password-file', recovered, 'latest', '--to', out], { HOLDFAST_TOKEN: restoreToken, HOLDFAST_FINGERPRINT: undefined });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(out)).equals(await readFile(image)), 'the restored image is byte-identical');
  });

  it('a running agent escrows the password again on the poll after the recovery key changed', { timeout: 120_000 }, async () => {
    const k3 = await cli(['escrow', 'keygen', '--out', s.path('third.key')]);
    const key3 = k3.stdout.trim().split('\n').at(-1)!;
    assert.equal((await t.call('PUT', `/api/v1/customers/${acme}/recovery-key`, { token: alice, body: { public_key: key3 } })).status, 200);
    const agentRun = s.start(['agent', 'run', '--config', s.path('etc', 'agent.json')], { env: { HOLDFAST_WORKERS: '1' } });
    try {
      const deadline = Date.now() + 60_000;
      while ((await t.call('GET', `/api/v1/safes/${safeId}/escrow`, { token: alice })).body.recovery_key !== key3) {
        assert.ok(Date.now() < deadline, 'the agent did not escrow the password for the new key within a minute');
        await sleep(200);
      }
    } finally {
      agentRun.child.kill('SIGTERM');
    }
    const ended = await agentRun.done;
    assert.match(ended.stderr, new RegExp(`password is escrowed for the customer's recovery key ${key3}`));
    const recovered = await cli(['escrow', 'recover', '--key', s.path('third.key'), '--server', server, '--safe', agent['safe']!], { HOLDFAST_SERVER_TOKEN: alice });
    assert.equal(recovered.stdout, `${agent['password']}\n`, recovered.stderr);
  });
});

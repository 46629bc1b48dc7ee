/**
 * A replacement machine takes over the disk safe of a retired one, through
 * the real CLI and real agents against a server on loopback over TLS:
 * machine A backs up, is retired, its password is recovered from escrow;
 * the customer's admin makes a takeover token for A's safe, and machine B
 * enrols onto it with the token and the password (a wrong password is
 * refused before anything is registered; a safe whose machine is live is
 * refused), and its first backup is an incremental from A's last snapshot
 * (a few bytes added); A's and B's snapshots both restore byte for byte.
 * From the attacker's side: a plain enroll token of the customer takes over
 * no safe (not A's, not one made without a machine) and reads no object of
 * it; a takeover token takes over no other safe, reads only the config and
 * keys of its own (no data, index nor snapshots), adds no lock, enrols no
 * new machine, and is used up by its takeover; another customer's tokens
 * reach nothing.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { enrolledAt, enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { writeRandom } from '../helpers/random-file.js';
import { assertRestores } from '../helpers/restore-check.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';

databaseSuites('a replacement machine takes over a disk safe', (fx) => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let acme = '';
  let alice = '';
  let a: EnrolledMachine;
  const src = (): string => s.path('src');

  /** Runs a backup of `src` as a job of machine `m` through its agent; returns the job's result. */
  const backUp = async (m: EnrolledMachine): Promise<Record<string, unknown>> => {
    const agent = startAgent(s, m);
    try {
      const job = await waitJob(h, await runNow(h, m, 'backup', { paths: [src()] }));
      assert.equal(job.state, 'succeeded', job.error ?? '');
      return job.result!;
    } finally {
      agent.child.kill('SIGTERM');
      await agent.done;
    }
  };
  const enrol = (token: string, name: string, config: string, env: Record<string, string | undefined>, safe: string) => s.run([
    'agent', 'enroll', '--server', `https://127.0.0.1:${t.server.port}`, '--token', token, '--fingerprint', t.server.fingerprint,
    '--name', name, '--config', config, '--safe', safe,
  ], { env });

  before(async () => {
    s = await Sandbox.create('holdfast-take-over-');
    t = await setUp(await fx.newUrl());
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id as string;
    const u = await t.create('/api/v1/users', { name: 'alice', role: 'customer-admin', customer_id: acme });
    alice = await t.login('alice', u.password as string, 'alice has a long password');
    a = await enrolMachine(h, s, 'old-web', acme);
    await mkdir(join(src(), 'sub'), { recursive: true });
    await writeRandom(join(src(), 'big.bin'), 3_000_000);
    await writeFile(join(src(), 'sub', 'note.txt'), 'first version\n');
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('enrols the new machine onto the old one\'s safe with its password; its first backup is an incremental; both restore', { timeout: 120_000 }, async () => {
    await backUp(a);
    const safeName = a.config['safe'] as string;
    const password = a.config['password'] as string;
    const safeId = ((await t.call('GET', '/api/v1/safes', { token: alice })).body as { id: string; name: string }[]).find((x) => x.name === safeName)!.id;
    const plainToken = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] }, alice)).secret as string;
    // The customer's admin authorises the takeover of this one safe (the admin CLI, logged in as alice).
    const made = await s.ok(['server', 'token', 'create', '--customer', acme, '--name', 'replace old-web', '--rights', 'enroll', '--take-over', safeName], {
      env: { HOLDFAST_SERVER: `https://127.0.0.1:${t.server.port}`, HOLDFAST_SERVER_TOKEN: alice, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('nowhere') },
    });
    assert.match(made.stdout, new RegExp(`^created token \\S+ \\(enroll, to take over disk safe ${safeName}\\)$`, 'm'));
    const takeToken = /^secret: (\S+)$/m.exec(made.stdout)![1]!;
    const passwordFile = s.path('recovered.password');
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    const configB = s.path('new-web-etc', 'agent.json');
    const env = { HOLDFAST_PASSWORD: undefined, HOLDFAST_PASSWORD_FILE: passwordFile };
    const get = (token: string, path: string) => httpsJson(t.server.port, t.cert, 'GET', `/safes/${safeName}${path}`, { token });
    const takeOverWith = (token: string, safe: string) => t.call('POST', '/api/v1/agent/enroll', { token, body: { name: 'new-web', take_over: safe } });

    // While the old machine is live, its safe cannot be taken over, even with the token made for it.
    const live = await enrol(takeToken, 'new-web', configB, env, safeName);
    assert.equal(live.code, 1, live.stderr);
    assert.match(live.stderr, /cannot open disk safe .* to take it over/);
    const api = await takeOverWith(takeToken, safeName);
    assert.equal(api.status, 409, api.text);
    assert.match(api.body.message, /belongs to machine old-web, which is live: retire it first/);

    // The old machine's agent, waiting for jobs when its machine is retired, stops (exit 12) instead of asking again forever; started again, it stops at once.
    const oldAgent = startAgent(s, a);
    await new Promise<void>((waiting) => {
      let said = '';
      oldAgent.child.stderr!.on('data', (d: Buffer) => {
        said += d.toString();
        if (said.includes('waiting for jobs')) waiting();
      });
    });
    assert.equal((await t.call('DELETE', `/api/v1/machines/${a.id}`, { token: alice })).status, 200);
    for (const run of [oldAgent, startAgent(s, a)]) {
      const end = await run.done;
      assert.equal(end.code, 12, end.stderr);
      assert.match(end.stderr, /refuses the token of machine old-web \(.*\): the machine was retired/);
    }

    // A plain enroll token of the customer takes over nothing, even with the right password, and reads no object of the safe.
    const plainApi = await takeOverWith(plainToken, safeName);
    assert.equal(plainApi.status, 403, plainApi.text);
    assert.match(plainApi.body.message, /needs an enroll token the customer made for it/);
    for (const path of ['', '/config', '/keys', '/snapshots', '/index', '/data']) assert.equal((await get(plainToken, path)).status, 404, path);
    const plain = await enrol(plainToken, 'new-web', configB, env, safeName);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(plain.stderr, /nothing was registered/);
    // Nor a safe made without a machine (POST /safes, for the CLI): it is not free for the taking either.
    const cliSafe = await t.create('/api/v1/safes', { customer_id: acme, name: 'cli-safe' });
    assert.equal((await takeOverWith(plainToken, 'cli-safe')).status, 403);
    // The takeover token of A's safe takes over no other safe.
    const other = await takeOverWith(takeToken, 'cli-safe');
    assert.equal(other.status, 403, other.text);
    assert.match(other.body.message, /made for another disk safe than cli-safe/);
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', '/safes/cli-safe/config', { token: takeToken })).status, 404);
    assert.equal((await t.call('GET', '/api/v1/safes', { token: alice })).body.find((x: { id: string }) => x.id === cliSafe.id).machine_id, null);
    // Nor does it enrol a new machine.
    assert.equal((await t.call('POST', '/api/v1/agent/enroll', { token: takeToken, body: { name: 'extra' } })).status, 403);

    // The takeover token reads what the password check needs, the config and the keys, and nothing of the safe's contents.
    const reader = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'reader', rights: ['read'] }, alice)).secret as string;
    assert.equal((await get(takeToken, '/config')).status, 200);
    const keys = (await get(takeToken, '/keys')).body as { objects: { name: string }[] };
    assert.equal(keys.objects.length, 1);
    assert.equal((await get(takeToken, `/keys/${keys.objects[0]!.name}`)).status, 200);
    for (const folder of ['data', 'index', 'snapshots']) {
      const listed = await get(takeToken, `/${folder}`);
      assert.equal(listed.status, 403, `${folder}: ${listed.text}`);
      assert.match(listed.text, /reads only config and key of the safe/);
      const name = ((await get(reader, `/${folder}`)).body as { objects: { name: string }[] }).objects[0]!.name;
      assert.equal((await get(takeToken, `/${folder}/${name}`)).status, 403, `${folder}/${name}`);
      assert.equal((await httpsJson(t.server.port, t.cert, 'HEAD', `/safes/${safeName}/${folder}/${name}`, { token: takeToken })).status, 403);
    }
    // It adds nothing to the safe, not even a lock.
    const lock = await httpsJson(t.server.port, t.cert, 'PUT', `/safes/${safeName}/locks/${'1'.repeat(64)}`, { token: takeToken, rawBody: '{}' });
    assert.equal(lock.status, 403, lock.text);
    assert.match(lock.text, /adds nothing to it, not even a lock/);

    // Another customer's enroll token does not reach the safe.
    const otherCustomer = (await t.create('/api/v1/customers', { name: 'Other' })).id as string;
    const foreignToken = (await t.create('/api/v1/tokens', { customer_id: otherCustomer, name: 'installer', rights: ['enroll'] })).secret as string;
    const foreign = await enrol(foreignToken, 'new-web', configB, env, safeName);
    assert.equal(foreign.code, 1, foreign.stderr);
    assert.equal((await takeOverWith(foreignToken, safeName)).status, 403);
    // Nor can the other customer be given a takeover token for it.
    assert.equal((await t.call('POST', '/api/v1/tokens', { token: t.adminToken, body: { customer_id: otherCustomer, name: 'x', rights: ['enroll'], take_over: safeId } })).status, 404);

    // A wrong password is refused before anything is registered.
    const wrongFile = s.path('wrong.password');
    await writeFile(wrongFile, 'not the password\n');
    const wrong = await enrol(takeToken, 'new-web', configB, { ...env, HOLDFAST_PASSWORD_FILE: wrongFile }, safeName);
    assert.equal(wrong.code, 12, wrong.stderr);
    assert.match(wrong.stderr, /nothing was registered/);
    const machines = () => t.call('GET', '/api/v1/machines', { token: alice }).then((r) => (r.body as { name: string }[]).map((m) => m.name));
    assert.deepEqual(await machines(), []);

    const ok = await enrol(takeToken, 'new-web', configB, env, safeName);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`took over disk safe ${safeName}; its first backup continues from the snapshots of old-web`));
    assert.deepEqual(await machines(), ['new-web']);
    const b = await enrolledAt(h, configB);
    assert.notEqual(b.id, a.id);
    const safe = (await t.call('GET', '/api/v1/safes', { token: alice })).body as { name: string; machine_id: string | null }[];
    assert.deepEqual(safe.map((x) => [x.name, x.machine_id]).sort(), [['cli-safe', null], [safeName, b.id]]);
    // The takeover used the token up.
    const again = await takeOverWith(takeToken, safeName);
    assert.equal(again.status, 401, again.text);
    assert.match(again.text, /was revoked/);
    assert.ok(((await t.call('GET', '/api/v1/audit', { token: t.adminToken })).body as { action: string }[]).some((e) => e.action === 'safe.take_over'));

    // The first backup of the new machine is an incremental of the old one's last snapshot.
    await writeFile(join(src(), 'sub', 'note.txt'), 'second version, written on the new machine\n');
    const result = await backUp(b);
    assert.ok((result['data_added'] as number) < 10_000, `data added: ${String(result['data_added'])}`);
    assert.equal(result['files_unmodified'], 1);
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'], { env: b.repoEnv })).stdout) as { id: string; hostname: string }[];
    assert.deepEqual(snaps.map((x) => x.hostname), ['old-web', 'new-web']);
    // Both restore byte for byte: the old machine's snapshot with the old note, the new one's with the new.
    await assertRestores(s, snaps[1]!.id, src(), { env: b.repoEnv });
    await writeFile(join(src(), 'sub', 'note.txt'), 'first version\n');
    await assertRestores(s, snaps[0]!.id, src(), { env: b.repoEnv });
  });
});

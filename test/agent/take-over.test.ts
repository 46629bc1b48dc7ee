/**
 * A replacement machine takes over the disk safe of a retired one, through
 * the real CLI and real agents against a server on loopback over TLS:
 * machine A backs up, is retired, its password is recovered from escrow;
 * machine B enrols onto A's safe with it (a wrong password is refused
 * before anything is registered; another customer's enroll token, and a
 * safe whose machine is live, are refused), and its first backup is an
 * incremental from A's last snapshot (a few bytes added); A's and B's
 * snapshots both restore byte for byte.
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
    const enrollToken = (await t.create('/api/v1/tokens', { customer_id: acme, name: 'installer', rights: ['enroll'] }, alice)).secret as string;
    const passwordFile = s.path('recovered.password');
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    const configB = s.path('new-web-etc', 'agent.json');
    const env = { HOLDFAST_PASSWORD: undefined, HOLDFAST_PASSWORD_FILE: passwordFile };

    // While the old machine is live, its safe cannot be taken over.
    const live = await enrol(enrollToken, 'new-web', configB, env, safeName);
    assert.equal(live.code, 1, live.stderr);
    assert.match(live.stderr, /cannot open disk safe .* to take it over/);
    const api = await t.call('POST', '/api/v1/agent/enroll', { token: enrollToken, body: { name: 'new-web', take_over: safeName } });
    assert.equal(api.status, 409, api.text);
    assert.match(api.body.message, /belongs to machine old-web, which is live: retire it first/);

    assert.equal((await t.call('DELETE', `/api/v1/machines/${a.id}`, { token: alice })).status, 200);
    // The enroll token now reads the safe, and adds nothing to it, not even a lock.
    assert.equal((await httpsJson(t.server.port, t.cert, 'GET', `/safes/${safeName}/snapshots`, { token: enrollToken })).status, 200);
    const lock = await httpsJson(t.server.port, t.cert, 'PUT', `/safes/${safeName}/locks/${'1'.repeat(64)}`, { token: enrollToken, rawBody: '{}' });
    assert.equal(lock.status, 403, lock.text);
    assert.match(lock.text, /adds nothing to it, not even a lock/);

    // Another customer's enroll token does not reach the safe.
    const other = (await t.create('/api/v1/customers', { name: 'Other' })).id as string;
    const foreignToken = (await t.create('/api/v1/tokens', { customer_id: other, name: 'installer', rights: ['enroll'] })).secret as string;
    const foreign = await enrol(foreignToken, 'new-web', configB, env, safeName);
    assert.equal(foreign.code, 1, foreign.stderr);
    assert.equal((await t.call('POST', '/api/v1/agent/enroll', { token: foreignToken, body: { name: 'new-web', take_over: safeName } })).status, 404);

    // A wrong password is refused before anything is registered.
    const wrongFile = s.path('wrong.password');
    await writeFile(wrongFile, 'not the password\n');
    const wrong = await enrol(enrollToken, 'new-web', configB, { ...env, HOLDFAST_PASSWORD_FILE: wrongFile }, safeName);
    assert.equal(wrong.code, 12, wrong.stderr);
    assert.match(wrong.stderr, /nothing was registered/);
    const machines = () => t.call('GET', '/api/v1/machines', { token: alice }).then((r) => (r.body as { name: string }[]).map((m) => m.name));
    assert.deepEqual(await machines(), []);

    const ok = await enrol(enrollToken, 'new-web', configB, env, safeName);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`took over disk safe ${safeName}; its first backup continues from the snapshots of old-web`));
    assert.deepEqual(await machines(), ['new-web']);
    const b = await enrolledAt(h, configB);
    assert.notEqual(b.id, a.id);
    const safe = (await t.call('GET', '/api/v1/safes', { token: alice })).body as { name: string; machine_id: string }[];
    assert.deepEqual(safe.map((x) => [x.name, x.machine_id]), [[safeName, b.id]]);
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

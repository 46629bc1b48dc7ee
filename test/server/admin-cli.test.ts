/**
 * The `holdfast server …` admin commands, run as the real CLI against a
 * server on loopback over real TLS with its fingerprint pinned at login:
 * login keeps its session 0600 and later commands use it; each command
 * creates, lists and shows through the API (tables for people, the API's
 * bodies with --json); a one-time password is changed at the first login;
 * refusals are words with the HTTP status and its exit code (a wrong
 * password 12, a customer admin on a provider command 15, a revoked or
 * expired token 12, bad values 2); a job is run now and followed to its
 * end while the test plays the machine's agent.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { ADMIN_PASSWORD, setUp, type TestServer } from '../helpers/server.js';

describe('holdfast server admin commands', () => {
  let t: TestServer;
  let s: Sandbox;
  let server = '';
  /** The environment of every run: the session file in the sandbox, no repository settings. */
  const env = (extra: Record<string, string | undefined> = {}) => ({
    XDG_CONFIG_HOME: s.path('config'), HOLDFAST_PASSWORD: undefined, HOLDFAST_REPOSITORY: undefined,
    HOLDFAST_SERVER: undefined, HOLDFAST_SERVER_TOKEN: undefined, HOLDFAST_FINGERPRINT: undefined, ...extra,
  });
  const run = (args: string[], extra: Record<string, string | undefined> = {}, input?: string): Promise<RunResult> => s.run(args, { env: env(extra), ...(input === undefined ? {} : { input }) });
  const ok = async (args: string[], extra: Record<string, string | undefined> = {}, input?: string): Promise<RunResult> => {
    const r = await run(args, extra, input);
    assert.equal(r.code, 0, `holdfast ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const json = async <T>(args: string[], extra: Record<string, string | undefined> = {}): Promise<T> => JSON.parse((await ok([...args, '--json'], extra)).stdout) as T;
  const sessionPath = () => s.path('config', 'holdfast', 'server-session.json');
  const login = (user: string, password: string, more: string[] = []) => run(['server', 'login', '--server', server, '--user', user, '--fingerprint', t.server.fingerprint, ...more], {}, `${password}\n`);

  before(async () => {
    s = await Sandbox.create('holdfast-admin-cli-');
    t = await setUp(`sqlite:${s.path('control.sqlite')}`);
    server = `https://127.0.0.1:${t.server.port}`;
  });
  after(async () => {
    await t.stop();
    await s.remove();
  });

  it('refuses a wrong password (exit 12) and keeps nothing; logs in with the right one, the session kept 0600', async () => {
    const wrong = await login('admin', 'not the password');
    assert.equal(wrong.code, 12, wrong.stderr);
    assert.match(wrong.stderr, /^holdfast: wrong user name or password \(HTTP 401 Unauthorized\); check the user name and password\n$/);
    await assert.rejects(stat(sessionPath()), { code: 'ENOENT' });

    const notLoggedIn = await run(['server', 'customer', 'list']);
    assert.equal(notLoggedIn.code, 2, notLoggedIn.stderr);
    assert.match(notLoggedIn.stderr, /not logged in to a server: run holdfast server login --server/);

    const r = await login('admin', ADMIN_PASSWORD);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^logged in to ${server} as admin until .*; kept in ${sessionPath()}\\n$`));
    assert.equal((await stat(sessionPath())).mode & 0o777, 0o600);
    assert.equal((await stat(s.path('config', 'holdfast'))).mode & 0o777, 0o700);
    const kept = JSON.parse(await readFile(sessionPath(), 'utf8')) as Record<string, unknown>;
    assert.equal(kept['server'], server);
    assert.equal(kept['fingerprint'], t.server.fingerprint);
    assert.match(kept['token'] as string, /^hfs_/);
  });

  it('creates, lists and shows customers, machines and disk safes by name, as tables and as the API\'s JSON', async () => {
    assert.match((await ok(['server', 'customer', 'create', 'Acme'])).stdout, /^created customer Acme: [0-9a-f-]{36}\n$/);
    await ok(['server', 'customer', 'create', 'Other']);
    const list = await ok(['server', 'customer', 'list']);
    assert.match(list.stdout, /^ID +NAME +CREATED\n[0-9a-f-]{36} +Acme +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n[0-9a-f-]{36} +Other /);
    const customers = await json<{ id: string; name: string }[]>(['server', 'customer', 'list']);
    const acme = customers.find((c) => c.name === 'Acme')!;
    assert.deepEqual(await json(['server', 'customer', 'show', 'Acme']), await json(['server', 'customer', 'show', acme.id]));

    await ok(['server', 'machine', 'create', 'web1', '--customer', 'Acme']);
    await ok(['server', 'safe', 'create', 'acme-web1', '--customer', 'Acme', '--machine', 'web1', '--quota-hard', '2G']);
    const safes = await ok(['server', 'safe', 'list']);
    assert.match(safes.stdout, /^NAME +ID +CUSTOMER +MACHINE +STORED +QUOTA \(SOFT \/ HARD\)\nacme-web1 +[0-9a-f-]{36} +Acme +web1 +0 B +- \/ 2\.00 GiB\n$/);
    const safe = await json<{ customer_id: string; quota_hard: number }>(['server', 'safe', 'show', 'acme-web1']);
    assert.equal(safe.customer_id, acme.id);
    assert.equal(safe.quota_hard, 2 * 1024 ** 3);
    assert.match((await ok(['server', 'machine', 'list'])).stdout, /\n[0-9a-f-]{36} +web1 +Acme +-\n$/);
    // Machines are named per customer: Other's web1 is the one --machine names beside --customer Other, for a safe and a token alike.
    const otherWeb1 = (await json<{ id: string }>(['server', 'machine', 'create', 'web1', '--customer', 'Other'])).id;
    assert.equal((await json<{ machine_id: string }>(['server', 'safe', 'create', 'other-web1', '--customer', 'Other', '--machine', 'web1'])).machine_id, otherWeb1);
    const otherToken = await json<{ token: { machine_id: string } }>(['server', 'token', 'create', '--customer', 'Other', '--machine', 'web1', '--name', 'other agent', '--rights', 'backup']);
    assert.equal(otherToken.token.machine_id, otherWeb1);
    await ok(['server', 'machine', 'delete', otherWeb1]);

    const taken = await run(['server', 'safe', 'create', 'acme-web1', '--customer', 'Acme']);
    assert.equal(taken.code, 1, taken.stderr);
    assert.match(taken.stderr, /^holdfast: the customer has a disk safe named "acme-web1" already; choose another name \(HTTP 409 Conflict\)\n$/);
    const badName = await run(['server', 'safe', 'create', 'Not A Name', '--customer', 'Acme']);
    assert.equal(badName.code, 2, badName.stderr);
    assert.match(badName.stderr, /HTTP 400 Bad Request/);
    const nobody = await run(['server', 'machine', 'show', 'db9']);
    assert.equal(nobody.code, 1, nobody.stderr);
    assert.match(nobody.stderr, /no machine named "db9"/);
  });

  it('shows and sets a customer\'s and a safe\'s quotas after creation, and makes a restore token for a safe', async () => {
    const gib = 1024 ** 3;
    const set = await ok(['server', 'customer', 'quota', 'Acme', '--hard', '10G', '--soft', '8G']);
    assert.match(set.stdout, /^customer Acme: stored 0 B; soft quota 8\.00 GiB, hard quota 10\.0 GiB\n$/);
    const acme = await json<{ quota_hard: number | null; quota_soft: number | null }>(['server', 'customer', 'show', 'Acme']);
    assert.deepEqual([acme.quota_hard, acme.quota_soft], [10 * gib, 8 * gib]);
    assert.match((await ok(['server', 'customer', 'show', 'Acme'])).stdout, /\nsoft quota: +8\.00 GiB\nhard quota: +10\.0 GiB\n/);
    // `none` removes one; the other stays.
    const unset = await json<{ quota_hard: number | null; quota_soft: number | null }>(['server', 'customer', 'quota', 'Acme', '--hard', 'none', '--soft', 'none']);
    assert.deepEqual([unset.quota_hard, unset.quota_soft], [null, null]);
    const safe = await json<{ quota_hard: number | null; quota_soft: number | null }>(['server', 'safe', 'quota', 'acme-web1', '--soft', '1G']);
    assert.deepEqual([safe.quota_hard, safe.quota_soft], [2 * gib, gib]);
    assert.match((await ok(['server', 'safe', 'quota', 'acme-web1'])).stdout, /^disk safe acme-web1: stored 0 B; soft quota 1\.00 GiB, hard quota 2\.00 GiB\n$/);
    const above = await run(['server', 'safe', 'quota', 'acme-web1', '--soft', '3G']);
    assert.equal(above.code, 2, above.stderr);
    assert.match(above.stderr, /the soft quota \(3221225472 bytes\) is above the hard quota/);
    const zero = await run(['server', 'customer', 'quota', 'Acme', '--hard', '0']);
    assert.equal(zero.code, 2, zero.stderr);
    assert.match(zero.stderr, /--hard "0": give a size such as 500G or 2T/);

    const made = await ok(['server', 'safe', 'restore-token', 'acme-web1', '--name', 'rescue', '--expires-in', '2h']);
    assert.match(made.stdout, /^created restore token [0-9a-f]{16} for disk safe acme-web1, until .*\nsecret: hft_\S+\n\(shown only now/);
    const id = /restore token ([0-9a-f]{16})/.exec(made.stdout)![1]!;
    const shown = await json<{ rights: string[]; safe_id: string; expires_at: string }>(['server', 'token', 'show', id]);
    assert.deepEqual(shown.rights, ['restore']);
    assert.equal(shown.safe_id, (await json<{ id: string }>(['server', 'safe', 'show', 'acme-web1'])).id);
    const hours = (Date.parse(shown.expires_at) - Date.now()) / 3600_000;
    assert.ok(hours > 1.9 && hours <= 2, `expires in ${hours} h`);
    // Show commands name the records a token, a safe and a machine refer to; the list names a restore token's safe.
    assert.match((await ok(['server', 'token', 'show', id])).stdout, /\ncustomer: +Acme \([0-9a-f-]{36}\)\nmachine: +web1 \([0-9a-f-]{36}\)\nsafe: +acme-web1 \([0-9a-f-]{36}\)\n/);
    assert.match((await ok(['server', 'token', 'list'])).stdout, new RegExp(`${id} +rescue +Acme +web1 +acme-web1 +restore `));
    assert.match((await ok(['server', 'safe', 'show', 'acme-web1'])).stdout, /\ncustomer: +Acme \([0-9a-f-]{36}\)\nmachine: +web1 \([0-9a-f-]{36}\)\n/);
    assert.match((await ok(['server', 'machine', 'show', 'web1', '--json'])).stdout, /"customer_id"/);
    assert.match((await ok(['server', 'machine', 'show', 'web1'])).stdout, /\ncustomer: +Acme \([0-9a-f-]{36}\)\n/);
    assert.match((await ok(['server', 'machine', 'show', 'web1'])).stdout, /\nlast backup: +never\n/);
    const tooLong = await run(['server', 'safe', 'restore-token', 'acme-web1', '--expires-in', '30d']);
    assert.equal(tooLong.code, 2, tooLong.stderr);
  });

  it('makes a user whose one-time password is changed at the first login; a customer admin is refused provider commands (exit 15)', async () => {
    const made = await ok(['server', 'user', 'create', 'bob', '--role', 'customer-admin', '--customer', 'Acme']);
    const otp = /one-time password: (\S+)\n/.exec(made.stdout)?.[1];
    assert.ok(otp, made.stdout);
    const users = await ok(['server', 'user', 'list']);
    assert.match(users.stdout, /bob +customer-admin +Acme/);

    // Without a new password and no terminal: refused, nothing kept for bob.
    const before = await readFile(sessionPath(), 'utf8');
    const stuck = await login('bob', otp);
    assert.equal(stuck.code, 1, stuck.stderr);
    assert.match(stuck.stderr, /one-time password, which must be changed at the first login: give the new one with --new-password-file FILE/);
    assert.equal(await readFile(sessionPath(), 'utf8'), before);

    await writeFile(s.path('otp'), `${otp}\n`);
    await writeFile(s.path('new'), 'bob\'s own long password\n');
    const first = await run(['server', 'login', '--server', server, '--user', 'bob', '--fingerprint', t.server.fingerprint, '--password-file', s.path('otp'), '--new-password-file', s.path('new')]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /the one-time password is changed\nlogged in to .* as bob/);
    assert.equal((await json<{ must_change_password: boolean }>(['server', 'user', 'show', 'bob'])).must_change_password, false);

    const refused = await run(['server', 'customer', 'create', 'Mine']);
    assert.equal(refused.code, 15, refused.stderr);
    assert.match(refused.stderr, /^holdfast: only a provider admin may do this \(HTTP 403 Forbidden\)\n$/);
    // Another customer's records are not there at all for bob.
    assert.deepEqual((await json<{ name: string }[]>(['server', 'customer', 'list'])).map((c) => c.name), ['Acme']);

    assert.equal((await login('admin', ADMIN_PASSWORD)).code, 0);
  });

  it('creates a token whose secret is printed once, uses it from HOLDFAST_SERVER_TOKEN, and refuses it revoked or expired (exit 12)', async () => {
    const made = await ok(['server', 'token', 'create', '--customer', 'Acme', '--name', 'ci', '--rights', 'read,manage', '--expires', '30d']);
    const secret = /^secret: (hft_\S+)$/m.exec(made.stdout)?.[1];
    const id = /^created token (\S+) /.exec(made.stdout)?.[1];
    assert.ok(secret && id, made.stdout);
    const listed = await ok(['server', 'token', 'list']);
    assert.match(listed.stdout, new RegExp(`${id} +ci +Acme +- +- +read,manage +\\d{4}-.* +live\\n`));
    assert.ok(!listed.stdout.includes(secret), 'the secret is never listed');

    const byToken = { HOLDFAST_SERVER: server, HOLDFAST_SERVER_TOKEN: secret, HOLDFAST_FINGERPRINT: t.server.fingerprint, XDG_CONFIG_HOME: s.path('nowhere') };
    assert.match((await ok(['server', 'machine', 'list'], byToken)).stdout, /web1/);

    await ok(['server', 'token', 'revoke', id]);
    const revoked = await run(['server', 'machine', 'list'], byToken);
    assert.equal(revoked.code, 12, revoked.stderr);
    assert.match(revoked.stderr, new RegExp(`^holdfast: API token ${id} was revoked \\(HTTP 401 Unauthorized\\); check HOLDFAST_SERVER_TOKEN\\n$`));
    assert.match((await ok(['server', 'token', 'show', id])).stdout, /state: +revoked/);

    const brief = await json<{ token: { id: string; expires_at: string }; secret: string }>(['server', 'token', 'create', '--customer', 'Acme', '--name', 'brief', '--rights', 'read', '--expires', '1s']);
    await sleep(Math.max(0, Date.parse(brief.token.expires_at) - Date.now()) + 100);
    const expired = await run(['server', 'machine', 'list'], { ...byToken, HOLDFAST_SERVER_TOKEN: brief.secret });
    assert.equal(expired.code, 12, expired.stderr);
    assert.match(expired.stderr, new RegExp(`API token ${brief.token.id} expired at `));

    const badRights = await run(['server', 'token', 'create', '--customer', 'Acme', '--name', 'x', '--rights', 'delete']);
    assert.equal(badRights.code, 2, badRights.stderr);
    assert.match(badRights.stderr, /--rights "delete": give one or more of read, manage, backup, enroll/);
  });

  it('runs a job now and follows its events to its end (exit 0), an incomplete one exits 3, and a failed one exits 1 with its error', async () => {
    const agent = (await json<{ secret: string }>(['server', 'token', 'create', '--customer', 'Acme', '--machine', 'web1', '--name', 'web1 agent', '--rights', 'backup'])).secret;
    const call = (method: string, path: string, body?: unknown) => t.call(method, `/api/v1${path}`, { token: agent, ...(body === undefined ? {} : { body }) });
    /** Plays the agent: takes the next job, reports two lines and the result. */
    const playAgent = async (state: 'succeeded' | 'failed', result: Record<string, unknown> = { snapshot: 'abcd1234' }): Promise<string> => {
      for (;;) {
        const next = await call('GET', '/agent/jobs/next?wait=5');
        if (next.status === 204) continue;
        assert.equal(next.status, 200, next.text);
        const id = next.body.id as string;
        const at = new Date().toISOString();
        assert.equal((await call('POST', `/agent/jobs/${id}/events`, { events: [{ at, kind: 'log', message: 'reading /etc' }, { at, kind: 'progress', message: '12 files' }] })).status, 204);
        const end = await call('POST', `/agent/jobs/${id}/result`, state === 'succeeded' ? { state, result } : { state, error: 'the disk is full' });
        assert.equal(end.status, 200, end.text);
        return id;
      }
    };
    const [followed, id] = await Promise.all([run(['server', 'job', 'run', 'web1', '--kind', 'backup', '--path', '/etc', '--exclude', '*.tmp', '--follow']), playAgent('succeeded')]);
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, new RegExp(`^queued backup job ${id} for web1 \\(disk safe acme-web1\\)\\n.*  log       reading /etc\\n.*  progress  12 files\\njob ${id} succeeded\\n$`));
    const shown = await json<{ state: string; spec: unknown; result: unknown }>(['server', 'job', 'show', id]);
    assert.deepEqual([shown.state, shown.spec, shown.result], ['succeeded', { paths: ['/etc'], excludes: ['*.tmp'] }, { snapshot: 'abcd1234' }]);
    assert.match((await ok(['server', 'job', 'list', 'web1'])).stdout, new RegExp(`${id} +backup +succeeded +acme-web1 `));
    const events = (await ok(['server', 'job', 'events', id, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as { message: string });
    assert.deepEqual(events.map((e) => e.message), ['reading /etc', '12 files']);

    // A backup that skipped a path (or read some files only in part) succeeded incomplete: exit 3, as holdfast backup's.
    const [partial, partialId] = await Promise.all([run(['server', 'job', 'run', 'web1', '--kind', 'backup', '--path', '/etc', '--path', '/nowhere', '--follow']),
      playAgent('succeeded', { snapshot: 'abcd1234', incomplete: true, paths_skipped: 1 })]);
    assert.equal(partial.code, 3, partial.stderr);
    assert.match(partial.stderr, new RegExp(`^holdfast: job ${partialId} succeeded, but INCOMPLETE: `));

    const queued = await json<{ id: string }>(['server', 'job', 'run', 'web1', '--kind', 'restore', '--snapshot', 'abcd1234', '--target', '/srv/restore']);
    const [failed] = await Promise.all([run(['server', 'job', 'events', queued.id, '--follow']), playAgent('failed')]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, new RegExp(`^holdfast: job ${queued.id} failed: the disk is full\\n$`));

    // --json before the --: what follows it is the command's.
    const dump = JSON.parse((await ok(['server', 'job', 'run', 'web1', '--kind', 'command-backup', '--name', 'app.sql', '--json', '--', 'pg_dump', '-Fc', 'app', '--json'])).stdout) as { kind: string; spec: unknown };
    assert.deepEqual([dump.kind, dump.spec], ['command-backup', { command: ['pg_dump', '-Fc', 'app', '--json'], name: 'app.sql' }]);
    const wrongKind = await run(['server', 'job', 'run', 'web1', '--kind', 'check', '--path', '/etc']);
    assert.equal(wrongKind.code, 2, wrongKind.stderr);
    assert.match(wrongKind.stderr, /--path: not an option of a check job/);
  });

  it('cancels a queued job at once and a running one through its agent; a finished one is refused (exit 1); run --expires-in sets its expiry', async () => {
    const agent = (await json<{ secret: string }>(['server', 'token', 'create', '--customer', 'Acme', '--machine', 'web1', '--name', 'web1 canceller', '--rights', 'backup'])).secret;
    const call = (method: string, path: string, body?: unknown) => t.call(method, `/api/v1${path}`, { token: agent, ...(body === undefined ? {} : { body }) });
    const before = Date.now();
    const queued = await json<{ id: string; expires_at: string }>(['server', 'job', 'run', 'web1', '--kind', 'check', '--expires-in', '2h']);
    const expires = Date.parse(queued.expires_at) - before;
    assert.ok(expires >= 2 * 3600_000 && expires < 2 * 3600_000 + 60_000, queued.expires_at);
    assert.match((await ok(['server', 'job', 'show', queued.id])).stdout, /^expires: +\S+/m);
    for (const bad of ['0', 'soon', '31d']) {
      const r = await run(['server', 'job', 'run', 'web1', '--kind', 'check', '--expires-in', bad]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--expires-in/);
    }
    const cancelled = await ok(['server', 'job', 'cancel', queued.id]);
    assert.equal(cancelled.stdout, `job ${queued.id} cancelled\n`);
    assert.match((await ok(['server', 'job', 'list', 'web1'])).stdout, new RegExp(`${queued.id} +check +cancelled +acme-web1 `));
    const shown = (await ok(['server', 'job', 'show', queued.id])).stdout;
    assert.match(shown, /^state: +cancelled$/m);
    assert.match(shown, /^cancelled by: +user:\S+$/m);
    assert.match(shown, /^error: +cancelled by user:\S+ before an agent took it$/m);
    const followed = await run(['server', 'job', 'events', queued.id, '--follow']);
    assert.equal(followed.code, 1, 'a cancelled job did not succeed');
    assert.match(followed.stderr, new RegExp(`^holdfast: job ${queued.id} cancelled: cancelled by user:\\S+ before an agent took it\n$`));
    const again = await run(['server', 'job', 'cancel', queued.id]);
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, new RegExp(`job ${queued.id} is cancelled already .*\\(HTTP 409 Conflict\\)`));
    assert.equal((await run(['server', 'job', 'cancel', '00000000-0000-4000-8000-000000000000'])).code, 1, 'no such job');

    const running = await json<{ id: string }>(['server', 'job', 'run', 'web1', '--kind', 'backup', '--path', '/etc']);
    // The agent takes it (finishing the older jobs queued before it).
    for (let next = await call('GET', '/agent/jobs/next'); next.body.id !== running.id; next = await call('GET', '/agent/jobs/next')) {
      assert.equal(next.status, 200, next.text);
      await call('POST', `/agent/jobs/${next.body.id as string}/result`, { state: 'succeeded' });
    }
    const asked = await ok(['server', 'job', 'cancel', running.id]);
    assert.equal(asked.stdout, `job ${running.id} is being stopped by its agent; it ends cancelled (holdfast server job show ${running.id})\n`);
    assert.equal((await call('POST', `/agent/jobs/${running.id}/events`, { events: [] })).headers['holdfast-cancel'], 'requested');
    assert.equal((await call('POST', `/agent/jobs/${running.id}/result`, { state: 'cancelled', error: 'stopped' })).status, 200);
    assert.match((await ok(['server', 'job', 'list', 'web1'])).stdout, new RegExp(`${running.id} +backup +cancelled +acme-web1 `));
  });

  it('forgets by a policy (dry run first) and prunes a disk safe on the server, following the prune job; shows what the safe stores', { timeout: 120_000 }, async () => {
    const agent = (await json<{ secret: string }>(['server', 'token', 'create', '--customer', 'Acme', '--machine', 'web1', '--name', 'web1 backups', '--rights', 'backup'])).secret;
    const repo = { HOLDFAST_REPOSITORY: `${server}/safes/acme-web1`, HOLDFAST_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_PASSWORD: 'the safe password' };
    const data = s.path('web1-data');
    await mkdir(data, { recursive: true });
    await s.ok(['init'], { env: repo });
    for (const content of ['first version\n', 'second version\n']) {
      await writeFile(join(data, 'f'), content);
      await s.ok(['backup', '-q', data], { env: repo });
    }
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'], { env: repo })).stdout) as { id: string; short_id: string }[];
    assert.equal(snaps.length, 2);
    const dry = await ok(['server', 'safe', 'forget', 'acme-web1', '--keep-last', '1', '--dry-run']);
    assert.match(dry.stdout, /^policy: keep 1 latest snapshots? \(dry run: nothing is removed\)$/m);
    assert.match(dry.stdout, new RegExp(`^  keep +${snaps[1]!.short_id} .*last snapshot`, 'm'));
    assert.match(dry.stdout, new RegExp(`^  would remove ${snaps[0]!.short_id} `, 'm'));
    assert.equal(JSON.parse((await s.ok(['snapshots', '--json'], { env: repo })).stdout).length, 2, 'the dry run removed nothing');
    const real = await ok(['server', 'safe', 'forget', 'acme-web1', '--keep-last', '1']);
    assert.match(real.stdout, /^removed 1 snapshot$/m);
    assert.deepEqual((JSON.parse((await s.ok(['snapshots', '--json'], { env: repo })).stdout) as { id: string }[]).map((x) => x.id), [snaps[1]!.id]);
    const restoreRight = await run(['server', 'token', 'create', '--customer', 'Acme', '--name', 'r', '--rights', 'restore']);
    assert.equal(restoreRight.code, 2, restoreRight.stderr);
    assert.match(restoreRight.stderr, /give one or more of read, manage, backup, enroll, .*holdfast server safe restore-token SAFE makes one/);
    const none = await run(['server', 'safe', 'forget', 'acme-web1']);
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /needs a policy/);

    const pruned = await ok(['server', 'safe', 'prune', 'acme-web1']);
    assert.match(pruned.stdout, /^prune job \S+ queued on the server\n(.*\n)*job \S+ succeeded\n$/);
    assert.match(pruned.stdout, /marked|mark/);
    // An agent's token may not prune (403: exit 15).
    const refused = await run(['server', 'safe', 'prune', 'acme-web1'], { HOLDFAST_SERVER: server, HOLDFAST_SERVER_TOKEN: agent, HOLDFAST_FINGERPRINT: t.server.fingerprint });
    assert.equal(refused.code, 15, refused.stderr);
    const shown = await ok(['server', 'safe', 'show', 'acme-web1']);
    assert.match(shown.stdout, /^stored: +[\d.]+ (KiB|MiB)$/m);
    await s.ok(['restore', 'latest', '--target', s.path('web1-restored')], { env: repo });
    assert.equal(await readFile(s.path('web1-restored', data, 'f'), 'utf8'), 'second version\n');
  });

  it('refuses a server whose certificate is not the pinned one, and logs out', async () => {
    const other = `SHA256:${'ab'.repeat(32)}`;
    const pinned = await run(['server', 'customer', 'list', '--fingerprint', other]);
    assert.equal(pinned.code, 1, pinned.stderr);
    assert.match(pinned.stderr, /not the pinned/);

    assert.match((await ok(['server', 'logout'])).stdout, new RegExp(`^logged out of ${server}\\n$`));
    await assert.rejects(stat(sessionPath()), { code: 'ENOENT' });
    const after = await run(['server', 'customer', 'list']);
    assert.equal(after.code, 2, after.stderr);
  });
});

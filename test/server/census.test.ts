/**
 * The server's keyless retention against snapshots planted without the key
 * (attacker review): with the machine's own agent token, a real snapshot is
 * copied with the present time, no blobs and a MAC made of junk, and put
 * twice over the repository protocol. The real agent's next backup is the
 * census: its result names the two as failing their MAC, the server marks
 * them (listings, one `verify.damage` alert) and its forget with
 * `keep_last 2` counts neither, so no genuine snapshot goes. A forgery put
 * after the census is not counted either, and moves no machine's last
 * backup. A safe written only by the CLI (no census) keeps the retention of
 * before.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeSnapshot, encodeSnapshot } from '../../src/repo/snapshot.js';
import { Sandbox, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { enrolMachine, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/notify-receivers.js';
import { setUp, type Answer, type TestServer } from '../helpers/server.js';

interface Decision { id: string; action: string }
interface Forget { groups: { decisions: Decision[] }[]; removed: string[]; skipped: { id: string; error: string }[] }

databaseSuites('retention against snapshots planted without the key (the agent\'s census)', (fx) => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let agent: Started;
  let hook: WebhookReceiver;
  let safeId = '';
  let channel = '';
  const genuine: string[] = [];
  const forged: string[] = [];

  /** Puts `bytes` into safe `safe`'s `folder` under their SHA-256 with `token`; the HTTP status. */
  const put = (token: string, safe: string, folder: string, bytes: Buffer): Promise<number> => new Promise((resolve, reject) => {
    const name = createHash('sha256').update(bytes).digest('hex');
    const req = request({
      host: '127.0.0.1', port: t.server.port, method: 'PUT', path: `/safes/${safe}/${folder}/${name}`, ca: t.cert, servername: 'localhost', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-length': bytes.length, 'content-type': 'application/octet-stream' },
      checkServerIdentity: () => undefined,
    }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(bytes);
  });

  /**
   * The attack: snapshot `id` of the safe stored at `dir` copied with the
   * present time, a tree of its own, no blobs and a junk MAC, put with
   * `token`; the forgery's id.
   */
  const plant = async (token: string, safe: string, dir: string, id: string): Promise<string> => {
    const real = decodeSnapshot(await readFile(join(dir, 'snapshots', id)), 'snapshot');
    const bytes = encodeSnapshot({ ...real, time: new Date().toISOString(), tree: randomBytes(32).toString('hex'), blobs: [] }, randomBytes(32));
    assert.equal(await put(token, safe, 'snapshots', bytes), 201);
    return createHash('sha256').update(bytes).digest('hex');
  };

  const backup = async (): Promise<Record<string, unknown>> => {
    await writeFile(s.path('src', 'f.txt'), randomBytes(2000).toString('hex'));
    const j = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    genuine.push(j.result!['snapshot_id'] as string);
    return j.result!;
  };
  const forget = async (id: string, body: Record<string, unknown>): Promise<Forget> => {
    const r = await t.call('POST', `/api/v1/safes/${id}/forget`, { token: t.adminToken, body });
    assert.equal(r.status, 200, r.text);
    return r.body as Forget;
  };
  const kept = (f: Forget): string[] => f.groups.flatMap((g) => g.decisions.filter((d) => d.action === 'keep').map((d) => d.id)).sort();
  const skipped = (f: Forget): Map<string, string> => new Map(f.skipped.map((x) => [x.id, x.error]));
  const safeDir = (id: string): string => join(t.dataDir, 'data', 'safes', id);
  /** The alerts of `kind` queued for the customer's webhook so far. */
  const alerts = async (kind: string): Promise<{ summary: string }[]> => {
    const r: Answer = await t.call('GET', `/api/v1/notifications/${channel}/deliveries`, { token: t.adminToken });
    assert.equal(r.status, 200, r.text);
    return (r.body as { event: string; summary: string }[]).filter((d) => d.event === kind);
  };

  before(async () => {
    s = await Sandbox.create('holdfast-census-');
    t = await setUp(await fx.newUrl());
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'web1');
    hook = await startWebhookReceiver('/alerts');
    const customer = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: t.adminToken })).body.customer_id as string;
    channel = (await t.create('/api/v1/notifications', { name: 'ops', customer_id: customer, kind: 'webhook', events: ['verify.damage'], webhook: { url: hook.url } })).channel.id;
    safeId = ((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as { id: string; name: string }[]).find((x) => x.name === m.config['safe'])!.id;
    await mkdir(s.path('src'));
    agent = startAgent(s, m);
  });
  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.done;
    await hook?.close();
    await t?.stop();
    await s?.remove();
  });

  it('counts no snapshot the machine\'s agent found failing its MAC, nor one stored after its census; removes no genuine one', { timeout: 120_000 }, async () => {
    const token = m.config['token'] as string;
    const safe = m.config['safe'] as string;
    const first = await backup();
    assert.deepEqual(first['unauthentic_snapshots'], []);
    assert.equal(first['unauthentic_count'], 0);
    forged.push(await plant(token, safe, safeDir(safeId), genuine[0]!));
    await sleep(5);
    forged.push(await plant(token, safe, safeDir(safeId), genuine[0]!));

    // Planted after the first backup's census: not counted yet, neither kept nor removed.
    const early = await forget(safeId, { keep_last: 1, dry_run: true });
    assert.deepEqual(kept(early), [genuine[0]]);
    for (const f of forged) assert.match(skipped(early).get(f) ?? '', /not yet vouched for by the machine's agent/);

    // The census: the next backup lists them with the key.
    const second = await backup();
    assert.deepEqual(second['unauthentic_snapshots'], [...forged].sort());
    assert.equal(second['unauthentic_count'], 2);
    const f = await forget(safeId, { keep_last: 2 });
    assert.deepEqual(f.removed, [], 'no genuine snapshot is removed');
    assert.deepEqual(kept(f), [...genuine].sort());
    for (const id of forged) assert.match(skipped(f).get(id) ?? '', /fails its MAC \(the agent's census of .*\): planted by someone without the key; never counted/);
    const listed = (await t.call('GET', `/api/v1/safes/${safeId}/snapshots`, { token: t.adminToken })).body as { id: string; unauthentic?: boolean }[];
    assert.deepEqual(listed.filter((x) => x.unauthentic === true).map((x) => x.id).sort(), [...forged].sort());

    // Found again by the next backup: told once.
    const third = await backup();
    assert.deepEqual(third['unauthentic_snapshots'], [...forged].sort());
    const told = await alerts('verify.damage');
    assert.equal(told.length, 1, JSON.stringify(told));
    assert.match(told[0]!.summary, /2 snapshots fail their MAC \(first: [0-9a-f]{8}\): planted by someone without the key/);

    // One planted after the last census is dated later than every genuine one: it is not counted and moves no last backup.
    const late = await plant(token, safe, safeDir(safeId), genuine[2]!);
    const now = await forget(safeId, { keep_last: 2 });
    assert.deepEqual(now.removed, [genuine[0]], 'the oldest genuine snapshot goes, as keep_last 2 of the three genuine ones says');
    assert.deepEqual(kept(now), [genuine[1], genuine[2]].sort());
    assert.match(skipped(now).get(late) ?? '', /not yet vouched for/);
    const machine = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: t.adminToken })).body as { last_backup_at: string };
    const newest = ((await t.call('GET', `/api/v1/safes/${safeId}/snapshots`, { token: t.adminToken })).body as { id: string; time: string }[]);
    assert.equal(machine.last_backup_at, newest.find((x) => x.id === genuine[2])!.time);
    assert.ok(newest.find((x) => x.id === late)!.time > machine.last_backup_at, 'the forgery is dated after the last genuine backup');
  });

  it('leaves the retention of a safe without a census (written only by the CLI) as it was', { timeout: 120_000 }, async () => {
    const customer = (await t.call('GET', `/api/v1/machines/${m.id}`, { token: t.adminToken })).body.customer_id as string;
    const machine = (await t.create('/api/v1/machines', { customer_id: customer, name: 'cli1' })).id as string;
    const id = (await t.create('/api/v1/safes', { customer_id: customer, machine_id: machine, name: 'cli1-safe' })).id as string;
    const token = (await t.create('/api/v1/tokens', { customer_id: customer, machine_id: machine, name: 'cli', rights: ['backup'] })).secret as string;
    const env = { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/cli1-safe`, HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint };
    await s.ok(['init'], { env });
    const mine: string[] = [];
    for (let i = 0; i < 2; i++) {
      await writeFile(s.path('src', 'f.txt'), `version ${i}`);
      mine.push((JSON.parse((await s.ok(['backup', '--json', s.path('src')], { env })).stdout.trim().split('\n').at(-1)!) as { snapshot_id: string }).snapshot_id);
    }
    const planted = [await plant(token, 'cli1-safe', safeDir(id), mine[0]!)];
    await sleep(5);
    planted.push(await plant(token, 'cli1-safe', safeDir(id), mine[0]!));
    const f = await forget(id, { keep_last: 2, dry_run: true });
    assert.deepEqual(kept(f), [...planted].sort(), 'without a census every snapshot counts, as before (the README says so)');
    assert.deepEqual(f.skipped, []);
  });
});

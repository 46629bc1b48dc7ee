/**
 * Notifications across a restart of the server: a delivery that failed
 * before the restart is sent by the server that starts again (the outbox is
 * in the database), a stale machine told before the restart is not told
 * again (its state is in the database too), and a delivery the node was
 * sending when it was killed is sent as soon as it starts again, not when
 * its lease runs out.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../../src/server/backup-server.js';
import { openDatabase } from '../../src/server/db/open-database.js';
import { databaseSuites } from '../helpers/databases.js';
import { startWebhookReceiver } from '../helpers/notify-receivers.js';
import { adminClient, setUp } from '../helpers/server.js';
import { startServerNode, type ServerNode } from '../helpers/server-node.js';

databaseSuites('notifications across a restart', (fx) => {
  it('sends after the restart what was left to send, and does not tell a stale machine twice', { timeout: 60_000 }, async () => {
    let now = Date.parse('2030-03-01T00:00:00.000Z');
    const url = await fx.newUrl();
    const options = { clock: () => new Date(now), staleAfterMs: 3600_000, alertTickMs: 3600_000, delivery: { attempts: 5, firstDelayMs: 1000, pollMs: 3600_000, allowInternal: ['127.0.0.1'] } };
    const receiver = await startWebhookReceiver();
    const t = await setUp(url, undefined, options);
    let second: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
      const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'db1' })).id;
      await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-db1' });
      const agent = (await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
      await t.create('/api/v1/notifications', { name: 'hook', customer_id: acme, kind: 'webhook', events: ['job.failed', 'machine.stale'], webhook: { url: receiver.url } });

      now += 2 * 3600_000;
      await t.server.checkAlerts();
      assert.deepEqual(receiver.hits.map((h) => [h.json.event, h.status]), [['machine.stale', 200]]);
      receiver.answers = [503];
      const job = (await t.create(`/api/v1/machines/${machine}/jobs`, { kind: 'check', spec: {} })).id;
      assert.equal((await t.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, job);
      assert.equal((await t.call('POST', `/api/v1/agent/jobs/${job}/result`, { token: agent, body: { state: 'failed', error: 'the disk safe is damaged' } })).status, 200);
      await t.server.checkAlerts();
      assert.deepEqual(receiver.hits.map((h) => [h.json.event, h.status]), [['machine.stale', 200], ['job.failed', 503]]);
      await t.server.close();

      second = await startServer({ dataDir: join(t.dataDir, 'data'), listen: '127.0.0.1:0', db: url, ...options });
      now += 60_000;
      await second.checkAlerts();
      await second.checkAlerts();
      assert.deepEqual(receiver.hits.map((h) => [h.json.event, h.status]), [['machine.stale', 200], ['job.failed', 503], ['job.failed', 200]],
        'the failed delivery sent by the new process; the stale machine not told again');
      assert.equal(receiver.hits[2]!.json.id, receiver.hits[1]!.json.id, 'the same event');
    } finally {
      await second?.close();
      await t.server.close();
      await rm(t.dataDir, { recursive: true, force: true });
      await receiver.close();
    }
  });

  it('takes a machine\'s stale threshold from its policy\'s schedule: 3 times its interval', { timeout: 60_000 }, async () => {
    let now = Date.parse('2030-03-01T00:00:00.000Z');
    const receiver = await startWebhookReceiver();
    const t = await setUp(await fx.newUrl(), undefined, { clock: () => new Date(now), staleAfterMs: 30 * 24 * 3600_000, alertTickMs: 3600_000, delivery: { pollMs: 3600_000 } });
    try {
      const acme = (await t.create('/api/v1/customers', { name: 'Acme' })).id;
      const machine = (await t.create('/api/v1/machines', { customer_id: acme, name: 'web2' })).id;
      await t.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-web2' });
      await t.create('/api/v1/notifications', { name: 'hook', customer_id: acme, kind: 'webhook', events: ['machine.stale'], webhook: { url: receiver.url } });
      await t.create('/api/v1/policies', { customer_id: acme, machine_id: machine, schedule: 'every 15m' });
      now += 40 * 60_000;
      await t.server.checkAlerts();
      assert.equal(receiver.hits.length, 0, 'within 3 × 15 minutes');
      now += 10 * 60_000;
      await t.server.checkAlerts();
      assert.equal(receiver.hits.length, 1);
      assert.match(receiver.hits[0]!.json.summary, /^machine web2 of Acme: no successful backup since it was enrolled 50 min ago \(its threshold is 45 min\)$/);
    } finally {
      await t.stop();
      await receiver.close();
    }
  });

  it('sends at once, when the node starts again, the delivery it was sending when it was killed (its lease of an hour notwithstanding)', { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'holdfast-notify-restart-'));
    const url = await fx.newUrl();
    const receiver = await startWebhookReceiver();
    receiver.stall = 'hang';
    // A process of its own, so that it can be killed mid-send; the lease far longer than the test.
    const options = { dataDir: join(dir, 'node'), db: url, delivery: { allowInternal: ['127.0.0.1'], leaseMs: 3600_000, pollMs: 3600_000 } };
    let node: ServerNode | undefined = await startServerNode(options);
    // The test reads the outbox itself, from the database the node made.
    const db = await openDatabase(url, '');
    try {
      const api = await adminClient(node.port, node.cert, node.firstAdmin!);
      const acme = (await api.create('/api/v1/customers', { name: 'Acme' })).id;
      const machine = (await api.create('/api/v1/machines', { customer_id: acme, name: 'db1' })).id;
      await api.create('/api/v1/safes', { customer_id: acme, machine_id: machine, name: 'acme-db1' });
      const agent = (await api.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name: 'agent', rights: ['backup'] })).secret;
      await api.create('/api/v1/notifications', { name: 'hook', customer_id: acme, kind: 'webhook', events: ['job.failed'], webhook: { url: receiver.url } });
      const job = (await api.create(`/api/v1/machines/${machine}/jobs`, { kind: 'check', spec: {} })).id;
      assert.equal((await api.call('GET', '/api/v1/agent/jobs/next?wait=0', { token: agent })).body.id, job);
      assert.equal((await api.call('POST', `/api/v1/agent/jobs/${job}/result`, { token: agent, body: { state: 'failed', error: 'the disk safe is damaged' } })).status, 200);
      await receiver.received(1);
      await node.stop('SIGKILL');
      const [held] = await db.db.selectFrom('notification_outbox').selectAll().execute();
      assert.deepEqual([held!.state, held!.attempts, held!.leased_by], ['pending', 0, node.node], 'left leased by the killed node, for an hour');

      receiver.stall = null;
      node = await startServerNode(options);
      await receiver.received(2);
      assert.equal(receiver.hits[0]!.json.id, held!.event_id, 'the event it was sending');
      let row = held!;
      while (row.state === 'pending') {
        await sleep(20);
        row = await db.db.selectFrom('notification_outbox').selectAll().where('id', '=', held!.id).executeTakeFirstOrThrow();
      }
      assert.deepEqual([row.state, row.attempts, row.leased_by], ['sent', 1, null]);
    } finally {
      await node?.stop();
      await db.close();
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

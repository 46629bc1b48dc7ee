/**
 * A disk safe deleted while its machine is live (the caller confirmed it
 * with `live_machine`): the machine's agent, waiting for jobs, stops with
 * exit 12 and says that the machine has no safe and how to give it one
 * (the systemd unit does not restart it after 12); started again, it stops
 * the same way at once instead of trying to open the safe for ever.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { enrolMachine, startAgent, stderrLine, type ServerHandle } from '../helpers/agent.js';
import { Sandbox } from '../helpers/cli.js';
import { setUp, type TestServer } from '../helpers/server.js';

let t: TestServer;
let s: Sandbox;

before(async () => {
  s = await Sandbox.create('holdfast-safe-deleted-');
  t = await setUp(`sqlite:${s.path('control.sqlite')}`);
});
after(async () => {
  await t.stop();
  await s.remove();
});

it('the agent of a machine whose safe was deleted stops with exit 12 and says what to do, waiting and when started again', { timeout: 60_000 }, async () => {
  const h: ServerHandle = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
  const m = await enrolMachine(h, s, 'web');
  const agent = startAgent(s, m);
  await stderrLine(agent.child, /waiting for jobs/);
  const safe = m.config['safe'] as string;
  const safeId = ((await t.call('GET', '/api/v1/safes', { token: t.adminToken })).body as { id: string; name: string }[]).find((x) => x.name === safe)!.id;
  const r = await t.call('DELETE', `/api/v1/safes/${safeId}`, { token: t.adminToken, body: { confirm: safe, live_machine: true } });
  assert.equal(r.status, 204, r.text);
  for (const run of [agent, startAgent(s, m)]) {
    const end = await run.done;
    assert.equal(end.code, 12, end.stderr);
    assert.match(end.stderr, new RegExp(`disk safe ${safe} of machine web is gone from https://127\\.0\\.0\\.1:${t.server.port}, so no backup of this machine can run: `
      + '.*machine web has no disk safe on the server any more \\(its safe was deleted\\).*retire it \\(holdfast server machine delete web\\) and enrol its agent again'));
  }
});

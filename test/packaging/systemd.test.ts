/**
 * The systemd units of packaging/systemd: `systemd-analyze verify` accepts
 * them (skipped, with the reason, where systemd-analyze is not installed),
 * and they start what the README says: the server on the data directory
 * systemd makes for it, the agent on the configuration enrolment writes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { DEFAULT_AGENT_CONFIG } from '../../src/agent/agent-config.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'packaging', 'systemd');
const UNITS = ['holdfast-server.service', 'holdfast-agent.service'].map((n) => join(DIR, n));
const analyze = spawnSync('systemd-analyze', ['--version']);

it('systemd-analyze verify accepts the units', { skip: analyze.error ? 'systemd-analyze is not installed (Debian: systemd)' : false }, () => {
  const r = spawnSync('systemd-analyze', ['verify', ...UNITS], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warnings');
});

it('start the server on its state directory and the agent on the configuration enrolment writes', () => {
  const server = readFileSync(UNITS[0]!, 'utf8');
  assert.match(server, /^ExecStart=\/usr\/bin\/env holdfast server --data \/var\/lib\/holdfast$/m);
  assert.match(server, /^StateDirectory=holdfast$/m);
  for (const line of ['DynamicUser=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'CapabilityBoundingSet=']) assert.match(server, new RegExp(`^${line}$`, 'm'));
  const agent = readFileSync(UNITS[1]!, 'utf8');
  assert.match(agent, new RegExp(`^ExecStart=/usr/bin/env holdfast agent run --config ${DEFAULT_AGENT_CONFIG}$`, 'm'));
  for (const line of ['User=root', 'IOSchedulingClass=idle', 'Nice=19']) assert.match(agent, new RegExp(`^${line}$`, 'm'));
});

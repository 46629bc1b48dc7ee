/**
 * Disk safes of `holdfast server` through the real CLI: a safe made through
 * the API, an agent's backup token (machine-scoped, `backup` right) that
 * initialises it, backs up and restores byte for byte over HTTPS with the
 * server's fingerprint pinned, and cannot forget; another customer's token,
 * a `read` token's backup and a revoked token reach nothing. A safe never
 * initialised takes no object but init's (409 NOT_INITIALISED, nothing stored).
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { httpsJson, setUp, type TestServer } from '../helpers/server.js';
import { createHash, randomBytes } from 'node:crypto';
import { HttpBackend } from '../../src/storage/http-backend.js';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

databaseSuites('disk safes over HTTPS through holdfast server', (fx) => {
  let t: TestServer;
  let s: Sandbox;
  const tokens: Record<string, string> = {};
  let revokeId = '';
  let newSafeId = '';
  const as = (token: string, extra: Record<string, string | undefined> = {}) => ({
    env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: token, HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_RETRY_FOR: '1s', ...extra },
  });

  before(async () => {
    t = await setUp(await fx.newUrl());
    s = await Sandbox.create('holdfast-safes-');
    await buildTree(s.path('src'), EVERYTHING);
    const mk = (path: string, body: unknown) => t.create(path, body);
    const acme = (await mk('/api/v1/customers', { name: 'Acme' })).id;
    const other = (await mk('/api/v1/customers', { name: 'Other' })).id;
    const web = (await mk('/api/v1/machines', { customer_id: acme, name: 'web' })).id;
    await mk('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-web' });
    newSafeId = (await mk('/api/v1/safes', { customer_id: acme, machine_id: web, name: 'acme-new' })).id;
    tokens['agent'] = (await mk('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'web agent', rights: ['backup'] })).secret;
    tokens['reader'] = (await mk('/api/v1/tokens', { customer_id: acme, name: 'reader', rights: ['read'] })).secret;
    tokens['stranger'] = (await mk('/api/v1/tokens', { customer_id: other, name: 'other agent', rights: ['backup', 'read', 'manage'] })).secret;
    const revoked = await mk('/api/v1/tokens', { customer_id: acme, machine_id: web, name: 'old agent', rights: ['backup'] });
    tokens['revoked'] = revoked.secret;
    revokeId = revoked.token.id;
  });
  after(async () => {
    await t.stop();
    await removeTree(s.dir);
  });

  it('a safe never initialised takes no object but init\'s: 409 NOT_INITIALISED naming init, nothing stored', { timeout: 60_000 }, async () => {
    const lock = Buffer.from(JSON.stringify({ version: 1, id: 'x' }));
    for (const [folder, body] of [['data', Buffer.from('pack bytes')], ['index', Buffer.from('{}')], ['snapshots', Buffer.from('{}')], ['locks', lock]] as const) {
      const name = createHash('sha256').update(body).digest('hex');
      const r = await httpsJson(t.server.port, t.cert, 'PUT', `/safes/acme-new/${folder}/${name}`, { token: tokens['agent']!, rawBody: body.toString() });
      assert.equal(r.status, 409, `${folder}: ${r.text}`);
      assert.equal(r.body.code, 'NOT_INITIALISED');
      assert.match(r.body.message, /disk safe acme-new holds no repository yet.*holdfast agent enroll.*holdfast init.*nothing was stored/);
    }
    const backup = await s.run(['backup', '-q', s.path('src')], as(tokens['agent']!, { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-new` }));
    assert.equal(backup.code, 10, backup.stderr);
    assert.match(backup.stderr, /holdfast init/);
    assert.deepEqual(await readdir(join(t.dataDir, 'data', 'safes', newSafeId)).catch(() => []), [], 'nothing was stored');
  });

  it('an agent token initialises, backs up and restores byte for byte, and cannot forget', { timeout: 120_000 }, async () => {
    await s.ok(['init'], as(tokens['agent']!));
    await s.ok(['backup', '-q', s.path('src')], as(tokens['agent']!));
    await s.ok(['restore', 'latest', '--target', s.path('out')], as(tokens['agent']!));
    await compareTrees(s.path('src'), join(s.path('out'), s.path('src')));
    const forget = await s.run(['forget', '--keep-last', '1'], as(tokens['agent']!, { HOLDFAST_PASSWORD: undefined }));
    assert.equal(forget.code, 13, forget.stderr);
    assert.match(forget.stderr, /for a disk safe on a holdfast server, the server \("holdfast server safe forget\|prune SAFE"/);
    // The reader sees the snapshot and cannot add one.
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'], as(tokens['reader']!))).stdout) as unknown[];
    assert.equal(snaps.length, 1);
    const backup = await s.run(['backup', '-q', s.path('src')], as(tokens['reader']!));
    assert.notEqual(backup.code, 0);
    assert.equal((JSON.parse((await s.ok(['snapshots', '--json'], as(tokens['agent']!))).stdout) as unknown[]).length, 1);
  });

  it('another customer\'s token and a revoked one reach no safe', { timeout: 60_000 }, async () => {
    assert.equal((await t.call('DELETE', `/api/v1/tokens/${revokeId}`, { token: t.adminToken })).status, 200);
    for (const who of ['stranger', 'revoked']) {
      const r = await s.run(['snapshots'], as(tokens[who]!));
      assert.notEqual(r.code, 0, who);
      assert.match(r.stderr, /no such disk safe, or the token \(HOLDFAST_TOKEN\) does not give access to it/, `${who}: ${r.stderr}`);
    }
  });

  it('stores packs of several MiB byte for byte, one after another and several at once (their bodies\' buffers reused)', { timeout: 60_000 }, async () => {
    const b = new HttpBackend({ origin: `https://127.0.0.1:${t.server.port}`, safe: 'acme-web' }, { token: tokens['agent']!, fingerprint: t.server.fingerprint });
    try {
      // Sizes within one pooled size and across two, so that later bodies land in earlier ones' buffers.
      const packs = [3.5, 3.2, 3.9, 1.5, 3.7, 3.3, 3.6, 3.1, 3.4].map((mib) => randomBytes(Math.round(mib * 2 ** 20)));
      const name = (p: Buffer): string => createHash('sha256').update(p).digest('hex');
      for (const p of packs.slice(0, 4)) await b.save({ type: 'data', name: name(p) }, p);
      await Promise.all(packs.slice(4).map((p) => b.save({ type: 'data', name: name(p) }, p)));
      for (const p of packs) assert.ok((await b.load({ type: 'data', name: name(p) })).equals(p), `pack ${name(p)} as sent`);
    } finally {
      await b.close();
    }
  });
});

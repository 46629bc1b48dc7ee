/**
 * Which token added which lock object of a disk safe outlives the server
 * process (migration 0006-lock-owners): after a restart an agent's token
 * still removes its own lock, and never another token's; the HTTP backend
 * says when a lock could not be removed instead of ignoring it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { encodeLock, processIdentity } from '../../src/repo/lock.js';
import { sha256 } from '../../src/core/crypto.js';
import { startServer, type RunningServer } from '../../src/server/backup-server.js';
import { AppendOnlyError } from '../../src/storage/append-only-backend.js';
import { HttpBackend, parseHttpLocation } from '../../src/storage/http-backend.js';
import { databaseSuites } from '../helpers/databases.js';
import { adminClient } from '../helpers/server.js';

const lockOf = (id: string): Buffer => encodeLock({
  ...processIdentity(), version: 1, id, operation: 'backup', exclusive: false, created: new Date().toISOString(), heartbeat: new Date().toISOString(),
});

databaseSuites('lock owners over a server restart', (fx) => {
  let dir = '';
  let db = '';
  let server: RunningServer | undefined;
  const tokens: string[] = [];
  const start = async (): Promise<RunningServer> => (server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', db }));
  const backend = (token: string, warnings: string[] = []): HttpBackend =>
    new HttpBackend(parseHttpLocation(`https://127.0.0.1:${server!.port}/safes/acme-web`), { token, fingerprint: server!.fingerprint, onWarning: (w) => warnings.push(w) });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-lock-owners-'));
    db = await fx.newUrl();
    const s = await start();
    const admin = await adminClient(s.port, await readFile(join(dir, 'data', 'tls', 'cert.pem'), 'utf8'), s.firstAdmin!);
    const customer = (await admin.create('/api/v1/customers', { name: 'Acme' })).id;
    const machine = (await admin.create('/api/v1/machines', { customer_id: customer, name: 'web' })).id;
    await admin.create('/api/v1/safes', { customer_id: customer, machine_id: machine, name: 'acme-web' });
    for (const name of ['agent', 'second agent']) {
      tokens.push((await admin.create('/api/v1/tokens', { customer_id: customer, machine_id: machine, name, rights: ['backup'] })).secret as string);
    }
    await backend(tokens[0]!).create();
    // The safe holds a repository (its config: the server takes no lock into a safe without one); a config's bytes end with their SHA-256.
    const config = Buffer.from('a config');
    await backend(tokens[0]!).save({ type: 'config', name: 'config' }, Buffer.concat([config, sha256(config)]));
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an agent removes its own lock after a restart, never another token\'s, and is told when it cannot', { timeout: 60_000 }, async () => {
    const mine = lockOf('mine');
    const theirs = lockOf('theirs');
    const mineH = { type: 'lock' as const, name: sha256(mine).toString('hex') };
    const theirsH = { type: 'lock' as const, name: sha256(theirs).toString('hex') };
    await backend(tokens[0]!).save(mineH, mine);
    await backend(tokens[1]!).save(theirsH, theirs);
    await server!.close();
    await start();
    const warnings: string[] = [];
    await assert.rejects(backend(tokens[0]!, warnings).remove(theirsH), AppendOnlyError);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`the lock ${theirsH.name} could not be removed .*blocks the safe's prune until it goes stale`));
    await backend(tokens[0]!).remove(mineH);
    assert.equal(await backend(tokens[0]!).stat(mineH), undefined);
    assert.ok(await backend(tokens[0]!).stat(theirsH), 'the other token\'s lock is still there');
    await backend(tokens[1]!).remove(theirsH);
    assert.equal(await backend(tokens[1]!).stat(theirsH), undefined);
  });
});

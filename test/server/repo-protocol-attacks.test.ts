/**
 * The repository protocol from an attacker's side (a security review of
 * issue 16): junk planted under its SHA-256 name in `index/`, `locks/` and
 * `keys/` with an agent's token is refused and the safe still restores; a
 * body that trickles is cut off and gives back the upload budget; one token
 * cannot take the whole budget, neither with a body declared larger than the
 * budget and sent slowly nor with one sent past its share, and three tokens
 * of one customer trickling uploads hold no more than the customer's share,
 * so another customer's upload goes through; uploads that
 * arrive together cannot all pass the budget's check; key files added
 * without end (each costs every opening of the safe an scrypt derivation)
 * stop at MAX_KEY_FILES.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request, type RequestOptions } from 'node:https';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox } from '../helpers/cli.js';
import { setUp, type TestServer } from '../helpers/server.js';
import type { UploadLimits } from '../../src/server/backup-server.js';
import { MAX_KEY_FILES } from '../../src/server/services/safe-access.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A PUT whose body the test sends itself: `answer` settles with the server's status and wire code. */
interface OpenPut {
  readonly answer: Promise<{ status: number; code: string | undefined }>;
  write(b: Buffer): void;
  end(b?: Buffer): void;
  destroy(): void;
}

function openPut(t: TestServer, token: string, path: string, size: number, method = 'PUT'): OpenPut {
  const o: RequestOptions = {
    host: '127.0.0.1', port: t.server.port, method, path, ca: t.cert, servername: 'localhost', agent: false,
    headers: { authorization: `Bearer ${token}`, 'content-length': size, 'content-type': 'application/octet-stream' },
    checkServerIdentity: () => undefined,
  };
  const req = request(o);
  const answer = new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, code: res.headers['holdfast-error'] as string | undefined });
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  return { answer, write: (b) => req.write(b), end: (b) => req.end(b), destroy: () => req.destroy() };
}

/** One whole PUT of `bytes` under their SHA-256 name in `folder`. */
async function put(t: TestServer, token: string, safe: string, folder: string, bytes: Buffer): Promise<{ status: number; code: string | undefined }> {
  const p = openPut(t, token, `/safes/${safe}/${folder}/${sha(bytes)}`, bytes.length);
  p.end(bytes);
  return p.answer;
}

/**
 * A server with two customers, each with a safe and an agent token; with
 * `limits`, its upload limits, and each safe gets a config, so that it
 * takes raw uploads (a safe without one takes only init's).
 */
async function serverWithTwoSafes(limits?: UploadLimits): Promise<{ t: TestServer; tokens: string[] }> {
  const dbDir = await mkdtemp(join(tmpdir(), 'holdfast-attack-db-'));
  const started = await setUp(`sqlite:${join(dbDir, 'db.sqlite')}`, undefined, limits === undefined ? {} : { uploadLimits: limits });
  const t: TestServer = { ...started, stop: async () => { await started.stop(); await rm(dbDir, { recursive: true, force: true }); } };
  const tokens: string[] = [];
  for (const name of ['acme', 'other']) {
    const customer = (await t.create('/api/v1/customers', { name })).id;
    const machine = (await t.create('/api/v1/machines', { customer_id: customer, name: 'web' })).id;
    await t.create('/api/v1/safes', { customer_id: customer, machine_id: machine, name: `${name}-web` });
    const token = (await t.create('/api/v1/tokens', { customer_id: customer, machine_id: machine, name: 'agent', rights: ['backup'] })).secret as string;
    const layout = openPut(t, token, `/safes/${name}-web`, 0, 'POST');
    layout.end();
    assert.equal((await layout.answer).status, 204);
    if (limits !== undefined) {
      // A config's bytes end with their SHA-256.
      const text = Buffer.from(`the config of ${name}-web`);
      const config = Buffer.concat([text, createHash('sha256').update(text).digest()]);
      const c = openPut(t, token, `/safes/${name}-web/config`, config.length);
      c.end(config);
      assert.equal((await c.answer).status, 201);
    }
    tokens.push(token);
  }
  return { t, tokens };
}

describe('the repository protocol against an agent token that attacks', () => {
  it('refuses junk index, lock and key objects named by their hash; the safe still backs up and restores', { timeout: 120_000 }, async () => {
    const { t, tokens } = await serverWithTwoSafes();
    const s = await Sandbox.create('holdfast-attack-');
    try {
      await buildTree(s.path('src'), EVERYTHING);
      const as = { env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: tokens[0], HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_RETRY_FOR: '1s' } };
      await s.ok(['init'], as);
      await s.ok(['backup', '-q', s.path('src')], as);
      const junk = randomBytes(100);
      const planted = [
        ['index', junk, 'BAD_INDEX'],
        ['locks', junk, 'BAD_LOCK'],
        ['keys', junk, 'BAD_KEY'],
        // Near misses: the magic of an index with nothing after it, a lock missing its fields, a key file without its KDF.
        ['index', Buffer.from('HFIX\x01'), 'BAD_INDEX'],
        ['locks', Buffer.from(JSON.stringify({ version: 1, id: 'x' })), 'BAD_LOCK'],
        ['keys', Buffer.from(JSON.stringify({ version: 1, created: 'now' })), 'BAD_KEY'],
      ] as const;
      for (const [folder, bytes, code] of planted) {
        const r = await put(t, tokens[0]!, 'acme-web', folder, bytes);
        assert.deepEqual(r, { status: 400, code }, folder);
      }
      // Nothing of it was stored: every command with the password works.
      await s.ok(['backup', '-q', s.path('src')], as);
      await s.ok(['restore', 'latest', '--target', s.path('out')], as);
      await compareTrees(s.path('src'), join(s.path('out'), s.path('src')));
      await s.ok(['check'], as);
    } finally {
      await t.stop();
      await removeTree(s.dir);
    }
  });

  it('adds key files up to MAX_KEY_FILES, then refuses them with TOO_MANY_KEYS; key add works below it', { timeout: 120_000 }, async () => {
    const { t, tokens } = await serverWithTwoSafes();
    const s = await Sandbox.create('holdfast-attack-');
    try {
      const as = { env: { HOLDFAST_REPOSITORY: `https://127.0.0.1:${t.server.port}/safes/acme-web`, HOLDFAST_TOKEN: tokens[0], HOLDFAST_FINGERPRINT: t.server.fingerprint, HOLDFAST_RETRY_FOR: '1s' } };
      await s.ok(['init'], as);
      await writeFile(s.path('pw2'), 'a second password\n');
      await s.ok(['key', 'add', '--new-password-file', s.path('pw2')], as);
      // Key files that parse (their sealed part is not opened on upload): the review's flood.
      const keyFile = (): Buffer => Buffer.from(JSON.stringify({
        version: 1, created: new Date().toISOString(), hostname: 'x', username: 'x',
        kdf: { algorithm: 'scrypt', salt: randomBytes(32).toString('base64'), N: 2, r: 8, p: 1 }, data: randomBytes(60).toString('base64'),
      }));
      for (let i = 2; i < MAX_KEY_FILES; i++) assert.deepEqual(await put(t, tokens[0]!, 'acme-web', 'keys', keyFile()), { status: 201, code: undefined }, `key ${i + 1}`);
      assert.deepEqual(await put(t, tokens[0]!, 'acme-web', 'keys', keyFile()), { status: 409, code: 'TOO_MANY_KEYS' });
      const refused = await s.run(['key', 'add', '--new-password-file', s.path('pw2')], as);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /holds 32 key files already, at most 32/);
      // The other customer's safe is its own.
      assert.deepEqual(await put(t, tokens[1]!, 'other-web', 'keys', keyFile()), { status: 201, code: undefined });
    } finally {
      await t.stop();
      await removeTree(s.dir);
    }
  });

  describe('a body that trickles', () => {
    let t: TestServer;
    let tokens: string[];
    before(async () => ({ t, tokens } = await serverWithTwoSafes({ maxBytesInFlight: 1 << 20, uploadPace: { windowMs: 200, minBytes: 4096 } })));
    after(() => t.stop());

    it('is cut off with 408 UPLOAD_STALLED and gives the budget back to others', { timeout: 60_000 }, async () => {
      const drip = openPut(t, tokens[0]!, `/safes/acme-web/data/${'ab'.repeat(32)}`, (1 << 20) - 100);
      const timer = setInterval(() => drip.write(Buffer.alloc(1)), 50);
      try {
        // Answered, however long that takes under load (an unbounded drip would never be).
        assert.deepEqual(await drip.answer, { status: 408, code: 'UPLOAD_STALLED' });
      } finally {
        clearInterval(timer);
        drip.destroy();
      }
      const small = randomBytes(1000);
      assert.deepEqual(await put(t, tokens[1]!, 'other-web', 'data', small), { status: 201, code: undefined });
    });
  });

  describe('the upload budget', () => {
    let t: TestServer;
    let tokens: string[];
    before(async () => ({ t, tokens } = await serverWithTwoSafes({ maxBytesInFlight: 100 * 1024, maxBytesInFlightPerPrincipal: 40 * 1024 })));
    after(() => t.stop());

    it('one token holds at most its share; another token still uploads', { timeout: 60_000 }, async () => {
      const held = randomBytes(30 * 1024);
      const first = openPut(t, tokens[0]!, `/safes/acme-web/data/${sha(held)}`, held.length);
      first.write(held.subarray(0, 10));
      // The same token's second upload while the first is held: over its share. Until the
      // server has reserved the first (its token is checked first), the second passes alone.
      let r = await put(t, tokens[0]!, 'acme-web', 'data', randomBytes(20 * 1024));
      for (let tries = 0; r.status === 201 && tries < 100; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        r = await put(t, tokens[0]!, 'acme-web', 'data', randomBytes(20 * 1024));
      }
      assert.deepEqual(r, { status: 503, code: 'BUSY' });
      r = await put(t, tokens[1]!, 'other-web', 'data', randomBytes(20 * 1024));
      assert.deepEqual(r, { status: 201, code: undefined });
      first.end(held.subarray(10));
      assert.deepEqual(await first.answer, { status: 201, code: undefined });
    });

    it('uploads that arrive together are counted before any of them waits', { timeout: 60_000 }, async () => {
      const bodies = [randomBytes(35 * 1024), randomBytes(35 * 1024), randomBytes(35 * 1024)];
      const safes = ['acme-web', 'other-web', 'other-web'];
      const owners = [tokens[0]!, tokens[1]!, tokens[1]!];
      // Three bodies that together pass the budget (and two of them the second token's share), none sent whole yet.
      const puts = bodies.map((b, i) => openPut(t, owners[i]!, `/safes/${safes[i]}/data/${sha(b)}`, b.length));
      for (const [i, p] of puts.entries()) p.write(bodies[i]!.subarray(0, 10));
      const refused = await Promise.race(puts.map((p, i) => p.answer.then((a) => ({ i, a }))));
      assert.deepEqual(refused.a, { status: 503, code: 'BUSY' });
      for (const [i, p] of puts.entries()) if (i !== refused.i) p.end(bodies[i]!.subarray(10));
      const rest = await Promise.all(puts.filter((_p, i) => i !== refused.i).map((p) => p.answer));
      assert.deepEqual(rest, [{ status: 201, code: undefined }, { status: 201, code: undefined }]);
    });
  });

  describe('a customer\'s share of the upload budget', () => {
    let t: TestServer;
    let tokens: string[];
    // A token's share is 40 KiB and so is its customer's, of 100 KiB in all; no pace rule meets the test's bodies: only the budget decides.
    before(async () => ({ t, tokens } = await serverWithTwoSafes({
      maxBytesInFlight: 100 * 1024, maxBytesInFlightPerPrincipal: 40 * 1024, maxBytesInFlightPerCustomer: 40 * 1024, uploadStep: 4096, uploadPace: { windowMs: 600_000, minBytes: 1 },
    })));
    after(() => t.stop());

    it('three tokens of one customer trickling uploads hold at most its share; another customer\'s upload still goes through', { timeout: 60_000 }, async () => {
      const acme = ((await t.call('GET', '/api/v1/customers', { token: t.adminToken })).body as { id: string; name: string }[]).find((c) => c.name === 'acme')!.id;
      const machine = ((await t.call('GET', '/api/v1/machines', { token: t.adminToken })).body as { id: string; customer_id: string }[]).find((m) => m.customer_id === acme)!.id;
      const mine = [tokens[0]!];
      for (const name of ['agent 2', 'agent 3']) mine.push((await t.create('/api/v1/tokens', { customer_id: acme, machine_id: machine, name, rights: ['backup'] })).secret as string);
      // The attack: each token declares 1 MiB and sends 38 KiB, within its own share, then nothing more; together 114 KiB, past the whole budget.
      const trickles = mine.map((token, i) => {
        const p = openPut(t, token, `/safes/acme-web/data/${String(i).repeat(64)}`, 1 << 20);
        p.write(randomBytes(38 * 1024));
        return p;
      });
      const answers: ({ status: number; code: string | undefined } | undefined)[] = trickles.map(() => undefined);
      for (const [i, p] of trickles.entries()) p.answer.then((a) => (answers[i] = a), () => (answers[i] = { status: 0, code: 'hung up' }));
      try {
        // Until the server has taken in what each trickle sent: it was answered (refused), or its token's next upload is refused (38 + 4 KiB > 40).
        for (const [i, token] of mine.entries()) {
          while (answers[i] === undefined && (await put(t, token, 'acme-web', 'data', randomBytes(4096))).status !== 503) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        // A trickle the customer's share refused is answered BUSY (its client retries it later).
        assert.ok(answers.every((a) => a === undefined || (a.status === 503 && a.code === 'BUSY')), JSON.stringify(answers));
        // Another customer's upload of 38 KiB: room is left for it.
        assert.deepEqual(await put(t, tokens[1]!, 'other-web', 'data', randomBytes(38 * 1024)), { status: 201, code: undefined });
      } finally {
        for (const p of trickles) p.destroy();
      }
    });
  });

  describe('a body declared larger than the budget', () => {
    let t: TestServer;
    let tokens: string[];
    // No pace rule meets the test's bodies: only the budget decides.
    before(async () => ({ t, tokens } = await serverWithTwoSafes({
      maxBytesInFlight: 64 * 1024, maxBytesInFlightPerPrincipal: 40 * 1024, uploadStep: 4096, uploadPace: { windowMs: 600_000, minBytes: 1 },
    })));
    after(() => t.stop());

    it('sent slowly holds one step, and another customer uploads meanwhile', { timeout: 60_000 }, async () => {
      // The review's attack: 1.5 GB declared, a little now and then; the server held the whole
      // declared size against its budget for as long as the trickle lasted.
      const slow = openPut(t, tokens[0]!, `/safes/acme-web/data/${'ab'.repeat(32)}`, 1_500_000_000);
      slow.write(randomBytes(1000));
      try {
        assert.deepEqual(await put(t, tokens[1]!, 'other-web', 'data', randomBytes(30 * 1024)), { status: 201, code: undefined });
      } finally {
        // Its answer is the hang-up of its own connection.
        slow.answer.catch(() => undefined);
        slow.destroy();
      }
    });

    it('sent past its token\'s share gives way to another customer that needs the budget', { timeout: 60_000 }, async () => {
      const big = openPut(t, tokens[0]!, `/safes/acme-web/data/${'cd'.repeat(32)}`, 1 << 20);
      big.write(randomBytes(80 * 1024));
      // Held past the share once the same token's next upload is refused (over its share).
      let r = await put(t, tokens[0]!, 'acme-web', 'data', randomBytes(100));
      while (r.status === 201) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        r = await put(t, tokens[0]!, 'acme-web', 'data', randomBytes(100));
      }
      assert.deepEqual(r, { status: 503, code: 'BUSY' });
      try {
        assert.deepEqual(await put(t, tokens[1]!, 'other-web', 'data', randomBytes(30 * 1024)), { status: 201, code: undefined });
        assert.deepEqual(await big.answer, { status: 503, code: 'BUSY' });
      } finally {
        big.destroy();
      }
    });
  });
});

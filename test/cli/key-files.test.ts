/**
 * Key files an attacker plants in `keys/`: one whose scrypt cost is beyond
 * the bound is refused by name without being derived; keys are tried the
 * one that opened the repository last time here first, then cheapest
 * first, and a key dearer than the default is named before it is tried.
 * The hint of the last key is written only when it changes. `key list`
 * shows a refused key, and `key remove` removes it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { sha256 } from '../../src/core/crypto.js';
import { LocalBackend } from '../../src/storage/local-backend.js';

/** Stores a key file as an attacker would: valid JSON with the given scrypt cost, wrapping nothing anyone knows. */
async function plantKey(repo: string, kdf: { N: number; r: number; p: number }): Promise<string> {
  const bytes = Buffer.from(JSON.stringify({
    version: 1, created: new Date().toISOString(), hostname: 'mallory', username: 'mallory',
    kdf: { algorithm: 'scrypt', ...kdf, salt: randomBytes(32).toString('base64') }, data: randomBytes(120).toString('base64'),
  }));
  const name = sha256(bytes).toString('hex');
  await new LocalBackend(repo).save({ type: 'key', name }, bytes);
  return name;
}

/** The id (8 hex) `key list` marks as in use. */
const current = (stdout: string): string | undefined => /^\*([0-9a-f]{8})/m.exec(stdout)?.[1];

describe('planted key files', () => {
  let s: Sandbox;
  let cheap: string;
  let dear: string;
  let planted: string;
  let repoId: string;
  before(async () => {
    s = await Sandbox.create('holdfast-keys-');
    await s.ok(['init']);
    cheap = (await readdir(s.path('repo', 'keys')))[0]!;
    await writeFile(s.path('pw2'), 'correct horse\n');
    // The same password once more, at twice the default cost (N=2^17, r=8): a legitimate but slow key.
    const added = await s.ok(['key', 'add', '--new-password-file', s.path('pw2')], { env: { HOLDFAST_SCRYPT_N: String(2 ** 17) } });
    dear = (await readdir(s.path('repo', 'keys'))).find((k) => k !== cheap && added.stdout.includes(k.slice(0, 8)))!;
    assert.ok(dear);
    // 16 times the default: 1 GiB and seconds for every command that tried it.
    planted = await plantKey(s.repo, { N: 2 ** 20, r: 8, p: 1 });
    repoId = (await readdir(s.path('cache')))[0]!;
  });
  after(async () => {
    await s.remove();
  });

  it('refuses a key beyond the bound by name, and tries the cheapest key first when there is no hint', async () => {
    await writeFile(s.path('cache', repoId, 'key'), ''); // no hint
    const r = await s.ok(['key', 'list']);
    assert.match(r.stderr, new RegExp(`warning: key ${planted} is damaged: refused: scrypt N=2\\^20, r=8, p=1 would cost 16 times the default, more than the 4 a reader spends`));
    assert.equal(current(r.stdout), cheap.slice(0, 8));
    assert.doesNotMatch(r.stderr, /takes longer/, 'the dear key was tried');
    assert.equal((await readFile(s.path('cache', repoId, 'key'), 'utf8')).trim(), cheap);
  });

  it('tries the key of the last open first, says that it is slow, and rewrites the hint only when it changes', async () => {
    await writeFile(s.path('cache', repoId, 'key'), `${dear}\n`);
    const r = await s.ok(['key', 'list']);
    assert.equal(current(r.stdout), dear.slice(0, 8));
    assert.match(r.stderr, new RegExp(`warning: key ${dear}: scrypt N=2\\^17, r=8, p=1 costs 2 times the default; trying it takes longer`));
    assert.doesNotMatch(r.stderr, new RegExp(planted), 'the planted key was read although the hinted key opened');
    const before = (await stat(s.path('cache', repoId, 'key'))).mtimeMs;
    await s.ok(['snapshots']);
    assert.equal((await stat(s.path('cache', repoId, 'key'))).mtimeMs, before, 'an open that changed nothing wrote the hint');
  });

  it('with a wrong password names the refused key and opens nothing', async () => {
    const r = await s.run(['snapshots'], { env: { HOLDFAST_PASSWORD: 'wrong' } });
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`key ${planted} is damaged: refused: scrypt N=2\\^20.*no other key opens with this password`));
  });

  it('lists the refused key as unusable, and key remove removes it', async () => {
    const r = await s.ok(['key', 'list']);
    assert.match(r.stdout, new RegExp(`^ ${planted.slice(0, 8)}\\s+unusable: key ${planted} is damaged: refused`, 'm'));
    await s.ok(['key', 'remove', planted.slice(0, 8)]);
    assert.ok(!(await readdir(s.path('repo', 'keys'))).includes(planted));
    assert.doesNotMatch((await s.ok(['snapshots'])).stderr, /refused/);
  });
});

// Tests of src/server/services/passwords.ts: a hash verifies its password
// and no other, a stored hash made by OpenSSL's scrypt (node:crypto, what
// servers stored before the KDF moved to libsodium) still verifies, and a
// stored value that cannot be read never does.

import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { DUMMY_HASH, hashPassword, verifyPassword } from '../../src/server/services/passwords.js';

describe('server passwords', () => {
  it('verifies the password a hash was made of, normalised to NFC, and no other', async () => {
    const stored = await hashPassword('caf\u00e9 au lait, twice');
    assert.match(stored, /^scrypt\$32768\$8\$3\$[\w-]+\$[\w-]+$/);
    assert.equal(await verifyPassword('caf\u00e9 au lait, twice', stored), true);
    assert.equal(await verifyPassword('cafe\u0301 au lait, twice', stored), true);
    assert.equal(await verifyPassword('cafe au lait, twice', stored), false);
    assert.notEqual(await hashPassword('caf\u00e9 au lait, twice'), stored);
  });

  it('verifies a hash that OpenSSL\'s scrypt made', async () => {
    const salt = randomBytes(16);
    const key = scryptSync('an older password', salt, 32, { N: 2 ** 15, r: 8, p: 3, maxmem: 64 << 20 });
    const stored = ['scrypt', 2 ** 15, 8, 3, salt.toString('base64url'), key.toString('base64url')].join('$');
    assert.equal(await verifyPassword('an older password', stored), true);
    assert.equal(await verifyPassword('an older passworD', stored), false);
  });

  it('never verifies against the dummy hash or a value it cannot read', async () => {
    assert.equal(await verifyPassword('', DUMMY_HASH), false);
    assert.equal(await verifyPassword('x', 'bcrypt$1$2$3$c2FsdA$a2V5'), false);
    assert.equal(await verifyPassword('x', 'scrypt$32768$8$3$$'), false);
    assert.equal(await verifyPassword('x', 'scrypt$banana$8$3$c2FsdA$a2V5a2V5a2V5a2V5a2V5'), false);
    // A stored key of no bytes: node:crypto derived an empty key for it, which matched every password.
    assert.equal(await verifyPassword('any password', 'scrypt$32768$8$3$c2FsdA$A'), false);
  });

  it('refuses at once a stored hash that asks for more than it may spend', async () => {
    const key = Buffer.alloc(32, 1).toString('base64url');
    const started = Date.now();
    // p=100000 held a thread-pool thread for two minutes before it was refused.
    assert.equal(await verifyPassword('x', `scrypt$1024$8$100000$c2FsdA$${key}`), false);
    assert.equal(await verifyPassword('x', `scrypt$${2 ** 20}$8$3$c2FsdA$${key}`), false);
    assert.equal(await verifyPassword('x', `scrypt$32768$8$3$c2FsdA$${Buffer.alloc(65536).toString('base64url')}`), false);
    assert.ok(Date.now() - started < 20_000, 'refused without deriving (p=100000 alone derives for minutes)');
  });
});
